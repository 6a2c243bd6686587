"""Generate Mini-Well: small numerical PDE solutions in The Well's format, on a CPU (or a GPU with --device).

    python -m dataset_scripts.generate --suite mini_well --out data/mini_well
    python -m dataset_scripts.generate --dataset shear_flow --out data/mini_well --resolution 64 --n-trajectories 12

Output: `OUT/NAME/data/{train,valid,test}/NAME_<split>_<k>.hdf5` and `OUT/NAME/stats.yaml`. Trajectories split
0.8/0.1/0.1 (at least one each for valid and test). Every file has its own seed derived from (--seed, dataset,
split, file), so the same seed gives the same files and a finished file never needs regenerating: a rerun skips
files that exist (they are written under a temporary name and renamed only when complete).
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm.auto import tqdm

from .pde import acoustic_scattering, euler, gray_scott, mhd, rayleigh_benard, shear_flow
from .pde.simulation import Simulation
from .the_well import compute_stats
from .well_writer import write_well_file


@dataclass(frozen=True)
class System:
    name: str
    simulate: Callable[..., Simulation]
    resolution: int  # default grid points per axis
    n_spatial_dims: int


SYSTEMS: dict[str, System] = {
    s.name: s
    for s in (
        System(shear_flow.NAME, shear_flow.simulate, 64, 2),
        System(gray_scott.NAME, gray_scott.simulate, 64, 2),
        System(rayleigh_benard.NAME, rayleigh_benard.simulate, 64, 2),
        System(acoustic_scattering.NAME, acoustic_scattering.simulate, 64, 2),
        System(euler.NAME, euler.simulate, 64, 2),
        System(mhd.NAME, mhd.simulate, 32, 3),
    )
}
SUITES = {"mini_well": tuple(SYSTEMS)}
SPLITS = ("train", "valid", "test")


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


def generate_dataset(name: str, out: str, resolution: int | None = None, n_trajectories: int = 16, n_steps: int = 60,
                     seed: int = 0, trajectories_per_file: int = 2, device: str = "cpu", progress: bool = True) -> dict:
    """Generate (or complete) one dataset; returns counts and seconds."""
    if name not in SYSTEMS:
        raise ValueError(f"unknown dataset {name!r}; Mini-Well has {sorted(SYSTEMS)}")
    if n_steps < 2:
        raise ValueError(f"--n-steps must be at least 2, got {n_steps}")
    if trajectories_per_file < 1:
        raise ValueError(f"--trajectories-per-file must be at least 1, got {trajectories_per_file}")
    system = SYSTEMS[name]
    resolution = resolution or system.resolution
    folder = os.path.join(out, name)
    for leftover in glob.glob(os.path.join(folder, "data", "*", "*.partial-*")):
        os.remove(leftover)  # an interrupted write; its file was never renamed into place
    start = time.perf_counter()
    made = skipped = 0
    plan = planned_files(n_trajectories, trajectories_per_file)
    for split, index, count in tqdm(plan, desc=name, unit="file", disable=not progress):
        path = os.path.join(folder, "data", split, f"{name}_{split}_{index:03d}.hdf5")
        if os.path.exists(path):
            skipped += 1
            continue
        os.makedirs(os.path.dirname(path), exist_ok=True)
        rng = np.random.default_rng(file_seed(seed, name, split, index))
        sim = system.simulate(count, resolution, n_steps, rng, device=device)
        write_well_file(
            path, dataset_name=sim.dataset_name, spatial_dims=sim.spatial_dims, coordinates=sim.coordinates,
            time=sim.time, fields=sim.fields, scalars=sim.scalars, boundaries=sim.boundaries,
            n_trajectories=sim.n_trajectories, simulation_parameters=sim.simulation_parameters,
        )
        made += 1
    stats = os.path.join(folder, "stats.yaml")
    if made or not os.path.exists(stats):
        compute_stats(folder)
    return {"dataset": name, "files_written": made, "files_skipped": skipped, "seconds": time.perf_counter() - start}


def generate_suite(out: str, suite: str = "mini_well", **kwargs) -> list[dict]:
    if suite not in SUITES:
        raise ValueError(f"unknown suite {suite!r}; known: {sorted(SUITES)}")
    return [generate_dataset(name, out, **kwargs) for name in SUITES[suite]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dataset_scripts.generate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--dataset", choices=sorted(SYSTEMS))
    what.add_argument("--suite", choices=sorted(SUITES))
    parser.add_argument("--out", required=True, help="folder that receives one folder per dataset")
    parser.add_argument("--resolution", type=int, default=None, help="grid points per axis (default: 64 in 2D, 32 in 3D)")
    parser.add_argument("--n-trajectories", type=int, default=16)
    parser.add_argument("--n-steps", type=int, default=60, help="saved time steps per trajectory")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--trajectories-per-file", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    kwargs = dict(resolution=args.resolution, n_trajectories=args.n_trajectories, n_steps=args.n_steps, seed=args.seed,
                  trajectories_per_file=args.trajectories_per_file, device=args.device)
    try:
        results = generate_suite(args.out, args.suite, **kwargs) if args.suite else [generate_dataset(args.dataset, args.out, **kwargs)]
    except ValueError as error:
        parser.error(str(error))
    for r in results:
        print(f"{r['dataset']}: {r['files_written']} files written, {r['files_skipped']} already there, {r['seconds']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
