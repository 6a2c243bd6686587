"""Tokenizers (channels last): spatial patches (2D and 3D), spectral tokens from a truncated FFT, and their position
codes; and the pointwise channel map they and the decoder share."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .spectral_layers import low_mode_indices, signed_wavenumbers, truncated_rfftn

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


def weights_readable(*modules: nn.Module) -> bool:
    """Whether a fused path may read these modules' weights without calling them: not where a hook wraps their
    call (accelerate's offloading hooks load offloaded weights only when the module itself is called; any forward
    hook expects the call)."""
    return not any(hasattr(m, "_hf_hook") or m._forward_pre_hooks or m._forward_hooks for m in modules)


class FieldLinear(nn.Linear):
    """A pointwise map between the channels of a field, channels last (`[..., in] -> [..., out]`): what a 1x1
    convolution does, as one matrix product. Initialised by fan-in (see `PDEFMPreTrainedModel._init_weights`)."""

    # Under this many input channels a 2D or 3D field goes through a 1x1 convolution on its channels-last layout
    # instead: a dataset adapter reads only its few fields, and CPU matrix products with an inner size of 4 ran 2.4x
    # slower, forwards and backwards, than the convolution (at 8 and more channels the product is the faster one).
    CONV_BELOW_CHANNELS = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = x.ndim - 2
        if self.in_features >= self.CONV_BELOW_CHANNELS or d not in (2, 3):
            return super().forward(x)
        weight = self.weight.view(*self.weight.shape, *[1] * d)
        return getattr(F, f"conv{d}d")(x.movedim(-1, 1), weight, self.bias).movedim(1, -1)


def pad_to_multiple(x: torch.Tensor, multiple: int, n_spatial_dims: int) -> torch.Tensor:
    """Zero-pad the spatial axes of a channels-last `[n, *space, C]` at their high end up to a multiple of
    `multiple`."""
    pads = [0, 0]  # the channel axis
    for n in reversed(x.shape[-n_spatial_dims - 1 : -1]):
        pads += [0, (-n) % multiple]
    return F.pad(x, pads) if any(pads) else x


class PatchEmbedding(nn.Module):
    """Spatial tokenizer: non-overlapping `patch^d` patches, each projected to one token.

    Input `[n, *space, channels]` (any size; padded up to a multiple of the patch), output tokens
    `[n, n_patches, hidden]` in row-major patch order, and the patch grid shape. Each patch's values (patch
    offsets row-major, channels last) go through one linear layer.
    """

    def __init__(self, in_channels: int, hidden_size: int, patch_size: int, n_spatial_dims: int):
        super().__init__()
        self.patch_size, self.n_spatial_dims = patch_size, n_spatial_dims
        self.proj = FieldLinear(in_channels * patch_size**n_spatial_dims, hidden_size)

    def grid(self, space: tuple[int, ...]) -> tuple[int, ...]:
        """Patches along each axis of a grid of `space` points (padded up to a multiple of the patch)."""
        return tuple(-(-size // self.patch_size) for size in space)

    def forward(self, x: torch.Tensor, offset: torch.Tensor | None = None) -> tuple[torch.Tensor, tuple[int, ...]]:
        """`offset [d]`: where token 0 starts, in patches (patch jitter moves it), for the position code."""
        n, d, p = x.shape[0], self.n_spatial_dims, self.patch_size
        grid = self.grid(tuple(x.shape[1:-1]))
        x = pad_to_multiple(x, p, d)
        # [n, g1, p1, ..., gd, pd, C] -> [n, g1..gd, p1..pd, C]
        x = x.reshape(n, *[v for g in grid for v in (g, p)], x.shape[-1])
        x = x.permute(0, *range(1, 2 * d, 2), *range(2, 2 * d + 1, 2), 2 * d + 1)
        tokens = self.proj(x.reshape(n, torch.Size(grid).numel(), -1))
        positions = grid_positions(grid, x.device)
        if offset is not None:
            positions = positions + offset.to(x.device)
        return tokens + sinusoidal_encoding(positions, tokens.shape[-1]).to(tokens.dtype), grid


class PatchEmbeddings(nn.ModuleDict):
    """The patch embedding of each dimensionality (`"2d"`, `"3d"`), called as one layer: `latent [n, *space, C]` ->
    tokens `[n, n_patches, hidden]` by the embedding of the latent's dimensionality (its grid: `grid(space)`). The
    model's input embeddings (`get_input_embeddings`): the first learned map every dataset's fields share, whose
    output transformers' and PEFT's `enable_input_require_grads` mark as requiring grad."""

    def forward(self, latent: torch.Tensor, offset: torch.Tensor | None = None) -> torch.Tensor:
        return self[f"{latent.ndim - 2}d"](latent, offset)[0]

    def grid(self, space: tuple[int, ...]) -> tuple[int, ...]:
        return self[f"{len(space)}d"].grid(space)


class PatchUnembedding(nn.Module):
    """Inverse of `PatchEmbedding`: each token becomes a `patch^d` block of `out_channels` features.

    Input `[n, n_patches, hidden]` with its patch grid, output `[n, *space, out_channels]` cropped to `space`.
    """

    def __init__(self, hidden_size: int, out_channels: int, patch_size: int, n_spatial_dims: int):
        super().__init__()
        self.patch_size, self.n_spatial_dims, self.out_channels = patch_size, n_spatial_dims, out_channels
        # A FieldLinear (pointwise over the tokens) for its fan-in init: with transformers' fixed std of 0.02 the
        # decoder would receive the backbone's features shrunk several-fold.
        self.proj = FieldLinear(hidden_size, out_channels * patch_size**n_spatial_dims)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, ...], space: tuple[int, ...]) -> torch.Tensor:
        n, d, p = tokens.shape[0], self.n_spatial_dims, self.patch_size
        x = self.proj(tokens).reshape(n, *grid, *([p] * d), self.out_channels)
        # [n, g1..gd, p1..pd, c] -> [n, g1, p1, ..., gd, pd, c]
        order = [0] + [axis for i in range(d) for axis in (1 + i, d + 1 + i)] + [2 * d + 1]
        x = x.permute(order).reshape(n, *[g * p for g in grid], self.out_channels)
        if tuple(x.shape[1:-1]) != tuple(space):
            x = x[(slice(None), *[slice(0, s) for s in space])]
        return x


class TokenInterpolation(nn.Module):
    """A smooth alternative to `PatchUnembedding`: each token is projected to `out_channels` features at its patch's
    centre and the grid of them is interpolated (bilinear in 2D, trilinear in 3D) to full resolution, so the decoder
    receives no step at patch edges (which `PatchUnembedding`'s independent blocks can put there).

    Input `[n, n_patches, hidden]` with its patch grid, output `[n, *space, out_channels]` cropped to `space`.
    """

    def __init__(self, hidden_size: int, out_channels: int, patch_size: int, n_spatial_dims: int):
        super().__init__()
        self.patch_size, self.n_spatial_dims, self.out_channels = patch_size, n_spatial_dims, out_channels
        self.proj = FieldLinear(hidden_size, out_channels)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, ...], space: tuple[int, ...]) -> torch.Tensor:
        n, p = tokens.shape[0], self.patch_size
        x = self.proj(tokens).reshape(n, *grid, self.out_channels).movedim(-1, 1)
        mode = "bilinear" if self.n_spatial_dims == 2 else "trilinear"
        x = F.interpolate(x, size=[g * p for g in grid], mode=mode, align_corners=False).movedim(1, -1)
        return x[(slice(None), *[slice(0, s) for s in space])]


class SpectralTokenizer(nn.Module):
    """Spectral tokens: one token per retained low Fourier mode of a frame.

    A real FFT over the spatial axes keeps the lowest `modes` frequencies on every axis, both signs on every
    non-last axis (the last axis of a real FFT is one-sided already). Each mode's complex coefficients over the
    latent channels become one token, tagged with a code of its signed wavenumber; `modes` is chosen per grid
    dimensionality.

    Input `[n, *space, channels]`, output `[n, n_modes, hidden]`.
    """

    def __init__(self, in_channels: int, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(2 * in_channels, hidden_size)
        self.norm = nn.LayerNorm(hidden_size)

    def forward(self, x: torch.Tensor, modes: int) -> torch.Tensor:
        space = tuple(x.shape[1:-1])
        indices = low_mode_indices(space, modes, device=x.device)
        # Coefficients as grid averages ("forward" normalisation), so they do not grow with resolution.
        coefficients = truncated_rfftn(x, indices) * math.prod(space) ** -0.5
        coefficients = coefficients.flatten(1, len(space))  # [n, K, C] complex
        features = torch.cat([coefficients.real, coefficients.imag], dim=-1).to(x.dtype)
        wavenumbers = [
            signed_wavenumbers(index, n) if axis < len(space) - 1 else index
            for axis, (index, n) in enumerate(zip(indices, space))
        ]
        positions = torch.stack(torch.meshgrid(*wavenumbers, indexing="ij"), dim=-1).reshape(-1, len(space))
        code = sinusoidal_encoding(positions, self.proj.out_features)
        return self.norm(self.proj(features)) + code.to(x.dtype)
