"""Evaluation metrics as small pure functions on channels-last tensors: `[..., *space, C]` in, `[..., C]` out.

`vrmse` is The Well's VRMSE (`the_well.benchmark.metrics.VRMSE`): sqrt(mean((p - y)^2) / (var(y) + eps)) over space,
with the unbiased variance and eps = 1e-7. Ratios like it are invariant to a per-field affine change of units only
up to eps, so they are computed on denormalised (physical) fields, as The Well reports them.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from modeling_pdefm.losses import BAND_EDGES, VRMSE_EPS, vrmse_per_field

SPECTRAL_BANDS = ("low", "mid", "high")
# Bands of |k| as fractions of the Nyquist wavenumber (pi per grid cell), the last open-ended to the corner of the
# Fourier box: where a patch grid's artefacts (the upper half) and the truth's small scales show.
NYQUIST_BAND_EDGES = (0.0, *BAND_EDGES)  # the bands the training's band-energy loss compares
NYQUIST_BANDS = ("0-1/8", "1/8-1/4", "1/4-1/2", "1/2-")


def _space(n_spatial_dims: int) -> tuple[int, ...]:
    if n_spatial_dims not in (1, 2, 3):
        raise ValueError(f"n_spatial_dims must be 1, 2 or 3, got {n_spatial_dims!r}")
    return tuple(range(-n_spatial_dims - 1, -1))


def _check_pair(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} must have the same shape")
    if prediction.ndim < n_spatial_dims + 1:
        raise ValueError(f"tensors must be [..., *space ({n_spatial_dims} dims), C], got {tuple(prediction.shape)}")


def vrmse(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int, eps: float = VRMSE_EPS) -> torch.Tensor:
    """Variance-scaled RMSE per field: `[..., *space, C]` -> `[..., C]` (1 = as good as predicting the mean)."""
    _space(n_spatial_dims)
    _check_pair(prediction, target, n_spatial_dims)
    return vrmse_per_field(prediction, target, n_spatial_dims, eps)


def nrmse(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int, eps: float = VRMSE_EPS) -> torch.Tensor:
    """RMSE over the target's root mean square, per field (The Well's NRMSE, norm mode)."""
    space = _space(n_spatial_dims)
    _check_pair(prediction, target, n_spatial_dims)
    return torch.sqrt((prediction - target).pow(2).mean(space) / (target.pow(2).mean(space) + eps))


def rmse(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int) -> torch.Tensor:
    """Root mean squared error per field, in the fields' units."""
    space = _space(n_spatial_dims)
    _check_pair(prediction, target, n_spatial_dims)
    return (prediction - target).pow(2).mean(space).sqrt()


def wavenumber_band_edges(shape: tuple[int, ...]) -> torch.Tensor:
    """Edges of the low/mid/high bands of |k| (radians per grid cell): log-spaced from the lowest non-zero wavenumber
    to the corner of the grid's Fourier box, the first edge moved to 0 so the mean mode is in the low band (The
    Well's default binning)."""
    edges = torch.logspace(math.log10(2 * math.pi / max(shape)), math.log10(math.pi * math.sqrt(len(shape)) + 1e-6), 4,
                           dtype=torch.float64)
    edges[0] = 0.0
    return edges


def _wavenumber_magnitude(shape: tuple[int, ...], device) -> torch.Tensor:
    k2 = torch.zeros(shape, dtype=torch.float64, device=device)
    for axis, n in enumerate(shape):
        k = 2 * math.pi * torch.fft.fftfreq(n, device=device, dtype=torch.float64)
        view = [1] * len(shape)
        view[axis] = n
        k2 = k2 + k.view(view) ** 2
    return k2.sqrt()


def _band_index(shape: tuple[int, ...], device) -> torch.Tensor:
    """`[*shape]` the band (0 low, 1 mid, 2 high) of each FFT mode; the grid's corner lies on the last edge and
    counts as high."""
    band = torch.bucketize(_wavenumber_magnitude(shape, device), wavenumber_band_edges(shape).to(device), right=True) - 1
    return band.clamp(max=len(SPECTRAL_BANDS) - 1)


def _band_energies(fields: torch.Tensor, space: tuple[int, ...], band: torch.Tensor,
                   n_bands: int = len(SPECTRAL_BANDS)) -> list[torch.Tensor]:
    """Mean square each of `n_bands` bands (`band`: each mode's band index) contributes to `fields`, per leading index
    and field (Plancherel: sum |F|^2 / n^2)."""
    n = math.prod(band.shape)
    power = torch.fft.fftn(fields.double(), dim=space).abs().pow(2)
    return [(power * (band == index).to(power.dtype).unsqueeze(-1)).sum(space) / n**2 for index in range(n_bands)]


def binned_spectral_error(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int,
                          eps: float = VRMSE_EPS) -> dict[str, torch.Tensor]:
    """Relative spectral error per wavenumber band: sum_{k in band} |P_k - Y_k|^2 / sum_{k in band} |Y_k|^2 per field.

    Returns `{"low" | "mid" | "high": [..., C]}`: how much of each scale's energy the error carries (0 is exact;
    1 is an error as large as the signal at those scales). The same quantity as The Well's
    `binned_spectral_mse` normalised per bin.
    """
    space = _space(n_spatial_dims)
    _check_pair(prediction, target, n_spatial_dims)
    band = _band_index(tuple(target.shape[a] for a in space), target.device)
    errors, energies = _band_energies(prediction - target, space, band), _band_energies(target, space, band)
    return {name: (e / (y + eps)).to(target.dtype) for name, e, y in zip(SPECTRAL_BANDS, errors, energies)}


def binned_energy_ratio(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int,
                        eps: float = VRMSE_EPS) -> dict[str, torch.Tensor]:
    """Energy of the prediction over the truth's per wavenumber band, per field: `{"low" | "mid" | "high": [..., C]}`.
    1 keeps each scale's energy; below 1 a forecast smooths those scales away, above 1 it adds energy (noise,
    instability) there."""
    space = _space(n_spatial_dims)
    _check_pair(prediction, target, n_spatial_dims)
    band = _band_index(tuple(target.shape[a] for a in space), target.device)
    predicted, true = _band_energies(prediction, space, band), _band_energies(target, space, band)
    return {name: (p / (y + eps)).to(target.dtype) for name, p, y in zip(SPECTRAL_BANDS, predicted, true)}


def nyquist_band_energies(fields: torch.Tensor, n_spatial_dims: int) -> torch.Tensor:
    """Mean square each `NYQUIST_BANDS` band contributes to `fields [..., *space, C]`: `[..., bands, C]` (float64;
    summed over the bands, the fields' mean square)."""
    space = _space(n_spatial_dims)
    shape = tuple(fields.shape[a] for a in space)
    fraction = _wavenumber_magnitude(shape, fields.device) / math.pi
    band = torch.bucketize(fraction, torch.tensor(NYQUIST_BAND_EDGES, dtype=torch.float64, device=fields.device),
                           right=True) - 1
    return torch.stack(_band_energies(fields, space, band, len(NYQUIST_BANDS)), dim=-2)


def change_diagnostics(prediction: torch.Tensor, target: torch.Tensor, last: torch.Tensor,
                       n_spatial_dims: int) -> tuple[torch.Tensor, torch.Tensor]:
    """How the predicted change over the last input frame compares with the true change, per field: the ratio of
    their spatial standard deviations (1: the model moves the field as much as it moves; 0: it predicts no change)
    and their spatial correlation (1: it moves it the right way). `[..., *space, C]` in, two `[..., C]` out; NaN
    where the true change is zero everywhere."""
    space = _space(n_spatial_dims)
    _check_pair(prediction, target, n_spatial_dims)
    predicted = (prediction - last).double()
    true = (target - last).double()
    predicted = predicted - predicted.mean(space, keepdim=True)
    true = true - true.mean(space, keepdim=True)
    predicted_std, true_std = predicted.pow(2).mean(space).sqrt(), true.pow(2).mean(space).sqrt()
    nan = torch.tensor(float("nan"), dtype=torch.float64, device=true.device)
    ratio = torch.where(true_std > 0, predicted_std / true_std, nan)
    covariance = (predicted * true).mean(space)
    correlation = torch.where((true_std > 0) & (predicted_std > 0), covariance / (predicted_std * true_std), nan)
    return ratio.to(target.dtype), correlation.to(target.dtype)


def not_learned(one_step: dict[str, dict[str, Any]], margin: float = 0.1) -> list[str]:
    """Datasets whose one-step VRMSE is within `margin` (10%) of persistence's, or above it: the model has learned
    little of how they change, even where it beats persistence on paper."""
    return sorted(name for name, r in one_step.items()
                  if r.get("persistence_vrmse", 0) > 0 and r["vrmse"] > (1 - margin) * r["persistence_vrmse"])


def fields_beaten(result: dict[str, Any]) -> tuple[int, int, list[str]]:
    """(fields where the model beats persistence, fields, names of those where it does not) of one dataset's
    one-step result (`vrmse_per_field`, `persistence_vrmse_per_field`, optional `field_names`)."""
    model, persistence = result.get("vrmse_per_field", []), result.get("persistence_vrmse_per_field", [])
    names = result.get("field_names") or [f"channel {i}" for i in range(len(model))]
    losing = [n for n, m, p in zip(names, model, persistence) if not m < p]
    return len(model) - len(losing), len(model), losing
