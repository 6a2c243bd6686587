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


def _apply_along(x: torch.Tensor, matrix: torch.Tensor, axis: int) -> torch.Tensor:
    """`matrix [m, n]` applied along `axis` of `x` (of length n): one batched matrix product on a view, no copy."""
    shape = x.shape
    out = torch.matmul(matrix, x.reshape(shape[:axis].numel(), shape[axis], -1))
    return out.reshape(*shape[:axis], matrix.shape[0], *shape[axis + 1 :])


def dft_matrix(size: int, index: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Complex orthonormal DFT rows `[len(index), size]` for the FFT indices `index` (or, with `inverse`, the
    columns `[size, len(index)]` that map those modes back)."""
    positions = torch.arange(size, device=index.device, dtype=torch.float64)
    angle = 2 * torch.pi * torch.outer(index.to(torch.float64), positions) / size
    sign = 1.0 if inverse else -1.0
    matrix = torch.polar(torch.full_like(angle, size**-0.5), sign * angle)
    return (matrix.T if inverse else matrix).to(torch.complex64)


def rfft_multiplicity(size: int, kept: int, device=None) -> torch.Tensor:
    """`[kept]` how many modes each of the first `kept` coefficients of a real FFT of length `size` stands for:
    2 for 0 < k < size/2 (k and its unstored mirror -k), 1 for k = 0 and the Nyquist mode of an even length."""
    k = torch.arange(kept, device=device)
    return torch.where((k > 0) & (2 * k != size), 2.0, 1.0)


def nyquist_fraction(space: tuple[int, ...], device=None) -> torch.Tensor:
    """`[*modes]` |k| / k_Nyquist of each coefficient of an `rfftn` over `space` (0 at the mean mode, 1 at the
    Nyquist wavenumber of an axis, up to sqrt(d) in the grid's corner)."""
    d = len(space)
    fraction2 = None
    for axis, n in enumerate(space):
        k = (torch.fft.rfftfreq(n, device=device) if axis == d - 1 else torch.fft.fftfreq(n, device=device)) * 2
        shape = [1] * d
        shape[axis] = -1
        fraction2 = (k**2).view(shape) if fraction2 is None else fraction2 + (k**2).view(shape)
    return fraction2.sqrt()


def band_gain_filter(x: torch.Tensor, log_gain: torch.Tensor, periodic: tuple[bool, ...]) -> torch.Tensor:
    """Scale each band of |k| / k_Nyquist of a channels-last field `x [n, *space, C]` by its gain:
    `log_gain [bands, C]`, band `i` covering fractions `[i / bands, (i + 1) / bands)` and the last one everything
    above. Axes that are not `periodic` are mirrored before the transform (and cropped after), so a wall is not
    joined to the opposite one: the filter then acts as a cosine transform does there. Zero gains are the identity."""
    d = len(periodic)
    dims = tuple(range(1, d + 1))
    for axis, wraps in enumerate(periodic, start=1):
        if not wraps:
            x = torch.cat([x, x.flip(axis)], dim=axis)
    space = tuple(x.shape[1 : d + 1])
    bands = log_gain.shape[0]
    index = (nyquist_fraction(space, x.device) * bands).long().clamp(max=bands - 1)  # [*modes]
    gain = log_gain.exp()[index]  # [*modes, C]
    filtered = torch.fft.irfftn(torch.fft.rfftn(x.float(), dim=dims) * gain, s=space, dim=dims).to(x.dtype)
    crop = tuple(slice(None) if wraps else slice(0, n // 2) for wraps, n in zip(periodic, space))
    return filtered[(slice(None), *crop)]


def real_dft_matrices(size: int, kept: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Real matrices of the truncated orthonormal real FFT along one axis and of its inverse.

    forward `[2k, size]`: real parts of modes 0..k-1 stacked over their imaginary parts (what `rfft` gives).
    inverse `[size, 2k]`: what `irfft(..., n=size)` makes of those modes (the others zero): the modes between 0
    and the Nyquist one stand for their mirrors too, so they count twice, and the imaginary parts of mode 0 and of
    the Nyquist mode are ignored.
    """
    k = torch.arange(kept, device=device, dtype=torch.float64)
    positions = torch.arange(size, device=device, dtype=torch.float64)
    angle = 2 * torch.pi * torch.outer(k, positions) / size  # [k, size]
    scale = size**-0.5
    forward = torch.cat([angle.cos(), -angle.sin()]) * scale
    multiplicity = rfft_multiplicity(size, kept, device).to(torch.float64)[:, None]
    inverse = (torch.cat([angle.cos() * multiplicity, -angle.sin() * multiplicity]) * scale).T
    return forward.float(), inverse.float()


def truncated_rfftn(x: torch.Tensor, indices: list[torch.Tensor]) -> torch.Tensor:
    """The modes `indices` (per spatial axis, as `low_mode_indices` gives) of the orthonormal `rfftn` of a
    channels-last `x [batch, *space, C]`: `[batch, *kept, C]` complex, computed as products with the DFT rows of
    those modes only, on `x` as it lies (no transposes, no transform of the modes that would be dropped). Always in
    float32, also under autocast."""
    with torch.autocast(x.device.type, enabled=False):
        return _truncated_rfftn(x.float(), indices)


def _truncated_rfftn(x: torch.Tensor, indices: list[torch.Tensor]) -> torch.Tensor:
    space = tuple(x.shape[1:-1])
    d = len(space)
    kept_last = indices[-1].numel()
    parts = _apply_along(x, real_dft_matrices(space[-1], kept_last, x.device)[0], d)  # real parts, then imaginary
    x_ft = torch.complex(parts.narrow(d, 0, kept_last), parts.narrow(d, kept_last, kept_last))
    for axis in range(1, d):
        x_ft = _apply_along(x_ft, dft_matrix(space[axis - 1], indices[axis - 1]), axis)
    return x_ft


def truncated_irfftn(x_ft: torch.Tensor, indices: list[torch.Tensor], space: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `truncated_rfftn`: `irfftn` over `space` of the modes `indices` (all others zero), channels last,
    in float32."""
    with torch.autocast(x_ft.device.type, enabled=False):
        return _truncated_irfftn(x_ft, indices, space)


def _truncated_irfftn(x_ft: torch.Tensor, indices: list[torch.Tensor], space: tuple[int, ...]) -> torch.Tensor:
    d = len(space)
    for axis in range(1, d):
        x_ft = _apply_along(x_ft, dft_matrix(space[axis - 1], indices[axis - 1], inverse=True), axis)
    inverse_last = real_dft_matrices(space[-1], indices[-1].numel(), x_ft.device)[1]
    return _apply_along(torch.cat([x_ft.real, x_ft.imag], dim=d), inverse_last, d)


class SpectralConv(nn.Module):
    """Fourier layer of an FNO: multiply the lowest modes by learned complex matrices, drop the rest.

    Works for 2D and 3D grids, channels last: input `[batch, *space, in_channels]`, output
    `[batch, *space, out_channels]`. Weights are stored as real tensors `[in, out, 2m, ..., 2m, m, 2]` (real and
    imaginary parts) so they save to safetensors and all-reduce like any parameter.

    Only the kept modes are ever computed: the truncated transform is a product with the few DFT rows it needs,
    along each axis, on the channels-last tensor as it lies (equal to `rfftn`, selection, `irfftn`, without the
    transposes an FFT along a non-contiguous axis costs, and without transforming modes that are dropped).
    """

    def __init__(self, in_channels: int, out_channels: int, modes: int, n_spatial_dims: int):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.modes, self.n_spatial_dims = modes, n_spatial_dims
        mode_shape = [2 * modes] * (n_spatial_dims - 1) + [modes]
        self.weight = nn.Parameter(torch.empty(in_channels, out_channels, *mode_shape, 2))
        self.reset_parameters()
        letters = "xyz"[:n_spatial_dims]
        self._contraction = f"b{letters}i,io{letters}->b{letters}o"

    @torch.no_grad()
    def reset_parameters(self) -> None:
        scale = 1.0 / (self.in_channels * self.out_channels)
        self.weight.uniform_(-scale, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        space = tuple(x.shape[1:-1])
        d = len(space)
        indices = low_mode_indices(space, self.modes, device=x.device)
        x_ft = truncated_rfftn(x, indices)
        weight = torch.view_as_complex(self.weight.float())
        for axis, used in enumerate(indices):
            weight = weight.index_select(2 + axis, weight_mode_index(self.modes, used, axis == d - 1))
        with torch.autocast(x.device.type, enabled=False):
            out = torch.einsum(self._contraction, x_ft, weight)
        return truncated_irfftn(out, indices, space).to(x.dtype)
