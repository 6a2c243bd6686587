"""`docs/benchmark.md` from the evaluation files a `pdefm.studies.benchmark` run left: every number in it is read from them."""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import time

import numpy as np
from pdefm.data import split_resolution
from pdefm.train.evaluation.report import mean_sd_cell, plot_rollout_curves

from modeling_pdefm.config_versions import RENAMED_KEYS

from .arguments import check_document_path

MAIN_RUNS = (("pdefm", "PDE-FM"), ("cnextunet", "CNextU-Net"), ("unet_classic", "U-Net"), ("fno", "FNO"),
             ("cnextunet_matched", "CNextU-Net (PDE-FM's size)"), ("unet_classic_matched", "U-Net (PDE-FM's size)"),
             ("fno_matched", "FNO (PDE-FM's size)"), ("linear_extrapolation", "linear extrapolation"),
             ("linear_stencil", "linear stencil"))
HEADLINE_WINDOW = "6:12"
ROLLOUT_WINDOWS = ("1:1", "2:5", "6:12", "13:30")


def load_runs(out: str) -> dict[str, dict[int, dict]]:
    """`runs[run][seed]` = that run's evaluation document."""
    runs: dict[str, dict[int, dict]] = {}
    for path in sorted(glob.glob(os.path.join(glob.escape(out), "seed*", "*", "evaluation.json"))):
        seed = int(os.path.basename(os.path.dirname(os.path.dirname(path)))[4:])
        with open(path) as f:
            runs.setdefault(os.path.basename(os.path.dirname(path)), {})[seed] = json.load(f)
    return runs


def one_step(doc: dict, name: str) -> float:
    return doc["datasets"][name]["one_step"]["vrmse"]


def one_step_persistence(doc: dict, name: str) -> float:
    return doc["datasets"][name]["one_step"]["persistence_vrmse"]


def rollout_window(doc: dict, name: str, window: str = HEADLINE_WINDOW) -> float:
    return doc["datasets"][name]["rollout"]["vrmse_windows"].get(window, float("nan"))


def rollout_metric(window: str):
    return lambda doc, name: rollout_window(doc, name, window)


def rollout_persistence(window: str):
    return lambda doc, name: doc["datasets"][name]["rollout"].get("persistence_vrmse_windows", {}).get(window, float("nan"))


def comparison_table(runs: dict, names: list[str], metric, persistence=None) -> tuple[str, dict[str, dict[str, float]]]:
    """Rows: datasets, their mean, and how many datasets each model beats persistence on; columns: the main runs
    (mean ± sample std over seeds) and persistence (`persistence(doc, name)`, read from the first run)."""
    present = [(key, label) for key, label in MAIN_RUNS if key in runs]
    head = ["dataset", *[label for _, label in present]] + (["persistence"] if persistence else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    means: dict[str, dict[str, float]] = {key: {} for key, _ in present}
    first = next(iter(runs[present[0][0]].values()))
    floor = {n: persistence(first, n) for n in names} if persistence else {}
    for name in names:
        cells = [name]
        for key, _ in present:
            values = [metric(doc, name) for doc in runs[key].values() if name in doc["datasets"]]
            means[key][name] = float(np.mean(values)) if values else float("nan")
            cells.append(mean_sd_cell(values))
        if persistence:
            cells.append(f"{floor[name]:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    mean_cells = ["**mean**"]
    for key, _ in present:
        per_seed = [float(np.mean([metric(doc, n) for n in names])) for doc in runs[key].values()]
        mean_cells.append(mean_sd_cell(per_seed))
    if persistence:
        mean_cells.append(f"{np.mean(list(floor.values())):.4f}")
    lines.append("| " + " | ".join(mean_cells) + " |")
    if persistence:
        counts = [f"{sum(means[key][n] < floor[n] for n in names)} of {len(names)}" for key, _ in present]
        lines.append("| " + " | ".join(["**beats persistence on**", *counts, ""]) + " |")
    return "\n".join(lines), means


def persistence_counts(means: dict[str, dict[str, float]], floor: dict[str, float]) -> dict[str, int]:
    return {key: sum(values[n] < floor[n] for n in floor) for key, values in means.items()}


YARDSTICKS = ("linear_extrapolation", "linear_stencil")


def targets(one_step_means: dict, window_means: dict[str, dict], floor: dict[str, float], names: list[str],
            late_floor: dict[str, float] | None = None) -> list[str]:
    """The benchmark's floors (the model issue's), each stated as met or missed from the numbers: PDE-FM's mean
    one-step VRMSE at most FNO's and at most the best baseline's of PDE-FM's size; one step below persistence and the
    linear stencil on every dataset; rollout 6:12 the lowest of all models on at least 4 datasets; rollout 13:30
    below persistence (`late_floor`) on at least 5 of 6."""
    out = []
    counts = persistence_counts(one_step_means, floor)
    labels = dict(MAIN_RUNS)
    baselines = [k for k in one_step_means if k != "pdefm" and k not in YARDSTICKS]
    enough = [k for k in baselines if counts[k] >= 4]
    if baselines:
        out.append(f"- Baselines beating persistence (one-step) on at least 4 of {len(names)} datasets: "
                   f"{len(enough)} of {len(baselines)} (" + ", ".join(f"{labels[k]} {counts[k]}" for k in baselines)
                   + ")" + ("." if len(enough) == len(baselines) else
                            "; the comparison below is not yet one between converged models."))
    if "pdefm" not in one_step_means:
        return out

    def mean(key: str, means: dict) -> float:
        return float(np.mean([means[key][n] for n in names]))

    pdefm = mean("pdefm", one_step_means)
    if "fno" in one_step_means:
        ratio = pdefm / mean("fno", one_step_means)
        out.append(f"- PDE-FM's mean one-step VRMSE is {ratio:.2f}x FNO's (floor: at most 1.0x): "
                   f"{'met' if ratio <= 1.0 else 'missed'}.")
    matched = [k for k in baselines if k.endswith("_matched")]
    if matched:
        best = min(matched, key=lambda k: mean(k, one_step_means))
        ratio = pdefm / mean(best, one_step_means)
        kinds = [key for key, _ in MAIN_RUNS if key.endswith("_matched")]
        run = "" if len(matched) == len(kinds) else f" ({len(matched)} of the {len(kinds)} run at its size)"
        out.append(f"- PDE-FM's mean one-step VRMSE is {ratio:.2f}x that of the best baseline of its size{run}, "
                   f"{labels[best]} (floor: at most 1.0x): {'met' if ratio <= 1.0 else 'missed'}.")
    below = [n for n in names if one_step_means["pdefm"][n] < floor[n]]
    out.append(f"- PDE-FM one step below persistence on {len(below)} of {len(names)} datasets (floor: all): "
               f"{'met' if len(below) == len(names) else 'missed'}.")
    if "linear_stencil" in one_step_means:
        below = [n for n in names if one_step_means["pdefm"][n] < one_step_means["linear_stencil"][n]]
        missed = [n for n in names if n not in below]
        out.append(f"- PDE-FM one step below the linear stencil on {len(below)} of {len(names)} datasets (floor: all): "
                   + ("met." if not missed else f"missed ({', '.join(missed)})."))
    rollout = window_means.get(HEADLINE_WINDOW)
    others = [k for k in (rollout or {}) if k != "pdefm"]
    if rollout and others:
        wins = sum(all(rollout["pdefm"][n] < rollout[k][n] for k in others) for n in names)
        out.append(f"- PDE-FM's rollout VRMSE {HEADLINE_WINDOW} is the lowest of all {len(others) + 1} models (the "
                   f"linear yardsticks included) on {wins} of {len(names)} datasets (floor: 4): "
                   f"{'met' if wins >= 4 else 'missed'}.")
    late = window_means.get("13:30")
    if late and late_floor:
        below = sum(late["pdefm"][n] < late_floor[n] for n in names)
        out.append(f"- PDE-FM's rollout VRMSE 13:30 is below persistence's on {below} of {len(names)} datasets "
                   f"(floor: 5 of 6): {'met' if below >= min(5, len(names)) else 'missed'}.")
    return out


def backbone_table(runs: dict) -> str:
    """Mamba against attention on one dataset: accuracy, seconds per training step, peak memory (mean over seeds)."""
    head = ["backbone", "seeds", "one-step VRMSE", f"rollout VRMSE {HEADLINE_WINDOW}", "training s per step",
            "peak memory MB", "memory of a step MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for backbone in ("mamba", "attention"):
        docs = list(runs.get(f"backbone_{backbone}", {}).values())
        if not docs:
            continue
        name = next(iter(docs[0]["datasets"]))
        lines.append("| " + " | ".join([
            backbone, ", ".join(str(d["seed"]) for d in docs), mean_sd_cell([one_step(d, name) for d in docs]),
            mean_sd_cell([rollout_window(d, name) for d in docs]),
            mean_sd_cell([d["seconds_per_step"] for d in docs], 3),
            mean_sd_cell([d["memory"]["peak_rss_mb"] for d in docs], 0),
            mean_sd_cell([d["memory"]["step_mb"] for d in docs], 0)]) + " |")
    first = docs[0] if docs else None
    if first is not None:
        lines.append(f"| persistence | | {first['datasets'][name]['one_step']['persistence_vrmse']:.4f} | "
                     f"{rollout_persistence(HEADLINE_WINDOW)(first, name):.4f} | | | |")
    return "\n".join(lines)


ENERGY_STEPS = (1, 5, 12, 30)


def energy_table(runs: dict, names: list[str], seed: int) -> str:
    """Per model and wavenumber band: the prediction's energy over the truth's at rollout steps `ENERGY_STEPS`,
    mean over datasets (1 keeps the scale; below 1 the forecast smooths it away)."""
    head = ["model", "band", *[f"step {s}" for s in ENERGY_STEPS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for key, label in MAIN_RUNS:
        doc = runs.get(key, {}).get(seed)
        if doc is None or "energy_ratio_per_step" not in doc["datasets"][names[0]]["rollout"]:
            continue
        for band in ("low", "mid", "high"):
            cells = []
            for step in ENERGY_STEPS:
                values = [doc["datasets"][n]["rollout"]["energy_ratio_per_step"][band][step - 1] for n in names
                          if len(doc["datasets"][n]["rollout"]["energy_ratio_per_step"][band]) >= step]
                cells.append(f"{np.mean(values):.3f}" if len(values) == len(names) else "-")
            lines.append("| " + " | ".join([label if band == "low" else "", band, *cells]) + " |")
    return "\n".join(lines)


def plot_learning_curves(doc_dir: str, runs: dict, names: list[str], seed: int, prefix: str = "benchmark") -> list[str]:
    """One figure per dataset, `<prefix>_curves_<dataset>.png`: validation one-step VRMSE against training seconds
    for every main run of `seed`, persistence as a horizontal line. Returns the figure file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    for name in names:
        fig, ax = plt.subplots(figsize=(6.4, 4))
        persistence = None
        for key, label in MAIN_RUNS:
            doc = runs.get(key, {}).get(seed)
            if doc is None:
                continue
            if key == "pdefm":
                curve = doc.get("curve") or {}
                points = [(p["seconds"], p["valid_vrmse"][name]) for p in curve.get("points", []) if name in p["valid_vrmse"]]
                label += " (its clock covers every dataset)"
                persistence = persistence or (curve.get("persistence") or {}).get(name)
            else:
                run = doc.get("runs", {}).get(name, {})
                points = [(p["seconds"], p["valid_vrmse"]) for p in run.get("curve", [])]
                persistence = persistence or run.get("valid_persistence_vrmse")
            if points:
                ax.plot(*zip(*points), marker=".", label=label)
        if persistence:
            ax.axhline(persistence, color="k", linestyle="--", label="persistence")
        ax.set_xlabel("training seconds")
        ax.set_ylabel("validation one-step VRMSE")
        ax.set_yscale("log")
        ax.set_title(f"{name} (seed {seed})")
        ax.legend(fontsize=7)
        fig.tight_layout()
        file = f"{prefix}_curves_{name}.png"
        fig.savefig(os.path.join(doc_dir, file), dpi=100)
        plt.close(fig)
        files.append(file)
    return files


def value_at_samples(points: list[tuple[int, float]], samples: int) -> float | None:
    """The learning curve's value at the last point that had seen at most `samples` training samples, or None when
    the curve never got that far (it stopped earlier in its budget)."""
    if not points or points[-1][0] < samples:
        return None
    return [value for seen, value in points if seen <= samples][-1]


def equal_samples_table(runs: dict, names: list[str], seed: int) -> str | None:
    """Validation one-step VRMSE per dataset with every model read at the number of that dataset's training samples
    PDE-FM had drawn by the end of its budget (from the learning curves; "-" where a baseline's budget ended before it
    saw that many)."""
    curve = (runs.get("pdefm", {}).get(seed) or {}).get("curve") or {}
    last = (curve.get("points") or [{}])[-1]
    if "samples" not in last:
        return None
    present = [(key, label) for key, label in MAIN_RUNS[1:] if seed in runs.get(key, {})]
    head = ["dataset", "samples", "PDE-FM", *[label for _, label in present], "persistence"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name in names:
        samples = last["samples"][name]
        cells = [name, str(samples), f"{last['valid_vrmse'][name]:.4f}"]
        persistence = (curve.get("persistence") or {}).get(name)
        for key, _ in present:
            run = runs[key][seed].get("runs", {}).get(name, {})
            value = value_at_samples([(p["samples"], p["valid_vrmse"]) for p in run.get("curve", [])], samples)
            cells.append("-" if value is None else f"{value:.4f}")
        cells.append(f"{persistence:.4f}" if persistence is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _change(value: float, reference: float) -> str:
    """"4.9% lower" / "12.0% higher" of `value` against `reference` (equal reads as "0.0% lower")."""
    change = 100 * (value / reference - 1)
    return f"{abs(change):.1f}% {'lower' if change <= 0 else 'higher'}"


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
        out.append(f"- {what}: PDE-FM's mean ({pdefm:.4f}) is {_change(pdefm, other)} than {label}'s ({other:.4f}); PDE-FM is lower on "
                   f"{wins} of {len(names)} datasets.")
    return out


def training_tflops(doc: dict) -> float:
    """A run's counted training operations in TFLOP (nan where it recorded none: a wall-clock run)."""
    if doc.get("train_flops"):
        return doc["train_flops"]["total"] / 1e12
    if doc.get("runs") and all("train_flops" in r for r in doc["runs"].values()):
        return sum(r["train_flops"] for r in doc["runs"].values()) / 1e12
    return float("nan")


def budget_table(runs: dict) -> str:
    lines = ["| model | training seconds per seed | training TFLOP per seed (counted) | optimizer steps per seed |",
             "|---|---|---|---|"]
    for key, label in MAIN_RUNS:
        if key not in runs:
            continue
        docs = list(runs[key].values())
        seconds = [d.get("train_seconds", float("nan")) for d in docs]
        operations = [training_tflops(d) for d in docs]
        if key == "pdefm":
            steps = mean_sd_cell([float(d.get("train_steps", float("nan"))) for d in docs], 0)
        elif "runs" not in docs[0]:  # a linear yardstick: fitted in closed form, no optimizer
            steps, operations = "none (closed form)", []
        else:
            steps = ", ".join(f"{n}: {int(np.mean([d['runs'][n]['steps'] for d in docs]))}" for n in sorted(docs[0]["runs"]))
        counted = "-" if not operations or all(math.isnan(v) for v in operations) else mean_sd_cell(operations, 1)
        lines.append(f"| {label} | {mean_sd_cell(seconds, 0)} | {counted} | {steps} |")
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


def model_settings(out: str, seed: int, run: str) -> dict | None:
    """The saved model config of a PDE-FM run (keys a run saved before they existed read as their defaults, which
    reproduce the older behaviour) without the keys that change nothing in it, or None where the run's folder holds
    no model."""
    path = os.path.join(out, f"seed{seed}", run, "config.json")
    if not os.path.isfile(path):
        return None
    from pdefm.train.model_files.loading import architecture_settings

    from modeling_pdefm import PDEFMConfig

    config = PDEFMConfig.from_json_file(path)
    inactive = config.inactive_keys()
    return {k: v for k, v in architecture_settings(config).items() if k not in inactive}


def ablation_setting_notes(out: str, runs: dict) -> list[str]:
    """A sentence for every ablation run whose model differs from its seed's full run in more than its switch (the
    defaults changed after it ran): its row then compares two models that differ in several ways."""
    notes = []
    for key in sorted(k for k in runs if k.startswith("ablation_")):
        for seed, doc in sorted(runs[key].items()):
            full, variant = model_settings(out, seed, "pdefm"), model_settings(out, seed, key)
            if full is None or variant is None:
                continue
            # Runs made before a key was renamed name it as it was then (`decoder`, today `decoder_type`).
            switched = {RENAMED_KEYS.get(k, (k,))[0] for k in doc.get("overrides", {})}
            # A key active in only one of the two is a consequence of the switch (the FNO decoder's wall padding).
            differ = sorted(k for k in set(full) & set(variant) if k not in switched and full[k] != variant[k])
            if differ:
                notes.append(f"- {key.replace('ablation_', '').replace('_', ' ')} (seed {seed}) was trained before the "
                             f"full model's settings changed: besides its switch it differs in "
                             + ", ".join(f"`{k}` ({variant.get(k)!r} against the full model's {full.get(k)!r})" for k in differ)
                             + ". Its row is not a like-for-like comparison until it is rerun (delete its folder and "
                             f"run `--parts ablations --ablations {key.replace('ablation_', '')}`).")
    return notes


def ablation_verdicts(runs: dict, names: list[str]) -> list[str]:
    """One sentence per ablation: its mean one-step and rollout VRMSE against the full model's on the same seeds, and
    whether the difference exceeds the seed spread (with one seed there is no spread to compare it with)."""
    out = []
    full = runs.get("pdefm", {})
    for key in sorted(k for k in runs if k.startswith("ablation_")):
        seeds = sorted(s for s in runs[key] if s in full)
        if not seeds:
            continue

        def means(metric, run):
            return [float(np.mean([metric(run[s], n) for n in names])) for s in seeds]

        variant, reference = means(one_step, runs[key]), means(one_step, full)
        roll, roll_reference = means(rollout_window, runs[key]), means(rollout_window, full)
        sentence = (f"- {key.replace('ablation_', '').replace('_', ' ')}: mean one-step VRMSE {np.mean(variant):.4f}, "
                    f"{_change(np.mean(variant), np.mean(reference))} than the full model's {np.mean(reference):.4f}; "
                    f"rollout {HEADLINE_WINDOW} {np.mean(roll):.4f} against {np.mean(roll_reference):.4f} "
                    f"({_change(np.mean(roll), np.mean(roll_reference))}); seed{'s' if len(seeds) > 1 else ''} "
                    f"{', '.join(map(str, seeds))}")
        if len(seeds) == 1:
            sentence += ": one seed, so no spread to weigh the difference against."
        else:
            spread = max(float(np.std(variant, ddof=1)), float(np.std(reference, ddof=1)))
            bigger = abs(np.mean(variant) - np.mean(reference)) > spread
            sentence += (f": the difference is {'larger' if bigger else 'smaller'} than the seed spread "
                         f"(largest sample sd {spread:.4f}).")
        out.append(sentence)
    return out


def backbone_verdict(runs: dict) -> str | None:
    """Attention against Mamba on the backbone dataset: accuracy, seconds per step and step memory, as ratios."""
    mamba, attention = runs.get("backbone_mamba", {}), runs.get("backbone_attention", {})
    seeds = sorted(set(mamba) & set(attention))
    if not seeds:
        return None
    name = next(iter(mamba[seeds[0]]["datasets"]))

    def mean(run, value):
        return float(np.mean([value(run[s]) for s in seeds]))

    error_m, error_a = mean(mamba, lambda d: one_step(d, name)), mean(attention, lambda d: one_step(d, name))
    speed = mean(attention, lambda d: d["seconds_per_step"]) / mean(mamba, lambda d: d["seconds_per_step"])
    memory = mean(attention, lambda d: d["memory"]["step_mb"]) / mean(mamba, lambda d: d["memory"]["step_mb"])
    return (f"- On `{name}` attention's one-step VRMSE ({error_a:.4f}) is {_change(error_a, error_m)} than Mamba's "
            f"({error_m:.4f}), at {speed:.2f}x Mamba's seconds per training step and {memory:.2f}x its step memory "
            f"(seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}).")


def data_grids(data: str | None, names: list[str]) -> str | None:
    """"name 32x32, ..." from the test splits' metadata; None when the data is not at hand."""
    if not data or not all(os.path.isdir(os.path.join(data, n)) for n in names):
        return None
    grids = {name: split_resolution(os.path.join(data, name), "test") for name in names}
    return ", ".join(f"{name} {'x'.join(map(str, grid))}" for name, grid in grids.items())


def baseline_minutes_per_dataset(baseline_minutes: float | None, budget_minutes: float, n_datasets: int) -> float:
    """Each baseline's training minutes on each dataset: as asked, or PDE-FM's budget split evenly (equal compute)."""
    return baseline_minutes or budget_minutes / n_datasets


def compute_sentence(settings: dict, n_datasets: int, runs: dict | None = None) -> str:
    """PDE-FM's budget against the baselines' total, from the settings (and, under a step budget, the counted
    operations the runs recorded)."""
    if settings.get("budget_steps"):
        totals = [d["train_flops"]["total"] for d in (runs or {}).get("pdefm", {}).values() if d.get("train_flops")]
        counted = f" ({np.mean(totals) / 1e12:.1f} TFLOP per seed, counted)" if totals else ""
        return (f"One model for every dataset against one model per dataset: PDE-FM trains "
                f"{settings['budget_steps']} steps on all {n_datasets} datasets{counted}; each baseline trains on each "
                f"dataset the whole steps that 1/{n_datasets} of that count pays for at its own counted cost per step "
                f"(equal total compute, counted rather than timed; `pdefm.studies.compute`).")
    per_dataset = baseline_minutes_per_dataset(settings.get("baseline_minutes"), settings["budget_minutes"], n_datasets)
    total = per_dataset * n_datasets
    relation = ("the same total compute" if abs(total - settings["budget_minutes"]) < 1e-9 else
                f"{total / settings['budget_minutes']:.2f}x PDE-FM's compute")
    return (f"One model for every dataset against one model per dataset: PDE-FM trains {settings['budget_minutes']:g} "
            f"minutes on all {n_datasets} datasets, each baseline {per_dataset:g} minutes per dataset, {total:g} in all "
            f"({relation}).")


def budget_phrase(settings: dict) -> str:
    """How long each pretraining ran: steps (compute counted) or minutes of wall-clock."""
    if settings.get("budget_steps"):
        return f"**{settings['budget_steps']} optimizer steps** (batch 8)"
    return f"**{settings['budget_minutes']} minutes of wall-clock**"


def alone_table(runs: dict, names: list[str]) -> tuple[str, list[str]] | None:
    """Each dataset in the mixture (the `pdefm` run) against the same model trained on it alone at the mixture's
    compute per dataset (`alone_<name>` runs), one-step and rollout 6:12, with what the mixture gave each dataset
    (seconds of the steps that drew it, windows drawn); and the verdicts against the 5% floor."""
    if "pdefm" not in runs or not any(f"alone_{n}" in runs for n in names):
        return None
    lines = ["| dataset | one-step mixed | one-step alone | mixed / alone | rollout 6:12 mixed | rollout 6:12 alone | "
             "mixture's seconds on it | mixture's windows | alone's windows |", "|" + "---|" * 9]
    verdict = []
    for name in names:
        alone = runs.get(f"alone_{name}")
        if not alone:
            continue
        seeds = sorted(set(alone) & set(runs["pdefm"]))
        if not seeds:
            continue
        mixed = [one_step(runs["pdefm"][s], name) for s in seeds]
        alone_values = [one_step(alone[s], name) for s in seeds]
        ratio = float(np.mean(mixed) / np.mean(alone_values))
        first_mixed, first_alone = runs["pdefm"][seeds[0]], alone[seeds[0]]
        spent = (first_mixed.get("time_spent") or {}).get("datasets", {}).get(name)
        windows = (first_mixed.get("train_samples") or {}).get(name)
        lines.append(f"| {name} | {mean_sd_cell(mixed)} | {mean_sd_cell(alone_values)} | {ratio:.2f} | "
                     f"{mean_sd_cell([rollout_window(runs['pdefm'][s], name) for s in seeds])} | "
                     f"{mean_sd_cell([rollout_window(alone[s], name) for s in seeds])} | "
                     f"{'-' if spent is None else f'{spent:.0f}'} | {'-' if windows is None else windows} | "
                     f"{first_alone.get('train_samples') or '-'} |")
        verdict.append(f"{name}: in the mixture {100 * (ratio - 1):+.1f}% against alone one step ahead "
                       f"({'within' if ratio <= 1.05 else 'misses'} the floor of +5%).")
    return "\n".join(lines), verdict


def rollout_starts(runs: dict) -> str:
    """Where the runs' rollouts started, read from their evaluation files: "N starts spread over the M test
    trajectories" per dataset (runs made before several starts: the first frames of every test trajectory)."""
    counts = sorted({(r["rollout"].get("starts"), r["rollout"].get("trajectories")) for seeds in runs.values()
                     for doc in seeds.values() for r in doc["datasets"].values()}, key=str)
    if all(starts in (None, trajectories) for starts, trajectories in counts):
        return "the first frames of every test trajectory"
    return "starts spread over every test trajectory (" + ", ".join(f"{s} over {t}" for s, t in counts) + " per dataset)"


def sizes_present(runs: dict) -> list[str]:
    """The baseline sizings that have runs (`default`, `matched`): what the document's columns hold, whatever the
    last process that shared `--out` listed in its settings."""
    keys = [key for key, _ in MAIN_RUNS if key in runs and key != "pdefm" and key not in YARDSTICKS]
    return [sizing for sizing, present in (("default", any(not k.endswith("_matched") for k in keys)),
                                           ("matched", any(k.endswith("_matched") for k in keys))) if present]


def seeds_per_model(runs: dict) -> str:
    """`; PDE-FM, FNO: seeds 0, 1, 2; U-Net: seed 0` where the main runs were not all made with the same seeds,
    else nothing: a cell without a ± is then one seed's number, not a mean."""
    by_seeds: dict[tuple[int, ...], list[str]] = {}
    for key, label in MAIN_RUNS:
        if key in runs and key not in YARDSTICKS:
            by_seeds.setdefault(tuple(sorted(runs[key])), []).append(label)
    if len(by_seeds) < 2:
        return ""
    return "; " + "; ".join(f"{', '.join(labels)}: seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"
                            for seeds, labels in sorted(by_seeds.items(), key=lambda item: -len(item[0])))


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
    for path in [os.path.join(out, "benchmark_settings.json"), *glob.glob(os.path.join(glob.escape(out), "seed*", "*", "evaluation.json"))]:
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
            f"- Budget: PDE-FM (`tiny` preset, `{settings['suite']}` config) trains on all {len(names)} datasets at "
            f"once for {budget_phrase(settings)} per seed; each baseline is trained per "
            "dataset (The Well's recipe: 4 input steps, "
            + ("MSE on the change over the step scaled by its statistics (The Well's `DeltaWellDataset` target; "
               "PDE-FM predicts a change too)" if settings.get("baseline_target") == "delta" else
               "next-step MSE on z-scored fields")
            + ", AdamW 1e-3, warm-up and cosine) for "
            + (f"**{settings['baseline_minutes']} minutes per dataset**." if settings.get("baseline_minutes") else
               "the whole steps that an even share per dataset of PDE-FM's training operations pays for at the "
               "baseline's own cost per step, so every model gets the same total compute, counted (matrix products, "
               "convolutions and FFTs of one training step, forward and backward, by torch's `FlopCounterMode`; "
               "elementwise operations are not counted for any model), not timed." if settings.get("budget_steps") else
               "the same budget split evenly over the datasets, so every model gets the same total compute.")
            + " Learning-rate schedules decay over the budget.",
            "- Baselines are the_well 1.2.0's own `UNetConvNext`, `UNetClassic` and `FNO` (neuraloperator 0.3.0), "
            + {"default": "at their constructors' default sizes.",
               "matched": "with the width whose parameter count is closest to PDE-FM's on each dataset."}.get(
                   " ".join(sizes_present(runs) or settings.get("baseline_sizes", ["default"])),
                   "at their constructors' default sizes and, as \"(PDE-FM's size)\", with the width whose parameter "
                   "count is closest to PDE-FM's on each dataset (equal compute and equal capacity)."),
        ]
    else:
        parts += [f"- Budget: {budget_phrase(settings)} of training for each pretraining "
                  f"(`tiny` preset, `{settings['suite']}` config). Only the parts listed below were run."]
    grids = data_grids(settings.get("data"), names)
    if grids:
        parts += [f"- Data: `{settings['data']}`; grids: {grids}."]
    parts += [
        f"- Seeds: {', '.join(str(s) for s in seeds)} (table cells: mean ± sample standard deviation over seeds"
        + seeds_per_model(runs) + ").",
        f"- Evaluation on the test splits, on denormalised fields: one-step VRMSE over {settings['eval_batches']} batches "
        f"of 8 windows spread evenly over each split; rollouts from {rollout_starts(runs)}, fed back for "
        f"{settings['rollout_steps']} steps, VRMSE averaged over the starts and over The Well's windows of steps.",
        "",
    ]
    if "pdefm" in runs:
        table, one_step_means = comparison_table(runs, names, one_step, one_step_persistence)
        parts += ["## One-step VRMSE (test split)", "", table, "", *verdicts(one_step_means, names, "one-step VRMSE"), ""]
        window_means = {}
        for window in ROLLOUT_WINDOWS:
            table, window_means[window] = comparison_table(runs, names, rollout_metric(window),
                                                           rollout_persistence(window))
            parts += [f"## Rollout VRMSE, steps {window}", "", table, "",
                      *verdicts(window_means[window], names, f"rollout VRMSE {window}"), ""]
        first = next(iter(runs["pdefm"].values()))
        floor = {n: one_step_persistence(first, n) for n in names}
        late_floor = {n: rollout_persistence("13:30")(first, n) for n in names}
        parts += ["## Targets", "", *targets(one_step_means, window_means, floor, names, late_floor), ""]
        parts += [
                  "## What each model did within the budget", "", budget_table(runs), "",
                  compute_sentence(settings, len(names), runs) + " The comparison says how far each approach gets for "
                  "this compute, not how good each architecture can be once converged (the learning curves below "
                  "show whether a model was still improving). Persistence (the last input frame) is the floor any "
                  "useful model must beat.", ""]
        # Figures are named after the document, so that two documents in one folder never draw over each other's.
        prefix = os.path.splitext(os.path.basename(doc_path))[0]
        figure = os.path.join(os.path.dirname(doc_path) or ".", f"{prefix}_rollout.png")
        seed = main_seeds[0]
        curves = {n: {label: runs[key][seed]["datasets"][n]["rollout"]["vrmse_per_step"]
                      for key, label in MAIN_RUNS if key in runs and seed in runs[key]} for n in names}
        plot_rollout_curves(figure, curves, f"VRMSE against rollout step (test, seed {seed})")
        parts += [f"![VRMSE against rollout step]({prefix}_rollout.png)", "", "## Learning curves", "",
                  "Validation one-step VRMSE against training seconds (each baseline's clock is its run on that "
                  "dataset; PDE-FM's covers all datasets at once), persistence dashed.", ""]
        parts += [f"![learning curves {f}]({f})" for f in plot_learning_curves(doc_dir, runs, names, seed, prefix)] + [""]
        table = equal_samples_table(runs, names, seed)
        if table:
            parts += ["## At equal samples", "",
                      "Validation one-step VRMSE of every model after the same number of training samples of each "
                      "dataset: as many as PDE-FM drew from it within its budget (second column), read from the "
                      f"learning curves (seed {seed}; a baseline's value is its last curve point at or below that "
                      "count, \"-\" where its budget ended first).", "", table, ""]
        parts += ["## Fine scales over a rollout", "",
                  "Energy of the forecast over the truth's per wavenumber band (The Well's low/mid/high bins), mean over "
                  f"datasets and test trajectories, seed {seed}: 1 keeps the scale, below 1 the forecast smooths it "
                  "away, above 1 it adds energy there.", "", energy_table(runs, names, seed), ""]
    if any(k.startswith("ablation_") for k in runs):
        parts += ["## Ablations (same budget)", "", "Each variant switches one component of PDE-FM off or replaces it "
                  "(config switches of the model); the full model's row is the main run of the same seed. A cheaper "
                  "variant fits more steps into the budget (last column).", "", ablation_table(runs, names), "",
                  *ablation_verdicts(runs, names), ""]
        notes = ablation_setting_notes(out, runs)
        if notes:
            parts += [*notes, ""]
    if any(k.startswith("backbone_") for k in runs):
        doc = next(iter(next(v for k, v in runs.items() if k.startswith("backbone_")).values()))
        name = next(iter(doc["datasets"]))
        parts += [f"## Mamba against attention on `{name}`", "",
                  f"PDE-FM trained on `{name}` alone with each backbone for the same budget (the paper's experiment); "
                  f"memory: peak resident size of a fresh process training 2 steps of batch 8 on the "
                  f"{'x'.join(map(str, doc['resolution']))} grid, and the part above what it held before the first step.",
                  "", backbone_table(runs), ""]
        verdict = backbone_verdict(runs)
        if verdict:
            parts += [verdict, ""]
    alone = alone_table(runs, names)
    if alone:
        table, lines = alone
        parts += ["## Alone against in the mixture", "",
                  "PDE-FM (the same preset and config) trained on each dataset alone for the mixture's budget split "
                  "evenly over the datasets (equal compute per dataset), against the mixture's model on that "
                  "dataset; the last columns say what the mixture gave each dataset: the wall-clock of the training "
                  "steps that drew it and the windows it drew. A mixture that learns a dataset worse than it learns "
                  "alone at equal compute transfers negatively.", "", table, "", *[f"- {line}" for line in lines], ""]
    check_document_path(doc_path, "# Benchmark:")
    with open(doc_path, "w") as f:
        f.write("\n".join(parts))
    return doc_path
