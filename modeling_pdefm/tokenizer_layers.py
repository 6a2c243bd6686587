"""Tokenizers: spatial patches (2D and 3D), spectral tokens from a truncated FFT, and their position codes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .spectral_layers import gather_modes, low_mode_indices, signed_wavenumbers

MAX_AXES = 3


def sinusoidal_encoding(positions: torch.Tensor, width: int) -> torch.Tensor:
    """Fixed sin/cos code of integer positions on up to three axes.

    Args:
        positions: `[n, axes]` (axes <= 3), integer or float coordinates.
        width: code width; each axis gets `width // 6` frequencies, the rest is zero.

    Returns:
        `[n, width]` float codes. Grid-size independent, so one model reads any resolution.
    """
    n_freq = max(width // (2 * MAX_AXES), 1)
    freqs = torch.exp(-math.log(1000.0) * torch.arange(n_freq, device=positions.device) / n_freq)
    padded = F.pad(positions.float(), (0, MAX_AXES - positions.shape[-1]))
    angles = padded[..., None] * freqs  # [n, 3, f]
    code = torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(-2)
    return F.pad(code, (0, width - code.shape[-1]))[..., :width]


def grid_positions(shape: tuple[int, ...], device=None) -> torch.Tensor:
    """`[prod(shape), len(shape)]` integer coordinates of a grid in row-major order."""
    axes = [torch.arange(n, device=device) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(shape))


def conv_class(n_spatial_dims: int) -> type[nn.Module]:
    return {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[n_spatial_dims]


def pad_to_multiple(x: torch.Tensor, multiple: int, n_spatial_dims: int) -> torch.Tensor:
    """Zero-pad the trailing `n_spatial_dims` axes at their high end up to a multiple of `multiple`."""
    pads: list[int] = []
    for n in reversed(x.shape[-n_spatial_dims:]):
        pads += [0, (-n) % multiple]
    return F.pad(x, pads) if any(pads) else x


class PatchEmbedding(nn.Module):
    """Spatial tokenizer: non-overlapping `patch^d` patches, each projected to one token.

    Input `[n, channels, *space]` (any size; padded up to a multiple of the patch), output tokens
    `[n, n_patches, hidden]` in row-major patch order, and the patch grid shape.
    """

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int, n_spatial_dims: int):
        super().__init__()
        self.patch_size, self.n_spatial_dims = patch_size, n_spatial_dims
        self.proj = conv_class(n_spatial_dims)(in_channels, hidden_size, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        x = self.proj(pad_to_multiple(x, self.patch_size, self.n_spatial_dims))
        grid = tuple(x.shape[2:])
        tokens = x.flatten(2).transpose(1, 2)
        return tokens + sinusoidal_encoding(grid_positions(grid, x.device), tokens.shape[-1]).to(tokens.dtype), grid


class PatchUnembedding(nn.Module):
    """Inverse of `PatchEmbedding`: each token becomes a `patch^d` block of `out_channels` features.

    Input `[n, n_patches, hidden]` with its patch grid, output `[n, out_channels, *space]` cropped to `space`.
    """

    def __init__(self, hidden_size: int, out_channels: int, patch_size: int, n_spatial_dims: int):
        super().__init__()
        self.patch_size, self.n_spatial_dims, self.out_channels = patch_size, n_spatial_dims, out_channels
        self.proj = nn.Linear(hidden_size, out_channels * patch_size**n_spatial_dims)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, ...], space: tuple[int, ...]) -> torch.Tensor:
        n, d, p = tokens.shape[0], self.n_spatial_dims, self.patch_size
        x = self.proj(tokens).reshape(n, *grid, self.out_channels, *([p] * d))
        # [n, g1..gd, c, p1..pd] -> [n, c, g1, p1, ..., gd, pd]
        order = [0, d + 1] + [axis for i in range(d) for axis in (1 + i, d + 2 + i)]
        x = x.permute(order).reshape(n, self.out_channels, *[g * p for g in grid])
        return x[(Ellipsis, *[slice(0, s) for s in space])]


class SpectralTokenizer(nn.Module):
    """Spectral tokens: one token per retained low Fourier mode of a frame.

    A real FFT over the spatial axes keeps the lowest `modes` frequencies on every axis, both signs on every
    non-last axis (the last axis of a real FFT is one-sided already). Each mode's complex coefficients over the
    latent channels become one token, tagged with a code of its signed wavenumber; `modes` is chosen per grid
    dimensionality.

    Input `[n, channels, *space]`, output `[n, n_modes, hidden]`.
    """

    def __init__(self, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(2 * in_channels, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor, modes: int) -> torch.Tensor:
        space = tuple(x.shape[2:])
        dims = tuple(range(2, x.ndim))
        # "forward" normalisation: coefficients are grid averages, so they do not grow with resolution.
        x_ft = torch.fft.rfftn(x.float(), dim=dims, norm="forward")
        indices = low_mode_indices(space, modes, device=x.device)
        coefficients = gather_modes(x_ft, indices).flatten(2).transpose(1, 2)  # [n, K, C] complex
        features = torch.cat([coefficients.real, coefficients.imag], dim=-1).to(x.dtype)
        wavenumbers = [
            signed_wavenumbers(index, n) if axis < len(space) - 1 else index
            for axis, (index, n) in enumerate(zip(indices, space))
        ]
        positions = torch.stack(torch.meshgrid(*wavenumbers, indexing="ij"), dim=-1).reshape(-1, len(space))
        code = sinusoidal_encoding(positions, self.proj.out_features)
        return self.norm(self.proj(features)) + code.to(x.dtype)
