"""One-step VRMSE per window: how a split's mean is made, and which windows dominate it.

The Well's VRMSE divides by the target's spatial variance, so a window whose target is nearly uniform (a pattern
that died out) can score far above 1 for a tiny absolute error and outweigh every other window of the split. This
prints, for each model, the mean, median and maximum over the windows (persistence beside it) and the worst windows
with their target's spatial std, so such windows are seen before a mean is read as a verdict.

Run: python bench/window_vrmse.py --data data/mini_well_old --dataset gray_scott_reaction_diffusion MODEL_DIR [...]
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
from pdefm.data import load_well_dataset  # noqa: E402
from pdefm.train.evaluation.forecasters import PDEFMForecaster  # noqa: E402
from pdefm.train.evaluation.metrics import vrmse  # noqa: E402
from pdefm.train.evaluation.windows import evaluation_batches  # noqa: E402


@torch.no_grad()
def window_scores(model_dir: str, dataset, n_spatial_dims: int) -> dict[str, np.ndarray]:
    """Per window (field mean): the model's and persistence's one-step VRMSE and the target's spatial std."""
    forecaster = PDEFMForecaster(PDEFMModel.from_pretrained(model_dir))
    model, persistence, target_std = [], [], []
    space = tuple(range(2, 2 + n_spatial_dims))
    for batch in evaluation_batches(dataset, 8, None):
        target = batch["output_fields"][:, :1].float()
        model.append(vrmse(forecaster.predict_next(batch).cpu(), target, n_spatial_dims).mean(dim=(1, 2)))
        persistence.append(vrmse(batch["input_fields"][:, -1:].float(), target, n_spatial_dims).mean(dim=(1, 2)))
        target_std.append(target.std(dim=space).mean(dim=(1, 2)))
    return {k: torch.cat(v).numpy() for k, v in
            (("model", model), ("persistence", persistence), ("target_std", target_std))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="saved PDE-FM model folders")
    parser.add_argument("--data", required=True, help="folder with one folder per dataset")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--worst", type=int, default=5, help="worst windows listed per model")
    args = parser.parse_args(argv)
    torch.set_num_threads(int(os.environ.get("PDEFM_NUM_THREADS", "1")))
    dataset = load_well_dataset(os.path.join(args.data, args.dataset), split=args.split, n_steps_input=4,
                                n_steps_output=1)
    n_spatial_dims = dataset[0]["input_fields"].ndim - 2
    print(f"{args.dataset} ({args.split}, {len(dataset)} windows): one-step VRMSE per window, mean over fields")
    print("| model | mean | median | max | persistence mean | persistence median | worst windows (VRMSE, target std) |")
    print("|---|---|---|---|---|---|---|")
    for model_dir in args.models:
        s = window_scores(model_dir, dataset, n_spatial_dims)
        worst = np.argsort(-s["model"])[: args.worst]
        listed = ", ".join(f"#{i} ({s['model'][i]:.3g}, {s['target_std'][i]:.2g})" for i in worst)
        print(f"| {model_dir} | {s['model'].mean():.4f} | {np.median(s['model']):.4f} | {s['model'].max():.3g} | "
              f"{s['persistence'].mean():.4f} | {np.median(s['persistence']):.4f} | {listed} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
