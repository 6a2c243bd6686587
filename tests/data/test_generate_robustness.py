"""Mini-Generators outside their defaults: coarse grids, blow-ups and collapsing time steps stop fast and say why."""

import numpy as np
import pytest

from pdefm.data import generate
from pdefm.data.pde import (acoustic_scattering, gray_scott, helmholtz_staircase, mhd, rayleigh_benard, shear_flow,
                            supernova, turbulent_radiative_layer, viscoelastic)
from pdefm.data.pde.simulation import SolverBreakdownError, StepGuard, check_finite, resolution_scale


def test_step_guard_passes_a_steady_step_and_takes_the_batch_minimum():
    guard = StepGuard("toy", {"Re": np.array([10.0, 20.0])})
    assert guard.step(np.array([0.1, 0.2]), t=0.0) == pytest.approx(0.1)
    assert guard.step(np.array([0.05, 0.01]), t=1.0) == pytest.approx(0.01)  # 20x smaller: still fine


def test_step_guard_names_the_collapsing_trajectory_and_its_parameters():
    guard = StepGuard("toy", {"Re": np.array([10.0, 20.0]), "Sc": np.array([1.0, 2.0])})
    guard.step(np.array([0.1, 0.2]), t=0.0)
    with pytest.raises(SolverBreakdownError, match=r"toy: .*trajectory 1 \(Re=20, Sc=2\) collapsed .* at t=3"):
        guard.step(np.array([0.1, 1e-4]), t=3.0)
    with pytest.raises(SolverBreakdownError, match=r"trajectory 0 \(Re=10, Sc=1\) is not finite"):
        StepGuard("toy", {"Re": np.array([10.0, 20.0]), "Sc": np.array([1.0, 2.0])}).step(np.array([np.nan, 0.1]), 0.0)


def test_non_finite_frame_names_field_trajectory_and_parameters():
    frame = np.zeros((3, 4, 4))
    frame[2, 1, 1] = np.inf
    with pytest.raises(SolverBreakdownError, match=r"sys: .*'buoyancy' at t=1.5 for trajectory 2 \(Ra=30\)"):
        check_finite("sys", {"Ra": np.array([10.0, 20.0, 30.0])}, 1.5, buoyancy=frame)
    check_finite("sys", None, 0.0, buoyancy=np.zeros((3, 4, 4)))  # finite: silent


def test_under_resolved_convection_stops_at_the_collapse_not_after_minutes(monkeypatch):
    # The case: Rayleigh up to 1e6 on a 16-point grid, parameters not scaled (as before the fix). The step
    # collapses a few time units in; the guard stops it there, naming trajectory and parameters.
    monkeypatch.setattr(rayleigh_benard, "MIN_RESOLUTION", 16)
    with pytest.raises(SolverBreakdownError, match=r"rayleigh_benard: the adaptive time step of trajectory \d "
                                                   r"\(Rayleigh=[\d.e+]+, Prandtl=[\d.]+\) collapsed"):
        rayleigh_benard.simulate(4, 16, 60, np.random.default_rng(1))


def test_coarse_grids_scale_what_they_cannot_resolve():
    assert resolution_scale(64, 64) == 1.0 and resolution_scale(128, 64) == 1.0 and resolution_scale(16, 64) == 0.25
    coarse = rayleigh_benard.simulate(3, 16, 3, np.random.default_rng(0), t_end=6.0)
    rayleigh = next(s for s in coarse.scalars if s.name == "Rayleigh").value
    low, high = rayleigh_benard.RAYLEIGH
    assert (rayleigh >= low / 64 * 0.999).all() and (rayleigh <= high / 64 * 1.001).all()  # (16/64)^3, as stored
    sheared = shear_flow.simulate(2, 16, 3, np.random.default_rng(0), t_end=0.5)
    assert (next(s for s in sheared.scalars if s.name == "Reynolds").value <= shear_flow.REYNOLDS[1] / 4 * 1.001).all()
    patterns = gray_scott.simulate(1, 16, 3, np.random.default_rng(0), t_end=10.0)
    assert patterns.coordinates["x"][-1] < gray_scott.LENGTH / 2  # the box shrinks with the grid
    full = shear_flow.simulate(2, 64, 3, np.random.default_rng(0), t_end=0.5)
    assert (next(s for s in full.scalars if s.name == "Reynolds").value >= shear_flow.REYNOLDS[0] * 0.999).all()


@pytest.mark.parametrize("module", [shear_flow, gray_scott, rayleigh_benard, acoustic_scattering, mhd,
                                    turbulent_radiative_layer, viscoelastic, helmholtz_staircase, supernova],
                         ids=lambda m: m.NAME)
def test_every_system_declares_its_smallest_resolved_grid_and_regime(module):
    system = generate.SYSTEMS[module.NAME]
    assert system.min_resolution == module.MIN_RESOLUTION >= generate.MIN_RESOLUTION
    regime = system.regime(system.resolution, 60)
    assert str(system.resolution) in regime.grid and "60 frames" in regime.trajectory and regime.below_minimum


def test_generate_cli_reports_a_breakdown_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(rayleigh_benard, "MIN_RESOLUTION", 16)
    code = generate.main(["--dataset", "rayleigh_benard", "--out", str(tmp_path), "--resolution", "16",
                          "--n-trajectories", "10", "--n-steps", "12", "--seed", "1", "--trajectories-per-file", "8"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1 and errors[0].startswith("error: rayleigh_benard: the adaptive time step of")
    assert "Traceback" not in err


def test_a_dataset_the_disk_cannot_hold_is_refused_before_any_solver_runs(tmp_path, monkeypatch):
    import collections

    import pdefm.data.generate as generate

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(generate.shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 1000, 1000))
    monkeypatch.setattr(generate, "_generate_files", lambda *a, **k: pytest.fail("a solver ran"))
    with pytest.raises(ValueError, match=r"gray_scott_reaction_diffusion: its files need about 0.03 GiB, more than "
                                         r"the 0.00 GiB free"):
        generate.generate_dataset("gray_scott_reaction_diffusion", str(tmp_path / "out"), progress=False)
    assert not (tmp_path / "out").exists()


def test_coarse_grids_scale_the_new_systems_what_they_cannot_resolve():
    # Helmholtz: a wavelength keeps its 10+ cells (omega shrinks with the grid); viscoelastic: polymer diffusion grows.
    coarse = helmholtz_staircase.simulate(2, 32, 2, np.random.default_rng(0))
    omega = coarse.scalars[0].value
    assert (2 * np.pi / omega * 32 >= helmholtz_staircase.WAVELENGTH_CELLS[0] * 0.999).all()
    elastic = viscoelastic.simulate(1, 16, 2, np.random.default_rng(0), t_end=0.5, t_spinup=0.1)
    epsilon = next(s for s in elastic.scalars if s.name == "epsilon").value
    assert epsilon[0] == pytest.approx(viscoelastic.EPSILON * 4)


def test_the_suites_hold_six_and_ten_systems():
    assert len(generate.SUITES["mini_well"]) == 6 and set(generate.SUITES["mini_well"]) < set(generate.SUITES["mini_well_all"])
    assert set(generate.SUITES["mini_well_all"]) == set(generate.SYSTEMS) and len(generate.SYSTEMS) == 10
    for name in generate.SYSTEMS:  # every system stands for a dataset of The Well whose fields it writes
        assert any(key == name or key.startswith(f"{name}_") for key in generate.WELL_DATASETS), name
