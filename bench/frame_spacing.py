"""How much of one stored step is a real prediction, per dataset and frame spacing: keeping every k-th stored frame
(`dt_stride` k), the one-step test VRMSE of persistence, linear extrapolation and the least-squares 3x3 linear stencil
(fitted on the train split at that spacing), and how far information travels per frame in grid cells (the median
speed, |velocity| or |momentum| / density, or the speed of sound, times the frame spacing over the cell size). A
stencil far below persistence means one step is nearly linear extrapolation. Nothing is trained but the stencils.

Run: python bench/frame_spacing.py [--data data/mini_well] [--strides 1 2 4 8] [--datasets NAME ...]
"""

from __future__ import annotations

import argparse
import os

import numpy as np
import torch

from pdefm.data import load_well_dataset, split_reader
from pdefm.data.layout import dataset_folders
from pdefm.runtime.process import setup_process
from pdefm.train.baselines.linear import LinearExtrapolation, LinearStencil
from pdefm.train.evaluation.rollout import evaluate_one_step


def speeds(batch: dict, field_names: list[str], constant_names: list[str]) -> torch.Tensor | None:
    """Pointwise signal speed `[B, *space]` from the last input frame: the speed of sound where it is a constant
    field (linear acoustics), |velocity| + sound speed for a compressible gas (|momentum| / density, with
    c = sqrt(gamma p / density), gamma the first constant scalar), |velocity| + sound speed with gamma 5/3 for a gas
    stored with velocity, density and pressure (turbulent_radiative_layer_2D, supernova_explosion_64), |velocity| for
    an incompressible flow; None where the system has none (reaction-diffusion, the time-harmonic Helmholtz field)."""
    x = batch["input_fields"][:, -1].float()
    pick = lambda prefix: [i for i, n in enumerate(field_names) if n.startswith(prefix)]  # noqa: E731
    if "speed_of_sound" in constant_names:
        return batch["constant_fields"][..., constant_names.index("speed_of_sound")].float()
    if pick("momentum_") and {"density", "pressure"} <= set(field_names):
        density = x[..., field_names.index("density")].abs().clamp_min(1e-12)
        gamma = batch["constant_scalars"][:, 0].float().view(-1, *[1] * (density.ndim - 1))
        sound = (gamma * x[..., field_names.index("pressure")].clamp_min(0) / density).sqrt()
        return x[..., pick("momentum_")].norm(dim=-1) / density + sound
    if pick("velocity_") and {"density", "pressure"} <= set(field_names):  # a monatomic gas, as both such systems are
        density = x[..., field_names.index("density")].abs().clamp_min(1e-12)
        sound = (5 / 3 * x[..., field_names.index("pressure")].clamp_min(0) / density).sqrt()
        return x[..., pick("velocity_")].norm(dim=-1) + sound
    if pick("velocity_"):
        return x[..., pick("velocity_")].norm(dim=-1)
    return None


def cells_per_frame(dataset, field_names: list[str], constant_names: list[str], windows: int = 16) -> float | None:
    """Median over points and `windows` test windows of speed x frame spacing / cell size."""
    rows = np.unique(np.linspace(0, len(dataset) - 1, min(len(dataset), windows)).round().astype(int)).tolist()
    batch = dataset[rows]
    speed = speeds(batch, field_names, constant_names)
    if speed is None:
        return None
    dt = (batch["input_time_grid"][:, -1] - batch["input_time_grid"][:, -2]).float()  # [B], at this spacing
    grid = batch["space_grid"][0].float()
    dx = float((grid[(1,) + (0,) * (grid.ndim - 2)] - grid[(0,) * (grid.ndim - 1)]).norm())
    return float((speed * dt.view(-1, *[1] * (speed.ndim - 1)) / dx).median())


def measure(path: str, stride: int, n_steps_input: int = 4) -> dict:
    test = load_well_dataset(path, split="test", n_steps_input=n_steps_input, n_steps_output=1, dt_stride=stride)
    meta = split_reader(test).meta
    d, name = meta.n_spatial_dims, meta.dataset_name
    stencil = LinearStencil(n_steps_input).fit(name, path, dt_stride=stride)
    batch_size = 4 if d == 2 else 1
    fitted = evaluate_one_step(stencil, test, d, batch_size)
    extrapolated = evaluate_one_step(LinearExtrapolation(n_steps_input), test, d, batch_size)
    return {"persistence": fitted["persistence_vrmse"], "extrapolation": extrapolated["vrmse"],
            "stencil": fitted["vrmse"], "windows": fitted["windows"],
            "cells": cells_per_frame(test, list(meta.field_names), list(meta.constant_field_names or []))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data/mini_well")
    parser.add_argument("--strides", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--datasets", nargs="+", default=None)
    args = parser.parse_args()
    setup_process("train")
    names = args.datasets or dataset_folders(args.data)
    print("| dataset | stride | cells per frame | persistence | linear extrapolation | linear stencil | stencil / "
          "persistence | test windows |")
    print("|---|---|---|---|---|---|---|---|")
    for name in names:
        for stride in args.strides:
            try:
                r = measure(os.path.join(args.data, name), stride)
            except ValueError as error:  # trajectories too short for this stride
                print(f"| {name} | {stride} | - | - | - | - | - | ({error}) |")
                continue
            cells = "-" if r["cells"] is None else f"{r['cells']:.2f}"
            print(f"| {name} | {stride} | {cells} | {r['persistence']:.4f} | {r['extrapolation']:.4f} | "
                  f"{r['stencil']:.4f} | {r['stencil'] / r['persistence']:.2f} | {r['windows']} |", flush=True)


if __name__ == "__main__":
    main()
