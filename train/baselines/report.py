"""`docs/benchmark.md` from the evaluation files a `pdefm.train.benchmark` run left: every number in it is read from them."""

from __future__ import annotations

import glob
import json
import os
import shutil
import time

import numpy as np

from ..evaluation.report import mean_sd_cell, plot_rollout_curves

MAIN_RUNS = (("pdefm", "PDE-FM"), ("cnextunet", "CNextU-Net"), ("unet_classic", "U-Net"), ("fno", "FNO"))
HEADLINE_WINDOW = "6:12"


def load_runs(out: str) -> dict[str, dict[int, dict]]:
    """`runs[run][seed]` = that run's evaluation document."""
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(glob.glob(os.path.join(out, "seed*", "*", "evaluation.json"))):
        seed = int(os.path.basename(os.path.dirname(os.path.dirname(path)))[4:])
        with open(path) as f:
            runs.setdefault(os.path.basename(os.path.dirname(path)), {})[seed] = json.load(f)
    return runs


def one_step(doc: dict, name: str) -> float:
    return doc["datasets"][name]["one_step"]["vrmse"]


def rollout_window(doc: dict, name: str, window: str = HEADLINE_WINDOW) -> float:
    return doc["datasets"][name]["rollout"]["vrmse_windows"].get(window, float("nan"))


def comparison_table(runs: dict, names: list[str], metric, with_persistence: bool) -> tuple[str, dict[str, dict[str, float]]]:
    """Rows: datasets and their mean; columns: the main runs (mean ± sample std over seeds)."""
    present = [(key, label) for key, label in MAIN_RUNS if key in runs]
    head = ["dataset", *[label for _, label in present]] + (["persistence"] if with_persistence else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    means: dict[str, dict[str, float]] = {key: {} for key, _ in present}
    for name in names:
        cells = [name]
        for key, _ in present:
            values = [metric(doc, name) for doc in runs[key].values() if name in doc["datasets"]]
            means[key][name] = float(np.mean(values)) if values else float("nan")
            cells.append(mean_sd_cell(values))
        if with_persistence:
            first = next(iter(runs[present[0][0]].values()))
            cells.append(f"{first['datasets'][name]['one_step']['persistence_vrmse']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    mean_cells = ["**mean**"]
    for key, _ in present:
        per_seed = [float(np.mean([metric(doc, n) for n in names])) for doc in runs[key].values()]
        mean_cells.append(mean_sd_cell(per_seed))
    if with_persistence:
        first = next(iter(runs[present[0][0]].values()))
        mean_cells.append(f"{np.mean([first['datasets'][n]['one_step']['persistence_vrmse'] for n in names]):.4f}")
    lines.append("| " + " | ".join(mean_cells) + " |")
    return "\n".join(lines), means


def verdicts(means: dict[str, dict[str, float]], names: list[str], what: str) -> list[str]:
    out = []
    if "pdefm" not in means:
        return out
    pdefm = np.mean([means["pdefm"][n] for n in names])
    for key, label in MAIN_RUNS[1:]:
        if key not in means:
            continue
        other = np.mean([means[key][n] for n in names])
        wins = sum(means["pdefm"][n] < means[key][n] for n in names)
        change = 100 * (1 - pdefm / other)
        relation = f"{change:.1f}% lower than" if change >= 0 else f"{-change:.1f}% higher than"
        out.append(f"- {what}: PDE-FM's mean ({pdefm:.4f}) is {relation} {label}'s ({other:.4f}); PDE-FM is lower on "
                   f"{wins} of {len(names)} datasets.")
    return out


def budget_table(runs: dict) -> str:
    lines = ["| model | training seconds per seed | optimizer steps per seed |", "|---|---|---|"]
    for key, label in MAIN_RUNS:
        if key not in runs:
            continue
        docs = list(runs[key].values())
        seconds = [d.get("train_seconds", float("nan")) for d in docs]
        if key == "pdefm":
            steps = mean_sd_cell([float(d.get("train_steps", float("nan"))) for d in docs], 0)
        else:
            steps = ", ".join(f"{n}: {int(np.mean([d['runs'][n]['steps'] for d in docs]))}" for n in sorted(docs[0]["runs"]))
        lines.append(f"| {label} | {mean_sd_cell(seconds, 0)} | {steps} |")
    return "\n".join(lines)


def ablation_table(runs: dict, names: list[str]) -> str:
    rows = [("pdefm", "full PDE-FM")] + [(k, k.replace("ablation_", "").replace("_", " ")) for k in sorted(runs)
                                          if k.startswith("ablation_")]
    lines = ["| variant | seeds | mean one-step VRMSE | mean rollout VRMSE 6:12 | steps in budget |", "|---|---|---|---|---|"]
    ablation_seeds = sorted({s for k in runs if k.startswith("ablation_") for s in runs[k]})
    for key, label in rows:
        if key not in runs:
            continue
        docs = [runs[key][s] for s in ablation_seeds if s in runs[key]]
        if not docs:
            continue
        lines.append(f"| {label} | {', '.join(str(s) for s in ablation_seeds if s in runs[key])} | "
                     f"{mean_sd_cell([float(np.mean([one_step(d, n) for n in names])) for d in docs])} | "
                     f"{mean_sd_cell([float(np.mean([rollout_window(d, n) for n in names])) for d in docs])} | "
                     f"{mean_sd_cell([float(d.get('train_steps', float('nan'))) for d in docs], 0)} |")
    return "\n".join(lines)


def write_benchmark_doc(out: str, doc_path: str, command: str) -> str:
    with open(os.path.join(out, "benchmark_settings.json")) as f:
        settings = json.load(f)
    runs = load_runs(out)
    names = settings["datasets"]
    doc_dir = os.path.dirname(doc_path) or "."
    os.makedirs(doc_dir, exist_ok=True)
    # The evaluation files the numbers come from, beside the document (the models stay in `out`).
    runs_folder = os.path.splitext(os.path.basename(doc_path))[0] + "_runs"
    copies = os.path.join(doc_dir, runs_folder)
    shutil.rmtree(copies, ignore_errors=True)
    for path in [os.path.join(out, "benchmark_settings.json"), *glob.glob(os.path.join(out, "seed*", "*", "evaluation.json"))]:
        target = os.path.join(copies, os.path.relpath(path, out))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(path, target)
    main_seeds = sorted(runs.get("pdefm", {}))
    title = ("PDE-FM against The Well's baselines on Mini-Well" if "pdefm" in runs
             else "PDE-FM ablations on Mini-Well")
    parts = [
        f"# Benchmark: {title}",
        "",
        f"Generated by `{command}` on {time.strftime('%Y-%m-%d')} ({settings['cpu_count']} CPU cores, "
        f"{settings['torch_threads']} torch thread(s), torch {settings['torch']}, {settings['device']}). Every number below "
        f"is read from the evaluation files under `{out}/`, copied to `{runs_folder}/` beside this file; regenerate "
        "rather than edit.",
        "",
        "## Setup",
        "",
    ]
    seeds = sorted({seed for by_seed in runs.values() for seed in by_seed})
    if "pdefm" in runs:
        parts += [
            f"- Budget: **{settings['budget_minutes']} minutes of training wall-clock per model** and seed. PDE-FM "
            f"(`tiny` preset, `{settings['suite']}` config) trains on all {len(names)} datasets at once; each baseline "
            "is trained per dataset (The Well's recipe: 4 input steps, next-step MSE on z-scored fields, AdamW 1e-3, "
            "warm-up and cosine) with the budget split evenly over the datasets, so every model gets the same total "
            "compute. Learning-rate schedules decay over the budget.",
            "- Baselines are the_well 1.2.0's own `UNetConvNext`, `UNetClassic` and `FNO` (neuraloperator 0.3.0) at "
            "their constructors' default sizes.",
        ]
    else:
        parts += [f"- Budget: **{settings['budget_minutes']} minutes of training wall-clock** for each pretraining "
                  f"(`tiny` preset, `{settings['suite']}` config). Only the parts listed below were run."]
    parts += [
        f"- Seeds: {', '.join(str(s) for s in seeds)} (table cells: mean ± sample standard deviation over seeds).",
        f"- Evaluation on the test splits, on denormalised fields: one-step VRMSE over {settings['eval_batches']} batches "
        f"of 8 windows spread evenly over each split; rollouts from the first 4 frames of every test trajectory, fed "
        f"back for {settings['rollout_steps']} steps, VRMSE averaged over The Well's windows of steps.",
        "",
    ]
    if "pdefm" in runs:
        table, means = comparison_table(runs, names, one_step, with_persistence=True)
        parts += ["## One-step VRMSE (test split)", "", table, "", *verdicts(means, names, "one-step VRMSE"), ""]
        table, means = comparison_table(runs, names, rollout_window, with_persistence=False)
        parts += [f"## Rollout VRMSE, steps {HEADLINE_WINDOW}", "", table, "",
                  *verdicts(means, names, f"rollout VRMSE {HEADLINE_WINDOW}"), "",
                  "## What each model did within the budget", "", budget_table(runs), "",
                  "One model for every dataset against one model per dataset at equal total compute: each baseline "
                  "gets a sixth of the budget per dataset, so at a small budget the baselines are far from "
                  "converged (the step counts above), and the comparison says how far each approach gets for the "
                  "same compute, not how good each architecture can be. A larger `--budget-minutes` moves it towards "
                  "the latter. Persistence (the last input frame) is the floor any useful model must beat.", ""]
        figure = os.path.join(os.path.dirname(doc_path) or ".", "benchmark_rollout.png")
        seed = main_seeds[0]
        curves = {n: {label: runs[key][seed]["datasets"][n]["rollout"]["vrmse_per_step"]
                      for key, label in MAIN_RUNS if key in runs and seed in runs[key]} for n in names}
        plot_rollout_curves(figure, curves, f"VRMSE against rollout step (test, seed {seed})")
        parts += ["![VRMSE against rollout step](benchmark_rollout.png)", ""]
    if any(k.startswith("ablation_") for k in runs):
        parts += ["## Ablations (same budget)", "", "Each variant switches one component of PDE-FM off or replaces it "
                  "(config switches of the model); the full model's row is the main run of the same seed. A cheaper "
                  "variant fits more steps into the budget (last column).", "", ablation_table(runs, names), ""]
    with open(doc_path, "w") as f:
        f.write("\n".join(parts))
    return doc_path
