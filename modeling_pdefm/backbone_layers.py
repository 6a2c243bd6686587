"""The backbone: a sequence model over the tokens of all input frames, `[b, T, *grid, hidden]` in and out."""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_layers import GradientCheckpointingLayer

from .attention_layers import TransformerBlock
from .configuration_pdefm import PDEFMConfig
from .mamba_layers import BidirectionalMamba, RMSNorm


class BackboneLayer(GradientCheckpointingLayer):
    """One pre-norm residual layer of the backbone over the token grid `[b, T, *grid, hidden]`.

    For Mamba, the grid is flattened time-major with the spatial axes rotated by `axis_shift`, so successive layers
    scan rows, then columns (then depth): locality along every axis, not just the fastest one.
    """

    def __init__(self, config: PDEFMConfig, axis_shift: int):
        super().__init__()
        self.axis_shift = axis_shift
        if config.backbone == "mamba":
            self.norm = RMSNorm(config.hidden_size, eps=config.layer_norm_eps)
            self.mixer = BidirectionalMamba(
                config.hidden_size,
                state_size=config.ssm_state_size,
                head_dim=config.ssm_head_dim,
                expand=config.ssm_expand,
                conv_kernel=config.ssm_conv_kernel,
                chunk_size=config.ssm_chunk_size,
                segment_size=config.ssm_segment_size,
                compile=config.compile_mamba,
                eps=config.layer_norm_eps,
            )
        else:
            self.norm = None
            self.mixer = TransformerBlock(config.hidden_size, config.num_attention_heads, eps=config.layer_norm_eps)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        batch, hidden = tokens.shape[0], tokens.shape[-1]
        if self.norm is None:  # attention is order-free: no scan order to choose
            return self.mixer(tokens.reshape(batch, -1, hidden)).reshape(tokens.shape)
        n_space = tokens.ndim - 3
        shift = self.axis_shift % n_space
        spatial = [2 + (i + shift) % n_space for i in range(n_space)]
        order = [0, 1, *spatial, tokens.ndim - 1]
        permuted = tokens.permute(order)
        sequence = permuted.reshape(batch, -1, hidden)
        sequence = sequence + self.mixer(self.norm(sequence))
        return sequence.reshape(permuted.shape).permute([order.index(axis) for axis in range(len(order))])


class PDEFMBackbone(nn.Module):
    """Sequence model over the tokens of all input frames (time is a sequence axis): bidirectional Mamba-2 layers,
    or transformer blocks for the ablation, then a final norm. `[b, T, *grid, hidden]` in, a tuple of such states
    out."""

    def __init__(self, config: PDEFMConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            BackboneLayer(config, axis_shift=i if config.alternate_scan_axes else 0) for i in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, tokens: torch.Tensor, all_states: bool = False) -> tuple[torch.Tensor, ...]:
        """The token states: with `all_states` the input and every layer's output, the last after the final norm
        (`num_layers + 1`), else only that last one (a tuple of one)."""
        states = [tokens] if all_states else []
        for layer in self.layers:
            tokens = layer(tokens)
            if all_states:
                states.append(tokens)
        if all_states:
            states[-1] = self.final_norm(tokens)
            return tuple(states)
        return (self.final_norm(tokens),)
