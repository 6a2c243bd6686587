"""Transfer study: does a pretrained PDE-FM learn a held-out system faster than the same network from scratch?

    pdefm transfer --held-out shear_flow MHD_64 --base-minutes 60 [--series-minutes 10 25] \\
        [--sizes 1 2 4 all] [--seeds 0 1 2] [--finetune-steps 300] [--out outputs/transfer] [--doc docs/transfer.md]

For each held-out dataset, a base is pretrained on the suite's other datasets for `--base-minutes` of wall-clock
(cached in `<out>/bases/`; a rerun reuses it, an interrupted one resumes from its checkpoints). Then, on the first
1, 2, 4 and all training trajectories of the held-out dataset, each strategy trains for the same number of steps:

- `zero_shot`: the base with the new dataset's head started from the fields it shares with the base's datasets
  (`PDEFMModel.add_dataset(adapter_init="fields")`), no training at all;
- `heads`: that head trains, every pretrained weight frozen;
- `lora`: LoRA on the backbone, tokenizer and decoder layers plus the head (PEFT);
- `spectral_lora`: LoRA plus frequency-band adapters on the decoder's Fourier layers (`adapters/spectral.py`);
- `full`: every weight of the base trains;
- `scratch`: the base's architecture, freshly initialised, trained on the held-out data alone.

Sizes in `--seeded-sizes` run every seed of `--seeds`, the others the first seed only. Every run is evaluated on
the held-out test split (one-step and rollout VRMSE, persistence beside them) and keeps its validation curve
(VRMSE against step and training seconds), so strategies are compared at equal steps and at equal wall-clock.
`--series-minutes` adds smaller bases, finetuned at the smallest size only: the gap to scratch against the base
budget. Each finished run leaves `evaluation.json` in its folder and is skipped on a rerun, so the study can be
spread over several invocations (also in parallel, one per held-out dataset); `--doc` is written from whatever is
finished.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch
from pdefm.data.layout import dataset_folders
from pdefm.train.baselines.linear import LinearStencil
from pdefm.train.evaluation.forecasters import PDEFMForecaster
from pdefm.train.evaluation.report import write_evaluation
from pdefm.train.evaluation.suite import evaluate_model
from pdefm.train.model_files.loading import load_pdefm
from pdefm.train.training.batches import model_specs
from pdefm.train.training.config import config_from_file
from pdefm.train.training.fit import reset_accelerate_state

from pdefm.runtime.cli_format import HelpFormatter
from pdefm.runtime.process import setup_process

from .arguments import add_output_arguments, parse_study_arguments

STRATEGIES = ("zero_shot", "heads", "lora", "spectral_lora", "full", "scratch")
# The bases keep the paper's FNO decoder whatever the preset's: the frequency-band adapters adapt its Fourier layers,
# and the published study ran with it. Scratch runs copy the base's architecture.
BASE_MODEL_OVERRIDES = {"decoder_type": "fno"}
TRAINED_FROM_BASE = ("heads", "lora", "spectral_lora", "full")


def base_folder(out: str, held_out: str, minutes: float) -> str:
    return os.path.join(out, "bases", f"without_{held_out}_{minutes:g}min")


def run_folder(out: str, held_out: str, minutes: float | None, size: str, seed: int, strategy: str) -> str:
    """`<out>/<held_out>/base<M>min/n<size>/seed<k>/<strategy>`; scratch does not depend on a base budget."""
    base = "no_base" if minutes is None else f"base{minutes:g}min"
    return os.path.join(out, held_out, base, f"n{size}", f"seed{seed}", strategy)


def finished(folder: str) -> bool:
    return os.path.isfile(os.path.join(folder, "evaluation.json"))


def ensure_base(args, held_out: str, minutes: float, names: list[str], log) -> str:
    """The base pretrained without `held_out` for `minutes`, trained (or resumed) when it is not finished."""
    from pdefm.train.pretrain import train

    folder = base_folder(args.out, held_out, minutes)
    if os.path.isfile(os.path.join(folder, "model.safetensors")) and os.path.isfile(os.path.join(folder, "report.json")):
        return folder
    settings = dict(report_rollout_steps=0,  # the study evaluates its runs itself
                    data_dir=args.data, datasets=[n for n in names if n != held_out], output_dir=folder,
                    seed=args.base_seed, time_budget_minutes=minutes, max_steps=100_000_000, checkpoint_every=500,
                    eval_every=500, log_with="none", model_overrides=BASE_MODEL_OVERRIDES)
    log(f"base without {held_out}: pretraining for {minutes:g} min (config {args.config} with {settings})")
    config = config_from_file(args.config, **settings).config
    reset_accelerate_state()
    train(config, resume=os.path.isdir(os.path.join(folder, "checkpoints")))
    return folder


def evaluate_into(args, model, held_out: str, folder: str, info: dict) -> None:
    """Evaluate a PDE-FM model (or any forecaster) on `held_out`'s test split into `folder`."""
    forecaster = PDEFMForecaster(model) if hasattr(model, "config") else model
    with torch.inference_mode():
        results = evaluate_model(forecaster, args.data, [held_out], "test", args.rollout_steps,
                                 show_progress=False, n_batches=args.eval_batches)
    write_evaluation(folder, results, {"data": args.data, "split": "test", "dataset": held_out, **info,
                                       "command": "pdefm transfer"}, figures=False)


def run_zero_shot(args, base: str, held_out: str, folder: str) -> None:
    from pdefm.train.finetune import new_dataset_modules

    model = load_pdefm(base)
    spec = model_specs(args.data, [held_out])[held_out]
    new_dataset_modules(model, held_out, spec, base)
    info = model.dataset_heads[held_out].initialised_from
    evaluate_into(args, model, held_out, folder, {"model": "zero-shot", "strategy": "zero_shot", "steps": 0,
                                                  "train_seconds": 0.0, "initialised_from": info})


def run_finetuning(args, base: str, held_out: str, size: str, seed: int, strategy: str, folder: str) -> None:
    from pdefm.train.finetune import FinetuneConfig, finetune

    adapter = f"{held_out}_{strategy}"
    options = FinetuneConfig(base=base, data=os.path.join(args.data, held_out), adapter_name=adapter, mode=strategy,
                             lora_r=args.lora_r, spectral_rank=args.lora_r)
    loaded = config_from_file(
        args.config, report_rollout_steps=0,  # the study evaluates its runs itself
        data_dir=args.data, datasets=[held_out], output_dir=folder, seed=seed, max_steps=args.finetune_steps,
        warmup_steps=args.warmup_steps, learning_rate=args.learning_rate, eval_every=args.eval_every,
        checkpoint_every=100_000_000, log_with="none", **({} if size == "all" else {"train_trajectories": int(size)}))
    reset_accelerate_state()
    result = finetune(options, loaded.config, explicit_keys=loaded.explicit_keys)
    saved = os.path.join(folder, adapter)
    model = load_pdefm(base, adapter=saved) if strategy == "lora" else load_pdefm(saved)
    details = json.load(open(os.path.join(folder, "finetune.json")))
    evaluate_into(args, model, held_out, folder, {
        "model": strategy, "strategy": strategy, "size": size, "seed": seed, "base": base,
        "trainable_parameters": result["trainable_parameters"], "steps": details["steps"],
        "train_seconds": details["train_seconds"]})


def planned_runs(args, held_out: str) -> list[tuple[float | None, str, int, str]]:
    """`(base minutes or None, size, seed, strategy)` in the order they run: the main base's grid, smallest size
    first, then the smaller bases at the smallest size."""
    runs = []
    for size in args.sizes:
        seeds = args.seeds if size in args.seeded_sizes else args.seeds[:1]
        for seed in seeds:
            for strategy in args.strategies:
                if strategy == "zero_shot":
                    continue
                runs.append((None if strategy == "scratch" else args.base_minutes, size, seed, strategy))
    for minutes in args.series_minutes:
        size = args.sizes[0]
        for seed in (args.seeds if size in args.seeded_sizes else args.seeds[:1]):
            for strategy in args.strategies:
                if strategy in TRAINED_FROM_BASE:
                    runs.append((minutes, size, seed, strategy))
    return runs


def run_study(args, held_out: str, names: list[str], log) -> None:
    base = ensure_base(args, held_out, args.base_minutes, names, log)
    if "zero_shot" in args.strategies:
        for minutes in [args.base_minutes, *args.series_minutes]:
            folder = os.path.join(args.out, held_out, f"base{minutes:g}min", "zero_shot")
            if not finished(folder):
                run_zero_shot(args, ensure_base(args, held_out, minutes, names, log), held_out, folder)
                log(f"{held_out}: zero-shot from the {minutes:g}-min base done")
    n_steps_input = config_from_file(args.config).config.n_steps_input
    for size in args.sizes:  # the yardstick every strategy must beat: a linear stencil fitted on the same trajectories
        folder = run_folder(args.out, held_out, None, size, 0, "linear_stencil")
        if not finished(folder):
            stencil = LinearStencil(n_steps_input).fit(
                held_out, os.path.join(args.data, held_out), trajectories=None if size == "all" else int(size))
            evaluate_into(args, stencil, held_out, folder, {"model": "linear stencil", "strategy": "linear_stencil",
                                                            "size": size, "seed": 0, "steps": 0, "train_seconds": 0.0})
    for minutes, size, seed, strategy in planned_runs(args, held_out):
        folder = run_folder(args.out, held_out, minutes, size, seed, strategy)
        if finished(folder):
            continue
        started = time.perf_counter()
        this_base = base if minutes is None else ensure_base(args, held_out, minutes, names, log)
        run_finetuning(args, this_base, held_out, size, seed, strategy, folder)
        log(f"{held_out}: {strategy}, {size} trajectories, seed {seed}"
            f"{'' if minutes is None else f', {minutes:g}-min base'} done in {time.perf_counter() - started:.0f} s")


def small_preset_shares(data: str, held_out: str, lora_r: int) -> str:
    """Trainable share of each PEFT strategy on the `small` preset (the paper's size), counted without training."""
    from pdefm.train.adapters.lora import trainable_parameters
    from pdefm.train.finetune import FinetuneConfig, build_model

    from modeling_pdefm import PDEFMConfig, PDEFMModel

    from .transfer_report import LABELS

    names = dataset_folders(data)
    specs = model_specs(data, names)
    lines = ["| strategy | trainable parameters (`small`) |", "|---|---|"]
    for strategy in ("heads", "lora", "spectral_lora"):
        torch.manual_seed(0)
        model = PDEFMModel(PDEFMConfig.from_preset("small", datasets={n: s for n, s in specs.items() if n != held_out}))
        options = FinetuneConfig(base="small", data=held_out, adapter_name="x", mode=strategy, lora_r=lora_r,
                                 spectral_rank=lora_r)
        wrapped, trained = build_model(options, model, held_out, specs[held_out])
        t = trainable_parameters(wrapped)
        lines.append(f"| {LABELS[strategy]} | {t['trainable']:,} of {t['total']:,} ({100 * t['fraction']:.2f}%) |")
    new_modules = [m for m in trained if not m.startswith("dataset_heads.")]
    if new_modules:
        lines += ["", f"The base has no {specs[held_out]['n_spatial_dims']}D tokenizer and decoder: "
                      f"{', '.join(f'`{m}`' for m in new_modules)} are new and train in full in every strategy, which "
                      "is most of these counts."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdefm transfer", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--held-out", nargs="+", default=["shear_flow", "MHD_64"], help="datasets kept out of the bases")
    parser.add_argument("--base-minutes", type=float, default=60.0, help="pretraining wall-clock of each base")
    parser.add_argument("--series-minutes", type=float, nargs="*", default=[],
                        help="smaller bases, finetuned at the smallest size (gap against base budget)")
    parser.add_argument("--base-seed", type=int, default=0, help="seed of the bases' pretraining")
    parser.add_argument("--sizes", nargs="+", default=["1", "2", "4", "all"], help="training trajectories ('all': every one)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="finetuning seeds")
    parser.add_argument("--seeded-sizes", nargs="*", default=["1", "2"], help="sizes that run every seed")
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=STRATEGIES)
    parser.add_argument("--finetune-steps", type=int, default=300, help="steps of every finetuning run")
    parser.add_argument("--learning-rate", type=float, default=2e-3, help="peak learning rate of every finetuning run")
    parser.add_argument("--warmup-steps", type=int, default=10)
    parser.add_argument("--eval-every", type=int, default=25, help="validation points of the learning curves")
    parser.add_argument("--lora-r", type=int, default=4, help="LoRA rank (and the spectral adapters' lowest-band rank)")
    parser.add_argument("--config", default="mini_well", help="training config of the bases and the runs")
    parser.add_argument("--data", default="data/mini_well", help="the suite's folder (generated when missing)")
    add_output_arguments(parser, out="outputs/transfer", doc="docs/transfer.md")
    parser.add_argument("--report-only", action="store_true", help="write --doc from the finished runs, train nothing")
    args = parse_study_arguments(parser, argv, doc_heading="# Transfer to held-out physics")
    for size in [*args.sizes, *args.seeded_sizes]:
        if size != "all" and not (size.isdigit() and int(size) > 0):
            parser.error(f"--sizes/--seeded-sizes: {size!r} is neither a positive number of trajectories nor 'all'")
    if not all(math.isfinite(m) and m > 0 for m in [args.base_minutes, *args.series_minutes]):
        parser.error("--base-minutes and --series-minutes must be finite numbers of minutes > 0")
    setup_process("train", keep_current=True)  # threads and memory reuse (pdefm.runtime.process)
    from pdefm.data.generate import complete_suite

    if not args.report_only:
        complete_suite(args.data)  # generates once, or finishes an interrupted generation
    names = dataset_folders(args.data)
    unknown = [h for h in args.held_out if h not in names]
    if unknown:
        parser.error(f"--held-out {unknown}: not among the datasets in {args.data}: {names}")
    os.makedirs(args.out, exist_ok=True)

    def log(message: str) -> None:
        print(f"[transfer {time.strftime('%H:%M:%S')}] {message}", flush=True)

    if not args.report_only:
        for held_out in args.held_out:
            run_study(args, held_out, names, log)
    from .transfer_report import write_transfer_doc

    command = " ".join(["pdefm transfer", *(argv if argv is not None else sys.argv[1:])])
    shares = {h: small_preset_shares(args.data, h, args.lora_r) for h in args.held_out}
    log(f"wrote {write_transfer_doc(args, command, shares)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
