"""Generate Mini-Well: small numerical PDE solutions in The Well's format, on a CPU (or a GPU with --device).

    python -m pdefm.data.generate --suite mini_well --out data/mini_well
    python -m pdefm.data.generate --dataset shear_flow --out data/mini_well --resolution 64 --n-trajectories 12

Output: `OUT/NAME/data/{train,valid,test}/NAME_<split>_<k>.hdf5` and `OUT/NAME/stats.yaml`. Trajectories split
0.8/0.1/0.1 (at least one each for valid and test). Every file has its own seed derived from (--seed, dataset,
split, file), so the same seed gives the same files and a finished file never needs regenerating: a rerun skips
files that exist (they are written under a temporary name and renamed only when complete).

The settings that shape the files are kept in `OUT/NAME/generation.json` (and the suite's in
`OUT/<suite>_suite.json`): a rerun with other settings is refused instead of mixing grids or trajectory counts in one
folder, unless `--overwrite` (which deletes that dataset's files first). `complete_suite` finishes an interrupted
suite with the settings it was started with.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from pdefm.runtime.cli_format import HelpFormatter
from pdefm.runtime.files import write_text_atomically
from pdefm.runtime.process import setup_process

from .layout import DATA_FOLDER, SPLITS, STATS_FILE, split_dir, stats_path
from .pde import (acoustic_scattering, euler, gray_scott, helmholtz_staircase, mhd, rayleigh_benard, shear_flow,
                  supernova, turbulent_radiative_layer, viscoelastic)
from .pde.simulation import Simulation, SolverBreakdownError
from .registry import WELL_DATASETS
from .the_well import compute_stats
from .well_writer import write_well_file


@dataclass(frozen=True)
class System:
    name: str
    simulate: Callable[..., Simulation]
    resolution: int  # default grid points per axis
    n_spatial_dims: int
    min_resolution: int  # smallest grid that resolves the parameter ranges; coarser grids get scaled parameters
    regime: Callable[..., object]  # (resolution, n_steps) -> pde.simulation.Regime
    n_steps: int = 60  # saved frames per trajectory, over the module's horizon T_END
    n_trajectories: int = 16


def _system(module, resolution: int, n_spatial_dims: int, n_steps: int = 60, n_trajectories: int = 16) -> System:
    return System(module.NAME, module.simulate, resolution, n_spatial_dims, module.MIN_RESOLUTION, module.regime,
                  n_steps, n_trajectories)


# The main job's six (suite mini_well). Frame spacings (pdefm 0.3.0, docs/mini_well.md "Frame spacing"): one step must
# not be linear extrapolation.
_MAIN_JOB_SYSTEMS = (
    _system(shear_flow, 64, 2, n_steps=45),
    _system(gray_scott, 64, 2),
    _system(rayleigh_benard, 64, 2),
    _system(acoustic_scattering, 64, 2),
    _system(euler, 64, 2, n_steps=45),
    # 36 frames (a 30-step rollout fits) and 10 trajectories keep the generation inside the main job's budget.
    _system(mhd, 32, 3, n_steps=36, n_trajectories=10),
)
# The physics the six lack (radiative, elastic, linear time-harmonic, astrophysical): docs/mini_well.md.
_OTHER_PHYSICS_SYSTEMS = (
    _system(turbulent_radiative_layer, 64, 2),
    _system(viscoelastic, 64, 2),
    _system(helmholtz_staircase, 64, 2),
    _system(supernova, 32, 3, n_steps=36, n_trajectories=10),
)
SYSTEMS: dict[str, System] = {s.name: s for s in _MAIN_JOB_SYSTEMS + _OTHER_PHYSICS_SYSTEMS}
SUITES = {"mini_well": tuple(s.name for s in _MAIN_JOB_SYSTEMS), "mini_well_all": tuple(SYSTEMS)}
MANIFEST = "generation.json"
MIN_RESOLUTION = 8
# 2: frame spacings chosen so that one step is not linear extrapolation (pdefm 0.3.0; docs/mini_well.md). A folder of
# version 1 is refused by name instead of being completed or trained on as if it were today's suite.
MANIFEST_VERSION = 2


class GenerationSettingsError(ValueError):
    """A dataset folder already holds files made with other settings."""


def suite_manifest_path(out: str, suite: str) -> str:
    return os.path.join(out, f"{suite}_suite.json")


def _write_json_atomic(path: str, value: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_text_atomically(path, json.dumps(value, indent=2))


def check_settings(resolution: int | None, n_trajectories: int | None, n_steps: int | None, seed: int,
                   trajectories_per_file: int) -> None:
    """Refuse impossible generation settings before any work, naming the argument."""
    def whole(value) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if resolution is not None and (not whole(resolution) or resolution < MIN_RESOLUTION):
        raise ValueError(f"--resolution must be a whole number of grid points per axis, at least {MIN_RESOLUTION}, "
                         f"got {resolution!r}")
    if n_trajectories is not None and (not whole(n_trajectories) or n_trajectories < 3):
        raise ValueError(f"--n-trajectories must be at least 3 (train, valid and test each need one), got {n_trajectories!r}")
    if n_steps is not None and (not whole(n_steps) or n_steps < 2):
        raise ValueError(f"--n-steps must be at least 2, got {n_steps!r}")
    if not whole(seed) or seed < 0:
        raise ValueError(f"--seed must be a whole number >= 0, got {seed!r}")
    if not whole(trajectories_per_file) or trajectories_per_file < 1:
        raise ValueError(f"--trajectories-per-file must be at least 1, got {trajectories_per_file!r}")


def claim_folder(folder: str, settings: dict, overwrite: bool, write: bool = True) -> None:
    """Make sure `folder` holds nothing but files of `settings` (deleting them first with `overwrite`), then record
    the settings in its manifest. With `write=False` only check (raise where it would refuse), changing nothing."""
    path = os.path.join(folder, MANIFEST)
    existing = glob.glob(os.path.join(glob.escape(folder), "data", "*", "*.hdf5")) + glob.glob(os.path.join(glob.escape(folder), "data", "*", "*.h5"))
    saved = None
    if os.path.exists(path):
        try:
            with open(path) as f:
                saved = json.load(f)
        except (OSError, json.JSONDecodeError) as error:
            if not overwrite:
                raise GenerationSettingsError(f"{path}: unreadable generation manifest ({error}); pass --overwrite to "
                                              "regenerate the dataset") from None
    if saved == settings or (not write and overwrite):
        return
    if (saved is not None or existing) and not overwrite:
        if saved is not None and saved.get("version") != settings.get("version"):
            raise GenerationSettingsError(
                f"{folder} was generated by an earlier pdefm (Mini-Well version {saved.get('version')}; this one "
                f"generates version {settings.get('version')}, with other frame spacings: docs/mini_well.md). Its "
                "files stay readable (evaluate the models trained on it there), but it is not completed or trained "
                "on as today's suite: generate into another folder (--out; --data_dir for pdefm pretrain), or pass "
                "--overwrite to pdefm generate to regenerate it in place")
        if saved is not None:
            diff = ", ".join(f"{k} {saved.get(k)!r} there, {settings.get(k)!r} now" for k in sorted(set(saved) | set(settings))
                             if saved.get(k) != settings.get(k))
            why = f"was generated with other settings ({diff})"
        else:
            why = f"holds {len(existing)} HDF5 file(s) but no {MANIFEST} (made by hand or by an older version)"
        raise GenerationSettingsError(f"{folder} {why}; rerun with the same settings to complete it, pass --overwrite "
                                      "to delete its files and regenerate, or choose another --out")
    if not write:
        return
    if overwrite:
        for leftover in (DATA_FOLDER, STATS_FILE, MANIFEST):
            target = os.path.join(folder, leftover)
            if os.path.isdir(target):
                shutil.rmtree(target)
            elif os.path.exists(target):
                os.remove(target)
    _write_json_atomic(path, settings)


def split_sizes(n_trajectories: int) -> dict[str, int]:
    """The Well's 0.8 / 0.1 / 0.1 split, with at least one trajectory in valid and test."""
    if n_trajectories < 3:
        raise ValueError(f"--n-trajectories must be at least 3 (train, valid and test each need one), got {n_trajectories}")
    held_out = max(1, round(0.1 * n_trajectories))
    return {"train": n_trajectories - 2 * held_out, "valid": held_out, "test": held_out}


def planned_files(n_trajectories: int, per_file: int) -> list[tuple[str, int, int]]:
    """(split, file index, trajectories in the file) for every file of a dataset."""
    plan = []
    for split, count in split_sizes(n_trajectories).items():
        for index, start in enumerate(range(0, count, per_file)):
            plan.append((split, index, min(per_file, count - start)))
    return plan


def file_seed(seed: int, dataset: str, split: str, index: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([seed, sum(map(ord, dataset)) * 7919 + len(dataset), SPLITS.index(split), index])


def _generate_files(system: System, folder: str, plan: list[tuple[str, int, int]], resolution: int, n_steps: int,
                    seed: int, device: str, bar) -> tuple[int, int]:
    """Write the planned files that do not exist yet; returns (written, skipped)."""
    name = system.name
    made = skipped = 0
    for number, (split, index, count) in enumerate(plan):
        bar.set_postfix_str(f"file {number + 1}/{len(plan)}")
        path = os.path.join(split_dir(folder, split), f"{name}_{split}_{index:03d}.hdf5")
        if os.path.exists(path):
            skipped += 1
            bar.update(n_steps)
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rng = np.random.default_rng(file_seed(seed, name, split, index))
        sim = system.simulate(count, resolution, n_steps, rng, device=device, on_frame=lambda: bar.update(1))
        write_well_file(
            path, dataset_name=sim.dataset_name, spatial_dims=sim.spatial_dims, coordinates=sim.coordinates,
            time=sim.time, fields=sim.fields, scalars=sim.scalars, boundaries=sim.boundaries,
            n_trajectories=sim.n_trajectories, simulation_parameters=sim.simulation_parameters,
        )
        made += 1
    return made, skipped


def dataset_settings(name: str, resolution: int | None, n_trajectories: int | None, n_steps: int | None, seed: int,
                     trajectories_per_file: int) -> dict:
    """What a dataset folder's manifest records: the settings that shape its files (None: the system's own), with
    the frame spacing they give."""
    system = SYSTEMS[name]
    n_steps = int(n_steps or system.n_steps)
    resolution = int(resolution or system.resolution)
    return {"version": MANIFEST_VERSION, "dataset": name, "resolution": resolution,
            "n_trajectories": int(n_trajectories or system.n_trajectories), "n_steps": n_steps, "seed": int(seed),
            "trajectories_per_file": int(trajectories_per_file),
            "frame_spacing": system.regime(resolution, n_steps).frame_spacing}


def planned_bytes(name: str, system: System, resolution: int, n_trajectories: int, n_steps: int) -> int:
    """The dataset's time-varying fields as float32, from The Well's channel list for it: what its files will hold,
    uncompressed."""
    # Mini-Well's name, or the variants of The Well it stands for (acoustic_scattering_maze, ...), share the fields.
    info = next(i for key, i in WELL_DATASETS.items() if key == name or key.startswith(f"{name}_"))
    channels = len(info.field_names)
    return 4 * n_trajectories * n_steps * resolution**system.n_spatial_dims * channels


def check_free_disk(name: str, out: str, system: System, resolution: int, n_trajectories: int, n_steps: int) -> None:
    """Refuse, before any solver runs, a dataset the disk cannot hold: a full disk mid-write fails inside HDF5."""
    needed = planned_bytes(name, system, resolution, n_trajectories, n_steps)
    existing = out
    while not os.path.isdir(existing):
        existing = os.path.dirname(os.path.abspath(existing))
    free = shutil.disk_usage(existing).free
    if needed > free:
        raise ValueError(f"{name}: its files need about {needed / 2**30:.2f} GiB, more than the {free / 2**30:.2f} GiB "
                         f"free where {out} is; free some space or choose another --out")


def generate_dataset(name: str, out: str, resolution: int | None = None, n_trajectories: int | None = None,
                     n_steps: int | None = None, seed: int = 0, trajectories_per_file: int = 2, device: str = "cpu",
                     progress: bool = True, overwrite: bool = False) -> dict:
    """Generate (or complete) one dataset; returns counts and seconds. `resolution`, `n_trajectories` and `n_steps`
    default to the system's own. A folder made with other settings is refused (`GenerationSettingsError`) unless
    `overwrite`."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown dataset {name!r}; Mini-Well has {sorted(SYSTEMS)}")
    check_settings(resolution, n_trajectories, n_steps, seed, trajectories_per_file)
    system = SYSTEMS[name]
    settings = dataset_settings(name, resolution, n_trajectories, n_steps, seed, trajectories_per_file)
    resolution, n_trajectories, n_steps = settings["resolution"], settings["n_trajectories"], settings["n_steps"]
    folder = os.path.join(out, name)
    check_free_disk(name, out, system, resolution, n_trajectories, n_steps)
    claim_folder(folder, settings, overwrite)
    for leftover in glob.glob(os.path.join(glob.escape(folder), "data", "*", "*.partial-*")):
        os.remove(leftover)  # an interrupted write; its file was never renamed into place
    start = time.perf_counter()
    plan = planned_files(n_trajectories, trajectories_per_file)
    # Progress in saved frames, so a long file shows movement; the postfix counts files.
    bar = tqdm(total=len(plan) * n_steps, desc=name, unit="frame", disable=not progress)
    try:
        made, skipped = _generate_files(system, folder, plan, resolution, n_steps, seed, device, bar)
    finally:
        bar.close()  # also on a solver breakdown, so its message is not lost behind a half-drawn bar
    stats = stats_path(folder)
    if made or not os.path.exists(stats):
        compute_stats(folder)
    return {"dataset": name, "files_written": made, "files_skipped": skipped, "seconds": time.perf_counter() - start}


# None: each system's own (`System.n_trajectories`, `System.n_steps`, `System.resolution`).
SUITE_DEFAULTS = {"resolution": None, "n_trajectories": None, "n_steps": None, "seed": 0, "trajectories_per_file": 2}


def generate_suite(out: str, suite: str = "mini_well", on_dataset_done: Callable[[dict], None] | None = None,
                   **kwargs) -> list[dict]:
    """Generate every dataset of `suite`; the suite's settings go to `OUT/<suite>_suite.json` first, so that an
    interrupted run can be completed (`complete_suite`)."""
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {sorted(SUITES)}")
    settings = {k: kwargs.get(k, default) for k, default in SUITE_DEFAULTS.items()}
    check_settings(**settings)
    # Every dataset folder is checked before anything is written: a refused rerun leaves the suite as it was.
    for name in SUITES[suite]:
        claim_folder(os.path.join(out, name), dataset_settings(name, **settings), kwargs.get("overwrite", False),
                     write=False)
    _write_json_atomic(suite_manifest_path(out, suite), {"suite": suite, **settings})
    results = []
    for name in SUITES[suite]:
        results.append(generate_dataset(name, out, **kwargs))
        if on_dataset_done is not None:
            on_dataset_done(results[-1])
    return results


def complete_suite(out: str, suite: str = "mini_well", seed: int = 0, **kwargs) -> list[dict]:
    """Generate `suite` into `out` if `out` holds no dataset yet, or finish it if an earlier generation into `out` was
    interrupted (with the settings it was started with); a folder of other data is left alone."""
    if os.path.isdir(os.path.join(out, DATA_FOLDER)):
        raise ValueError(f"{out} is one dataset's folder (it holds {DATA_FOLDER}/); a suite is generated into the "
                         "folder that holds one folder per dataset")
    manifest = suite_manifest_path(out, suite)
    if os.path.exists(manifest):
        with open(manifest) as f:
            settings = {k: v for k, v in json.load(f).items() if k in SUITE_DEFAULTS}
        return generate_suite(out, suite, **{**kwargs, **settings})
    has_data = os.path.isdir(out) and any(os.path.isdir(os.path.join(out, d, DATA_FOLDER)) for d in os.listdir(out))
    return [] if has_data else generate_suite(out, suite, seed=seed, **kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdefm generate", description=__doc__,
                                     formatter_class=HelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", choices=sorted(SYSTEMS), help="one system")
    what.add_argument("--suite", choices=sorted(SUITES), help="every system of a suite")
    parser.add_argument("--out", required=True, help="folder that receives one folder per dataset")
    parser.add_argument("--resolution", type=int, default=None, help="grid points per axis (default: 64 in 2D, 32 in 3D)")
    parser.add_argument("--n-trajectories", type=int, default=None,
                        help="trajectories per dataset, split 0.8/0.1/0.1 (default: the system's own, 16; MHD_64 10)")
    parser.add_argument("--n-steps", type=int, default=None,
                        help="saved time steps per trajectory (default: the system's own: 60; shear_flow and "
                             "euler_multi_quadrants 45, MHD_64 36)")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives the same files")
    parser.add_argument("--trajectories-per-file", type=int, default=2, help="trajectories in each HDF5 file")
    parser.add_argument("--device", default="cpu", help="torch device of the solvers (cuda on a GPU)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete a dataset's files made with other settings and regenerate it")
    args = parser.parse_args(argv)
    setup_process("generate")  # no more busy threads than cores (pdefm.runtime.process)
    kwargs = dict(resolution=args.resolution, n_trajectories=args.n_trajectories, n_steps=args.n_steps, seed=args.seed,
                  trajectories_per_file=args.trajectories_per_file, device=args.device, overwrite=args.overwrite)
    def report(r: dict) -> None:
        print(f"{r['dataset']}: {r['files_written']} files written, {r['files_skipped']} already there, {r['seconds']:.1f} s")

    try:
        if args.suite:
            generate_suite(args.out, args.suite, on_dataset_done=report, **kwargs)
        else:
            report(generate_dataset(args.dataset, args.out, **kwargs))
    except (ValueError, SolverBreakdownError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
