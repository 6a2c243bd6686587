"""How large is one step's change, and how well does the input window predict it (`increment_scale="step"`)?

For validation windows spread over each dataset (4 input frames, 1 output): the root-mean-square change between
consecutive input frames over the field's std in the window, and the next frame's true change over that window
step (1: the window's step is exactly the size of the next change). Medians over the windows, per field.

Run: python bench/step_scale.py --data data/mini_well
"""

from __future__ import annotations

import argparse
import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pdefm.data import load_well_dataset  # noqa: E402


def step_ratios(dataset, n_windows: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Per field, medians over windows: (window step / window std, next change / window step)."""
    step_over_std, next_over_step = [], []
    for i in range(0, len(dataset), max(1, len(dataset) // n_windows)):
        window = dataset[i]
        x = torch.as_tensor(window["input_fields"]).double()  # [T, *space, C]
        y = torch.as_tensor(window["output_fields"]).double()[0]
        axes = tuple(range(x.ndim - 1))
        step = x.diff(dim=0).pow(2).mean(dim=axes).sqrt()
        step_over_std.append(step / x.std(dim=axes).clamp_min(1e-12))
        next_over_step.append((y - x[-1]).pow(2).mean(dim=axes[:-1]).sqrt() / step.clamp_min(1e-12))
    return torch.stack(step_over_std).median(0).values, torch.stack(next_over_step).median(0).values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/mini_well", help="folder with one folder per dataset")
    parser.add_argument("--split", default="valid")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print("| dataset | window step / field std (per field) | next change / window step (per field) |")
    print("|---|---|---|")
    for name in sorted(d for d in os.listdir(args.data) if os.path.isdir(os.path.join(args.data, d, "data"))):
        dataset = load_well_dataset(os.path.join(args.data, name), split=args.split, n_steps_input=4, n_steps_output=1)
        step, following = step_ratios(dataset)
        print(f"| {name} | {', '.join(f'{v:.3f}' for v in step.tolist())} | {', '.join(f'{v:.2f}' for v in following.tolist())} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
