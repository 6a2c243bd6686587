"""The one-step change summary that `the_well info` prints."""

import numpy as np
import pytest

from pdefm.data.dynamics import STATIC_CHANGE, format_dynamics, relative_step_change, summarise_dynamics
from pdefm.data.the_well import main as the_well_main
from tests.well_files import write_dataset


def test_relative_step_change_of_a_ramp_a_constant_and_a_still_field():
    t = np.arange(5, dtype=float)
    ramp = np.broadcast_to(t[:, None, None], (5, 3, 3)).copy()  # moves by 1 per step everywhere
    constant = np.full((5, 3, 3), 7.0)
    values = np.stack([ramp, constant], axis=-1)
    change = relative_step_change(values)
    assert change.shape == (4, 2)
    assert change[:, 0] == pytest.approx(np.full(4, 1 / ramp.std()))
    assert (change[:, 1] == 0).all()  # no spread: reported as no change, never NaN
    with pytest.raises(ValueError, match="at least 2 frames"):
        relative_step_change(values[:1])


def test_summary_finds_the_quiet_end_and_the_least_moving_trajectory():
    rng = np.random.default_rng(0)
    moving = np.cumsum(rng.normal(size=(9, 4, 4, 1)), axis=0)
    settling = moving.copy()
    settling[5:] = settling[5]  # stops after frame 5
    summary = summarise_dynamics([relative_step_change(moving), relative_step_change(settling)], ["u"])
    (u,) = summary
    assert len(u.segment_means) == 4 and u.segment_means[-1] < u.segment_means[0]
    assert u.least_moving_trajectory == 1
    assert u.static_fraction == pytest.approx(3 / 16)  # the settled trajectory's last 3 of 8 steps
    lines = format_dynamics(summary)
    assert str(STATIC_CHANGE) in lines[0] and lines[-1].split()[0] == "u" and "(#1)" in lines[-1]


def test_info_prints_the_dynamics_per_split(tmp_path, capsys):
    write_dataset(str(tmp_path), "toy", n_dims=2, resolution=(8, 6), n_steps=9, files_per_split=(1, 1, 1))
    assert the_well_main(["info", str(tmp_path / "toy")]) == 0
    out = capsys.readouterr().out
    assert out.count("one-step change / field std") == 3
    assert the_well_main(["info", str(tmp_path / "toy"), "--dynamics-trajectories", "0"]) == 0
    assert "one-step change" not in capsys.readouterr().out
