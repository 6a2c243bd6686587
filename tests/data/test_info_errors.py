"""`pdefm info` names what is wrong with what it was given, with a non-zero exit, and never a traceback."""

import h5py
import numpy as np
import pytest

from pdefm.data.the_well import main as well_main

from well_files import write_dataset


def _plain_h5(path):
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.zeros(3))


@pytest.mark.parametrize("case", ["missing", "text", "plain", "one_step", "empty_folder"])
def test_info_errors_are_named(tmp_path, case, capsys):
    if case == "missing":
        path = tmp_path / "nowhere"
    elif case == "text":
        path = tmp_path / "notes.hdf5"
        path.write_text("not an HDF5 file")
    elif case == "plain":
        path = tmp_path / "plain.h5"
        _plain_h5(path)
    elif case == "one_step":
        folder = write_dataset(str(tmp_path), "short", n_steps=2, files_per_split=(1, 0, 0))
        path = f"{folder}/data/train"
    else:
        path = tmp_path / "empty"
        path.mkdir()
    code = well_main(["info", str(path), "--dynamics-trajectories", "0"])
    err = capsys.readouterr().err
    assert code != 0 and err.startswith("error: ") and "Traceback" not in err
    assert str(path) in err or "short_00.hdf5" in err


def test_info_refuses_zero_input_frames(tmp_path, capsys):
    folder = write_dataset(str(tmp_path), "toy", n_steps=6, files_per_split=(1, 1, 1))
    assert well_main(["info", folder, "--n-steps-input", "0"]) == 2
    assert "--n-steps-input must be at least 1" in capsys.readouterr().err
    assert well_main(["info", folder, "--dynamics-trajectories", "1"]) == 0
