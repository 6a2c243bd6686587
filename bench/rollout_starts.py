"""Rollout VRMSE from each start, beside persistence's: which starts make a dataset's mean rollout what it is.

The evaluation's rollout table is a mean over starts spread over each test trajectory. A mean above persistence at
late steps can come from every start, or from the starts where persistence itself is nearly exact (a flow that
oscillates about a pattern that stays, so the frame 12 steps on is close to the start's). This prints, per start
(trajectory file, trajectory, first target frame), each model's and persistence's VRMSE (mean over fields) at the
chosen steps, then the means per step over all starts and over the starts of the first and second half of the
trajectories. Nothing is trained; the models are read from their folders.

Run: python bench/rollout_starts.py --data data/mini_well --dataset rayleigh_benard [--starts 5] \
         LABEL=MODEL_DIR [LABEL=MODEL_DIR ...]
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from modeling_pdefm import PDEFMModel  # noqa: E402
from pdefm.data import split_reader  # noqa: E402
from pdefm.train.evaluation.forecasters import PDEFMForecaster  # noqa: E402
from pdefm.train.evaluation.metrics import vrmse  # noqa: E402
from pdefm.train.evaluation.rollout import rollout, trajectory_starts  # noqa: E402


@torch.no_grad()
def per_start(forecasters: dict, folder: str, n_spatial_dims: int, steps: int, starts: int, n_steps_input: int):
    """`(start labels, {label: [starts, steps]})`: VRMSE per start and step, mean over fields; persistence too."""
    dataset, rows, steps = trajectory_starts(folder, "test", n_steps_input, steps, starts_per_trajectory=starts)
    reader = split_reader(dataset)
    windows = np.asarray(reader.window_indices())
    labels, scores = [], {name: [] for name in [*forecasters, "persistence"]}
    for row in rows:
        batch = dataset[[row]]
        target = batch["output_fields"].float()
        labels.append(reader.locate(int(windows[row])))
        still = batch["input_fields"][:, -1:].float().expand_as(target)
        scores["persistence"].append(vrmse(still, target, n_spatial_dims)[0].mean(-1).numpy())
        for name, forecaster in forecasters.items():
            scores[name].append(vrmse(rollout(forecaster, batch, steps), target, n_spatial_dims)[0].mean(-1).numpy())
    return labels, {name: np.stack(rows_) for name, rows_ in scores.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/mini_well")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--starts", type=int, default=5, help="starts per test trajectory (the evaluation's 5)")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--show", default="1,6,12", help="steps shown per start, comma-separated")
    parser.add_argument("runs", nargs="+", help="LABEL=MODEL_DIR")
    args = parser.parse_args(argv)
    runs = dict(run.split("=", 1) for run in args.runs)
    args.show = [int(step) for step in args.show.split(",")]
    forecasters = {label: PDEFMForecaster(PDEFMModel.from_pretrained(path)) for label, path in runs.items()}
    first = next(iter(forecasters.values()))
    n_dims, n_in = first.model.config.datasets[args.dataset]["n_spatial_dims"], first.n_steps_input
    labels, scores = per_start(forecasters, os.path.join(args.data, args.dataset), n_dims, args.steps, args.starts,
                               n_in)
    names = list(scores)
    print(f"Rollout VRMSE (mean over fields) of {args.dataset}, test split, `python bench/rollout_starts.py "
          f"{' '.join(argv if argv is not None else sys.argv[1:])}`\n")
    print("| file, trajectory, first target frame | " + " | ".join(f"{n} step {s}" for n in names for s in args.show) + " |")
    print("|---" * (1 + len(names) * len(args.show)) + "|")
    for i, (file, trajectory, frame) in enumerate(labels):
        cells = [f"{scores[n][i, s - 1]:.3f}" for n in names for s in args.show]
        print(f"| {file}, {trajectory}, {frame + n_in} | " + " | ".join(cells) + " |")
    frames = np.array([frame for _, _, frame in labels])
    late = frames > np.median(frames)
    print("\n| starts | forecast | " + " | ".join(f"step {s}" for s in range(1, args.steps + 1)) + " |")
    print("|---" * (2 + args.steps) + "|")
    for which, mask in (("all", np.ones_like(late)), ("early half", ~late), ("late half", late)):
        for n in names:
            means = scores[n][mask].mean(axis=0)
            print(f"| {which} ({int(mask.sum())}) | {n} | " + " | ".join(f"{v:.3f}" for v in means) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
