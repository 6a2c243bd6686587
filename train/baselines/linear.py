"""Linear yardsticks: what a forecast must beat before it says anything about learned physics.

- `LinearExtrapolation`: the next frame continues the last change, `2 f[-1] - f[-2]` (nothing fitted).
- `LinearStencil`: each output value a linear function of the `3^d` neighbourhood of every channel over the input
  frames, plus a bias; one coefficient set per dataset, fitted in closed form (least squares) on the train split.
  Where stored frames are close in time, one step is nearly linear and this stencil is hard to beat one step ahead;
  rolled out it often blows up, which the evaluation reports as it is.

Both are forecasters of `pdefm.train.evaluation.forecasters`' interface (`predict_next(batch) -> [B, 1, *space, C]`
in physical units), so the evaluation scores them with the same code as PDE-FM and The Well's baselines.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from pdefm.data import load_well_dataset

from modeling_pdefm.conditioning_layers import periodic_axes


class LinearExtrapolation:
    """`f[-1] + (f[-1] - f[-2])`: the last change, continued."""

    label = "linear extrapolation"

    def __init__(self, n_steps_input: int = 4):
        self.n_steps_input = max(2, n_steps_input)

    def knows(self, dataset: str) -> bool:
        return True

    @torch.no_grad()
    def predict_next(self, batch: dict[str, Any]) -> torch.Tensor:
        x = batch["input_fields"].float()
        return 2 * x[:, -1:] - x[:, -2:-1]


def neighbourhood_features(window: torch.Tensor, periodic: tuple[bool, ...]) -> torch.Tensor:
    """`window [B, T, *space, C]` -> `[B, *space, T * C * 3^d]`: every channel of every frame at each point's `3^d`
    neighbours (wrapped around periodic axes, the edge value repeated at the others)."""
    b, t, *space, c = window.shape
    d = len(space)
    x = window.movedim(1, -2).reshape(b, *space, t * c)  # [B, *space, T*C]
    for axis, wraps in enumerate(periodic, start=1):
        n = x.shape[axis]
        low = x.narrow(axis, n - 1, 1) if wraps else x.narrow(axis, 0, 1)
        high = x.narrow(axis, 0, 1) if wraps else x.narrow(axis, n - 1, 1)
        x = torch.cat([low, x, high], dim=axis)
    shifts = []
    for offset in np.ndindex(*(3,) * d):
        index = (slice(None), *[slice(o, o + n) for o, n in zip(offset, space)])
        shifts.append(x[index])
    return torch.cat(shifts, dim=-1)


def batch_periodic_axes(batch: dict[str, Any], d: int) -> tuple[bool, ...]:
    """Per spatial axis, whether the batch's boundaries are periodic on it (all of them without boundary codes)."""
    bc = batch.get("boundary_conditions")
    return (True,) * d if bc is None else tuple(periodic_axes(bc).tolist())


class LinearStencil:
    """The least-squares linear stencil of each dataset it was fitted on (`fit`). Fields are centred and scaled per
    channel by the fitting data's mean and std; the fit predicts the change over the last input frame."""

    label = "linear stencil"

    def __init__(self, n_steps_input: int):
        self.n_steps_input = n_steps_input
        self.fits: dict[str, dict[str, torch.Tensor]] = {}

    def knows(self, dataset: str) -> bool:
        return dataset in self.fits

    def fit(self, name: str, path: str, n_steps_input: int | None = None, max_windows: int = 128,
            dt_stride: int = 1, trajectories: int | None = None, **options) -> "LinearStencil":
        """Fit dataset `name` on the train split of the dataset folder `path` (its first `trajectories` only, as a
        few-shot run trains on; up to `max_windows` windows spread evenly over it); `options` go to `fit_batches`."""
        from ..training.batches import first_trajectory_rows

        dataset = load_well_dataset(path, split="train", n_steps_input=n_steps_input or self.n_steps_input,
                                    n_steps_output=1, dt_stride=dt_stride)
        if trajectories is not None:
            dataset = dataset.select(first_trajectory_rows(dataset, trajectories, f"{path} (train)"))
        rows = np.unique(np.linspace(0, len(dataset) - 1, min(len(dataset), max_windows)).round().astype(int))
        chunk = 8 if dataset[[0]]["input_fields"].ndim == 5 else 1  # a 3D window's features are ~200 MB
        return self.fit_batches(name, (dataset[[int(r) for r in rows[i : i + chunk]]]
                                       for i in range(0, len(rows), chunk)), **options)

    def fit_batches(self, name: str, batches, points_per_window: int = 2048, ridge: float = 1e-9,
                    seed: int = 0) -> "LinearStencil":
        """Fit dataset `name` on `batches` of windows in The Well's layout, in closed form: the normal equations over
        `points_per_window` random points of each window, summed in float64, solved with a ridge of `ridge` times
        their mean diagonal. Fields are centred and scaled by the first batch's per-channel mean and std."""
        generator = torch.Generator().manual_seed(seed)
        xtx = xty = mean = std = None
        for batch in batches:
            if mean is None:
                first = batch["input_fields"].float()
                axes = tuple(range(first.ndim - 1))
                mean, std = first.mean(dim=axes), first.std(dim=axes).clamp_min(1e-12)
            x, y = self._design(batch, mean, std)
            keep = torch.randperm(x.shape[0], generator=generator)[: points_per_window * batch["input_fields"].shape[0]]
            x, y = x[keep].double(), y[keep].double()
            xtx = x.T @ x if xtx is None else xtx + x.T @ x
            xty = x.T @ y if xty is None else xty + x.T @ y
        if xtx is None:
            raise ValueError(f"linear stencil of {name!r}: no windows to fit")
        lam = ridge * xtx.diagonal().mean()
        weights = torch.linalg.solve(xtx + lam * torch.eye(xtx.shape[0], dtype=xtx.dtype), xty)
        self.fits[name] = {"weights": weights, "mean": mean, "std": std}
        return self

    def _design(self, batch: dict[str, Any], mean: torch.Tensor, std: torch.Tensor, with_target: bool = True):
        window = (batch["input_fields"].float() - mean) / std
        d = window.ndim - 3
        features = neighbourhood_features(window, batch_periodic_axes(batch, d))
        x = torch.cat([features, torch.ones(*features.shape[:-1], 1)], dim=-1).flatten(0, -2)
        if not with_target:
            return x, None
        target = (batch["output_fields"][:, 0].float() - mean) / std - window[:, -1]  # the change
        return x, target.flatten(0, -2)

    @torch.no_grad()
    def predict_next(self, batch: dict[str, Any]) -> torch.Tensor:
        name = batch["dataset_name"]
        name = name[0] if isinstance(name, (list, tuple)) else name
        fit = self.fits[name]
        x, _ = self._design(batch, fit["mean"], fit["std"], with_target=False)
        last = batch["input_fields"][:, -1].float()
        change = (x.double() @ fit["weights"]).float().reshape(last.shape)
        return (last + change * fit["std"]).unsqueeze(1)


def fit_yardsticks(data_dir: str, names: list[str], n_steps_input: int, dt_stride: int = 1) -> dict[str, Any]:
    """The linear yardsticks of `names` under `data_dir`: `{label: forecaster}` (the stencil fitted per dataset)."""
    stencil = LinearStencil(n_steps_input)
    for name in names:
        stencil.fit(name, os.path.join(data_dir, name), dt_stride=dt_stride)
    return {LinearExtrapolation.label: LinearExtrapolation(n_steps_input), LinearStencil.label: stencil}
