"""Patch jitter: the patch grid moves from step to step, so no fixed grid can print itself on a rollout.

A strided patch tokenizer sees a field through a grid fixed in space; errors it makes at patch edges land in the same
place every step and grow into tiles (docs/decisions.md, "Patch jitter"). Following Walrus (arXiv 2511.15684,
section 3.2), the latent fields of a step are shifted by `s` points (`0 <= s < patch`, per axis) before the patch
embedding and the decoder, and the decoded field is shifted back: periodic axes roll (exactly equivariant), walled
axes are zero-padded by `s` before and `patch - s` after (one more patch along them) and cropped after decoding, so
their walls never meet. In training `s` is drawn at random each step; in evaluation it follows a fixed low-discrepancy
sequence over the rollout's steps, so a rollout is deterministic and still never sits on one grid.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# Additive recurrence of the R_d sequence (Roberts 2018): per axis a different irrational step, so the shifts of
# successive steps cover the patch evenly on every axis.
_R3_ROOT = 1.2207440846057596  # the plastic-type root of x^4 = x + 1 used for three axes
R_STEPS = tuple(1.0 / _R3_ROOT ** (k + 1) for k in range(3))


def patch_shifts(patch: int, n_spatial_dims: int, step: int, training: bool) -> tuple[int, ...]:
    """Shift per spatial axis for rollout `step`: random in training, the R_d sequence's `step`-th point otherwise."""
    if training:
        return tuple(int(v) for v in torch.randint(0, patch, (n_spatial_dims,)))
    return tuple(int(math.floor(((0.5 + (step + 1) * R_STEPS[k]) % 1.0) * patch)) for k in range(n_spatial_dims))


def shift_fields(x: torch.Tensor, shifts: tuple[int, ...], periodic: tuple[bool, ...], patch: int) -> torch.Tensor:
    """`x [n, *space, C]` -> the jittered field: periodic axes rolled by their shift, walled axes zero-padded by
    `(shift, patch - shift)` (so `[n, *space', C]` with `space'` one patch longer on walled axes)."""
    x = _roll_periodic(x, shifts, periodic, 1)
    pads = [0, 0]  # the channel axis; F.pad lists axes last first
    for k in reversed(range(len(shifts))):
        pads += [0, 0] if periodic[k] else [shifts[k], patch - shifts[k]]
    return F.pad(x, pads) if any(pads) else x


def unshift_fields(x: torch.Tensor, shifts: tuple[int, ...], periodic: tuple[bool, ...],
                   space: tuple[int, ...]) -> torch.Tensor:
    """Inverse of `shift_fields`: `[n, *space', C]` -> `[n, *space, C]`."""
    index = [slice(None)] + [slice(None) if p else slice(s, s + n) for s, p, n in zip(shifts, periodic, space)]
    return _roll_periodic(x[tuple(index)], shifts, periodic, -1)


def _roll_periodic(x: torch.Tensor, shifts: tuple[int, ...], periodic: tuple[bool, ...], sign: int) -> torch.Tensor:
    """`x [n, *space, C]` rolled by `sign * shift` along each periodic axis."""
    rolls = [(sign * s, 1 + k) for k, (s, p) in enumerate(zip(shifts, periodic)) if p and s]
    return torch.roll(x, shifts=[s for s, _ in rolls], dims=[a for _, a in rolls]) if rolls else x


def position_offsets(shifts: tuple[int, ...], patch: int) -> torch.Tensor:
    """Where token 0 starts, in patches, after a shift: the position code of a token stays tied to the points it
    covers, not to its index on the moving grid."""
    return -torch.tensor(shifts, dtype=torch.float32) / patch
