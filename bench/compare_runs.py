"""Pretraining runs side by side, read from their `report.json`: one-step test VRMSE per dataset (persistence in
the header), the mean of VRMSE over persistence, and how many datasets stay below persistence at every rollout step
(runs made with `report_rollout_steps`). Every number is read from the files; nothing is trained here.

Run: python bench/compare_runs.py [--change] LABEL=OUTPUT_DIR [LABEL=OUTPUT_DIR ...]
(`--change`: instead, per dataset and field, the predicted change's std over the true change's, median over windows.)
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
            "mean / persistence", "datasets >=30% below persistence", "below persistence at every rollout step"]
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
            f"{len(below)} of {len(rolled)}" if rolled else "-"]) + " |")
    return "\n".join(lines)


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


def main(argv: list[str]) -> int:
    change = "--change" in argv
    argv = [a for a in argv if a != "--change"]
    runs = {}
    for item in argv:
        label, sep, folder = item.partition("=")
        if not sep:
            print(f"error: {item!r}: expected LABEL=OUTPUT_DIR", file=sys.stderr)
            return 2
        runs[label] = load(folder)
    if not runs:
        print(__doc__)
        return 2
    print(change_table(runs) if change else table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
