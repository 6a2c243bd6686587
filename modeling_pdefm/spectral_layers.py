"""Fourier-space building blocks: picking the lowest modes of a real FFT, and the spectral convolution."""

from __future__ import annotations

import torch
from torch import nn


def low_mode_index(size: int, modes: int, last_axis: bool, device=None) -> torch.Tensor:
    """Indices of the lowest `modes` frequencies along one axis of an `rfftn` output.

    The last axis of an `rfftn` holds only non-negative frequencies (`size // 2 + 1` of them); every other axis
    holds both signs, so the lowest modes there are `0..m-1` and `-m..-1`. `modes` is clamped to what the grid has.
    """
    if last_axis:
        return torch.arange(min(modes, size // 2 + 1), device=device)
    kept = min(modes, size // 2)
    return torch.cat([torch.arange(kept, device=device), torch.arange(size - kept, size, device=device)])


def signed_wavenumbers(index: torch.Tensor, size: int) -> torch.Tensor:
    """Map FFT indices along a full (two-sided) axis to signed integer wavenumbers."""
    return torch.where(index > size // 2, index - size, index)


def low_mode_indices(space: tuple[int, ...], modes: int, device=None) -> list[torch.Tensor]:
    return [low_mode_index(n, modes, axis == len(space) - 1, device) for axis, n in enumerate(space)]


def gather_modes(x_ft: torch.Tensor, indices: list[torch.Tensor]) -> torch.Tensor:
    """Select the given per-axis indices from the trailing axes of `x_ft` (an outer-product selection)."""
    offset = x_ft.ndim - len(indices)
    for axis, index in enumerate(indices):
        x_ft = x_ft.index_select(offset + axis, index)
    return x_ft


def scatter_modes(values: torch.Tensor, indices: list[torch.Tensor], full_shape: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `gather_modes`: place `values` into a zero tensor of `full_shape` (leading axes from `values`)."""
    out = values.new_zeros(*values.shape[: values.ndim - len(indices)], *full_shape)
    grids = torch.meshgrid(*indices, indexing="ij")
    out[(Ellipsis, *grids)] = values
    return out


def weight_mode_index(stored_modes: int, used: torch.Tensor, last_axis: bool) -> torch.Tensor:
    """Which rows of a weight stored for `stored_modes` modes serve the `used` FFT indices of a smaller grid.

    Weights store the two-sided axes as `[0..m-1, -m..-1]`; a grid with fewer modes takes both ends.
    """
    count = used.numel()
    if last_axis:
        return torch.arange(count, device=used.device)
    half = count // 2
    return torch.cat(
        [torch.arange(half, device=used.device), torch.arange(2 * stored_modes - half, 2 * stored_modes, device=used.device)]
    )


class SpectralConv(nn.Module):
    """Fourier layer of an FNO: multiply the lowest modes by learned complex matrices, drop the rest.

    Works for 2D and 3D grids. Input `[batch, in_channels, *space]`, output `[batch, out_channels, *space]`.
    Weights are stored as real tensors `[in, out, 2m, ..., 2m, m, 2]` (real and imaginary parts) so they save to
    safetensors and all-reduce like any parameter.
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int, n_spatial_dims: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.modes, self.n_spatial_dims = modes, n_spatial_dims
        mode_shape = [2 * modes] * (n_spatial_dims - 1) + [modes]
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels, *mode_shape, 2))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        scale = 1.0 / (self.in_channels * self.out_channels)
        self.weight.uniform_(-scale, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        space = tuple(x.shape[2:])
        dims = tuple(range(2, x.ndim))
        x_ft = torch.fft.rfftn(x.float(), dim=dims, norm="ortho")
        indices = low_mode_indices(space, self.modes, device=x.device)
        weight = torch.view_as_complex(self.weight.float())
        for axis, used in enumerate(indices):
            weight = weight.index_select(2 + axis, weight_mode_index(self.modes, used, axis == len(indices) - 1))
        out_modes = torch.einsum("bi...,io...->bo...", gather_modes(x_ft, indices), weight)
        full = (*space[:-1], space[-1] // 2 + 1)
        out_ft = scatter_modes(out_modes, indices, full)
        return torch.fft.irfftn(out_ft, s=space, dim=dims, norm="ortho").to(x.dtype)
