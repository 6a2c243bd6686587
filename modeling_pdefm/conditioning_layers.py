"""Physics conditioning: an embedding of the physics context, FiLM, and spatial-spectral cross-attention fusion."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention_layers import MultiHeadAttention

# Boundary-condition codes as The Well's loader writes them; NO_AXIS marks the axes a 2D grid lacks.
BC_WALL, BC_OPEN, BC_PERIODIC, BC_NO_AXIS = 0, 1, 2, 3
MAX_AXES = 3


def periodic_axes(boundary_conditions: torch.Tensor) -> torch.Tensor:
    """`[d]` bool: per spatial axis, whether every sample's boundary on both sides of it is periodic
    (`boundary_conditions [batch, d, 2]`)."""
    return (boundary_conditions == BC_PERIODIC).all(dim=2).all(dim=0)


def signed_log(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|): physical parameters span decades (Reynolds 1e4..1e6), this keeps them O(1)."""
    return torch.sign(x) * torch.log1p(x.abs())


class PhysicsContextEncoder(nn.Module):
    """Embeds the physics context of each sample into one vector.

    Inputs: `boundary_conditions [b, d, 2]` (codes WALL=0, OPEN=1, PERIODIC=2, per axis and low/high side),
    `dt [b]` (time step between the last input and the first output frame; NaN where unknown), and
    `extra [b, hidden]` (the dataset's own embedding of its constant scalars and identity).
    Output `[b, hidden]`.
    """

    def __init__(self, hidden_size: int):
        super().__init__()
        self.bc_proj = nn.Linear(MAX_AXES * 2 * 4, hidden_size)
        self.dt_proj = nn.Linear(2, hidden_size)
        self.mlp = nn.Sequential(nn.SiLU(), nn.Linear(hidden_size, hidden_size), nn.SiLU(), nn.Linear(hidden_size, hidden_size))

    def forward(self, boundary_conditions: torch.Tensor, dt: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        b, d, _ = boundary_conditions.shape
        codes = F.pad(boundary_conditions.long(), (0, 0, 0, MAX_AXES - d), value=BC_NO_AXIS)
        bc = F.one_hot(codes, 4).flatten(1).to(extra.dtype)
        known = torch.isfinite(dt)
        log_dt = torch.where(known, torch.log(dt.abs().clamp_min(1e-12)), torch.zeros_like(dt))
        dt_features = torch.stack([log_dt, known.to(dt.dtype)], dim=-1).to(extra.dtype)
        return self.mlp(self.bc_proj(bc) + self.dt_proj(dt_features) + extra)


class ModulationProjection(nn.Linear):
    """FiLM's map from the context to scale and shift. Its own class so that the model's weight init can find it
    and start it at zero: transformers initialises only modules that hold parameters themselves, so an init
    written for `FiLM` would never run."""


class FiLM(nn.Module):
    """Feature-wise linear modulation: `x * (1 + scale(c)) + shift(c)`; starts as the identity.

    `x [b, ..., hidden]`, `context [b, cond]`.
    """

    def __init__(self, hidden_size: int, cond_size: int):
        super().__init__()
        self.proj = ModulationProjection(cond_size, 2 * hidden_size)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        scale, shift = self.proj(context).chunk(2, dim=-1)
        shape = (x.shape[0],) + (1,) * (x.ndim - 2) + (x.shape[-1],)
        return x * (1 + scale.view(shape)) + shift.view(shape)


class CrossAttentionFusion(nn.Module):
    """Spatial tokens attend to the spectral tokens of their frame (residual).

    `spatial [n, n_patches, hidden]`, `spectral [n, n_modes, hidden]` -> `[n, n_patches, hidden]`.
    """

    def __init__(self, hidden_size: int, num_heads: int, eps: float = 1e-5):
        super().__init__()
        self.query_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.context_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.attn = MultiHeadAttention(hidden_size, num_heads)

    def forward(self, spatial: torch.Tensor, spectral: torch.Tensor) -> torch.Tensor:
        return spatial + self.attn(self.query_norm(spatial), self.context_norm(spectral))


class SpectralSummaryFusion(nn.Module):
    """The fusion used when cross-attention is switched off: the mean spectral token, projected, is added to
    every spatial token of its frame."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, hidden_size)

    def forward(self, spatial: torch.Tensor, spectral: torch.Tensor) -> torch.Tensor:
        return spatial + self.proj(spectral.mean(dim=1, keepdim=True))
