"""Evaluation as The Well measures its baselines: one-step metrics over every window of a split, and autoregressive
rollouts from the start of every trajectory, all on denormalised (physical) fields.

Works with any forecaster of `pdefm.train.evaluation.forecasters` (`predict_next(batch) -> [B, 1, *space, C]`).
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from pdefm.data import load_well_dataset, open_well_split, split_reader

from .forecasters import PDEFMForecaster
from .metrics import (NYQUIST_BANDS, SPECTRAL_BANDS, binned_energy_ratio, binned_spectral_error, change_diagnostics,
                      nrmse, nyquist_band_energies, rmse, vrmse)
from .windows import evaluation_batches

# A rollout VRMSE this large (or inf) means the rollout has blown up: its digits mean nothing.
BLOWN_UP = 1e3
# Rollout windows of The Well's tables, in steps after the last input frame (inclusive).
ROLLOUT_WINDOWS = ((1, 1), (2, 5), (6, 12), (13, 30))


def window_label(window: tuple[int, int]) -> str:
    return f"{window[0]}:{window[1]}"


@torch.no_grad()
def one_step_vrmse(model, dataset, n_spatial_dims: int, batch_size: int = 8, n_batches: int | None = None,
                   device=None) -> dict[str, Any]:
    """Mean one-step VRMSE of a PDE-FM model over windows, per field, and the same for persistence."""
    result = evaluate_one_step(PDEFMForecaster(model), dataset, n_spatial_dims, batch_size, n_batches)
    return {key: result[key] for key in ("windows", "vrmse", "persistence_vrmse", "vrmse_per_field",
                                         "persistence_vrmse_per_field", "change_ratio_per_field",
                                         "change_correlation_per_field")}


@torch.no_grad()
def evaluate_one_step(forecaster, dataset, n_spatial_dims: int, batch_size: int = 8,
                      n_batches: int | None = None) -> dict[str, Any]:
    """One-step VRMSE, NRMSE, RMSE and spectral error per field (means over windows), and persistence's VRMSE
    (predicting the last input frame) as the floor any useful model must beat."""
    sums: dict[str, torch.Tensor] = {}
    ratios, correlations = [], []  # per window and field: predicted change against the true one
    count = 0
    for batch in evaluation_batches(dataset, batch_size, n_batches):
        target = batch["output_fields"][:, :1].float()
        prediction = forecaster.predict_next(batch).cpu()
        persistence = batch["input_fields"][:, -1:].float()
        ratio, correlation = change_diagnostics(prediction, target, persistence, n_spatial_dims)
        ratios.append(ratio.flatten(0, -2))
        correlations.append(correlation.flatten(0, -2))
        values = {
            "vrmse": vrmse(prediction, target, n_spatial_dims),
            "nrmse": nrmse(prediction, target, n_spatial_dims),
            "rmse": rmse(prediction, target, n_spatial_dims),
            "persistence_vrmse": vrmse(persistence, target, n_spatial_dims),
        }
        for band, value in binned_spectral_error(prediction, target, n_spatial_dims).items():
            values[f"spectral_{band}"] = value
        for key, value in values.items():
            total = value.double().sum(dim=(0, 1))
            sums[key] = total if key not in sums else sums[key] + total
        count += target.shape[0]
    if not count:
        raise ValueError("the split has no windows to evaluate")
    result: dict[str, Any] = {"windows": count}
    for key, total in sums.items():
        per_field = (total / count).tolist()
        result[f"{key}_per_field"] = per_field
        result[key] = float(np.mean(per_field))
    # Medians over windows: a few windows where the field barely moves must not decide the verdict.
    for key, values in (("change_ratio", ratios), ("change_correlation", correlations)):
        per_field = torch.cat(values).double().nanmedian(dim=0).values.tolist()
        result[f"{key}_per_field"] = per_field
        result[key] = float(np.nanmean(per_field)) if not all(map(math.isnan, per_field)) else math.nan
    return result


def trajectory_starts(path: str, split: str, n_steps_input: int, max_steps: int,
                      file_steps: list[int] | None = None,
                      starts_per_trajectory: int = 1) -> tuple[Any, list[int], int]:
    """The split as windows of `n_steps_input` frames plus the longest rollout (up to `max_steps`) its trajectories
    allow, and the rows of the windows a rollout starts from: `starts_per_trajectory` start times spread evenly
    over each trajectory, from its first frames to the last start that leaves room for the whole rollout.
    `file_steps` (frames per file, from a reader of the split already open) spares opening the split again."""
    if file_steps is None:
        probe = open_well_split(path, split, n_steps_input=n_steps_input, n_steps_output=1)
        file_steps = [m.n_steps for m in probe.metadata]
        probe.close()
    steps = min(max_steps, min(file_steps) - n_steps_input)
    if steps < 1:
        raise ValueError(f"{path} ({split}): trajectories are too short for {n_steps_input} input steps and a rollout")
    if starts_per_trajectory < 1:
        raise ValueError(f"starts_per_trajectory must be >= 1, got {starts_per_trajectory}")
    dataset = load_well_dataset(path, split=split, n_steps_input=n_steps_input, n_steps_output=steps)
    reader = split_reader(dataset)
    last_start = min(file_steps) - n_steps_input - steps
    starts = set(np.unique(np.linspace(0, last_start, starts_per_trajectory).round().astype(int)).tolist())
    rows = [row for row, window in enumerate(reader.window_indices()) if reader.locate(int(window))[2] in starts]
    return dataset, rows, steps


class NonFiniteForecastError(ValueError):
    """A rollout produced NaN or Inf; `step` (1-based) and `channel` say where it first did."""

    def __init__(self, step: int, channel: int):
        self.step, self.channel = step, channel
        super().__init__(f"the forecast is not finite from step {step} on (channel {channel})")


def iter_rollout(forecaster, batch: dict[str, Any], n_steps: int, progress: bool = False,
                 require_finite: bool = False) -> Iterator[torch.Tensor]:
    """The forecaster's rollout for `n_steps`, yielding each predicted frame `[B, 1, *space, C]` in physical units
    as it is made (a long rollout need not be held whole): the model's own (`iter_rollout`) where it has one, as
    PDE-FM does, else one step at a time (`per_step_rollout`). `progress`: a bar over the steps. `require_finite`:
    stop with `NonFiniteForecastError` at the first step that is not finite (evaluation instead lets a diverging
    model's error grow)."""
    own = getattr(forecaster, "iter_rollout", None)
    frames = own(batch, n_steps) if own is not None else per_step_rollout(forecaster, batch, n_steps)
    for step in tqdm(range(n_steps), desc="rollout", unit="step", disable=not progress):
        # No-grad per step, not around the loop: a generator suspended inside `no_grad` would leave it on for
        # whoever consumes it.
        with torch.no_grad():
            frame = next(frames)
        if require_finite and not bool(torch.isfinite(frame).all()):
            bad = (~torch.isfinite(frame)).flatten(0, -2).any(dim=0)
            raise NonFiniteForecastError(step + 1, int(bad.nonzero()[0]))
        yield frame


def per_step_rollout(forecaster, batch: dict[str, Any], n_steps: int) -> Iterator[torch.Tensor]:
    """Feed a one-step forecaster's predictions back as inputs (The Well's baselines): frames `[B, 1, *space, C]`.
    Time grids move with the window, so a model conditioned on the step size sees the true one."""
    window = batch["input_fields"].float()
    n_in = window.shape[1]
    times = None
    if "input_time_grid" in batch and "output_time_grid" in batch:
        times = torch.cat([batch["input_time_grid"], batch["output_time_grid"]], dim=1)
    for step in range(n_steps):
        inputs = {k: v for k, v in batch.items() if k not in ("output_fields", "input_fields")}
        inputs["input_fields"] = window
        if times is not None:
            inputs["input_time_grid"] = times[:, step : step + n_in]
            inputs["output_time_grid"] = times[:, step + n_in : step + n_in + 1]
        frame = forecaster.predict_next(inputs).cpu()
        window = torch.cat([window[:, 1:], frame], dim=1)
        yield frame


@torch.no_grad()
def rollout(forecaster, batch: dict[str, Any], n_steps: int, progress: bool = False,
            require_finite: bool = False) -> torch.Tensor:
    """`iter_rollout`'s frames as one tensor `[B, n_steps, *space, C]`."""
    return torch.cat(list(iter_rollout(forecaster, batch, n_steps, progress, require_finite)), dim=1)


@torch.no_grad()
def evaluate_rollout(forecaster, path: str, split: str, n_spatial_dims: int, n_steps_input: int = 4,
                     max_steps: int = 30, batch_size: int = 4, keep_example: bool = True,
                     file_steps: list[int] | None = None, starts_per_trajectory: int = 1) -> dict[str, Any]:
    """VRMSE per rollout step (mean over starts, per field) and over The Well's windows of steps, from
    `starts_per_trajectory` starts spread over every trajectory of the split (1: its first frames, as The Well
    scores), with the spread over starts (`vrmse_per_step_sd`: standard deviation of each start's VRMSE). A rollout
    that blows up scores `inf` from the step it does; `diverged_at_step` is the first step whose VRMSE passes
    `BLOWN_UP` (None if none). `example` keeps the first trajectory's rollout from its first
    frames for figures."""
    dataset, rows, steps = trajectory_starts(path, split, n_steps_input, max_steps, file_steps, starts_per_trajectory)
    per_start = {"model": [], "persistence": []}  # [starts, steps, C] each
    energy = {band: None for band in SPECTRAL_BANDS}  # [steps]: prediction's energy over the truth's, per band
    bands = {"predicted": None, "true": None}  # [steps, bands, C]: energy per Nyquist band, summed over starts
    example = None
    for start in range(0, len(rows), batch_size):
        batch = dataset[rows[start : start + batch_size]]
        prediction = rollout(forecaster, batch, steps)
        target = batch["output_fields"].float()
        persistence = batch["input_fields"][:, -1:].float().expand_as(target)  # "no change" from the last input
        for key, forecast in (("model", prediction), ("persistence", persistence)):
            errors = vrmse(forecast, target, n_spatial_dims).double()  # [B, steps, C]
            per_start[key].append(torch.nan_to_num(errors, nan=math.inf))
        for band, ratio in binned_energy_ratio(prediction, target, n_spatial_dims).items():
            per_step = ratio.double().mean(-1).sum(0)  # mean over fields, summed over starts
            energy[band] = per_step if energy[band] is None else energy[band] + per_step
        for key, fields in (("predicted", prediction), ("true", target)):
            summed = nyquist_band_energies(fields, n_spatial_dims).sum(0)  # [steps, bands, C]
            bands[key] = summed if bands[key] is None else bands[key] + summed
        if keep_example and example is None:
            grid = batch.get("space_grid")
            coordinates = None
            if grid is not None:  # [*space, d] -> the coordinates along each axis (the others held at index 0)
                g = grid[0].numpy()
                d = g.shape[-1]
                coordinates = [g[tuple(slice(None) if a == i else 0 for a in range(d)) + (i,)] for i in range(d)]
            example = {"truth": target[0].numpy(), "prediction": prediction[0].numpy(), "coordinates": coordinates}
    model = torch.cat(per_start["model"]).numpy()  # [starts, steps, C]
    reference = torch.cat(per_start["persistence"]).numpy()
    per_step, persistence_per_step = model.mean(axis=0), reference.mean(axis=0)  # [steps, C]
    sane = (per_step < BLOWN_UP).all(axis=1)  # also False for inf and NaN
    diverged = int(np.argmin(sane)) + 1 if not sane.all() else None
    with np.errstate(invalid="ignore"):
        spread = model.mean(axis=2).std(axis=0, ddof=1) if len(rows) > 1 else np.zeros(steps)
    reader = split_reader(dataset)
    trajectories = len({reader.locate(int(w))[:2] for w in np.asarray(reader.window_indices())[rows]})
    return {"trajectories": trajectories, "starts": len(rows), "steps": steps,
            "vrmse_per_step": per_step.mean(axis=1).tolist(),
            "vrmse_per_step_sd": spread.tolist(), "diverged_at_step": diverged,
            "vrmse_per_step_per_field": per_step.tolist(), "vrmse_windows": rollout_windows(per_step),
            "persistence_vrmse_per_step": persistence_per_step.mean(axis=1).tolist(),
            "persistence_vrmse_windows": rollout_windows(persistence_per_step),
            "energy_ratio_per_step": {band: (values / len(rows)).tolist() for band, values in energy.items()},
            "band_energy": {"bands": list(NYQUIST_BANDS), "predicted": (bands["predicted"] / len(rows)).tolist(),
                            "true": (bands["true"] / len(rows)).tolist()},
            "example": example}


def rollout_windows(per_step: np.ndarray) -> dict[str, float]:
    """Mean VRMSE over The Well's windows of rollout steps that the rollout reaches (`per_step [steps, C]`)."""
    steps = per_step.shape[0]
    return {window_label((first, last)): float(per_step[first - 1 : min(last, steps)].mean())
            for first, last in ROLLOUT_WINDOWS if first <= steps}


def evaluate_dataset(forecaster, data_dir: str, name: str, split: str = "test", n_steps_input: int = 4,
                     rollout_steps: int = 30, batch_size: int = 8, n_batches: int | None = None,
                     starts_per_trajectory: int = 1, yardsticks: dict[str, Any] | None = None) -> dict[str, Any]:
    """One-step and rollout evaluation of one dataset folder under `data_dir`, and the same for each of
    `yardsticks` (`{label: forecaster}`, e.g. `pdefm.train.baselines.linear.fit_yardsticks`) that knows it."""
    path = os.path.join(data_dir, name)
    dataset = load_well_dataset(path, split=split, n_steps_input=n_steps_input, n_steps_output=1)
    reader = split_reader(dataset)
    meta = reader.meta
    d, field_names, spatial_dims = meta.n_spatial_dims, meta.field_names, list(meta.spatial_dims)
    file_steps = [m.n_steps for m in reader.metadata]
    one_step = evaluate_one_step(forecaster, dataset, d, batch_size, n_batches)
    rolled = evaluate_rollout(forecaster, path, split, d, n_steps_input, rollout_steps, max(1, batch_size // 2),
                              file_steps=file_steps, starts_per_trajectory=starts_per_trajectory)
    result = {"n_spatial_dims": d, "field_names": field_names, "spatial_dims": spatial_dims, "one_step": one_step,
              "rollout": rolled}
    if yardsticks:
        result["yardsticks"] = {}
        for label, yardstick in yardsticks.items():
            if not yardstick.knows(name):
                continue
            one = evaluate_one_step(yardstick, dataset, d, max(1, batch_size // 2), n_batches)
            roll = evaluate_rollout(yardstick, path, split, d, n_steps_input, rollout_steps, max(1, batch_size // 4),
                                    keep_example=False, file_steps=file_steps,
                                    starts_per_trajectory=starts_per_trajectory)
            result["yardsticks"][label] = {"vrmse": one["vrmse"], "vrmse_per_field": one["vrmse_per_field"],
                                           **{k: v for k, v in roll.items() if k != "example"}}
    return result
