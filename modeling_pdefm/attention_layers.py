"""Multi-head attention built from plain `nn.Linear` projections (so LoRA can target them), and a transformer block."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MultiHeadAttention(nn.Module):
    """Scaled dot-product attention of `queries [b, lq, hidden]` over `context [b, lk, hidden]`."""

    def __init__(self, hidden_size: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.q_proj = nn.Linear(hidden_size, hidden_size)
        self.k_proj = nn.Linear(hidden_size, hidden_size)
        self.v_proj = nn.Linear(hidden_size, hidden_size)
        self.o_proj = nn.Linear(hidden_size, hidden_size)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        return x.view(b, n, self.num_heads, -1).transpose(1, 2)

    def forward(self, queries: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        q, k, v = self._heads(self.q_proj(queries)), self._heads(self.k_proj(context)), self._heads(self.v_proj(context))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o_proj(out.transpose(1, 2).flatten(2))


class TransformerBlock(nn.Module):
    """Pre-norm transformer encoder block (self-attention, then a GELU MLP). Input/output `[b, length, hidden]`."""

    def __init__(self, hidden_size: int, num_heads: int, mlp_ratio: int = 4, eps: float = 1e-5):
        super().__init__()
        self.attn_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.attn = MultiHeadAttention(hidden_size, num_heads)
        self.mlp_norm = nn.LayerNorm(hidden_size, eps=eps)
        self.mlp_in = nn.Linear(hidden_size, mlp_ratio * hidden_size)
        self.mlp_out = nn.Linear(mlp_ratio * hidden_size, hidden_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attn_norm(x)
        x = x + self.attn(h, h)
        return x + self.mlp_out(F.gelu(self.mlp_in(self.mlp_norm(x))))
