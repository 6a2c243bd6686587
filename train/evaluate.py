"""Evaluate a saved model on data in The Well's format, as The Well reports its baselines.

    python -m pdefm.train.evaluate --model outputs/mini_well --data data/mini_well --split test [--out DIR]
    python -m pdefm.train.evaluate --model ORG/REPO --adapter ADAPTER_DIR_OR_ID --data data/my_system

`--model`: a PDE-FM folder or Hub id (the Hugging Face cache is used offline), a baseline folder written by
`pdefm.studies.benchmark`, or a folder of per-dataset baseline folders. `--data`: one dataset folder or a folder of them.
Writes `evaluation.json`, `evaluation.md` and `figures/*.png` into `--out` (default: `<model>/evaluation` for a
local model).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import torch
from pdefm.data.layout import has_split

from pdefm.runtime.cli_format import HelpFormatter
from pdefm.runtime.paths import check_output_folder
from pdefm.runtime.process import setup_process

from .baselines.forecaster import load_forecaster
from .baselines.linear import fit_yardsticks
from .training.batches import model_specs
from .training.run_lock import RunLockError, output_dir_lock
from .evaluation.report import markdown_table, summary, write_evaluation
from .evaluation.suite import STARTS_PER_TRAJECTORY, evaluate_model, resolve_datasets


def add_evaluation_arguments(parser) -> None:
    """The test-split evaluation options of the commands that train and evaluate many runs (benchmark, transfer)."""
    parser.add_argument("--rollout-steps", type=int, default=30, help="longest rollout evaluated")
    parser.add_argument("--eval-batches", type=int, default=8, help="one-step test windows: this many batches of 8")


def claim_evaluation_folder(out: str, overwrite: bool) -> list[str]:
    """Refuse an `--out` that holds an earlier evaluation (the main job's, which its report embeds, is in the model
    folder's `evaluation/`) unless `overwrite`. Returns the earlier evaluation's figures, which the caller removes
    once the new results are written (`remove_stale_figures`): an evaluation that fails (a full disk) loses
    nothing."""
    earlier = os.path.join(out, "evaluation.json")
    if not os.path.isfile(earlier):
        return []
    if not overwrite:
        raise ValueError(f"--out {out!r} holds an earlier evaluation ({earlier}); give another --out, or pass "
                         "--overwrite_output_dir to replace it")
    figures = os.path.join(out, "figures")
    if not os.path.isdir(figures) or os.path.islink(figures):
        return []
    return [os.path.join(figures, name) for name in os.listdir(figures)
            if name.endswith(".png") and os.path.isfile(os.path.join(figures, name))
            and not os.path.islink(os.path.join(figures, name))]


def remove_stale_figures(old_figures: list[str], written_at: float) -> None:
    """The earlier evaluation's figures that this one did not redraw (older than `written_at`), so no old figure
    stays beside the new ones."""
    for path in old_figures:
        if os.path.isfile(path) and os.path.getmtime(path) < written_at:
            os.remove(path)


def datasets_it_knows(forecaster, names: list[str], explicit: bool) -> list[str]:
    """Without --datasets, a folder may hold more datasets than the model has adapters for (Mini-Well's ten beside
    the main job's six): evaluate those it knows and say which are left out. Named ones it does not know are refused
    (by `evaluate_model`), as is a folder of none it knows."""
    if explicit:
        return names
    known = [n for n in names if forecaster.knows(n)]
    if not known:
        raise ValueError(f"the model has no adapter for any dataset in --data ({names}); finetune it first "
                         "(python -m pdefm.train.finetune)")
    if len(known) < len(names):
        print(f"evaluating the {len(known)} datasets the model knows; left out (no adapter): "
              f"{', '.join(n for n in names if n not in known)}", flush=True)
    return known


def check_figure_fields(requested: list[str], root: str, names: list[str]) -> None:
    """Each `--figure-fields` name must be a channel (`velocity_x`) or a field (`velocity`) of an evaluated dataset,
    checked before the evaluation runs; otherwise it would end with no figure of it and exit 0."""
    channels = sorted({c for spec in model_specs(root, names).values() for c in spec.get("field_names") or []})
    known = set(channels) | {c.rsplit("_", 1)[0] for c in channels}
    unknown = [f for f in requested if f not in known]
    if unknown:
        raise ValueError(f"--figure-fields {unknown}: no dataset of {names} has such a field; their fields are "
                         f"{channels}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdefm evaluate", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", required=True, help="PDE-FM folder or Hub id, or a baseline folder")
    parser.add_argument("--adapter", default=None, help="a LoRA adapter folder or Hub id (PDE-FM only)")
    parser.add_argument("--data", required=True, help="a dataset folder in The Well's layout, or a folder of them")
    parser.add_argument("--split", default="test", choices=("train", "valid", "test"), help="split to evaluate")
    parser.add_argument("--datasets", nargs="*", default=None, help="evaluate only these datasets (default: all in --data)")
    parser.add_argument("--rollout-steps", type=int, default=30, help="longest rollout (The Well's windows end at 30)")
    parser.add_argument("--n-steps-input", type=int, default=None,
                        help="input frames per window (default: what the model was trained with)")
    parser.add_argument("--batch-size", type=int, default=8, help="windows per batch")
    parser.add_argument("--out", default=None, help="output folder (default: <model>/evaluation)")
    parser.add_argument("--starts-per-trajectory", type=int, default=STARTS_PER_TRAJECTORY,
                        help="rollouts start this many times spread over every trajectory (1: its first frames only)")
    parser.add_argument("--no-yardsticks", action="store_true",
                        help="skip the linear yardsticks (linear extrapolation, and a 3x3 stencil fitted on the "
                             "data's train split)")
    parser.add_argument("--no-figures", action="store_true", help="skip the PNG figures")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="replace an earlier evaluation in --out (its evaluation files and figures only)")
    parser.add_argument("--figure-fields", nargs="+", default=None,
                        help="fields drawn in the rollout figures, by name (velocity or velocity_x) (default: all)")
    args = parser.parse_args(argv)
    setup_process("train")  # threads and memory reuse (pdefm.runtime.process)
    for flag, value in (("--rollout-steps", args.rollout_steps), ("--batch-size", args.batch_size),
                        ("--n-steps-input", args.n_steps_input), ("--starts-per-trajectory", args.starts_per_trajectory)):
        if value is not None and value < 1:
            parser.error(f"{flag} must be >= 1, got {value}")
    try:
        out = args.out if args.out is not None else (
            os.path.join(args.model, "evaluation") if os.path.isdir(args.model) else "evaluation")
        check_output_folder(out, "--out")
        root, names = resolve_datasets(args.data, args.split, args.datasets)
        if args.figure_fields and not args.no_figures:
            check_figure_fields(args.figure_fields, root, names)
        # One evaluation at a time per folder: a second into the same --out is refused at once, not lost.
        with output_dir_lock(out):
            old_figures = claim_evaluation_folder(out, args.overwrite_output_dir)
            started = time.time()
            forecaster = load_forecaster(args.model, adapter=args.adapter)
            names = datasets_it_knows(forecaster, names, explicit=args.datasets is not None)
            n_steps_input = args.n_steps_input or forecaster.n_steps_input
            yardsticks = None
            if not args.no_yardsticks:
                with_train = [n for n in names if has_split(os.path.join(root, n), "train")]
                yardsticks = fit_yardsticks(root, with_train, n_steps_input)
            with torch.inference_mode():
                results = evaluate_model(forecaster, root, names, args.split, args.rollout_steps, args.batch_size,
                                         n_steps_input, starts_per_trajectory=args.starts_per_trajectory,
                                         yardsticks=yardsticks)
            info = {"model": args.model, "adapter": args.adapter, "data": args.data, "split": args.split,
                    "rollout_steps": args.rollout_steps,
                    "command": " ".join(["python -m pdefm.train.evaluate", *(argv if argv is not None else sys.argv[1:])])}
            paths = write_evaluation(out, results, info, figures=not args.no_figures,
                                     figure_fields=args.figure_fields)
            remove_stale_figures(old_figures, started)
    except (FileNotFoundError, ValueError, OSError, RunLockError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown_table(results))
    print("means: " + ", ".join(f"{k} {v:.4f}" for k, v in summary(results).items()))
    print(f"wrote {paths['json']}, {paths['markdown']}" + (f" and {paths['figures']}/" if "figures" in paths else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
