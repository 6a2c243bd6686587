"""PDE-FM against The Well's baselines and its ablations, under one compute budget.

    pdefm benchmark --suite mini_well --budget-steps 6400 [--seeds 0 1 2] [--parts main ablations]
    pdefm benchmark --suite mini_well --budget-minutes 10 ...   (wall-clock: moves with whatever shares the machine)

- main: PDE-FM (the main job's config) trained for `--budget-steps` (or `--budget-minutes`) on every dataset at once;
  the linear yardsticks (linear extrapolation, and a least-squares 3x3 stencil fitted on the train split: no budget);
  each baseline (CNextU-Net, U-Net, FNO from `the_well`) trained per dataset with The Well's recipe, for the same
  compute split evenly over the datasets. Under `--budget-steps` compute is counted, not timed: PDE-FM's training
  operations (`compute.py`: matrix products, convolutions and FFTs of each dataset's training step, times the steps
  that drew it) are split evenly over the datasets, and each baseline trains the whole steps of its own counted cost
  that pay for its share. Every model is evaluated on the test splits by `pdefm.train.evaluation.rollout`.
- ablations: PDE-FM with one component switched off (spectral token, FiLM, cross-attention) or replaced (attention
  backbone, the paper's FNO decoder), same budget (the same steps under `--budget-steps`).

Transfer to a held-out dataset has its own study: `pdefm transfer` (`transfer.py`).

Each finished run leaves `<out>/seed<k>/<run>/evaluation.json`; a rerun skips those (an interrupted benchmark
resumes). `docs/benchmark.md` (and its figure) is generated from them at the end.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import sys
import time

import torch
from pdefm.data.layout import dataset_folders
from pdefm.train.baselines.forecaster import BASELINE_TARGETS, BaselineForecaster, load_forecaster
from pdefm.train.baselines.linear import fit_yardsticks
from pdefm.train.evaluation.report import write_evaluation
from pdefm.train.evaluation.suite import evaluate_model
from pdefm.train.model_files.loading import architecture_settings
from pdefm.train.training.batches import windows_per_batch
from pdefm.train.training.config import config_from_file
from pdefm.train.training.fit import reset_accelerate_state

from pdefm.runtime.cli_format import HelpFormatter
from pdefm.runtime.process import setup_process

from .arguments import add_output_arguments, parse_study_arguments
from .baseline_training import BASELINE_BATCH, BASELINE_INPUT_STEPS, train_baseline
from .benchmark_report import baseline_minutes_per_dataset, write_benchmark_doc

SUITES = {"mini_well": {"config": "mini_well", "data": "data/mini_well"},
          "mini_well_all": {"config": "mini_well_all", "data": "data/mini_well_all"}}  # the four other physics added
BASELINES = ("cnextunet", "unet_classic", "fno")
ABLATIONS = {
    "no_spectral_token": {"use_spectral_tokens": False},
    "no_film": {"use_film": False},
    "no_cross_attention": {"use_cross_attention": False},
    "attention_backbone": {"backbone": "attention"},
    "fno_decoder": {"decoder_type": "fno"},  # the paper's decoder (`tiny` has 3x3 blocks)
}


def pretrain_pdefm(args, seed: int, out: str, overrides: dict | None = None, datasets: list[str] | None = None,
                   budget_minutes: float | None = None, budget_steps: int | None = None) -> str:
    """The suite's config trained into `out` for the benchmark's budget (or the one given), resumed if interrupted."""
    from pdefm.train.pretrain import train

    if args.budget_steps:
        budget = {"max_steps": budget_steps or args.budget_steps, "time_budget_minutes": None}
    else:
        budget = {"max_steps": 100_000_000,
                  "time_budget_minutes": budget_minutes if budget_minutes is not None else args.budget_minutes}
    keys = {"datasets": datasets} if datasets else {}
    if overrides:  # an ablation changes the suite config's model, on top of what the config sets
        suite_model = config_from_file(SUITES[args.suite]["config"], data_dir=args.data).config.model_overrides
        keys["model_overrides"] = {**suite_model, **overrides}
    config = config_from_file(
        SUITES[args.suite]["config"], report_rollout_steps=0,  # the study evaluates its runs itself
        data_dir=args.data, output_dir=out, seed=seed, **budget, checkpoint_every=500, eval_every=args.valid_every,
        log_with="none", **keys).config
    reset_accelerate_state()
    train(config, resume=os.path.isdir(os.path.join(out, "checkpoints")))  # an interrupted run continues
    return out


def evaluate_run(args, forecaster, names: list[str], out: str, label: str, extra: dict) -> dict:
    with torch.inference_mode():
        results = evaluate_model(forecaster, args.data, names, "test", args.rollout_steps, show_progress=False,
                                 n_batches=args.eval_batches)
    write_evaluation(out, results, {"model": label, "data": args.data, "split": "test", **extra,
                                    "command": "python -m pdefm.studies.benchmark"}, figures=False)
    return results


def done(out: str) -> bool:
    return os.path.isfile(os.path.join(out, "evaluation.json"))


def training_operations(args, forecaster, report: dict, names: list[str]) -> dict:
    """What a finished PDE-FM run's training cost, counted (`compute.py`): operations of one training step on each
    dataset, the steps that drew each dataset (from the run's report), and their total."""
    from .compute import pdefm_step_flops

    config = config_from_file(SUITES[args.suite]["config"]).config
    windows = {n: windows_per_batch(n, config.batch_size, config.batch_sizes) for n in names}
    per_step = pdefm_step_flops(forecaster.model, args.data, names, windows, config.n_steps_input,
                                config.n_steps_output)
    steps = {n: report["datasets"][n]["train_samples"] // windows[n] for n in names}
    return {"per_step": per_step, "steps": steps, "total": sum(per_step[n] * steps[n] for n in names)}


def run_pdefm(args, seed: int, names: list[str], root: str, log) -> None:
    out = os.path.join(root, "pdefm")
    if not done(out):
        started = time.perf_counter()
        pretrain_pdefm(args, seed, out)
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        with open(os.path.join(out, "validation_curve.json")) as f:
            curve = json.load(f)
        forecaster = load_forecaster(out)
        evaluate_run(args, forecaster, names, out, "PDE-FM",
                     {"train_seconds": report["train_seconds"], "train_steps": report["steps"], "seed": seed,
                      "curve": curve, "time_spent": curve.get("time_spent"),
                      "train_samples": {n: r.get("train_samples") for n, r in report["datasets"].items()},
                      "train_flops": training_operations(args, forecaster, report, names)})
        log(f"seed {seed}: PDE-FM done in {time.perf_counter() - started:.0f} s")


def pdefm_operations(root: str, seed: int) -> dict:
    """The counted training operations of this seed's PDE-FM run (its evaluation file), which the other models of a
    `--budget-steps` benchmark are given."""
    path = os.path.join(root, "pdefm", "evaluation.json")
    if not os.path.isfile(path):
        raise SystemExit(f"error: --budget-steps gives each model PDE-FM's counted compute, but seed {seed} has no "
                         f"finished PDE-FM run ({path} is missing): run --parts pdefm (or main) for it first")
    with open(path) as f:
        operations = json.load(f).get("train_flops")
    if not operations:
        raise SystemExit(f"error: {path} holds no 'train_flops' (a run of an earlier version or of --budget-minutes); "
                         "rerun PDE-FM for this seed under --budget-steps")
    return operations


def run_alone(args, seed: int, names: list[str], root: str, log) -> None:
    """The mixture's model and config trained on each dataset alone, for the mixture's budget split evenly over the
    datasets (equal compute per dataset; under `--budget-steps` the steps on that dataset that its share of the
    mixture's counted operations pays for): what the mixture costs or gives each system (negative transfer)."""
    operations = pdefm_operations(root, seed) if args.budget_steps else None
    for name in names:
        out = os.path.join(root, f"alone_{name}")
        if done(out):
            continue
        if operations:
            from .compute import steps_for_flops

            budget = {"budget_steps": steps_for_flops(operations["total"] / len(names), operations["per_step"][name])}
        else:
            budget = {"budget_minutes": args.budget_minutes / len(names)}
        pretrain_pdefm(args, seed, out, datasets=[name], **budget)
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        evaluate_run(args, load_forecaster(out), [name], out, f"PDE-FM alone on {name}",
                     {"train_seconds": report["train_seconds"], "train_steps": report["steps"], "seed": seed,
                      "dataset": name, "train_samples": report["datasets"][name].get("train_samples")})
        log(f"seed {seed}: PDE-FM alone on {name} done ({budget})")


def run_yardsticks(args, seed: int, names: list[str], root: str, log) -> None:
    """The linear yardsticks (linear extrapolation; the least-squares 3x3 stencil, fitted in closed form on the train
    split in seconds, no training budget) evaluated as the models are: what a model must beat before its numbers
    say anything about learned physics."""
    n_steps_input = config_from_file(SUITES[args.suite]["config"]).config.n_steps_input
    forecasters = None
    for label, forecaster_key in (("linear extrapolation", "linear_extrapolation"), ("linear stencil", "linear_stencil")):
        out = os.path.join(root, forecaster_key)
        if done(out):
            continue
        forecasters = forecasters or fit_yardsticks(args.data, names, n_steps_input)
        evaluate_run(args, forecasters[label], names, out, label, {"seed": seed, "train_seconds": 0.0})
        log(f"seed {seed}: {label} done")


def run_baselines(args, seed: int, names: list[str], root: str, log) -> None:
    for kind in args.baselines:
        for sizing in args.baseline_sizes:
            run_baseline(args, seed, names, root, kind, sizing, log)


def baseline_sizes(args, kind: str, name: str, spec: dict, sizing: str) -> dict | None:
    """None (The Well's constructor defaults) or the width that gives PDE-FM's parameter count on this dataset
    (`spec`: its `model_specs` entry)."""
    if sizing == "default":
        return None
    from pdefm.data import split_resolution
    from pdefm.train.baselines.forecaster import matched_sizes

    return matched_sizes(kind, pdefm_parameters(args, name, spec), 4 * spec["n_fields"] + spec["n_constant_fields"],
                         spec["n_fields"], spec["n_spatial_dims"], split_resolution(os.path.join(args.data, name)))


def pdefm_parameters(args, name: str, spec: dict) -> int:
    """Parameters of the model that the suite's config (its preset and `model_overrides`) builds for this dataset
    alone: the size a matched baseline is given."""
    from pdefm.train.pretrain import model_config

    from modeling_pdefm import PDEFMModel

    config = config_from_file(SUITES[args.suite]["config"], data_dir=args.data).config
    return PDEFMModel(model_config(config, {name: spec})).num_parameters()


def baseline_steps(args, kind: str, name: str, spec: dict, sizes: dict | None, operations: dict) -> tuple[int, int]:
    """(whole training steps, operations of one) of this baseline on this dataset: the steps that an even share per
    dataset of PDE-FM's counted operations pays for, the step's cost counted on the built network."""
    from pdefm.data import split_resolution

    from .compute import baseline_step_flops, steps_for_flops

    forecaster = BaselineForecaster(kind, name, BASELINE_INPUT_STEPS, spec["n_fields"], spec["n_constant_fields"], spec["n_spatial_dims"],
                                    split_resolution(os.path.join(args.data, name)), sizes, args.baseline_target)
    per_step = baseline_step_flops(forecaster, args.data, name, batch_size=BASELINE_BATCH)
    return steps_for_flops(operations["total"] / len(operations["per_step"]), per_step), per_step


def run_baseline(args, seed: int, names: list[str], root: str, kind: str, sizing: str, log) -> None:
    """One baseline per dataset (each resumes from its own state), then their evaluation on the test splits."""
    from pdefm.train.training.batches import model_specs

    out = os.path.join(root, kind if sizing == "default" else f"{kind}_matched")
    if done(out):
        return
    started, runs = time.perf_counter(), {}
    operations = pdefm_operations(root, seed) if args.budget_steps else None
    specs = model_specs(args.data, names)  # read once: sizes and step costs both need each dataset's fields
    for name in names:
        sizes = baseline_sizes(args, kind, name, specs[name], sizing)
        per_step = None
        if operations:
            steps, per_step = baseline_steps(args, kind, name, specs[name], sizes, operations)
            budget = {"budget_seconds": None, "max_steps": steps}
        else:
            minutes = baseline_minutes_per_dataset(args.baseline_minutes, args.budget_minutes, len(names))
            budget = {"budget_seconds": minutes * 60}
        _, runs[name] = train_baseline(kind, args.data, name, seed=seed, sizes=sizes, out_dir=os.path.join(out, name),
                                       valid_every=args.valid_every, target=args.baseline_target, **budget)
        if per_step is not None:
            runs[name] = {**runs[name], "flops_per_step": per_step, "train_flops": per_step * runs[name]["steps"]}
    forecaster = load_forecaster(out)
    label = forecaster.label + ("" if sizing == "default" else " (PDE-FM's size)")
    evaluate_run(args, forecaster, names, out, label,
                 {"train_seconds": sum(r["seconds"] for r in runs.values()), "runs": runs, "seed": seed,
                  "sizing": sizing, "target": args.baseline_target})
    log(f"seed {seed}: {label} done in {time.perf_counter() - started:.0f} s")


def run_ablations(args, seed: int, names: list[str], root: str, log) -> None:
    for ablation, overrides in ABLATIONS.items():
        if ablation not in args.ablations:
            continue
        out = os.path.join(root, f"ablation_{ablation}")
        if done(out):
            continue
        pretrain_pdefm(args, seed, out, overrides)
        report = json.load(open(os.path.join(out, "report.json")))
        evaluate_run(args, load_forecaster(out), names, out, f"PDE-FM {ablation}",
                     {"train_seconds": report["train_seconds"], "train_steps": report["steps"], "seed": seed,
                      "overrides": overrides})
        log(f"seed {seed}: ablation {ablation} done")


def run_backbones(args, seed: int, root: str, log) -> None:
    """The paper's backbone experiment: Mamba against attention on one dataset, same budget; accuracy, training
    seconds per step and the peak memory of a training step side by side."""
    from pdefm.data import split_resolution
    from pdefm.train.training.batches import model_specs

    from .memory import training_step_memory

    name = args.backbone_dataset
    spec = model_specs(args.data, [name])[name]
    shape = split_resolution(os.path.join(args.data, name))
    for backbone in ("mamba", "attention"):
        out = os.path.join(root, f"backbone_{backbone}")
        if done(out):
            continue
        pretrain_pdefm(args, seed, out, {"backbone": backbone}, datasets=[name])
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
        forecaster = load_forecaster(out)
        memory = training_step_memory(architecture_settings(forecaster.model.config), name, spec, shape)
        evaluate_run(args, forecaster, [name], out, f"PDE-FM {backbone}",
                     {"train_seconds": report["train_seconds"], "train_steps": report["steps"], "seed": seed,
                      "backbone": backbone, "seconds_per_step": report["train_seconds"] / max(report["steps"], 1),
                      "memory": memory, "resolution": list(shape)})
        log(f"seed {seed}: backbone {backbone} on {name} done")


# Written into --out by every benchmark run: `--fresh` deletes only a folder that holds it, and only what a benchmark
# writes there.
SETTINGS_FILE = "benchmark_settings.json"


def clear_benchmark_folder(out: str) -> None:
    """Delete an earlier benchmark's runs (`seed*/`) and settings in `out`; refuse a folder that holds other things
    or no benchmark's settings file, so `--fresh --out SOME_FOLDER` cannot delete what a benchmark did not write."""
    if not os.path.lexists(out):
        return
    if os.path.islink(out) or not os.path.isdir(out):
        raise ValueError(f"--fresh: --out {out!r} is not a folder (a file or a link); nothing was deleted")
    entries = os.listdir(out)
    if not entries:
        return
    if SETTINGS_FILE not in entries:
        raise ValueError(f"--fresh: --out {out!r} holds files but no {SETTINGS_FILE}, so it is not a benchmark's "
                         "folder; nothing was deleted. Choose another --out, or delete it yourself")
    foreign = [e for e in entries if e != SETTINGS_FILE and not (re.fullmatch(r"seed\d+", e)
                                                                  and os.path.isdir(os.path.join(out, e)))]
    if foreign:
        raise ValueError(f"--fresh: --out {out!r} also holds {sorted(foreign)[:5]}, which a benchmark does not write; "
                         "nothing was deleted. Move them away or choose another --out")
    for entry in entries:
        path = os.path.join(out, entry)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdefm benchmark", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--suite", default="mini_well", choices=sorted(SUITES), help="datasets and their folder")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-steps", type=int, default=None,
                        help="PDE-FM's optimizer steps; every other model gets its counted operations (contention-proof)")
    budget.add_argument("--budget-minutes", type=float, default=None,
                        help="training wall-clock budget per model (moves with whatever else runs on the machine)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="one full run per seed")
    parser.add_argument("--parts", nargs="+", default=["main", "ablations", "backbones"],
                        choices=["main", "pdefm", "baselines", "ablations", "backbones", "alone"],
                        help="what to run; main = pdefm + baselines; alone = PDE-FM on each dataset alone at the "
                             "mixture's compute per dataset (two processes can share a benchmark by taking different "
                             "parts, or different --baselines or --ablations, into one --out)")
    parser.add_argument("--part-seeds", type=int, default=1, help="ablations and backbones run on the first N seeds")
    parser.add_argument("--backbone-dataset", default="rayleigh_benard", help="the dataset of the backbone experiment")
    parser.add_argument("--baselines", nargs="+", default=list(BASELINES), choices=BASELINES, help="The Well's baselines to train")
    parser.add_argument("--ablations", nargs="+", default=list(ABLATIONS), choices=list(ABLATIONS),
                        help="the ablations to run (two processes can share them)")
    parser.add_argument("--baseline-sizes", nargs="+", default=["default", "matched"], choices=["default", "matched"],
                        help="The Well's constructor sizes, and/or the width that gives PDE-FM's parameter count")
    parser.add_argument("--baseline-target", default="next", choices=BASELINE_TARGETS,
                        help="what the baselines predict: the next frame (The Well's published baselines) or its "
                             "change over the step scaled by the stats' `*_delta` (The Well's DeltaWellDataset; "
                             "PDE-FM predicts a change too)")
    parser.add_argument("--baseline-minutes", type=float, default=None,
                        help="training budget of each baseline on each dataset (default: --budget-minutes split "
                             "evenly over the datasets, equal total compute)")
    parser.add_argument("--valid-every", type=int, default=100, help="steps between the learning curves' points")
    parser.add_argument("--data", default=None, help="default: the suite's data folder (generated when missing)")
    add_output_arguments(parser, out="outputs/benchmark", doc="docs/benchmark.md")
    parser.add_argument("--fresh", action="store_true", help="delete earlier results in --out first")
    args = parse_study_arguments(parser, argv, doc_heading="# Benchmark:")
    setup_process("train")  # threads and memory reuse (pdefm.runtime.process)
    for flag, value in (("--budget-minutes", args.budget_minutes), ("--baseline-minutes", args.baseline_minutes)):
        if value is not None and not (math.isfinite(value) and value > 0):
            parser.error(f"{flag} must be a finite number of minutes > 0, got {value!r}")
    if args.budget_steps is not None and args.budget_steps < 1:
        parser.error(f"--budget-steps must be a whole number of steps >= 1, got {args.budget_steps}")
    if args.budget_steps is not None and args.baseline_minutes is not None:
        parser.error("--baseline-minutes sets a wall-clock budget; under --budget-steps the baselines get PDE-FM's "
                     "counted operations: give one or the other")
    args.data = args.data or SUITES[args.suite]["data"]
    from pdefm.data.generate import complete_suite

    complete_suite(args.data, suite=args.suite)  # generates once, or finishes an interrupted generation
    names = dataset_folders(args.data)
    if args.fresh:
        try:
            clear_benchmark_folder(args.out)
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    os.makedirs(args.out, exist_ok=True)
    settings = {k: v for k, v in vars(args).items() if k != "fresh"}
    with open(os.path.join(args.out, SETTINGS_FILE), "w") as f:
        json.dump({**settings, "datasets": names, "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
                   "torch": torch.__version__, "device": "cuda" if torch.cuda.is_available() else "cpu"}, f, indent=2)

    def log(message: str) -> None:
        print(f"[benchmark {time.strftime('%H:%M:%S')}] {message}", flush=True)

    for index, seed in enumerate(args.seeds):
        root = os.path.join(args.out, f"seed{seed}")
        if {"main", "pdefm"} & set(args.parts):
            run_pdefm(args, seed, names, root, log)
        if {"main", "baselines"} & set(args.parts):
            run_yardsticks(args, seed, names, root, log)
            run_baselines(args, seed, names, root, log)
        if "ablations" in args.parts and index < args.part_seeds:
            run_ablations(args, seed, names, root, log)
        if "backbones" in args.parts and index < args.part_seeds:
            run_backbones(args, seed, root, log)
        if "alone" in args.parts:
            run_alone(args, seed, names, root, log)
    path = write_benchmark_doc(args.out, args.doc, " ".join(["python -m pdefm.studies.benchmark", *(argv if argv is not None else sys.argv[1:])]))
    log(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
