"""Frequency-band adapters for the Fourier layers, which LoRA cannot reach.

PEFT's LoRA adapts linear and convolution layers; an FNO's spectral convolution is a complex weight per Fourier
mode (`SpectralConv.weight [in, out, *modes, 2]`), so under LoRA it stays frozen, and LoRA has a documented error
floor on Fourier layers (F-Adapter, arXiv 2509.23173). Following F-Adapter's idea that low frequencies carry most
of a PDE's energy and deserve most of the capacity, `SpectralBandAdapter` splits a layer's modes into `n_bands`
bands by wavenumber and adds to each band a low-rank complex update of the channel mixing,

    delta_W[i, o, k] = sum_r U_b[i, r] g_b[k, r] V_b[r, o]   for mode k in band b,

rank `rank` in the lowest band, halved in each higher one, with a per-mode gain `g` so every mode can move on
its own. `V` starts at zero (the adapted model starts equal to the base). PEFT has no method for such weights,
so this is a small module of our own, applied as a `torch.nn.utils.parametrize` parametrization: the frozen
weight stays where it is, `merge_spectral_adapters` folds the updates in for saving.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from modeling_pdefm.spectral_layers import SpectralConv


def mode_bands(modes: int, n_spatial_dims: int, n_bands: int) -> torch.Tensor:
    """`[*mode_shape]` the band (0 = lowest) of each stored mode of a `SpectralConv` with `modes` modes: the
    largest absolute wavenumber over the axes, split evenly into `n_bands`."""
    axes = [torch.cat([torch.arange(modes), torch.arange(-modes, 0)]).abs()] * (n_spatial_dims - 1)
    axes.append(torch.arange(modes))
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij")).amax(0)
    return (grid * n_bands // modes).clamp_max(n_bands - 1)


class SpectralBandAdapter(nn.Module):
    """Parametrization of a `SpectralConv`'s weight: the frozen weight plus a low-rank update per frequency band."""

    def __init__(self, conv: SpectralConv, rank: int = 4, n_bands: int = 3):
        super().__init__()
        if rank < 1 or n_bands < 1:
            raise ValueError(f"spectral adapter rank and n_bands must be >= 1, got rank={rank}, n_bands={n_bands}")
        n_in, n_out = conv.in_channels, conv.out_channels
        bands = mode_bands(conv.modes, conv.n_spatial_dims, n_bands).flatten()
        self.mode_shape = tuple(conv.weight.shape[2:-1])
        order = torch.argsort(bands, stable=True)
        self.register_buffer("inverse_order", torch.argsort(order), persistent=False)
        self.band_sizes = [int((bands == b).sum()) for b in range(n_bands)]
        self.ranks = [max(1, rank >> b) for b in range(n_bands)]
        self.down = nn.ParameterList(nn.Parameter(torch.randn(n_in, r, 2) * (n_in * r) ** -0.5) for r in self.ranks)
        self.gain = nn.ParameterList(nn.Parameter(torch.stack([torch.ones(k, r), torch.zeros(k, r)], -1))
                                     for k, r in zip(self.band_sizes, self.ranks))
        self.up = nn.ParameterList(nn.Parameter(torch.zeros(r, n_out, 2)) for r in self.ranks)

    def delta(self) -> torch.Tensor:
        """The update, in the weight's layout `[in, out, *mode_shape, 2]`."""
        parts = []
        for down, gain, up, size in zip(self.down, self.gain, self.up, self.band_sizes):
            if size:
                parts.append(torch.einsum("ir,kr,ro->iok", torch.view_as_complex(down), torch.view_as_complex(gain),
                                          torch.view_as_complex(up)))
        update = torch.cat(parts, dim=2)[:, :, self.inverse_order]
        return torch.view_as_real(update.reshape(*update.shape[:2], *self.mode_shape))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().to(weight.dtype)


def add_spectral_adapters(model: nn.Module, prefixes: list[str], rank: int = 4, n_bands: int = 3) -> list[str]:
    """Put a `SpectralBandAdapter` on every `SpectralConv` whose name starts with one of `prefixes` (e.g. the
    decoder of the new dataset's dimensionality), freezing its weight; returns the layer names."""
    adapted = []
    for name, module in model.named_modules():
        if isinstance(module, SpectralConv) and any(name.startswith(p) or f".{p}" in name for p in prefixes):
            if parametrize.is_parametrized(module, "weight"):
                raise ValueError(f"layer {name!r} already has a spectral adapter")
            parametrize.register_parametrization(module, "weight", SpectralBandAdapter(module, rank, n_bands))
            module.parametrizations.weight.original.requires_grad_(False)
            adapted.append(name)
    if not adapted:
        raise ValueError(f"no spectral convolution under {prefixes}; the spectral adapter needs the FNO decoder "
                         "(a model with decoder_type='conv' has none)")
    return adapted


def merge_spectral_adapters(model: nn.Module) -> int:
    """Fold every spectral adapter's update into its layer's weight and remove the adapter; returns how many."""
    merged = 0
    for module in model.modules():
        if isinstance(module, SpectralConv) and parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
            module.weight.requires_grad_(True)
            merged += 1
    return merged
