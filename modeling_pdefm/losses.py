"""Losses of PDE-FM as small pure functions on channels-last tensors."""

from __future__ import annotations

import torch

VRMSE_EPS = 1e-7


def vrmse_per_field(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int, eps: float = VRMSE_EPS) -> torch.Tensor:
    """The Well's VRMSE: sqrt(mean_space((p - y)^2) / (var_space(y) + eps)), var unbiased.

    `prediction`, `target`: `[..., *space, C]`; returns `[..., C]`.
    """
    space = tuple(range(-n_spatial_dims - 1, -1))
    mse = (prediction - target).pow(2).mean(dim=space)
    variance = target.var(dim=space, unbiased=True)
    return torch.sqrt(mse / (variance + eps))


def vrmse_training_loss(prediction: torch.Tensor, target: torch.Tensor, n_spatial_dims: int, eps: float = VRMSE_EPS) -> torch.Tensor:
    """Mean VRMSE with a gradient that stays finite where the prediction is exact (sqrt'(0) is infinite: a model
    that starts by predicting "no change" meets that on fields that do not change)."""
    space = tuple(range(-n_spatial_dims - 1, -1))
    mse = (prediction - target).pow(2).mean(dim=space)
    variance = target.var(dim=space, unbiased=True)
    return torch.sqrt(mse / (variance + eps) + 1e-12).mean()
