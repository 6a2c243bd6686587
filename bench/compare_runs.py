"""Pretraining runs side by side, read from their `report.json`: one-step test VRMSE per dataset (persistence in
the header), the mean of VRMSE over persistence, and how many datasets stay below persistence at every rollout step
(runs made with `report_rollout_steps`). Every number is read from the files; nothing is trained here.

Run: python bench/compare_runs.py [--change | --valid] LABEL=OUTPUT_DIR [LABEL=OUTPUT_DIR ...]
(the last two columns, from runs whose report has the linear yardsticks: datasets whose one-step VRMSE is below the
least-squares linear stencil's, and datasets learned: below persistence and the stencil one step ahead and below
persistence at every rollout step)
(`--change`: instead, per dataset and field, the predicted change's std over the true change's, median over windows.
`--spectra`: instead, per dataset, rollout VRMSE over steps 6-12 and the prediction's energy over the truth's in the
high wavenumber band at rollout steps 1, 6 and 12 (means over starts), from each run's `evaluation/evaluation.json`:
does a change remove the energy a rollout piles up at small scales?
`--valid`: instead, per dataset, the last validation VRMSE over persistence's on the same windows beside the report's
test VRMSE over persistence's: does validation rank each model against persistence as test does?)
"""

from __future__ import annotations

import json
import os
import sys


def load(folder: str) -> dict:
    with open(os.path.join(folder, "report.json")) as f:
        return json.load(f)


def table(runs: dict[str, dict]) -> str:
    first = next(iter(runs.values()))["datasets"]
    names = sorted(first)
    head = ["run", "steps", "train s", *[f"{n} ({first[n]['persistence_vrmse']:.4f})" for n in names],
            "mean / persistence", "datasets >=30% below persistence", "below persistence at every rollout step",
            "below the linear stencil one step", "learned"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, report in runs.items():
        data = report["datasets"]
        ratios = {n: data[n]["vrmse"] / data[n]["persistence_vrmse"] for n in names}
        rolled = [n for n in names if "rollout" in data[n]]
        below = [n for n in rolled if all(m < p for m, p in zip(data[n]["rollout"]["vrmse_per_step"],
                                                                data[n]["rollout"]["persistence_vrmse_per_step"]))]
        lines.append("| " + " | ".join([
            label, str(report["steps"]), f"{report['train_seconds']:.0f}", *[f"{data[n]['vrmse']:.4f}" for n in names],
            f"{sum(ratios.values()) / len(names):.3f}", f"{sum(r <= 0.7 for r in ratios.values())} of {len(names)}",
            f"{len(below)} of {len(rolled)}" if rolled else "-", *verdict_counts(data, names)]) + " |")
    return "\n".join(lines)


def verdict_counts(data: dict, names: list[str]) -> list[str]:
    """Datasets below the linear stencil one step ahead, and datasets learned (`verdict` of the report), or "-" for
    a run made before the report had them."""
    judged = [n for n in names if "verdict" in data[n]]
    if len(judged) < len(names):
        return ["-", "-"]
    stencil = sum(bool(data[n]["verdict"]["beats_linear_stencil"]) for n in names)
    learned = sum(bool(data[n]["verdict"]["learned"]) for n in names)
    return [f"{stencil} of {len(names)}", f"{learned} of {len(names)}"]


def change_table(runs: dict[str, dict]) -> str:
    """Per dataset and field (rows), each run's predicted change std over the true change's (`change_ratio_per_field`)."""
    labels = list(runs)
    lines = ["| dataset | field | " + " | ".join(labels) + " |", "|" + "---|" * (2 + len(labels))]
    first = next(iter(runs.values()))["datasets"]
    for name in sorted(first):
        fields = first[name].get("field_names") or [f"channel {i}" for i in range(len(first[name]["vrmse_per_field"]))]
        for i, field_name in enumerate(fields):
            cells = [f"{runs[label]['datasets'][name]['change_ratio_per_field'][i]:.2f}" for label in labels]
            lines.append(f"| {name} | {field_name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def valid_table(folders: dict[str, str], runs: dict[str, dict]) -> str:
    """Per dataset (rows), each run's last validation VRMSE / persistence and its test VRMSE / persistence."""
    labels = list(runs)
    head = ["dataset", *[f"{label} {split}" for label in labels for split in ("valid", "test")]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    curves = {}
    for label, folder in folders.items():
        with open(os.path.join(folder, "validation_curve.json")) as f:
            curves[label] = json.load(f)
    for name in sorted(next(iter(runs.values()))["datasets"]):
        cells = []
        for label in labels:
            curve, test = curves[label], runs[label]["datasets"][name]
            cells += [f"{curve['points'][-1]['valid_vrmse'][name] / curve['persistence'][name]:.2f}",
                      f"{test['vrmse'] / test['persistence_vrmse']:.2f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def spectra_table(folders: dict[str, str]) -> str:
    evaluations = {}
    for label, folder in folders.items():
        with open(os.path.join(folder, "evaluation", "evaluation.json")) as f:
            evaluations[label] = json.load(f)["datasets"]
    names = sorted(next(iter(evaluations.values())))
    lines = ["| dataset | run | rollout 6:12 VRMSE | high-band energy ratio, step 1 | step 6 | step 12 |",
             "|---|---|---|---|---|---|"]
    for name in names:
        for label, data in evaluations.items():
            rollout = data[name]["rollout"]
            high = rollout["energy_ratio_per_step"]["high"]
            window = rollout["vrmse_windows"].get("6:12")
            cells = [f"{window:.4f}" if window is not None else "-"]
            cells += [f"{high[i]:.3g}" if len(high) > i else "-" for i in (0, 5, 11)]
            lines.append(f"| {name} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    change, valid, spectra = "--change" in argv, "--valid" in argv, "--spectra" in argv
    argv = [a for a in argv if a not in ("--change", "--valid", "--spectra")]
    runs, folders = {}, {}
    for item in argv:
        label, sep, folder = item.partition("=")
        if not sep:
            print(f"error: {item!r}: expected LABEL=OUTPUT_DIR", file=sys.stderr)
            return 2
        folders[label] = folder
        if not spectra:  # the spectra read the evaluation alone: a model evaluated without pretraining has no report
            runs[label] = load(folder)
    if not folders:
        print(__doc__)
        return 2
    print(change_table(runs) if change else valid_table(folders, runs) if valid else spectra_table(folders) if spectra
          else table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
