"""Losses of PDE-FM as small pure functions on channels-last tensors `[..., *space, C]`."""

from __future__ import annotations

import math

import torch

from .spectral_layers import rfft_multiplicity

VRMSE_EPS = 1e-7


def unbiased_variance(centered: torch.Tensor, dims: tuple[int, ...], keepdim: bool = True) -> torch.Tensor:
    """`torch.var(x, dims)` (unbiased) of `x` from `centered = x - mean(x, dims)`, in a second pass over it: on a
    CPU torch's one-pass kernel took 20x the time of a mean, and the centred values are at hand anyway."""
    count = math.prod(centered.shape[d] for d in dims)
    return centered.square().sum(dim=dims, keepdim=keepdim) / (count - 1)


def vrmse_per_field(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int, eps: float = VRMSE_EPS,
                    floor: float = 0.0) -> torch.Tensor:
    """The Well's VRMSE: sqrt(mean_space((p - y)^2) / (var_space(y) + eps)), var unbiased; the project's only
    implementation of it (evaluation's `metrics.vrmse` checks shapes and calls this).

    `prediction`, `target`: `[..., *space, C]`; returns `[..., C]`. `floor` is added under the square root: 0 gives
    The Well's metric; the training loss uses a tiny one so that the gradient stays finite where the prediction is
    exact (sqrt'(0) is infinite, and a model that starts by predicting "no change" meets that on still fields).
    """
    space = tuple(range(-n_spatial_dims - 1, -1))
    mse = (prediction - target).pow(2).mean(dim=space)
    variance = unbiased_variance(target - target.mean(dim=space, keepdim=True), space, keepdim=False)
    ratio = mse / (variance + eps)
    return torch.sqrt(ratio + floor) if floor else torch.sqrt(ratio)


def vrmse_training_loss(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int, eps: float = VRMSE_EPS) -> torch.Tensor:
    """Mean VRMSE over samples, steps and fields, with a gradient that stays finite where the prediction is exact."""
    return vrmse_per_field(prediction, target, n_spatial_dims, eps, floor=1e-12).mean()


def half_spectrum_weights(space: tuple[int, ...], device=None) -> torch.Tensor:
    """`[*modes]` weight of each coefficient of an `rfftn` over `space`: |k| times the number of modes it stands for.

    The last axis of a real FFT stores only k >= 0; each stored 0 < k < n/2 also stands for its mirror -k, so it
    counts twice (k = 0 and, on even grids, the Nyquist mode have no separate mirror). Without that factor the same
    error along the last axis weighs half as much as along the others.
    """
    d = len(space)
    k2 = None
    for axis, n in enumerate(space):
        last = axis == d - 1
        k = (torch.fft.rfftfreq(n, device=device) if last else torch.fft.fftfreq(n, device=device)) * n
        shape = [1] * d
        shape[axis] = -1
        term = (k**2).view(shape)
        k2 = term if k2 is None else k2 + term
    multiplicity = rfft_multiplicity(space[-1], space[-1] // 2 + 1, device).view([1] * (d - 1) + [-1])
    return k2.sqrt() * multiplicity


def spectral_loss(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int, eps: float = VRMSE_EPS) -> torch.Tensor:
    """Relative L2 error of the spatial Fourier coefficients, weighted by |k| so fine scales count more.

    sqrt(sum_k |k| |P_k - Y_k|^2 / sum_k |k| |Y_k|^2) per sample, step and field over the full spectrum (the mean
    mode carries no weight, so the mean of the target does not matter), averaged: 1 for predicting the mean, like
    VRMSE. Rotating prediction and target together by 90 degrees leaves it unchanged.
    `prediction`, `target`: `[..., *space, C]`.
    """
    dims = tuple(range(-n_spatial_dims - 1, -1))
    space = tuple(prediction.shape[-n_spatial_dims - 1 : -1])
    diff = torch.fft.rfftn((prediction - target).float(), dim=dims, norm="forward")
    ref = torch.fft.rfftn(target.float(), dim=dims, norm="forward")
    weight = half_spectrum_weights(space, prediction.device).unsqueeze(-1)  # [*modes, 1]
    num = (weight * diff.abs() ** 2).sum(dim=dims)
    den = (weight * ref.abs() ** 2).sum(dim=dims)
    return torch.sqrt(num / (den + eps) + 1e-12).mean()


CHANGE_FLOOR = 0.01  # the true change's mean square is floored at this share of the field's variance


def change_normalised_loss(prediction: torch.Tensor, target: torch.Tensor, last: torch.Tensor,
                           n_spatial_dims: int) -> torch.Tensor:
    """The error measured against the true change (Walrus, arXiv 2511.15684, eq. 8): per sample, step and field,
    sqrt(mean_space((p - y)^2) / mean_space((y - y_before)^2)), `y_before` the true frame before (`last`, the last
    input frame, for the first step); averaged. A field whose change is small next to its spread (VRMSE divides by
    the spread) is then pulled on as hard as one that moves; the change's mean square is floored at `CHANGE_FLOOR`
    of the field's variance, so a field that does not move cannot dominate.
    `prediction`, `target`: `[b, T, *space, C]`; `last`: `[b, *space, C]`."""
    space = tuple(range(-n_spatial_dims - 1, -1))
    prediction, target = prediction.float(), target.float()
    before = torch.cat([last.float().unsqueeze(1), target[:, :-1]], dim=1)
    mse = (prediction - target).pow(2).mean(space)
    change = (target - before).pow(2).mean(space)
    variance = unbiased_variance(target - target.mean(dim=space, keepdim=True), space, keepdim=False)
    return torch.sqrt(mse / (torch.maximum(change, CHANGE_FLOOR * variance) + VRMSE_EPS) + 1e-12).mean()


def pdefm_objective(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int, spectral_weight: float,
                    change_weight: float = 0.0, last: torch.Tensor | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PDE-FM's training objective: VRMSE + `spectral_weight` * spectral loss (+ `change_weight` *
    `change_normalised_loss` against the frame before, `last` the last input frame). Returns (total, vrmse,
    spectral)."""
    vrmse = vrmse_training_loss(prediction.float(), target.float(), n_spatial_dims)
    spectral = spectral_loss(prediction, target, n_spatial_dims) if spectral_weight else vrmse.new_zeros(())
    total = vrmse + spectral_weight * spectral
    if change_weight:
        total = total + change_weight * change_normalised_loss(prediction, target, last, n_spatial_dims)
    return total, vrmse, spectral
