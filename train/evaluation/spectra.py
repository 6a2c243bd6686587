"""Energy per wavenumber band over a rollout, and where it is off: what a forecast smooths away and what it adds
(patch-grid tiles, noise) that the truth does not have. Read from `evaluate_rollout`'s `band_energy`: the energy of
prediction and truth per band of |k| / k_Nyquist (`metrics.NYQUIST_BANDS`), per step and field, means over starts."""

from __future__ import annotations

from typing import Any

import numpy as np

SPECTRUM_STEPS = (1, 6, 12)
# A band holding at least this share of the truth's energy must keep it within OFF_BY of the truth's.
ENERGY_SHARE_FLOOR = 0.01
OFF_BY = 2.0
# Where the truth holds less, a forecast may not add more than this many times the truth's energy.
ADDED_ENERGY_LIMIT = 10.0


def band_ratios(band_energy: dict[str, Any], step: int) -> tuple[np.ndarray, np.ndarray]:
    """At rollout `step` (1-based): the prediction's energy over the truth's and the truth's share of its energy,
    each `[bands, C]`."""
    predicted = np.asarray(band_energy["predicted"][step - 1], dtype=np.float64)
    true = np.asarray(band_energy["true"][step - 1], dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(true > 0, predicted / true, np.where(predicted > 0, np.inf, 1.0))
        share = true / np.maximum(true.sum(axis=0, keepdims=True), 1e-300)
    return ratio, share


def spectral_flags(rollout: dict[str, Any], field_names: list[str]) -> list[str]:
    """One line per field, band and step (of `SPECTRUM_STEPS` the rollout reaches) whose energy is off by more than
    `OFF_BY` where the truth has at least `ENERGY_SHARE_FLOOR` of its energy, or more than `ADDED_ENERGY_LIMIT` times
    the truth's where it has less."""
    band_energy = rollout.get("band_energy")
    if not band_energy:
        return []
    bands, flags = band_energy["bands"], []
    for step in (s for s in SPECTRUM_STEPS if s <= len(band_energy["true"])):
        ratio, share = band_ratios(band_energy, step)
        for c, field in enumerate(field_names):
            for b, band in enumerate(bands):
                r, s = ratio[b, c], share[b, c]
                if s >= ENERGY_SHARE_FLOOR and not 1 / OFF_BY <= r <= OFF_BY:
                    flags.append(f"{field}, band {band} k_Nyquist, step {step}: {r:.3g}x the truth's energy "
                                 f"(a band holding {s:.2g} of it)")
                elif s < ENERGY_SHARE_FLOOR and r > ADDED_ENERGY_LIMIT:
                    flags.append(f"{field}, band {band} k_Nyquist, step {step}: adds {r:.3g}x the truth's energy "
                                 f"where the truth holds {s:.2g} of it")
    return flags


def spectra_table(results: dict[str, Any]) -> str:
    """Per dataset and field, the prediction's energy over the truth's in each band at `SPECTRUM_STEPS`."""
    first = next((r["rollout"]["band_energy"] for r in results.values() if r.get("rollout", {}).get("band_energy")),
                 None)
    if first is None:
        return ""
    bands = first["bands"]
    head = ["dataset", "field", *[f"step {s}: {' / '.join(bands)}" for s in SPECTRUM_STEPS]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, result in sorted(results.items()):
        band_energy = result.get("rollout", {}).get("band_energy")
        if not band_energy:
            continue
        names = result.get("field_names") or [f"channel {c}" for c in range(len(band_energy["true"][0][0]))]
        ratios = {s: band_ratios(band_energy, s)[0] for s in SPECTRUM_STEPS if s <= len(band_energy["true"])}
        for c, field in enumerate(names):
            cells = [" / ".join(f"{r:.2g}" for r in ratios[s][:, c]) if s in ratios else "-" for s in SPECTRUM_STEPS]
            lines.append(f"| {name} | {field} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


SPECTRA_NOTE = (f"Energy of the prediction over the truth's per band of |k| / k_Nyquist, at rollout steps "
                f"{', '.join(map(str, SPECTRUM_STEPS))} (means over starts): 1 keeps a scale's energy, below 1 smooths "
                f"it away, above 1 adds energy there. Flagged: a band off by more than {OFF_BY:g}x where the truth "
                f"holds at least {ENERGY_SHARE_FLOOR:.0%} of its energy, or above {ADDED_ENERGY_LIMIT:g}x where it "
                "holds less.")
