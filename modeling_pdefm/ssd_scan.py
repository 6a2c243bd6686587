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

    Built from masked cumulative sums (not differences of one cumsum) to stay accurate in float32 over long spans;
    used for the short sequence of chunk-level decays.
    """
    length = log_decay.shape[-1]
    expanded = log_decay.unsqueeze(-1).expand(*log_decay.shape, length)  # [..., k, j] = a_k
    strictly_lower = torch.ones(length, length, dtype=torch.bool, device=log_decay.device).tril(-1)
    summed = expanded.masked_fill(~strictly_lower, 0.0).cumsum(dim=-2)
    lower = torch.ones(length, length, dtype=torch.bool, device=log_decay.device).tril(0)
    return summed.masked_fill(~lower, float("-inf"))


def _chunk_decay_matrix(cum_decay: torch.Tensor) -> torch.Tensor:
    """`exp(cs_i - cs_j)` for i >= j, 0 above the diagonal, from one in-chunk cumulative sum `cs [..., l]`.

    Inside a chunk the sums are short, so the difference of one cumsum keeps float32 accuracy (mamba-ssm's kernel
    computes the same); the upper triangle is masked before the exponential so it can never overflow.
    """
    length = cum_decay.shape[-1]
    upper = torch.ones(length, length, dtype=torch.bool, device=cum_decay.device).triu(1)
    return torch.exp((cum_decay.unsqueeze(-1) - cum_decay.unsqueeze(-2)).masked_fill(upper, float("-inf")))


def ssd_scan_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Chunked SSD scan in pure PyTorch: no Python loop over tokens or chunks.

    Args:
        x: `[batch, length, heads, head_dim]` inputs.
        dt: `[batch, length, heads]` positive step sizes (already through softplus).
        A: `[heads]` negative decay rates.
        B, C: `[batch, length, groups, state]` input and output projections; heads are split evenly into groups.
        chunk_size: tokens per chunk.
        initial_state: `[batch, heads, head_dim, state]` state before the first token (zeros when omitted).
        return_final_state: also return the state after the last token, to continue the scan later.

    Returns:
        `[batch, length, heads, head_dim]` outputs `y` (without the `D` skip term), and the final state if asked.

    Cost is linear in `length`: inside a chunk the scan is a masked `[chunk, chunk]` matrix product; across chunks
    the `[head_dim, state]` states are combined by one `[chunks + 1, chunks + 1]` decay matrix.
    """
    batch, length, heads, head_dim = x.shape
    groups, state = B.shape[2], B.shape[3]
    per_group = heads // groups
    pad = (-length) % chunk_size
    if pad:
        # Zero steps at the end change nothing before them: the scan is causal.
        x = F.pad(x, (0, 0, 0, 0, 0, pad))
        dt = F.pad(dt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, 0, 0, pad))
    n_chunks = x.shape[1] // chunk_size
    # Heads-major layout [b, g, h, c, l, ...] from here on: every product below is a batched matrix product over
    # (batch, group, head, chunk) that reads its operands in place, instead of an einsum that permutes them into
    # that order (and back) on every call, forwards and backwards (9% of the scan at `tiny`'s size).
    x_dt = (x * dt.unsqueeze(-1)).view(batch, n_chunks, chunk_size, groups, per_group, head_dim).permute(0, 3, 4, 1, 2, 5)
    cum_decay = (dt * A).view(batch, n_chunks, chunk_size, groups, per_group).permute(0, 3, 4, 1, 2).cumsum(dim=-1)
    B = B.view(batch, n_chunks, chunk_size, groups, state).permute(0, 3, 1, 2, 4).unsqueeze(2)  # [b, g, 1, c, l, n]
    C = C.view(batch, n_chunks, chunk_size, groups, state).permute(0, 3, 1, 2, 4).unsqueeze(2)

    # Within each chunk: y_i = sum_{j<=i} (C_i . B_j) exp(sum_{j<k<=i} a_k) x_j dt_j. C.B is shared by a group's heads.
    scores = (C @ B.transpose(-1, -2)) * _chunk_decay_matrix(cum_decay)  # [b, g, h, c, l, s]
    y = scores @ x_dt  # [b, g, h, c, l, p]

    # State each chunk leaves behind from its own tokens.
    decay_to_end = torch.exp(cum_decay[..., -1:] - cum_decay)  # [b, g, h, c, l]
    chunk_states = (x_dt * decay_to_end.unsqueeze(-1)).transpose(-1, -2) @ B  # [b, g, h, c, p, n]
    # States entering each chunk (and the final one): all chunks at once through the chunk-level decays.
    if initial_state is None:
        initial = chunk_states.new_zeros(batch, groups, per_group, 1, head_dim, state)
    else:
        initial = initial_state.reshape(batch, groups, per_group, 1, head_dim, state).to(chunk_states.dtype)
    states = torch.cat([initial, chunk_states], dim=3)  # [b, g, h, c+1, p, n]
    carry = torch.exp(_segment_sum(F.pad(cum_decay[..., -1], (1, 0))))  # [b, g, h, c+1 (to), c+1 (from)]
    carried = (carry @ states.flatten(-2)).view(states.shape)

    # Contribution of the state entering each chunk to each of its tokens.
    y = y + (C @ carried[:, :, :, :-1].transpose(-1, -2)) * torch.exp(cum_decay).unsqueeze(-1)
    y = y.permute(0, 3, 4, 1, 2, 5).reshape(batch, n_chunks * chunk_size, heads, head_dim)[:, :length]
    if return_final_state:
        return y, carried[:, :, :, -1].reshape(batch, heads, head_dim, state)
    return y


def ssd_scan_sequential(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """The recurrence one token at a time: slow, obviously right; the reference the other paths are tested against."""
    batch, length, heads, head_dim = x.shape
    groups = B.shape[2]
    B = B.repeat_interleave(heads // groups, dim=2)
    C = C.repeat_interleave(heads // groups, dim=2)
    state = x.new_zeros(batch, heads, head_dim, B.shape[-1]) if initial_state is None else initial_state
    outputs = []
    for t in range(length):
        decay = torch.exp(dt[:, t] * A)  # [b, h]
        update = torch.einsum("bhp,bhn->bhpn", x[:, t] * dt[:, t, :, None], B[:, t])
        state = state * decay[..., None, None] + update
        outputs.append(torch.einsum("bhpn,bhn->bhp", state, C[:, t]))
    y = torch.stack(outputs, dim=1)
    return (y, state) if return_final_state else y


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Dispatch: `mamba-ssm`'s fused kernel on CUDA when installed, else the chunked PyTorch scan. Same arguments
    and results as `ssd_scan_chunked`."""
    if mamba_kernels_available(x):
        return mamba_chunk_scan_combined(
            x, dt, A, B, C, chunk_size, initial_states=initial_state, return_final_states=return_final_state
        )
    return ssd_scan_chunked(x, dt, A, B, C, chunk_size, initial_state, return_final_state)
