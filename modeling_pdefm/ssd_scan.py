"""Selective state-space scans of the Mamba-2 (SSD) form.

The recurrence, per batch element and head (state `h` of shape `[head_dim, state]`):

    h_t = exp(dt_t * A) * h_{t-1} + dt_t * x_t B_t^T
    y_t = h_t C_t

`A` is one negative scalar per head, so the decay between any two positions is a scalar and the scan
can be written as matrix products inside chunks plus a short recurrence across chunks. That form runs
fast on a CPU with plain PyTorch; on CUDA, `mamba-ssm`'s Triton kernel computes the same thing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

try:  # optional CUDA kernels; never required
    from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
except Exception:  # noqa: BLE001 - any import failure (no CUDA, no triton) means "not available"
    mamba_chunk_scan_combined = None


def mamba_kernels_available(x: torch.Tensor) -> bool:
    """True when `mamba-ssm`'s kernels can run on `x` (importable and `x` on CUDA)."""
    return mamba_chunk_scan_combined is not None and x.is_cuda


def _segment_sum(log_decay: torch.Tensor) -> torch.Tensor:
    """Pairwise sums `out[..., i, j] = sum_{k=j+1..i} log_decay[..., k]` for i >= j, -inf above the diagonal.

    Built from masked cumulative sums (not differences of one cumsum) to stay accurate in float32.
    """
    length = log_decay.shape[-1]
    expanded = log_decay.unsqueeze(-1).expand(*log_decay.shape, length)  # [..., k, j] = a_k
    strictly_lower = torch.ones(length, length, dtype=torch.bool, device=log_decay.device).tril(-1)
    summed = expanded.masked_fill(~strictly_lower, 0.0).cumsum(dim=-2)
    lower = torch.ones(length, length, dtype=torch.bool, device=log_decay.device).tril(0)
    return summed.masked_fill(~lower, float("-inf"))


def ssd_scan_chunked(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """Chunked SSD scan in pure PyTorch; no Python loop over tokens.

    Args:
        x: `[batch, length, heads, head_dim]` inputs.
        dt: `[batch, length, heads]` positive step sizes (already through softplus).
        A: `[heads]` negative decay rates.
        B, C: `[batch, length, groups, state]` input and output projections; heads are split evenly into groups.
        chunk_size: tokens per chunk.

    Returns:
        `[batch, length, heads, head_dim]` outputs `y` (without the `D` skip term).
    """
    batch, length, heads, head_dim = x.shape
    groups = B.shape[2]
    pad = (-length) % chunk_size
    if pad:
        # Zero steps at the end change nothing before them: the scan is causal.
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    n_chunks = x.shape[1] // chunk_size
    # Heads share their group's B and C.
    B = B.repeat_interleave(heads // groups, dim=2)
    C = C.repeat_interleave(heads // groups, dim=2)

    x = (x * dt.unsqueeze(-1)).reshape(batch, n_chunks, chunk_size, heads, head_dim)
    B = B.reshape(batch, n_chunks, chunk_size, heads, -1)
    C = C.reshape(batch, n_chunks, chunk_size, heads, -1)
    log_decay = (dt * A).reshape(batch, n_chunks, chunk_size, heads).permute(0, 3, 1, 2)  # [b, h, c, l]
    cum_decay = log_decay.cumsum(dim=-1)

    # Within each chunk: y_i = sum_{j<=i} (C_i . B_j) exp(sum_{j<k<=i} a_k) x_j.
    decay_within = torch.exp(_segment_sum(log_decay))  # [b, h, c, l, l]
    scores = torch.einsum("bclhn,bcshn->bhcls", C, B) * decay_within
    y = torch.einsum("bhcls,bcshp->bclhp", scores, x)

    # State each chunk leaves behind, from its own tokens only.
    decay_to_end = torch.exp(cum_decay[..., -1:] - cum_decay)  # [b, h, c, l]
    chunk_states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B, decay_to_end, x)

    # Carry states across chunks (a short recurrence over chunks, as one matrix product).
    chunk_states = torch.cat([torch.zeros_like(chunk_states[:, :1]), chunk_states], dim=1)
    decay_between = torch.exp(_segment_sum(F.pad(cum_decay[..., -1], (1, 0))))  # [b, h, c+1, c+1]
    carried = torch.einsum("bhzc,bchpn->bzhpn", decay_between, chunk_states)[:, :-1]

    # Contribution of the carried state to each token.
    decay_from_start = torch.exp(cum_decay)  # [b, h, c, l]
    y = y + torch.einsum("bclhn,bchpn,bhcl->bclhp", C, carried, decay_from_start)
    return y.reshape(batch, n_chunks * chunk_size, heads, head_dim)[:, :length]


def ssd_scan_sequential(x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor) -> torch.Tensor:
    """The recurrence one token at a time: slow, obviously right; the reference the other paths are tested against."""
    batch, length, heads, head_dim = x.shape
    groups = B.shape[2]
    B = B.repeat_interleave(heads // groups, dim=2)
    C = C.repeat_interleave(heads // groups, dim=2)
    state = x.new_zeros(batch, heads, head_dim, B.shape[-1])
    outputs = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)  # [b, h]
        update = torch.einsum("bhp,bhn->bhpn", x[:, t] * dt[:, t, :, None], B[:, t])
        state = state * decay[..., None, None] + update
        outputs.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    return torch.stack(outputs, dim=1)


def ssd_scan(
    x: torch.Tensor, dt: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, chunk_size: int
) -> torch.Tensor:
    """Dispatch: `mamba-ssm`'s fused kernel on CUDA when installed, else the chunked PyTorch scan."""
    if mamba_kernels_available(x):
        return mamba_chunk_scan_combined(x, dt, A, B, C, chunk_size)
    return ssd_scan_chunked(x, dt, A, B, C, chunk_size)
