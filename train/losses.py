"""Pretraining losses on channels-last tensors `[batch, T, *space, C]` (small pure functions)."""

from __future__ import annotations

import torch

from modeling_pdefm.losses import vrmse_training_loss


def vrmse_loss(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int) -> torch.Tensor:
    """The Well's VRMSE (per sample, step and field, over space), averaged; finite gradient at a perfect fit."""
    return vrmse_training_loss(prediction.float(), target.float(), n_spatial_dims)


def spectral_loss(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int, eps: float = 1e-7) -> torch.Tensor:
    """Relative L2 error of the spatial Fourier coefficients, weighted by |k| so fine scales count more.

    sum_k |k| |P_k - Y_k|^2 / sum_k |k| |Y_k - mean|^2 per sample, step and field (the mean mode carries no
    weight), square-rooted, averaged: 1 for predicting the mean, like VRMSE.
    """
    dims = tuple(range(-n_spatial_dims - 1, -1))
    diff = torch.fft.rfftn((prediction - target).float(), dim=dims, norm="forward")
    ref = torch.fft.rfftn(target.float(), dim=dims, norm="forward")
    weight = None
    for position, axis in enumerate(dims):
        n = prediction.shape[axis]
        k = torch.fft.rfftfreq(n, device=prediction.device) * n if position == len(dims) - 1 else torch.fft.fftfreq(n, device=prediction.device) * n
        shape = [1] * n_spatial_dims
        shape[position] = -1
        k2 = (k**2).view(shape)
        weight = k2 if weight is None else weight + k2
    weight = weight.sqrt().unsqueeze(-1)  # |k| [*modes, 1]
    num = (weight * diff.abs() ** 2).sum(dim=dims)
    den = (weight * ref.abs() ** 2).sum(dim=dims)
    return torch.sqrt(num / (den + eps) + 1e-12).mean()


def pretraining_loss(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int, spectral_weight: float):
    """VRMSE + spectral_weight * spectral loss; returns (total, parts)."""
    vrmse = vrmse_loss(prediction, target, n_spatial_dims)
    spectral = spectral_loss(prediction, target, n_spatial_dims) if spectral_weight else prediction.new_zeros(())
    return vrmse + spectral_weight * spectral, {"vrmse": vrmse.detach(), "spectral": spectral.detach()}
