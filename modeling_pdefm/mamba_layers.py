"""Mamba-2 mixer and the bidirectional backbone block built from it."""

from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import nn

from .ssd_scan import mamba_kernels_available, ssd_scan
from .tokenizer_layers import weights_readable


class RMSNorm(nn.Module):
    """Root-mean-square normalisation over the last axis, with an optional gate (Mamba-2's gated norm).

    With `group_size` smaller than `width`, each consecutive group of `group_size` features is normalised on its
    own (Mamba-2 with `n_groups > 1` normalises per group, like its kernels).
    """

    def __init__(self, width: int, eps: float = 1e-5, group_size: int | None = None):
        super().__init__()
        group_size = group_size or width
        if width % group_size:
            raise ValueError(f"RMSNorm: width {width} is not a multiple of group_size {group_size}")
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps
        self.group_size = group_size

    def forward(self, x: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
        if gate is not None:
            x = x * F.silu(gate)
        dtype, shape = x.dtype, x.shape
        x = x.float().unflatten(-1, (-1, self.group_size))
        x = (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)).reshape(shape)
        return self.weight * x.to(dtype)


class Mamba2Mixer(nn.Module):
    """A Mamba-2 (SSD) sequence mixer, causal along the sequence.

    Input and output: `[batch, length, hidden_size]`. On a CPU, sequences longer than `segment_size` are processed
    in segments that carry the convolution tail and the SSM state: the same result, but every intermediate stays
    small enough to be reused from the allocator's free lists and the cache (one 16k-token activation is 32 MB;
    allocations that size are fresh, page-faulted memory on every call, which made 16k tokens 2-3x slower per
    token than 4k).
    """

    def __init__(
        self,
        hidden_size: int,
        state_size: int = 64,
        head_dim: int = 64,
        expand: int = 2,
        conv_kernel: int = 4,
        chunk_size: int = 128,
        segment_size: int = 2048,
        compile: bool = False,
        n_groups: int = 1,
        eps: float = 1e-5,
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        dt_floor: float = 1e-4,
    ):
        super().__init__()
        self.inner_size = expand * hidden_size
        self.state_size = state_size
        self.head_dim = head_dim
        self.num_heads = self.inner_size // head_dim
        if n_groups < 1 or self.num_heads % n_groups:
            raise ValueError(f"Mamba2Mixer: n_groups={n_groups} must be a positive divisor of the {self.num_heads} heads")
        self.n_groups = n_groups
        self.chunk_size = chunk_size
        self.segment_size = segment_size
        self.compile = compile
        self.conv_kernel = conv_kernel
        self.dt_min, self.dt_max, self.dt_floor = dt_min, dt_max, dt_floor
        conv_channels = self.inner_size + 2 * n_groups * state_size
        self.in_proj = nn.Linear(hidden_size, self.inner_size + conv_channels + self.num_heads, bias=False)
        # Unpadded: each segment is prefixed with the previous segment's last `conv_kernel - 1` inputs (zeros first).
        self.conv1d = nn.Conv1d(conv_channels, conv_channels, conv_kernel, groups=conv_channels)
        self.A_log = nn.Parameter(torch.empty(self.num_heads))
        self.D = nn.Parameter(torch.empty(self.num_heads))
        self.dt_bias = nn.Parameter(torch.empty(self.num_heads))
        self.norm = RMSNorm(self.inner_size, eps=eps, group_size=self.inner_size // n_groups)
        self.out_proj = nn.Linear(self.inner_size, hidden_size, bias=False)
        self.reset_ssm_parameters()

    def ssm_initial_values(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mamba's own initialisation of (A_log, D, dt_bias): A = 1..heads, D = 1, and dt drawn log-uniformly in
        [dt_min, dt_max] then stored through the inverse of softplus."""
        a_log = torch.log(torch.arange(1, self.num_heads + 1, dtype=torch.float32))
        d = torch.ones(self.num_heads)
        dt = torch.exp(
            torch.rand(self.num_heads) * (math.log(self.dt_max) - math.log(self.dt_min)) + math.log(self.dt_min)
        ).clamp(min=self.dt_floor)
        return a_log, d, dt + torch.log(-torch.expm1(-dt))

    @torch.no_grad()
    def reset_ssm_parameters(self) -> None:
        for param, value in zip((self.A_log, self.D, self.dt_bias), self.ssm_initial_values()):
            param.copy_(value)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        length = hidden.shape[1]
        run = self._forward_segment
        if self.compile and not mamba_kernels_available(hidden):
            run = functools.partial(compiled_mixer_segment(), self)
        if hidden.is_cuda or self.segment_size <= 0 or length <= self.segment_size:
            return run(hidden, None, None)[0]
        outputs, ssm_state, conv_tail = [], None, None
        for segment in hidden.split(self.segment_size, dim=1):
            out, ssm_state, conv_tail = run(segment, ssm_state, conv_tail)
            outputs.append(out)
        return torch.cat(outputs, dim=1)

    def _forward_segment(
        self, hidden: torch.Tensor, ssm_state: torch.Tensor | None, conv_tail: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        batch, length, _ = hidden.shape
        z, xbc, dt = self.in_proj(hidden).split(
            [self.inner_size, self.inner_size + 2 * self.n_groups * self.state_size, self.num_heads], dim=-1
        )
        xbc, conv_tail = self._causal_conv(xbc, conv_tail)
        xbc = F.silu(xbc)
        x, B, C = xbc.split([self.inner_size, self.n_groups * self.state_size, self.n_groups * self.state_size], dim=-1)
        x = x.reshape(batch, length, self.num_heads, self.head_dim)
        dt = F.softplus(dt + self.dt_bias)
        A = -torch.exp(self.A_log.float())
        y, ssm_state = ssd_scan(
            x,
            dt,
            A,
            B.reshape(batch, length, self.n_groups, self.state_size),
            C.reshape(batch, length, self.n_groups, self.state_size),
            self.chunk_size,
            initial_state=ssm_state,
            return_final_state=True,
        )
        y = y + x * self.D[:, None]
        y = self.norm(y.reshape(batch, length, self.inner_size), gate=z)
        return self.out_proj(y), ssm_state, conv_tail

    def _causal_conv(self, xbc: torch.Tensor, tail: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The depthwise causal convolution `conv1d` along the positions of `xbc [b, length, c]`, preceded by `tail
        [b, kernel - 1, c]` (the previous segment's last inputs; zeros when None) -> (`[b, length, c]`, the tail for
        the next segment), positions-major like everything around it.

        The plain layer takes `CausalDepthwiseConv` (the depthwise `Conv1d` took a transpose each way and a backward
        pass slower than the rest of the mixer outside the scan); a layer wrapped by an adapter (LoRA), and a segment
        shorter than the tail, and a layer whose call a hook wraps (accelerate's offloading), call the layer itself on
        the tail and the inputs joined."""
        kernel = self.conv_kernel
        if type(self.conv1d) is nn.Conv1d and weights_readable(self.conv1d) and xbc.shape[1] >= kernel - 1:
            out = CausalDepthwiseConv.apply(xbc, tail, self.conv1d.weight[:, 0], self.conv1d.bias)
            return out, xbc[:, xbc.shape[1] - (kernel - 1) :]
        if tail is None:
            tail = xbc.new_zeros(xbc.shape[0], kernel - 1, xbc.shape[-1])
        padded = torch.cat([tail, xbc], dim=1)  # [b, kernel - 1 + length, c]
        out = self.conv1d(padded.transpose(1, 2)).transpose(1, 2).contiguous()
        return out, padded[:, padded.shape[1] - (kernel - 1) :]


class CausalDepthwiseConv(torch.autograd.Function):
    """`out[:, l] = bias + sum_k w[:, k] * padded[:, l + k]` over `padded = [tail, x]` (the causal depthwise
    convolution of Mamba's mixer), channels last, without building `padded`.

    `x [b, length, c]` (length at least `kernel - 1`), `tail [b, kernel - 1, c]` or None for zeros, `weight
    [c, kernel]`, `bias [c]` or None -> `[b, length, c]`. Written out because autograd's version of the shifted
    products gives every shifted slice a zero-filled gradient of the whole padded input and sums them; here each
    gradient is accumulated in place, once.
    """

    @staticmethod
    def forward(ctx, x, tail, weight, bias):
        kernel, length = weight.shape[1], x.shape[1]
        ctx.save_for_backward(x, tail, weight)
        ctx.has_bias = bias is not None
        out = x * weight[:, kernel - 1] if bias is None else torch.addcmul(bias, x, weight[:, kernel - 1])
        for tap in range(kernel - 1):
            back = kernel - 1 - tap  # how many positions this tap looks back
            out[:, back:].addcmul_(x[:, : length - back], weight[:, tap])
            if tail is not None:
                out[:, :back].addcmul_(tail[:, tap : tap + back], weight[:, tap])
        return out

    @staticmethod
    def backward(ctx, grad):
        x, tail, weight = ctx.saved_tensors
        kernel, length = weight.shape[1], x.shape[1]
        grad_x = grad_tail = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = grad * weight[:, kernel - 1]
            for tap in range(kernel - 1):
                back = kernel - 1 - tap
                grad_x[:, : length - back].addcmul_(grad[:, back:], weight[:, tap])
        if tail is not None and ctx.needs_input_grad[1]:
            grad_tail = torch.zeros_like(tail)
            for tap in range(kernel - 1):
                back = kernel - 1 - tap
                grad_tail[:, tap : tap + back].addcmul_(grad[:, :back], weight[:, tap])
        if ctx.needs_input_grad[2]:
            grad_weight = weight.new_empty(weight.shape)
            for tap in range(kernel):
                back = kernel - 1 - tap
                grad_weight[:, tap] = (grad[:, back:] * x[:, : length - back]).sum(dim=(0, 1))
                if back and tail is not None:
                    grad_weight[:, tap] += (grad[:, :back] * tail[:, tap : tap + back]).sum(dim=(0, 1))
        if ctx.has_bias and ctx.needs_input_grad[3]:
            grad_bias = grad.sum(dim=(0, 1))
        return grad_x, grad_tail, grad_weight, grad_bias


@functools.cache
def compiled_mixer_segment():
    """`Mamba2Mixer._forward_segment` under `torch.compile`, built once per process: the mixer is an argument whose
    parameters are graph inputs, so every mixer of one shape runs the same compiled graph (one compile, not one
    per layer and direction)."""
    return torch.compile(Mamba2Mixer._forward_segment, dynamic=False)


class BidirectionalMamba(nn.Module):
    """Two Mamba-2 mixers, one reading the sequence forwards and one backwards, summed.

    With both directions every output token depends on every input token. Input/output `[batch, length, hidden]`.
    """

    def __init__(self, hidden_size: int, **mixer_kwargs):
        super().__init__()
        self.forward_mixer = Mamba2Mixer(hidden_size, **mixer_kwargs)
        self.backward_mixer = Mamba2Mixer(hidden_size, **mixer_kwargs)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.forward_mixer(hidden) + self.backward_mixer(hidden.flip(1)).flip(1)
