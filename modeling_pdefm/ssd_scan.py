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
    lower = torch.ones(length, length, dtype=torch.bool, device=cum_decay.device).tril()
    # `where` writes its result once; an out-of-place masked fill copies the differences first (both ways).
    return torch.exp(torch.where(lower, cum_decay.unsqueeze(-1) - cum_decay.unsqueeze(-2), float("-inf")))


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
    layout = (n_chunks, chunk_size, groups)
    cum_decay = _heads_major(dt * A, *layout).cumsum(dim=-1)  # [b, g, h, c, l]
    B, C = _heads_major(B, *layout), _heads_major(C, *layout)  # [b, g, 1, c, l, n]: a group's heads share them
    if initial_state is not None:
        initial_state = initial_state.reshape(batch, groups, per_group, 1, head_dim, state)
    y, final = ChunkedScan.apply(x, dt, cum_decay, B, C, initial_state)
    y = y[:, :length]
    if return_final_state:
        return y, final.reshape(batch, heads, head_dim, state)
    return y


def _heads_major(t: torch.Tensor, n_chunks: int, chunk: int, groups: int) -> torch.Tensor:
    """The heads-major view `[b, g, h, c, l, ...]` of a positions-major `t [b, c * l, g * h, ...]` (no copy)."""
    trailing = tuple(range(5, t.ndim + 2))
    chunked = t.view(t.shape[0], n_chunks, chunk, groups, t.shape[2] // groups, *t.shape[3:])
    return chunked.permute(0, 3, 4, 1, 2, *trailing)


def _positions_major(t: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of `_heads_major`: `[b, g, h, c, l, ...]` -> `shape` `[b, c * l, g * h, ...]` (a view when `t` lies
    positions-major in memory, else a copy)."""
    return t.permute(0, 3, 4, 1, 2, *range(5, t.ndim)).reshape(shape)


def _carry_matrix(chunk_decay: torch.Tensor) -> torch.Tensor:
    """`[..., c + 1, c + 1]`: entry (i, j) is the decay from the state entering chunk j (j = 0: the initial state)
    to the one entering chunk i (i = c: the final state), from each chunk's total log decay `chunk_decay [..., c]`.
    The state after chunk j enters chunk j + 1, so column j + 1 carries chunk j's own contribution."""
    return torch.exp(_segment_sum(F.pad(chunk_decay, (1, 0))))


def _carry_matrix_backward(grad: torch.Tensor, carry: torch.Tensor) -> torch.Tensor:
    """Gradient of the chunks' total log decays from the gradient of `_carry_matrix`'s result `carry`: entry
    (i, j) is the exponential of the decays of chunks j..i-1, so chunk k gets the gradient of every (i, j) with
    j <= k < i."""
    weighted = grad * carry
    from_rows_below = weighted.flip(-2).cumsum(-2).flip(-2)  # [..., k, j]: the sum over i >= k
    size = carry.shape[-1]
    strictly_lower = torch.ones(size, size, dtype=torch.bool, device=carry.device).tril(-1)
    return torch.where(strictly_lower, from_rows_below, 0.0).sum(-1)[..., 1:]


class ChunkedScan(torch.autograd.Function):
    """The SSD scan of `ssd_scan_chunked` on one chunked layout, with its backward pass written out.

    `x [b, c * l, h, p]`, `dt [b, c * l, h]` (positions-major, as the mixer has them), `cum_decay [b, g, h', c, l]`
    (log decays summed within each chunk, heads-major: h' heads per group), `B, C [b, g, 1, c, l, n]`, `initial
    [b, g, h', 1, p, n]` or None (zeros) -> `y [b, c * l, h, p]` and the final state `[b, g, h', p, n]`. Computed
    in float32 at least (also under autocast); results and gradients in their inputs' dtypes.

    Written out because autograd copied every permuted, sliced or head-broadcast operand of these products again
    for each product that read it, forwards and backwards, and kept a pass per elementwise factor; here `x dt` is
    laid out heads-major in one pass, `B` and `C` are broadcast over the heads once, no state is sliced, `y` is
    written positions-major in one pass, and each gradient is formed once. Tested against autograd through the
    sequential recurrence.
    """

    @staticmethod
    def forward(ctx, x, dt, cum_decay, B, C, initial):
        ctx.dtypes = [None if t is None else t.dtype for t in (x, dt, cum_decay, B, C, initial)]
        layout = (*cum_decay.shape[3:], cum_decay.shape[1])  # chunks, chunk length, groups
        work = torch.promote_types(x.dtype, torch.float32)  # float32 at least, float64 stays
        with torch.autocast(x.device.type, enabled=False):
            x, dt, cum_decay = x.to(work), dt.to(work), cum_decay.to(work)
            x_dt = torch.mul(_heads_major(x, *layout), _heads_major(dt, *layout).unsqueeze(-1))
            x_dt = x_dt.contiguous()  # heads-major, read in place by every product below
            B_group, C_group = B.to(work).contiguous(), C.to(work).contiguous()  # [b, g, 1, c, l, n]
            heads = (*x_dt.shape[:3], *B.shape[3:])
            B_heads, C_heads = B_group.expand(heads).contiguous(), C_group.expand(heads).contiguous()
            # Within each chunk: y_i = sum_{j<=i} (C_i . B_j) exp(sum_{j<k<=i} a_k) x_j dt_j (C.B shared by a group).
            CB = C_group @ B_group.transpose(-1, -2)  # [b, g, 1, c, l, l]
            decay = _chunk_decay_matrix(cum_decay)  # [b, g, h', c, l, l]
            within = (CB * decay) @ x_dt  # [b, g, h', c, l, p]
            # State each chunk leaves behind from its own tokens.
            decay_to_end = torch.exp(cum_decay[..., -1:] - cum_decay).unsqueeze(-1)  # [b, g, h', c, l, 1]
            chunk_states = (x_dt * decay_to_end).transpose(-1, -2) @ B_heads  # [b, g, h', c, p, n]
            # States entering every chunk (and the final one) at once, through the chunk-level decays.
            carry = _carry_matrix(cum_decay[..., -1])  # [b, g, h', c + 1, c + 1]
            states = chunk_states.flatten(-2)
            entering = carry[..., :-1, 1:] @ states  # [b, g, h', c, p * n]
            final = carry[..., -1:, 1:] @ states
            if initial is not None:
                initial = initial.to(work).flatten(-2)  # [b, g, h', 1, p * n]
                entering = entering + carry[..., :-1, :1] * initial
                final = final + carry[..., -1:, :1] * initial
            entering = entering.view(chunk_states.shape)
            # Contribution of the state entering each chunk to each of its tokens.
            # [b, g, h', c, l, 1], laid out positions-major in memory (it is small): elementwise results with it first
            # take that memory order, so `y` is written in the order the mixer reads it and its view back to
            # positions is no copy.
            growth = torch.exp(cum_decay)
            growth = _heads_major(_positions_major(growth, dt.shape).contiguous(), *layout).unsqueeze(-1)
            from_state = torch.mul(growth, C_heads @ entering.transpose(-1, -2))
            y = _positions_major(torch.add(from_state, within), x.shape)
        ctx.layout = layout
        ctx.save_for_backward(x, dt, x_dt, B_group, C_group, B_heads, C_heads, CB, decay, decay_to_end, states, carry,
                              entering, initial, growth, from_state)
        return y.to(ctx.dtypes[0]), final.view(chunk_states.shape[:3] + chunk_states.shape[4:]).to(ctx.dtypes[0])

    @staticmethod
    def backward(ctx, grad_y, grad_final):
        (x, dt, x_dt, B_group, C_group, B_heads, C_heads, CB, decay, decay_to_end, states, carry, entering, initial,
         growth, from_state) = ctx.saved_tensors
        layout = ctx.layout
        with torch.autocast(x.device.type, enabled=False):
            grad_y = _heads_major(grad_y.to(x.dtype), *layout).contiguous()  # [b, g, h', c, l, p]
            # y += (C @ entering^T) * exp(cum_decay)
            grad_from_state = grad_y * growth
            grad_cum = (grad_y * from_state).sum(-1)  # [b, g, h', c, l]
            grad_C = (grad_from_state @ entering).sum(2, keepdim=True)  # [b, g, 1, c, l, n]
            grad_entering = (grad_from_state.transpose(-1, -2) @ C_heads).flatten(-2)  # [b, g, h', c, p * n]
            # entering / final = carry @ [initial, chunk states]
            grad_carry = carry.new_zeros(carry.shape)
            grad_carry[..., :-1, 1:] = grad_entering @ states.transpose(-1, -2)
            grad_states = carry[..., :-1, 1:].transpose(-1, -2) @ grad_entering  # [b, g, h', c, p * n]
            if grad_final is not None:
                grad_final = grad_final.to(x.dtype).flatten(-2).unsqueeze(3)  # [b, g, h', 1, p * n]
                grad_carry[..., -1:, 1:] = grad_final @ states.transpose(-1, -2)
                grad_states = grad_states + carry[..., -1:, 1:].transpose(-1, -2) * grad_final
            grad_initial = None
            if initial is not None:
                grad_carry[..., :-1, :1] = (grad_entering * initial).sum(-1, keepdim=True)
                grad_initial = (carry[..., :-1, :1] * grad_entering).sum(-2, keepdim=True)
                if grad_final is not None:
                    grad_carry[..., -1:, :1] = (grad_final * initial).sum(-1, keepdim=True)
                    grad_initial = grad_initial + carry[..., -1:, :1] * grad_final
                grad_initial = grad_initial.view(*grad_initial.shape[:4], *x_dt.shape[-1:], -1)
            grad_last = _carry_matrix_backward(grad_carry, carry)  # [b, g, h', c]
            # chunk states = (x_dt * decay_to_end)^T @ B
            grad_states = grad_states.view(*grad_states.shape[:4], x_dt.shape[-1], -1)  # [b, g, h', c, p, n]
            grad_weighted = B_heads @ grad_states.transpose(-1, -2)  # [b, g, h', c, l, p]
            grad_B = ((x_dt * decay_to_end) @ grad_states).sum(2, keepdim=True)
            grad_x_dt = grad_weighted * decay_to_end
            grad_to_end = (grad_weighted * x_dt).sum(-1) * decay_to_end.squeeze(-1)  # of cum_decay[-1] - cum_decay
            grad_cum -= grad_to_end
            grad_last += grad_to_end.sum(-1)
            # y = (CB * decay) @ x_dt, decay = exp(cum_i - cum_j) on and below the diagonal, 0 above
            scores = CB * decay
            grad_scores = grad_y @ x_dt.transpose(-1, -2)  # [b, g, h', c, l, l]
            grad_x_dt += scores.transpose(-1, -2) @ grad_y
            grad_CB = (grad_scores * decay).sum(2, keepdim=True)
            grad_diff = grad_scores * scores
            grad_cum += grad_diff.sum(-1) - grad_diff.sum(-2)
            grad_cum[..., -1] += grad_last
            grad_C += grad_CB @ B_group
            grad_B += grad_CB.transpose(-1, -2) @ C_group
            # x_dt = x * dt, heads-major
            grad_x = _positions_major(torch.mul(_heads_major(dt, *layout).unsqueeze(-1), grad_x_dt), x.shape)
            grad_dt = _positions_major((grad_x_dt * _heads_major(x, *layout)).sum(-1), dt.shape)
        grads = (grad_x, grad_dt, grad_cum, grad_B, grad_C, grad_initial)
        return tuple(g if g is None else g.to(dtype) for g, dtype in zip(grads, ctx.dtypes))


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
