"""The decoder: from the backbone's tokens of the last frame back to a full-resolution latent field.

`FieldDecoder` un-patches the tokens, joins them with the latent fields of the last input frames (a full-resolution
skip), and passes the result through residual blocks whose kernel is a spectral convolution (`decoder_type="fno"`,
the paper's FNO decoder) or a 3x3 convolution (`decoder_type="conv"`, `tiny`). Boundaries enter through two layers:
walled axes are zero-padded around Fourier blocks (`WallPadding`), and 3x3 blocks wrap periodic axes (`PeriodicPad`).
All tensors are channels last: `[n, *space, channels]`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conditioning_layers import FiLM
from .configuration_pdefm import PDEFMConfig
from .spectral_layers import SpectralConv
from .tokenizer_layers import FieldLinear, PatchUnembedding, TokenInterpolation, conv_class, weights_readable


class PeriodicPad(torch.autograd.Function):
    """One point of periodic padding on each of `axes` of a tensor: `[..., n, ...]` -> `[..., n + 2, ...]`, the
    first point after the last and the last before the first (corners included).

    Written out because the same pad as `torch.cat` of edge slices costs twice as much backwards: autograd gives
    every slice a zero-filled gradient of the whole input and sums them; here the gradient is the interior plus
    the padded rows folded back onto the edges they copy.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
        ctx.axes = axes
        shape = list(x.shape)
        for axis in axes:
            shape[axis] += 2
        out = x.new_empty(shape)
        out[tuple(slice(1, -1) if axis in axes else slice(None) for axis in range(x.ndim))] = x
        # Axis by axis over the whole extent of the others, so the corners copy already-wrapped rows.
        for axis in axes:
            n = x.shape[axis]
            out.narrow(axis, 0, 1).copy_(out.narrow(axis, n, 1))
            out.narrow(axis, n + 1, 1).copy_(out.narrow(axis, 1, 1))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.clone()
        # Reverse order of the forward: fold each axis's padded rows onto the rows they copied, then drop them.
        for axis in reversed(ctx.axes):
            n = grad.shape[axis] - 2
            grad.narrow(axis, 1, 1).add_(grad.narrow(axis, n + 1, 1))
            grad.narrow(axis, n, 1).add_(grad.narrow(axis, 0, 1))
            grad = grad.narrow(axis, 1, n)
        return grad, None


def wrap_periodic_axes(x: torch.Tensor, periodic: tuple[bool, ...]) -> torch.Tensor:
    """`PeriodicPad` of a channels-last field `[n, *space, c]` on the spatial axes flagged in `periodic`."""
    return PeriodicPad.apply(x, tuple(axis for axis, wraps in enumerate(periodic, start=1) if wraps))


def boundary_pad(x: torch.Tensor, periodic: torch.Tensor) -> torch.Tensor:
    """One point of padding on every spatial axis of a channels-last field `[n, *space, c]`, wrapped where the bool
    tensor `periodic [d]` says so and zero elsewhere, chosen by tensor ops: what a trace (`torch.export`) can follow
    when the boundary conditions are inputs. Axis by axis, so corners are what `PeriodicPad` and zero padding give."""
    for axis in range(1, x.ndim - 1):
        n = x.shape[axis]
        wrapped = torch.cat([x.narrow(axis, n - 1, 1), x, x.narrow(axis, 0, 1)], dim=axis)
        zeros = x.new_zeros(*x.shape[:axis], 1, *x.shape[axis + 1:])
        x = torch.where(periodic[axis - 1], wrapped, torch.cat([zeros, x, zeros], dim=axis))
    return x


def periodic_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  periodic: tuple[bool, ...] | torch.Tensor | None) -> torch.Tensor:
    """A 3x3 convolution of a channels-last field `[n, *space, c]` with `weight [out, c, 3, ...]`, wrapping around
    the axes flagged in `periodic` and zero-padding the others (all of them when `periodic` is None)."""
    d = weight.ndim - 2
    if torch.is_tensor(periodic):
        return getattr(F, f"conv{d}d")(boundary_pad(x, periodic).movedim(-1, 1), weight, bias).movedim(1, -1)
    periodic = tuple(periodic) if periodic else (False,) * d
    if any(periodic):
        # Wrap in the channels-last layout: the convolution then keeps its fast channels-last path, which a
        # channels-first circular `F.pad` would lose (20% of a tiny training step).
        x = wrap_periodic_axes(x, periodic)
    padding = tuple(0 if wraps else 1 for wraps in periodic)
    return getattr(F, f"conv{d}d")(x.movedim(-1, 1), weight, bias, padding=padding).movedim(1, -1)


def boundary_conv(conv: nn.Module, x: torch.Tensor, periodic: tuple[bool, ...] | torch.Tensor | None) -> torch.Tensor:
    """A 3x3 convolution layer (built with `padding=1`) applied to a channels-last field `[n, *space, c]`, wrapping
    around the axes flagged in `periodic` and zero-padding the others."""
    if type(conv) is conv_class(x.ndim - 2) and weights_readable(conv):
        return periodic_conv(x, conv.weight, conv.bias, periodic)
    if torch.is_tensor(periodic):  # traced: pad by tensor ops, crop what the layer's own padding adds
        out = conv(boundary_pad(x, periodic).movedim(-1, 1)).movedim(1, -1)
        return out[(slice(None), *[slice(1, -1)] * (x.ndim - 2))]
    # A wrapped layer (a LoRA adapter around the convolution, or an offloading hook) is called as itself, or its own
    # part would be skipped: its zero padding then adds a point outside the wrapped one, whose outputs are cropped.
    if not periodic or not any(periodic):
        return conv(x.movedim(-1, 1)).movedim(1, -1)
    out = conv(wrap_periodic_axes(x, periodic).movedim(-1, 1)).movedim(1, -1)
    return out[(slice(None), *[slice(1, -1) if wraps else slice(None) for wraps in periodic])]


class WallPadding(nn.Module):
    """Zero padding of the walled (non-periodic) axes by `fraction` of their length on both sides, undone after the
    decoder's blocks (neuraloperator's `DomainPadding`, per axis): Fourier layers would otherwise couple the two
    walls as if they were neighbours. `fraction=0` pads nothing."""

    def __init__(self, fraction: float):
        super().__init__()
        self.fraction = fraction

    def widths(self, periodic: tuple[bool, ...] | torch.Tensor, space: tuple[int, ...]) -> tuple[int, ...]:
        """Points of padding on each side of each spatial axis: 0 on a periodic one."""
        if not self.fraction:
            return (0,) * len(space)
        if torch.is_tensor(periodic):
            raise ValueError("this model pads walled axes before its decoder's blocks (wall_padding, the Fourier "
                             "decoder or decoder_conv_padding='zeros'), so the shapes it computes depend on the values "
                             "of boundary_conditions, which a trace (torch.export) cannot follow; export a model "
                             "with wall_padding=0 or decoder_type='conv' with decoder_conv_padding='boundary'")
        return tuple(0 if wraps else max(1, round(self.fraction * n)) for wraps, n in zip(periodic, space))

    def pad(self, x: torch.Tensor, widths: tuple[int, ...]) -> torch.Tensor:
        return F.pad(x, [0, 0] + [p for width in reversed(widths) for p in (width, width)]) if any(widths) else x

    def unpad(self, x: torch.Tensor, widths: tuple[int, ...]) -> torch.Tensor:
        if not any(widths):
            return x
        return x[(slice(None), *[slice(w, x.shape[i + 1] - w) for i, w in enumerate(widths)])]


class DecoderBlock(nn.Module):
    """One full-resolution decoder block: `x + act(K(x) + W x)` with K a spectral convolution (FNO, `"fno"`) or a
    3x3 convolution (`"conv"`), and W pointwise; the residual keeps signal and gradient alive through the stack.
    `[n, *space, width]` in and out (channels last)."""

    def __init__(self, width: int, modes: int, n_spatial_dims: int, kind: str):
        super().__init__()
        # `kernel` keeps its name in every kind: saved models' state dicts and LoRA targets refer to it.
        conv = conv_class(n_spatial_dims)
        self.kernel = conv(width, width, 3, padding=1) if kind == "conv" else SpectralConv(width, width, modes, n_spatial_dims)
        self.pointwise = FieldLinear(width, width)

    def forward(self, x: torch.Tensor, periodic: tuple[bool, ...] | torch.Tensor | None = None) -> torch.Tensor:
        """`periodic`: per spatial axis, whether the 3x3 convolutions wrap around it (else they zero-pad it); a bool
        tensor under a trace."""
        if isinstance(self.kernel, SpectralConv):
            return x + F.gelu(self.pointwise(x) + self.kernel(x))
        d, conv = x.ndim - 2, self.kernel
        if type(conv) is conv_class(d) and type(self.pointwise) is FieldLinear and weights_readable(conv, self.pointwise):
            # W is the 3x3 convolution's centre tap: one convolution instead of a convolution, a matrix product and
            # a sum (a quarter of a block's training step at tiny's size). Layers wrapped by an adapter (LoRA) or by
            # a hook (offloading) are called as themselves below.
            tap = self.pointwise.weight.view(*self.pointwise.weight.shape, *[1] * d)
            return x + F.gelu(periodic_conv(x, conv.weight + F.pad(tap, [1, 1] * d), conv.bias + self.pointwise.bias,
                                            periodic))
        return x + F.gelu(self.pointwise(x) + boundary_conv(conv, x, periodic))


class FieldDecoder(nn.Module):
    """Decodes the last frame's tokens to a full-resolution latent field with spectral (`"fno"`) or 3x3 (`"conv"`)
    residual blocks.

    Tokens are un-patched to `latent_channels` features per point, joined with the latent fields of the last
    `config.skip_frames()` input frames (a full-resolution skip: patches alone lose sub-patch detail), lifted to
    `decoder_width`, passed through `decoder_layers` blocks and projected back to the shared latent space.

    With `config.decoder_film` each block's input is modulated by the step's context (`context [n, hidden]`).

    `tokens [n, n_patches, hidden]`, `skip [n, *space, skip_frames * latent_channels]` ->
    `[n, *space, latent_channels]`.
    """

    def __init__(self, config: PDEFMConfig, n_spatial_dims: int):
        super().__init__()
        patch, _, modes = config.grid_settings(n_spatial_dims)
        channels = config.latent_channels
        unpatch = TokenInterpolation if config.decoder_unpatch == "interpolate" else PatchUnembedding
        self.unpatch = unpatch(config.hidden_size, channels, patch, n_spatial_dims)
        self.lift = FieldLinear((1 + config.skip_frames()) * channels, config.decoder_width)
        self.blocks = nn.ModuleList(
            DecoderBlock(config.decoder_width, modes, n_spatial_dims, config.decoder_type)
            for _ in range(config.decoder_layers)
        )
        self.films = nn.ModuleList(FiLM(config.decoder_width, config.hidden_size) for _ in self.blocks) \
            if config.decoder_film else None
        self.project = FieldLinear(config.decoder_width, channels)
        self.wrap_periodic = config.decoder_conv_padding == "boundary"
        # Wall padding keeps Fourier layers from coupling opposite walls; 3x3 blocks that zero-pad walls need none.
        self.wall_padding = WallPadding(0.0 if "wall_padding" in config.inactive_keys() else config.wall_padding)

    def forward(self, tokens: torch.Tensor, grid: tuple[int, ...], skip: torch.Tensor,
                periodic: tuple[bool, ...] | torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """`periodic`: per spatial axis, whether every sample's boundary on it is periodic: walled axes are padded
        (`wall_padding`) and 3x3 blocks wrap periodic ones (`decoder_conv_padding="boundary"`)."""
        space = tuple(skip.shape[1:-1])
        x = self.lift(torch.cat([self.unpatch(tokens, grid, space), skip], dim=-1))
        widths = self.wall_padding.widths(periodic, space)
        x = self.wall_padding.pad(x, widths)
        for i, block in enumerate(self.blocks):
            if self.films is not None:
                if context is None:
                    raise ValueError("this decoder (decoder_film) is modulated by the step's context: pass context")
                x = self.films[i](x, context)
            x = block(x, periodic if self.wrap_periodic else None)
        return self.project(self.wall_padding.unpad(x, widths))
