"""`docs/transfer.md` from the runs a `pdefm transfer` study left: every number in it is read from their files."""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import time

import numpy as np
import torch
from pdefm.train.evaluation.report import mean_sd_cell

from .arguments import check_document_path

WINDOW = "6:12"
LABELS = {
    "zero_shot": "zero-shot (field-aware dataset head, no training)",
    "heads": "new dataset head only",
    "lora": "LoRA + dataset head",
    "spectral_lora": "LoRA + frequency-band spectral adapters",
    "full": "full finetuning",
    "scratch": "same architecture from scratch",
    "linear_stencil": "least-squares linear stencil on the same trajectories (no network)",
}
PRETRAINED = ("heads", "lora", "spectral_lora", "full")
TARGET_GAIN = 0.10  # the floor: the best pretrained strategy at least 10% below scratch


def _load(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def collect(out: str, held_out: str) -> list[dict]:
    """One record per finished run of `held_out`: its place in the grid, its metrics and its validation curve."""
    records = []
    for path in sorted(glob.glob(os.path.join(glob.escape(out), glob.escape(held_out), "*", "**", "evaluation.json"), recursive=True)):
        folder = os.path.dirname(path)
        parts = os.path.relpath(folder, os.path.join(out, held_out)).split(os.sep)
        doc = _load(path)
        result = doc["datasets"][held_out]
        record = {
            "base": None if parts[0] == "no_base" else float(parts[0][len("base"):-len("min")]),
            "strategy": doc["strategy"], "size": doc.get("size"), "seed": doc.get("seed"),
            "one_step": result["one_step"]["vrmse"], "persistence": result["one_step"]["persistence_vrmse"],
            "rollout": result["rollout"]["vrmse_windows"].get(WINDOW, math.nan),
            "rollout_persistence": result["rollout"].get("persistence_vrmse_windows", {}).get(WINDOW, math.nan),
            "steps": doc.get("steps", 0), "seconds": doc.get("train_seconds", 0.0),
            "trainable": doc.get("trainable_parameters"), "initialised_from": doc.get("initialised_from"),
        }
        finetune_path = os.path.join(folder, "finetune.json")
        record["trained_modules"] = _load(finetune_path).get("trained_modules", []) if os.path.isfile(finetune_path) else []
        curve_path = os.path.join(folder, "validation_curve.json")
        if os.path.isfile(curve_path):
            curve = _load(curve_path)
            record["curve"] = [(p["step"], p["seconds"], p["valid_vrmse"][held_out]) for p in curve["points"]]
            record["valid_persistence"] = (curve.get("persistence") or {}).get(held_out)
        records.append(record)
    return records


def _select(records, **where) -> list[dict]:
    return [r for r in records if all(r[k] == v for k, v in where.items())]


def _size_key(size: str) -> float:
    return math.inf if size == "all" else int(size)


def value_at(curve: list[tuple], seconds: float) -> float:
    """Validation VRMSE of the last curve point reached within `seconds` of training."""
    reached = [v for _, s, v in curve if s <= seconds + 1e-9]
    return reached[-1] if reached else math.nan


def equal_wallclock(records: list[dict]) -> tuple[dict[str, list[float]], list[float]]:
    """Per strategy, the validation VRMSE each (size, seed) cell reached within the training time of that cell's
    fastest strategy; and those times."""
    by_cell: dict[tuple, list[dict]] = {}
    for r in records:
        if "curve" in r:
            by_cell.setdefault((r["size"], r["seed"]), []).append(r)
    values: dict[str, list[float]] = {}
    times = []
    for cell in by_cell.values():
        limit = min(r["curve"][-1][1] for r in cell)
        times.append(limit)
        for r in cell:
            values.setdefault(r["strategy"], []).append(value_at(r["curve"], limit))
    return values, times


def size_table(records: list[dict], base_minutes: float, size: str) -> tuple[str, dict[str, dict[str, float]]]:
    rows = [r for r in records if r["size"] == size and (r["base"] == base_minutes or r["base"] is None)]
    clock, times = equal_wallclock(rows)
    head = ["strategy", "seeds", "trainable parameters", "one-step VRMSE", f"rollout VRMSE {WINDOW}", "steps",
            "training s", "valid VRMSE at equal wall-clock"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    means: dict[str, dict[str, float]] = {}
    for strategy in LABELS:
        runs = _select(rows, strategy=strategy)
        if not runs:
            continue
        t = runs[0]["trainable"] or {}
        share = f"{t['trainable']:,} of {t['total']:,} ({100 * t['fraction']:.1f}%)" if t else "-"
        means[strategy] = {"one_step": float(np.mean([r["one_step"] for r in runs])),
                           "rollout": float(np.mean([r["rollout"] for r in runs]))}
        lines.append("| " + " | ".join([
            LABELS[strategy], ", ".join(str(r["seed"]) for r in runs), share,
            mean_sd_cell([r["one_step"] for r in runs]), mean_sd_cell([r["rollout"] for r in runs]),
            str(runs[0]["steps"]), mean_sd_cell([r["seconds"] for r in runs], 0),
            mean_sd_cell(clock.get(strategy, []))]) + " |")
    first = rows[0]
    lines.append(f"| persistence (last input frame) | | | {first['persistence']:.4f} | "
                 f"{first['rollout_persistence']:.4f} | | | {first.get('valid_persistence') or math.nan:.4f} |")
    spectral = _select(rows, strategy="spectral_lora")
    if spectral and any(m.startswith("decoders.") for m in spectral[0]["trained_modules"]):
        lines.append("")
        lines.append("The decoder this dataset uses is new (the base had none of its dimensionality, or gives each "
                     "dataset its own): it trains in full, so `spectral_lora` has no pretrained Fourier layer to "
                     "adapt and equals `lora` here.")
    note = (f"Equal wall-clock: each strategy's validation VRMSE after the training time of the fastest strategy of "
            f"its seed ({mean_sd_cell(times, 0)} s), read from its learning curve (validation split).") if times else ""
    return "\n".join(lines) + ("\n\n" + note if note else ""), means


def verdicts(held_out: str, means_by_size: dict[str, dict[str, dict[str, float]]], zero: dict | None) -> list[str]:
    """Sentences from the numbers: zero-shot against persistence, best pretrained strategy against scratch."""
    lines = []
    if zero is not None:
        beats = zero["one_step"] < zero["persistence"]
        lines.append(f"- Zero-shot on {held_out}: one-step VRMSE {zero['one_step']:.4f} against persistence's "
                     f"{zero['persistence']:.4f}: {'beats' if beats else 'does not beat'} persistence "
                     f"({100 * (zero['one_step'] / zero['persistence'] - 1):+.1f}%).")
    for size, means in means_by_size.items():
        if "scratch" not in means:
            continue
        pretrained = {s: m for s, m in means.items() if s in PRETRAINED}
        if not pretrained:
            continue
        for metric, label in (("one_step", "one-step VRMSE"), ("rollout", f"rollout VRMSE {WINDOW}")):
            best = min(pretrained, key=lambda s: pretrained[s][metric])
            gain = 1 - pretrained[best][metric] / means["scratch"][metric]
            met = "meets" if gain >= TARGET_GAIN else "misses"
            relation = f"{100 * gain:.1f}% below" if gain >= 0 else f"{-100 * gain:.1f}% above"
            lines.append(f"- {held_out}, {size} training trajector{'y' if size == '1' else 'ies'}, {label}: best "
                         f"pretrained strategy `{best}` {pretrained[best][metric]:.4f} against scratch "
                         f"{means['scratch'][metric]:.4f}, {relation} scratch ({met} the floor of 10% below)"
                         + (f"; the linear stencil fitted on the same trajectories: {means['linear_stencil'][metric]:.4f} "
                            f"({'beaten' if pretrained[best][metric] < means['linear_stencil'][metric] else 'not beaten'})"
                            if "linear_stencil" in means else "") + ".")
    return lines


def plot_learning_curves(path: str, records: list[dict], held_out: str, size: str, base_minutes: float) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if r["size"] == size and "curve" in r and (r["base"] == base_minutes or r["strategy"] == "scratch")]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for strategy in LABELS:
        runs = _select(rows, strategy=strategy)
        if not runs:
            continue
        steps = [p[0] for p in runs[0]["curve"]]
        values = np.array([[p[2] for p in r["curve"]][: len(steps)] for r in runs if len(r["curve"]) >= len(steps)])
        ax.plot(steps, values.mean(0), marker=".", label=f"{LABELS[strategy]} ({len(values)} seed(s))")
    persistence = rows[0].get("valid_persistence")
    if persistence:
        ax.axhline(persistence, color="k", linestyle="--", label="persistence")
    ax.set_xlabel("finetuning step")
    ax.set_ylabel("validation one-step VRMSE")
    ax.set_yscale("log")  # a poor starting point would otherwise flatten the differences that matter
    ax.set_title(f"{held_out}: {size} training trajectory(ies), base {base_minutes:g} min")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def budget_series(records: list[dict], size: str) -> tuple[str, list[tuple[float, float]]]:
    """The best pretrained strategy's one-step gap to scratch at `size` for every base budget, and a fit of the gap
    against log(budget) when there are at least three budgets."""
    scratch = [r["one_step"] for r in _select(records, strategy="scratch", size=size)]
    if not scratch:
        return "", []
    reference = float(np.mean(scratch))
    points = []
    for minutes in sorted({r["base"] for r in records if r["base"] is not None}):
        best = min((float(np.mean([r["one_step"] for r in runs])), s) for s in PRETRAINED
                   if (runs := _select(records, strategy=s, size=size, base=minutes)))
        points.append((minutes, best[0] / reference - 1, best[1]))
    lines = ["| base budget (min) | best pretrained strategy | one-step VRMSE relative to scratch |", "|---|---|---|"]
    lines += [f"| {m:g} | {s} | {100 * g:+.1f}% |" for m, g, s in points]
    text = "\n".join(lines)
    if len(points) >= 3:
        slope, intercept = np.polyfit(np.log([p[0] for p in points]), [p[1] for p in points], 1)
        text += f"\n\nLeast-squares fit over these budgets: gap = {intercept:+.3f} {slope:+.3f} ln(minutes)"
        if slope >= 0:
            text += "; the gap does not shrink with the budget."
        else:
            log_minutes = (-TARGET_GAIN - intercept) / slope
            reach = (f"about {math.exp(log_minutes):.0f} minutes" if log_minutes < math.log(1e6)
                     else "more than a million minutes")
            text += f"; it would reach -10% at {reach} of base pretraining (an extrapolation)."
    return text, [(m, g) for m, g, _ in points]


def write_transfer_doc(args, command: str, shares: dict[str, str]) -> str:
    """Write `args.doc` (and its figures beside it, its run files under `transfer_runs/`) from `args.out`;
    `shares` holds, per held-out dataset, the table of trainable shares on the `small` preset."""
    doc_dir = os.path.dirname(os.path.abspath(args.doc))
    os.makedirs(doc_dir, exist_ok=True)
    text = ["# Transfer to held-out physics: zero-shot and few-shot", "",
            f"Generated by `{command}` on {time.strftime('%Y-%m-%d')} ({os.cpu_count()} CPU cores, "
            f"{torch.get_num_threads()} torch thread(s) in the writing process, torch {torch.__version__}). Every "
            f"number is read from the run files under `{args.out}` (evaluation, finetuning and learning-curve files "
            "are copied to `transfer_runs/` beside this document); regenerate, never edit.", "",
            "## Setup", "",
            f"- Base: PDE-FM (`{args.config}` config, `tiny` preset) pretrained on the suite's other datasets for "
            f"{args.base_minutes:g} minutes of wall-clock (one base per held-out dataset, seed {args.base_seed}).",
            f"- Finetuning: the same number of steps for every strategy of a held-out dataset (the tables' `steps`), "
            f"peak learning rate {args.learning_rate:g} (warm-up {args.warmup_steps}, cosine), LoRA rank "
            f"{args.lora_r}; validation every {args.eval_every} steps. Sizes: the first N training trajectories of "
            f"the held-out dataset. Seeds: {', '.join(map(str, args.seeds))} at sizes "
            f"{', '.join(args.seeded_sizes)}, the first seed otherwise.",
            f"- Evaluation on the held-out test split: one-step VRMSE over {args.eval_batches} batches of 8 windows, "
            f"rollout VRMSE over steps {WINDOW} from starts spread over every test trajectory (`pdefm evaluate`'s "
            "default; runs made before pdefm 0.3.0 from the first frames only); table cells are mean ± sample "
            "standard deviation over seeds.",
            "- Only finished runs are reported (a table's `seeds` column says which); rerunning the command "
            "completes the grid, skipping what is done.", ""]
    for held_out in args.held_out:
        records = collect(args.out, held_out)
        text += [f"## Held out: `{held_out}`", ""]
        if not records:
            text += ["No finished run yet.", ""]
            continue
        base_path = os.path.join(args.out, "bases", f"without_{held_out}_{args.base_minutes:g}min", "report.json")
        if os.path.isfile(base_path):
            base = _load(base_path)
            text += [f"Base: {base['steps']} steps in {base['train_seconds']:.0f} s on "
                     f"{', '.join(sorted(base['datasets']))}.", ""]
        zero_runs = _select(records, strategy="zero_shot", base=args.base_minutes)
        zero = zero_runs[0] if zero_runs else None
        if zero is not None:
            shared = zero["initialised_from"] or {}
            text += ["### Zero-shot", "",
                     "Fields started from the base's: " + ("; ".join(f"`{k}` <- {', '.join(v)}" for k, v in shared.items())
                                                           or "none (fresh head: persistence)") + ".", "",
                     "Zero-shot involves no training, so finetuning seeds do not change it: it is the forecast of "
                     f"the one base pretrained without `{held_out}` (seed {args.base_seed}).", "",
                     "| | one-step VRMSE | rollout VRMSE 6:12 |", "|---|---|---|",
                     f"| zero-shot | {zero['one_step']:.4f} | {zero['rollout']:.4f} |",
                     f"| persistence | {zero['persistence']:.4f} | {zero['rollout_persistence']:.4f} |", ""]
        means_by_size = {}
        sizes = sorted({r["size"] for r in records if r["size"] is not None}, key=_size_key)
        for size in sizes:
            table, means = size_table(records, args.base_minutes, size)
            means_by_size[size] = means
            text += [f"### {size} training trajector{'y' if size == '1' else 'ies'}", "", table, ""]
        if sizes:
            figure = f"transfer_{held_out}_curves.png"
            if plot_learning_curves(os.path.join(doc_dir, figure), records, held_out, sizes[0], args.base_minutes):
                text += [f"![learning curves]({figure})", "",
                         f"Learning curves at {sizes[0]} trajectory(ies): validation one-step VRMSE against "
                         "finetuning step, mean over seeds; the pretrained strategies start at the zero-shot model.", ""]
            series, points = budget_series(records, sizes[0])
            if len(points) > 1:
                text += ["### Gap to scratch against the base's budget", "", series, ""]
        text += ["### Verdicts", "", *verdicts(held_out, {s: m for s, m in means_by_size.items() if s in ("1", "2")},
                                               zero), ""]
    text += ["## Trainable share on the `small` preset", "",
             "Counted on a `small` model with the held-out dataset added (no training): the issue's bound is 5% for "
             "LoRA and the alternative.", ""]
    for held_out in args.held_out:
        text += [f"`{held_out}`:", "", shares[held_out], ""]
    check_document_path(args.doc, "# Transfer to held-out physics")
    with open(args.doc, "w") as f:
        f.write("\n".join(text))
    copy_runs(args.out, os.path.join(doc_dir, "transfer_runs"))
    return args.doc


def copy_runs(out: str, target: str) -> None:
    """The small files of every run (no weights), so the document's numbers stay checkable."""
    shutil.rmtree(target, ignore_errors=True)
    for path in glob.glob(os.path.join(glob.escape(out), "**", "*.json"), recursive=True):
        relative = os.path.relpath(path, out)
        if "checkpoints" in relative.split(os.sep) or "run_info" in relative.split(os.sep):
            continue
        if os.path.basename(path) not in ("evaluation.json", "finetune.json", "validation_curve.json", "report.json"):
            continue
        os.makedirs(os.path.join(target, os.path.dirname(relative)), exist_ok=True)
        shutil.copy(path, os.path.join(target, relative))
