"""Losses of PDE-FM as small pure functions on channels-last tensors `[..., *space, C]`."""

from __future__ import annotations

import math

import torch

from .spectral_layers import nyquist_fraction, rfft_multiplicity

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


# Edges of |k| / k_Nyquist between the bands the evaluation reports energy in (0-1/8, 1/8-1/4, 1/4-1/2, 1/2-).
BAND_EDGES = (0.125, 0.25, 0.5)
BAND_ENERGY_FLOOR = 1e-8  # of the true change's energy: a band's energy is compared above this


def nyquist_band_onehot(space: tuple[int, ...], edges: tuple[float, ...], device=None) -> torch.Tensor:
    """`[prod(modes), len(edges) + 1]` which band of |k| / k_Nyquist each coefficient of an `rfftn` over `space`
    lies in, weighted by the number of modes it stands for (`rfft_multiplicity`); the mean mode is in no band."""
    d = len(space)
    fraction = nyquist_fraction(space, device)
    band = torch.bucketize(fraction, torch.tensor(edges, device=device, dtype=fraction.dtype), right=True)
    onehot = torch.nn.functional.one_hot(band.flatten(), len(edges) + 1).to(torch.float32)
    multiplicity = rfft_multiplicity(space[-1], space[-1] // 2 + 1, device).view([1] * (d - 1) + [-1])
    weight = (multiplicity * (fraction > 0)).expand(fraction.shape).flatten()
    return onehot * weight.unsqueeze(-1)


def band_energy_loss(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int,
                     before: torch.Tensor | None = None, floor: float = BAND_ENERGY_FLOOR) -> torch.Tensor:
    """How far the energy per wavenumber band of the predicted change is from the true change's, in orders of
    magnitude: |log(E_pred + f) - log(E_true + f)| per sample, step, field and band of |k| / k_Nyquist
    (`BAND_EDGES`, the evaluation's bands), averaged; the change is measured from `before` (the last input frame,
    `[b, *space, C]`, for every step), or without it the fields themselves are compared; `f` is `floor` times the
    true change's energy over all bands. VRMSE hardly sees a band that holds 1e-7 of the energy, so a forecast can
    pile 100x the truth's energy there (patch edges, aliasing) and feed it back over a rollout; on a log scale that is
    as far off as moving a field by a tenth of its true change.
    `prediction`, `target`: `[b, T, *space, C]` (or `[..., *space, C]` without `before`)."""
    dims = tuple(range(-n_spatial_dims - 1, -1))
    space = tuple(prediction.shape[-n_spatial_dims - 1 : -1])
    onehot = nyquist_band_onehot(space, BAND_EDGES, prediction.device)  # [modes, bands]
    prediction, target = prediction.float(), target.float()
    if before is not None:
        # Measured on the fields, the energy of a field that barely moves is the last frame's, right in every band
        # whatever the change: only a forecast of no change at all would be safe from adding some (docs/decisions.md).
        before = before.float().unsqueeze(1)
        prediction, target = prediction - before, target - before

    def energies(x: torch.Tensor) -> torch.Tensor:  # [..., bands, C]
        power = torch.fft.rfftn(x, dim=dims, norm="forward").abs().pow(2)
        return torch.einsum("mb,...mc->...bc", onehot, power.flatten(-n_spatial_dims - 1, -2))

    predicted, true = energies(prediction), energies(target)
    f = floor * true.sum(dim=-2, keepdim=True) + 1e-20
    return (torch.log(predicted + f) - torch.log(true + f)).abs().mean()


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
                    change_weight: float = 0.0, last: torch.Tensor | None = None, band_weight: float = 0.0
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PDE-FM's training objective: VRMSE + `spectral_weight` * spectral loss (+ `change_weight` *
    `change_normalised_loss` against the frame before, `last` the last input frame; + `band_weight` *
    `band_energy_loss` of the change from `last`). Returns (total, vrmse, spectral)."""
    vrmse = vrmse_training_loss(prediction.float(), target.float(), n_spatial_dims)
    spectral = spectral_loss(prediction, target, n_spatial_dims) if spectral_weight else vrmse.new_zeros(())
    total = vrmse + spectral_weight * spectral
    if change_weight:
        total = total + change_weight * change_normalised_loss(prediction, target, last, n_spatial_dims)
    if band_weight:
        total = total + band_weight * band_energy_loss(prediction, target, n_spatial_dims, last)
    return total, vrmse, spectral
