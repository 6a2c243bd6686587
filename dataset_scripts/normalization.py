"""Normalisation statistics of a dataset (`stats.yaml`): reading, per-channel (de)normalisation, and computing them.

`stats.yaml` holds, per field (core name, e.g. `velocity`), `mean`, `std`, `rms` and their `_delta` versions (of the
one-step increments), computed on the train split; tensor fields hold nested lists, one entry per component. As in
The Well, z-score is `(x - mean) / max(std, min_std)` and RMS is `x / max(rms, min_std)`.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import yaml

from pdefm.runtime.safe_yaml import YAMLBoundsError, load_yaml

from .well_format import FieldInfo, not_a_regular_file

MIN_STD = 1e-4
NORMALIZATIONS = ("zscore", "rms")


# Largest magnitude of a statistic: its square must stay finite in float32 (max about 3.4e38).
MAX_STATISTIC = 1e18


class StatsError(ValueError):
    """A `stats.yaml` that lacks what the data needs; names the file and the missing key or field."""


class WellNormalizer:
    """Per-channel normalisation of a dataset's fields, from its `stats.yaml`.

    `normalize(x, kind)` / `denormalize(x, kind)` take channels-last arrays or tensors whose last axis holds the
    dataset's variable (`kind="fields"`) or constant (`kind="constant_fields"`) channels.
    """

    def __init__(self, stats: dict[str, Any], variable: list[FieldInfo], constant: list[FieldInfo],
                 normalization: str = "zscore", min_std: float = MIN_STD, source: str = "stats.yaml"):
        if normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
        self.normalization, self.min_std, self.source = normalization, min_std, source
        keys = ("mean", "std") if normalization == "zscore" else ("rms",)
        for key in keys:
            if key not in stats:
                raise StatsError(f"{source}: missing key '{key}' (needed for {normalization} normalisation)")
        self.shift: dict[str, np.ndarray] = {}
        self.scale: dict[str, np.ndarray] = {}
        for kind, infos in (("fields", variable), ("constant_fields", constant)):
            self.shift[kind], self.scale[kind] = self._shift_and_scale(stats, infos, "")
        # The same for the change of the variable fields over one step (`*_delta` keys), the target of The Well's
        # `DeltaWellDataset`; None when stats.yaml has no such keys.
        self.delta_shift = self.delta_scale = None
        if all(key + "_delta" in stats and all(info.name in stats[key + "_delta"] for info in variable) for key in keys):
            self.delta_shift, self.delta_scale = self._shift_and_scale(stats, variable, "_delta")

    def _shift_and_scale(self, stats: dict, infos: list[FieldInfo], suffix: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-channel shift and scale of `infos` from the keys `mean`/`std` (z-score) or `rms` with `suffix`; the
        scale floored at `min_std`, float32 arithmetic as The Well's loader normalises in float32."""
        keys = ("mean", "std") if self.normalization == "zscore" else ("rms",)
        shifts, scales = [], []
        for info in infos:
            for key in keys:
                if info.name not in stats[key + suffix]:
                    raise StatsError(f"{self.source}: '{key + suffix}' has no entry for field '{info.name}'")
            if self.normalization == "zscore":
                shifts.append(self._per_channel(stats, "mean" + suffix, info))
                scales.append(np.maximum(self._per_channel(stats, "std" + suffix, info), self.min_std))
            else:
                shifts.append(np.zeros(len(info.channels)))
                scales.append(np.maximum(self._per_channel(stats, "rms" + suffix, info), self.min_std))
        if not shifts:
            return np.zeros(0, np.float32), np.ones(0, np.float32)
        return np.concatenate(shifts).astype(np.float32), np.concatenate(scales).astype(np.float32)

    def _per_channel(self, stats: dict, key: str, info: FieldInfo) -> np.ndarray:
        try:
            value = np.asarray(stats[key][info.name], dtype=np.float64)
        except (TypeError, ValueError):
            raise StatsError(f"{self.source}: '{key}' of field '{info.name}' is {stats[key][info.name]!r}; expected "
                             "numbers") from None
        try:
            value = np.broadcast_to(value, _component_shape(info)).reshape(-1)
        except ValueError:
            raise StatsError(
                f"{self.source}: '{key}' of field '{info.name}' has shape {value.shape}; expected a number or "
                f"shape {_component_shape(info)}"
            ) from None
        if not np.isfinite(value).all():
            raise StatsError(f"{self.source}: '{key}' of field '{info.name}' is not finite ({value.tolist()}); "
                             "recompute it from data without NaN/Inf (`python -m pdefm.data.the_well check` finds them)")
        if key in ("std", "rms") and (value < 0).any():
            raise StatsError(f"{self.source}: '{key}' of field '{info.name}' is negative ({value.tolist()}); expected >= 0")
        if (np.abs(value) > MAX_STATISTIC).any():
            # float32 metrics square values: a scale above this overflows to inf in VRMSE, reports and losses.
            raise StatsError(f"{self.source}: '{key}' of field '{info.name}' is {value.tolist()}, beyond {MAX_STATISTIC:g} "
                             "(float32 squares of it overflow); recompute it with `pdefm stats DATASET_DIR`, or "
                             "rescale the data")
        return value

    @classmethod
    def from_file(cls, path: str, variable: list[FieldInfo], constant: list[FieldInfo], normalization: str = "zscore",
                  min_std: float = MIN_STD, fs=None) -> "WellNormalizer":
        opener = fs.open if fs is not None else open
        local = fs is None or "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
        problem = not_a_regular_file(path) if local and os.path.exists(path) else None
        if problem:  # a FIFO would block the open forever
            raise StatsError(f"{path}: {problem}; expected a YAML file")
        try:
            with opener(path, "r") as f:
                stats = load_yaml(f, path)
        except FileNotFoundError:
            raise StatsError(f"{path}: no stats.yaml; compute it with `python -m pdefm.data.the_well stats DATASET_DIR`") from None
        except YAMLBoundsError as error:
            raise StatsError(f"{error}; recompute it with `python -m pdefm.data.the_well stats DATASET_DIR`") from None
        except yaml.YAMLError as error:
            raise StatsError(f"{path}: not valid YAML ({str(error).splitlines()[0]}); recompute it with "
                             "`python -m pdefm.data.the_well stats DATASET_DIR`") from None
        if not isinstance(stats, dict):
            raise StatsError(f"{path}: expected a mapping of statistics, got {type(stats).__name__}")
        return cls(stats, variable, constant, normalization, min_std, source=path)

    def _stats(self, x, kind: str):
        shift, scale = self.shift[kind], self.scale[kind]
        import torch

        if torch.is_tensor(x):
            shift = torch.as_tensor(shift, device=x.device)
            scale = torch.as_tensor(scale, device=x.device)
        return shift, scale

    def normalize(self, x, kind: str = "fields"):
        shift, scale = self._stats(x, kind)
        return (x - shift) / scale

    def denormalize(self, x, kind: str = "fields"):
        shift, scale = self._stats(x, kind)
        return x * scale + shift


def _component_shape(info: FieldInfo) -> tuple[int, ...]:
    n = round(len(info.channels) ** (1 / info.order)) if info.order else 1
    return (n,) * info.order


class RunningMoments:
    """Streaming mean / variance / mean square per channel (Chan's parallel update, float64)."""

    def __init__(self, channels: int):
        self.count = 0
        self.mean = np.zeros(channels)
        self.m2 = np.zeros(channels)
        self.sumsq = np.zeros(channels)

    def update(self, values: np.ndarray) -> None:
        """`values [..., channels]`."""
        flat = values.reshape(-1, values.shape[-1]).astype(np.float64)
        n = flat.shape[0]
        if n == 0:
            return
        batch_mean = flat.mean(axis=0)
        batch_m2 = ((flat - batch_mean) ** 2).sum(axis=0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + batch_m2 + delta**2 * self.count * n / total
        self.sumsq = self.sumsq + (flat**2).sum(axis=0)
        self.count = total

    def result(self) -> dict[str, np.ndarray]:
        count = max(self.count, 1)
        return {"mean": self.mean, "std": np.sqrt(self.m2 / count), "rms": np.sqrt(self.sumsq / count)}


def stats_document(infos: list[FieldInfo], moments: RunningMoments, delta: RunningMoments | None) -> dict[str, dict]:
    """Nest per-channel moments back into per-field entries (nested lists for tensor fields)."""
    out: dict[str, dict] = {}
    sources = [("", moments)] + ([("_delta", delta)] if delta is not None else [])
    for suffix, running in sources:
        values = running.result()
        for key, per_channel in values.items():
            entry = out.setdefault(key + suffix, {})
            start = 0
            for info in infos:
                n = len(info.channels)
                chunk = per_channel[start : start + n]
                start += n
                entry[info.name] = float(chunk[0]) if info.order == 0 else chunk.reshape(_component_shape(info)).tolist()
    return out


def write_stats_yaml(path: str, document: dict) -> None:
    """Atomic write: a reader never sees half a stats file."""
    tmp = f"{path}.partial-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            yaml.safe_dump(document, f, sort_keys=True)
        os.replace(tmp, path)
    except OSError as error:  # a full disk: no half-written leftover, and an error that says where
        if os.path.exists(tmp):
            os.remove(tmp)
        raise StatsError(f"{path}: could not be written ({error.strerror or error}); nothing was changed") from None

