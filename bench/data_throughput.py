"""Data loading throughput: `load_well_dataset` against The Well's own `WellDataset` on the same generated files.

Two sets: 2D 128x128 (4 channels: two scalar fields and a vector) and 3D 64^3 (4 channels), 4 input steps, 1 output
step, windows read in a shuffled order through each loader's `__getitem__`. Each loader runs in its own process;
memory is the resident set (RSS) after the warm-up and after every quarter of the windows, so growth with the
number of windows read shows.

Run: python bench/data_throughput.py [--windows-2d 800 --windows-3d 400]   (needs `pip install --no-deps the-well`)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pdefm.data.well_writer import WellField, WellScalar, axis_boundaries, write_well_file  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def write_set(root: str, name: str, resolution: tuple[int, ...], n_files: int, n_traj: int, n_steps: int) -> str:
    axes = ("x", "y", "z")[: len(resolution)]
    folder = os.path.join(root, name)
    os.makedirs(os.path.join(folder, "data", "train"), exist_ok=True)
    rng = np.random.default_rng(0)
    for f in range(n_files):
        lead = (n_traj, n_steps)
        fields = [WellField("density", rng.random(lead + resolution, dtype=np.float32)),
                  WellField("velocity", rng.standard_normal(lead + resolution + (len(axes),), dtype=np.float32), order=1)]
        if len(axes) == 2:
            fields.insert(1, WellField("pressure", rng.random(lead + resolution, dtype=np.float32)))
        write_well_file(
            os.path.join(folder, "data", "train", f"{name}_{f:02d}.hdf5"), dataset_name=name, spatial_dims=axes,
            coordinates={a: np.linspace(0, 1, n) for a, n in zip(axes, resolution)}, time=np.arange(n_steps, dtype=np.float32),
            fields=fields, scalars=[WellScalar("nu", 0.01)], n_trajectories=n_traj, simulation_parameters=["nu"],
            boundaries=axis_boundaries(axes, resolution, {a: "PERIODIC" for a in axes}),
        )
    return folder


def run_loader(loader: str, folder: str, n_windows: int) -> dict:
    if loader == "pdefm":
        from pdefm.data import load_well_dataset

        dataset = load_well_dataset(folder, split="train", n_steps_input=4, n_steps_output=1)
    else:
        from the_well.data import WellDataset

        dataset = WellDataset(path=folder, well_split_name="train", n_steps_input=4, n_steps_output=1)
    order = np.random.default_rng(0).permutation(len(dataset))
    order = np.resize(order, n_windows)
    dataset[int(order[0])]  # warm-up: opens files, builds caches
    memory = [rss_mb()]
    start = time.perf_counter()
    for k, index in enumerate(order):
        sample = dataset[int(index)]
        assert sample["input_fields"].shape[0] == 4
        if (k + 1) % max(n_windows // 4, 1) == 0:
            memory.append(rss_mb())
    seconds = time.perf_counter() - start
    return {"windows_per_s": n_windows / seconds, "rss_mb": memory, "n_windows_total": len(dataset)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--windows-2d", type=int, default=800)
    parser.add_argument("--windows-3d", type=int, default=400)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_loader(args.child[0], args.child[1], int(args.child[2]))))
        return
    with tempfile.TemporaryDirectory() as root:
        sets = [
            ("2D 128x128, 4 channels", write_set(root, "bench2d", (128, 128), 2, 4, 40), args.windows_2d),
            ("3D 64^3, 4 channels", write_set(root, "bench3d", (64, 64, 64), 1, 2, 24), args.windows_3d),
        ]
        print("| data | loader | windows/s | RSS after warm-up -> after each quarter (MB) |")
        print("|---|---|---|---|")
        ratios = []
        for label, folder, n in sets:
            results = {}
            for loader in ("pdefm", "the_well"):
                out = subprocess.run([sys.executable, __file__, "--child", loader, folder, str(n)], capture_output=True,
                                     text=True, check=True)
                results[loader] = json.loads(out.stdout.strip().splitlines()[-1])
                r = results[loader]
                trail = " -> ".join(f"{m:.0f}" for m in r["rss_mb"])
                print(f"| {label} ({r['n_windows_total']} windows, {n} read) | {loader} | {r['windows_per_s']:.1f} | {trail} |")
            ratios.append((label, results["pdefm"]["windows_per_s"] / results["the_well"]["windows_per_s"]))
        for label, ratio in ratios:
            print(f"\n{label}: load_well_dataset reads {ratio:.1f}x as many windows per second as the_well.WellDataset")


if __name__ == "__main__":
    main()
