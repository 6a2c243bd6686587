"""The same trained weights evaluated with 1, 2, 4, ... patch grids averaged per step (`jitter_average`).

Under `patch_jitter` a model is trained on a random shift of its patch grid each step; outside training each step
can decode through several shifts and average them (an ensemble over grids at that many times the network's cost).
The number of grids does not change the weights, so a model is trained once and evaluated at each count: this
prints, per model and count, one-step VRMSE per dataset, the mean of one-step VRMSE over persistence's, the mean
rollout VRMSE over steps 6-12, and the prediction's energy over the truth's in the upper half of wavenumbers at
rollout step 12. Choose the count on `--split valid`; report it on test. Each evaluation is written to
`--out/LABEL/kK/evaluation.json` and read back on a rerun instead of being computed again.

Run: python bench/jitter_average.py --data data/mini_well [--datasets NAME ...] --split valid --counts 1 2 4 8 \
         --out outputs/jitter_average_valid LABEL=MODEL_DIR [LABEL=MODEL_DIR ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from pdefm.data.layout import dataset_folders  # noqa: E402
from pdefm.train.baselines.forecaster import load_forecaster  # noqa: E402
from pdefm.train.evaluation.report import write_evaluation  # noqa: E402
from pdefm.train.evaluation.suite import evaluate_model  # noqa: E402


def evaluation(model_dir: str, count: int, data: str, names: list[str], split: str, rollout_steps: int,
               out: str) -> dict:
    """`{dataset: results}` of `model_dir` with `count` grids per step, from `out/evaluation.json` when it is there."""
    path = os.path.join(out, "evaluation.json")
    if os.path.isfile(path):
        with open(path) as f:
            return json.load(f)["datasets"]
    forecaster = load_forecaster(model_dir)
    config = forecaster.model.config
    if not config.patch_jitter:
        raise SystemExit(f"error: {model_dir} was trained without patch_jitter: it has one fixed grid to average")
    config.jitter_average = count
    results = evaluate_model(forecaster, data, names, split, rollout_steps, show_progress=False)
    write_evaluation(out, results, {"model": model_dir, "data": data, "split": split, "jitter_average": count,
                                    "command": "python bench/jitter_average.py"}, figures=False)
    with open(path) as f:  # the file's JSON form, so a fresh evaluation and a reread one are the same dict
        return json.load(f)["datasets"]


def summary_row(label: str, count: int, results: dict) -> str:
    names = sorted(results)
    one_step = [results[n]["one_step"]["vrmse"] for n in names]
    ratio = sum(results[n]["one_step"]["vrmse"] / results[n]["one_step"]["persistence_vrmse"] for n in names) / len(names)
    rollout = [results[n]["rollout"]["vrmse_windows"].get("6:12") for n in names]
    window = sum(rollout) / len(rollout) if None not in rollout else float("nan")
    high = [results[n]["rollout"]["energy_ratio_per_step"]["high"] for n in names]
    cells = [f"{v:.4f}" for v in one_step] + [f"{ratio:.4f}", f"{window:.4f}"]
    cells += [f"{h[11]:.3g}" if len(h) > 11 else "-" for h in high]
    return f"| {label} | {count} | " + " | ".join(cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="data/mini_well")
    parser.add_argument("--datasets", nargs="+", default=None, help="default: every dataset in --data")
    parser.add_argument("--split", default="valid", choices=["train", "valid", "test"])
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8], help="grids averaged per step")
    parser.add_argument("--rollout-steps", type=int, default=12)
    parser.add_argument("--out", required=True, help="folder of the evaluations (read back on a rerun)")
    parser.add_argument("models", nargs="+", metavar="LABEL=MODEL_DIR")
    args = parser.parse_args(argv)
    if any(c < 1 for c in args.counts):
        parser.error(f"--counts must be whole numbers >= 1, got {args.counts}")
    models = {}
    for item in args.models:
        label, sep, folder = item.partition("=")
        if not sep or not label:
            parser.error(f"{item!r}: expected LABEL=MODEL_DIR")
        models[label] = folder
    rows, names = [], None
    for label, folder in models.items():
        for count in args.counts:
            results = evaluation(folder, count, args.data, args.datasets or dataset_folders(args.data), args.split,
                                 args.rollout_steps, os.path.join(args.out, label, f"k{count}"))
            names = names or sorted(results)
            rows.append(summary_row(label, count, results))
    head = ["model", "grids", *names, "mean one-step / persistence", "mean rollout 6:12",
            *[f"{n} high band, step 12" for n in names]]
    print(f"Split `{args.split}` of `{args.data}`: one-step VRMSE per dataset; the prediction's energy over the truth's "
          "at |k| >= k_Nyquist / 2, rollout step 12 (means over starts).\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
