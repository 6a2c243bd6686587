"""Error next to walls, with and without the decoder's wall padding (`wall_padding`).

For each dataset (default: `rayleigh_benard`, walls at y; `acoustic_scattering`, open x and walled y), the `tiny`
preset is trained twice from the same seed for the same number of steps (the main job's settings otherwise): once
with `wall_padding=0` (the Fourier layers treat every axis as periodic) and once with the default. Then the one-step
test predictions are scored per point: RMSE over the points within `--band` of a non-periodic boundary, and over the
rest, each divided by the field's spatial std (VRMSE's scale), averaged over fields and windows.

Resumable: a trained run (its `report.json`) is reused. Run: python bench/wall_error.py [--steps 600]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from modeling_pdefm import PDEFMModel  # noqa: E402
from pdefm.data import load_well_dataset  # noqa: E402
from pdefm.train.evaluation.forecasters import model_inputs  # noqa: E402
from pdefm.train.evaluation.windows import evaluation_batches  # noqa: E402

SETTINGS = {"no padding (periodic decoder)": 0.0, "wall padding 0.125": 0.125}


def band_masks(boundary_conditions: torch.Tensor, space: tuple[int, ...], band: int) -> torch.Tensor:
    """`[*space]` True within `band` points of a side whose boundary code is not periodic (2)."""
    near = torch.zeros(space, dtype=torch.bool)
    for axis, n in enumerate(space):
        for side in (0, 1):
            if int(boundary_conditions[axis, side]) != 2:
                index = [slice(None)] * len(space)
                index[axis] = slice(0, band) if side == 0 else slice(n - band, n)
                near[tuple(index)] = True
    return near


@torch.no_grad()
def banded_errors(model, data: str, name: str, band: int, n_steps_input: int) -> dict:
    dataset = load_well_dataset(os.path.join(data, name), split="test", n_steps_input=n_steps_input, n_steps_output=1)
    near_sum = far_sum = near_n = far_n = 0.0
    mask = None
    for batch in evaluation_batches(dataset, 8, None):
        prediction = model(**model_inputs(batch, "cpu"), n_steps=1).prediction[:, 0]
        target = batch["output_fields"][:, 0].float()
        space = tuple(target.shape[1:-1])
        if mask is None:
            mask = band_masks(batch["boundary_conditions"][0], space, band)
        scale = target.std(dim=tuple(range(1, len(space) + 1)), keepdim=True).clamp_min(1e-12)
        squared = ((prediction - target) / scale).pow(2).mean(-1)  # [b, *space], averaged over fields
        near_sum += float(squared[:, mask].sum())
        far_sum += float(squared[:, ~mask].sum())
        near_n += float(mask.sum()) * squared.shape[0]
        far_n += float((~mask).sum()) * squared.shape[0]
    return {"near_wall": (near_sum / near_n) ** 0.5 if near_n else float("nan"),
            "interior": (far_sum / far_n) ** 0.5, "band_points": int(mask.sum())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=["rayleigh_benard", "acoustic_scattering"])
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "mini_well"))
    parser.add_argument("--steps", type=int, default=600, help="training steps per run")
    parser.add_argument("--band", type=int, default=4, help="points from a wall counted as 'near the wall'")
    parser.add_argument("--out", default=os.path.join(ROOT, "outputs", "wall_error"))
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    rows = []
    for name in args.datasets:
        for label, padding in SETTINGS.items():
            out = os.path.join(args.out, f"{name}_pad{padding}")
            if not os.path.isfile(os.path.join(out, "report.json")):
                command = [sys.executable, "-m", "pdefm.train.pretrain", "--config",
                           os.path.join(ROOT, "train", "configs", "mini_well.yaml"), "--data_dir", args.data,
                           "--datasets", name, "--output_dir", out, "--max_steps", str(args.steps),
                           "--model_overrides", json.dumps({"wall_padding": padding}), "--log_with", "none",
                           "--checkpoint_every", str(args.steps), "--eval_every", str(args.steps)]
                done = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
                if done.returncode != 0:
                    raise SystemExit(f"training {out} failed:\n{done.stderr[-2000:]}")
            model = PDEFMModel.from_pretrained(out).eval()
            errors = banded_errors(model, args.data, name, args.band, model.config.n_steps_input)
            vrmse = json.load(open(os.path.join(out, "report.json")))["datasets"][name]["vrmse"]
            rows.append((name, label, errors, vrmse))
    print(f"`tiny`, {args.steps} steps per run; error per point over the field's std, within {args.band} points of a "
          "wall and elsewhere (test split, one step):\n")
    print("| dataset | decoder | near walls | interior | near / interior | one-step VRMSE |")
    print("|---|---|---|---|---|---|")
    for name, label, e, vrmse in rows:
        print(f"| {name} | {label} | {e['near_wall']:.4f} | {e['interior']:.4f} | {e['near_wall'] / e['interior']:.2f} | {vrmse:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
