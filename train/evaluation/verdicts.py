"""What a dataset's evaluation says about the model, in words a reader can check against the figures.

A dataset is learned only when the model beats persistence and the least-squares linear stencil one step ahead, and
stays below persistence at every rollout step (mean over the rollout's starts). Beside that: which fields it barely
moves (frozen: predicted change under half the true one), and from which rollout step its VRMSE reaches 1, what
predicting each field's spatial mean scores (the forecast has washed out).
"""

from __future__ import annotations

import math
from typing import Any

FROZEN_BELOW = 0.5  # predicted change std over the true one (median over windows)
WASHED_OUT_FROM = 1.0  # rollout VRMSE: no better than the spatial mean of each field
STENCIL = "linear stencil"


def dataset_verdict(one_step: dict[str, Any], rollout: dict[str, Any] | None = None,
                    yardsticks: dict[str, dict[str, Any]] | None = None,
                    field_names: list[str] | None = None) -> dict[str, Any]:
    """The verdict of one dataset from its one-step result, its rollout (`vrmse_per_step`,
    `persistence_vrmse_per_step`) and its yardsticks' (`{label: {"vrmse": ..., "vrmse_per_step": ...}}`); a part
    whose measurement is missing is None."""
    names = field_names or one_step.get("field_names") or [f"channel {i}" for i in
                                                           range(len(one_step.get("vrmse_per_field", [])))]
    ratios = one_step.get("change_ratio_per_field", [])
    stencil = (yardsticks or {}).get(STENCIL)
    verdict: dict[str, Any] = {
        "beats_persistence": one_step["vrmse"] < one_step["persistence_vrmse"],
        "beats_linear_stencil": one_step["vrmse"] < stencil["vrmse"] if stencil else None,
        "below_persistence_every_step": None, "washes_out_from_step": None,
        "frozen_fields": [n for n, r in zip(names, ratios) if not math.isnan(r) and r < FROZEN_BELOW],
        "stencil_diverged_at_step": stencil.get("diverged_at_step") if stencil else None,
    }
    if rollout:
        model, reference = rollout["vrmse_per_step"], rollout["persistence_vrmse_per_step"]
        verdict["below_persistence_every_step"] = all(m < p for m, p in zip(model, reference))
        washed = [step for step, value in enumerate(model, start=1) if not value < WASHED_OUT_FROM]
        verdict["washes_out_from_step"] = washed[0] if washed else None
    parts = (verdict["beats_persistence"], verdict["beats_linear_stencil"], verdict["below_persistence_every_step"])
    verdict["learned"] = all(part is not False for part in parts) and None not in parts
    return verdict


def verdict_sentence(name: str, verdict: dict[str, Any], steps: int | None = None) -> str:
    """One line for a report: learned or not, and why."""
    reasons = []
    if not verdict["beats_persistence"]:
        reasons.append("does not beat persistence one step ahead")
    if verdict["beats_linear_stencil"] is False:
        reasons.append("does not beat the linear stencil one step ahead")
    if verdict["below_persistence_every_step"] is False:
        reasons.append("rises above persistence during the rollout")
    head = f"- {name}: " + ("learned" if verdict["learned"] else "**not learned**")
    if verdict["learned"] is False and None in (verdict["beats_linear_stencil"], verdict["below_persistence_every_step"]):
        head += " (not every yardstick was measured)"
    notes = reasons[:]
    if verdict["frozen_fields"]:
        notes.append(f"frozen fields (predicted change under {FROZEN_BELOW:g} of the true one): "
                     + ", ".join(verdict["frozen_fields"]))
    if verdict["washes_out_from_step"] is not None:
        notes.append(f"VRMSE >= {WASHED_OUT_FROM:g} from rollout step {verdict['washes_out_from_step']} (no better "
                     "than each field's mean)")
    if verdict["stencil_diverged_at_step"] is not None:
        notes.append(f"the linear stencil's rollout blows up at step {verdict['stencil_diverged_at_step']}")
    return head + (": " + "; ".join(notes) if notes else "") + "."
