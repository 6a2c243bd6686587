"""Generation time per Mini-Well system and grid, and whether the trajectories keep moving.

For each system and each grid of `--resolutions`, one file's worth of trajectories (`--n-trajectories`, default 2,
and `--n-steps` frames, the default horizon) is solved in this process with one torch thread (the package's
default for generation) and timed; nothing is written. Beside the seconds it prints, per system, the share of
one-step changes that are "static" (below 0.05 of the field's spread, `dataset_scripts/dynamics.py`) over all
channels, so a grid that runs fast because nothing happens is visible. Grids below a system's smallest resolved
one run with the scaled parameters the generator uses there.

Run: python bench/generation_time.py [--resolutions 16 32 64] [--mhd-resolutions 16 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pdefm.data.dynamics import relative_step_change, summarise_dynamics  # noqa: E402
from pdefm.data.generate import SYSTEMS  # noqa: E402


def time_system(name: str, resolution: int, n_trajectories: int, n_steps: int, seed: int) -> tuple[float, float]:
    """(seconds, static share over all channels) of one file's worth of trajectories."""
    start = time.perf_counter()
    sim = SYSTEMS[name].simulate(n_trajectories, resolution, n_steps, np.random.default_rng(seed))
    seconds = time.perf_counter() - start
    parts = [f.data if f.order else f.data[..., None] for f in sim.fields if f.time_varying]
    parts = [p.reshape(*p.shape[: 2 + SYSTEMS[name].n_spatial_dims], -1) for p in parts]
    data = np.concatenate(parts, axis=-1)
    summary = summarise_dynamics([relative_step_change(data[b]) for b in range(data.shape[0])],
                                 [str(c) for c in range(data.shape[-1])])
    return seconds, float(np.mean([s.static_fraction for s in summary]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[16, 32, 64], help="grids of the 2D systems")
    parser.add_argument("--mhd-resolutions", type=int, nargs="+", default=[16, 32, 64], help="grids of MHD_64 (3D)")
    parser.add_argument("--n-trajectories", type=int, default=2)
    parser.add_argument("--n-steps", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    grids = sorted(set(args.resolutions) | set(args.mhd_resolutions))
    print(f"{args.n_trajectories} trajectories x {args.n_steps} frames per cell, 1 torch thread, torch "
          f"{torch.__version__}; seconds (static share of one-step changes)", flush=True)
    print("| system | min. resolved grid | " + " | ".join(f"{n} points" for n in grids) + " |")
    print("|---|---|" + "---|" * len(grids), flush=True)
    for name in args.systems:
        system = SYSTEMS[name]
        wanted = args.mhd_resolutions if system.n_spatial_dims == 3 else args.resolutions
        cells = []
        for n in grids:
            if n not in wanted:
                cells.append("-")
                continue
            seconds, static = time_system(name, n, args.n_trajectories, args.n_steps, args.seed)
            cells.append(f"{seconds:.1f} s ({static:.0%})")
        print(f"| {name} | {system.min_resolution} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
