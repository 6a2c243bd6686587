"""Dataset heads: each dataset's own maps into and out of the latent field space the datasets share, and its
embedding of its constant scalars; and how a new dataset's head starts from the known ones (`add_dataset`)."""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from .conditioning_layers import signed_log
from .decoder_layers import periodic_conv
from .spectral_layers import band_gain_filter
from .tokenizer_layers import FieldLinear


class DatasetHead(nn.Module):
    """A dataset's own maps (its head): pointwise maps (1x1 convolutions) between the dataset's channels and the
    shared latent field space, plus the dataset's embedding of its constant scalars and its identity. Channels last:

    `encode`: `[n, *space, n_fields + n_constant_fields]` -> `[n, *space, latent_channels]`.
    `decode`: `[n, *space, latent_channels]` -> `[n, *space, n_fields]`.
    `forward` (the head's call): `constant_scalars [b, S]` -> the dataset's context `[b, hidden]`.

    pdefm 0.2.0 called these the dataset adapters (`adapters.<name>.*` in saved weights, renamed on load), a word
    now kept for PEFT's adapters.
    """

    def __init__(self, spec: dict[str, Any], latent_channels: int, hidden_size: int, stencil_frames: int = 0,
                 filter_bands: int = 0):
        super().__init__()
        self.in_proj = FieldLinear(spec["n_fields"] + spec["n_constant_fields"], latent_channels)
        self.out_proj = FieldLinear(latent_channels, spec["n_fields"])
        self.dataset_embedding = nn.Parameter(torch.zeros(hidden_size))
        self.scalar_proj = nn.Linear(spec["n_constant_scalars"], hidden_size) if spec["n_constant_scalars"] else None
        # The linear stencil path (`config.linear_stencil`): a 3x3 (3x3x3) map from the last `stencil_frames`
        # normalised frames of every field to the change of every field, added to the network's. It starts at zero.
        n, d = spec["n_fields"], spec["n_spatial_dims"]
        self.stencil_weight = nn.Parameter(torch.zeros(n, stencil_frames * n, *[3] * d)) if stencil_frames else None
        # `config.change_filter_bands`: the log of a gain per band of |k| / k_Nyquist and field on the predicted
        # change (`filter_change`); zeros keep the change as the network made it.
        self.change_log_gain = nn.Parameter(torch.zeros(filter_bands, n)) if filter_bands else None

    def stencil(self, window: torch.Tensor, periodic) -> torch.Tensor:
        """`window [b, T, *space, C]` (normalised) -> the linear stencil's change `[b, *space, C]` from its last
        frames (periodic axes wrap, walls are zero-padded)."""
        frames = self.stencil_weight.shape[1] // self.stencil_weight.shape[0]
        x = window[:, -frames:].movedim(1, -2).flatten(-2)  # [b, *space, frames * C], oldest frame first
        return periodic_conv(x, self.stencil_weight, None, periodic)

    def filter_change(self, change: torch.Tensor, periodic) -> torch.Tensor:
        """`change [b, *space, C]` (normalised) with each band of |k| / k_Nyquist scaled by the dataset's gain."""
        if torch.is_tensor(periodic):
            raise NotImplementedError("change_filter_bands mirrors walled axes, which a trace cannot follow: export a "
                                      "model whose config has change_filter_bands=0")
        return band_gain_filter(change, self.change_log_gain, periodic)

    def encode(self, fields: torch.Tensor) -> torch.Tensor:
        return self.in_proj(fields)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.out_proj(latent)

    def forward(self, constant_scalars: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        # The context is the call, as the embedding is the head's own weight: a hook around the head (accelerate's
        # offloading) loads it then; `encode` and `decode` call their layers, which have their own.
        context = self.dataset_embedding.expand(batch_size, -1)
        if self.scalar_proj is not None:
            context = context + self.scalar_proj(signed_log(constant_scalars).to(context.dtype))
        return context


@torch.no_grad()
def init_head_from_fields(head: DatasetHead, heads: Mapping[str, DatasetHead],
                          matches: dict[int, list[tuple[str, int]]]) -> None:
    """Start a new dataset's `head` from the known datasets' `heads`: each matched field channel `i` takes the mean
    of its source channels `(dataset, j)` (`field_matching.match_fields`); other input channels start at zero, other
    output channels predict no change, and the shared parts are a mean over the sources."""
    head.in_proj.weight.zero_()
    shares: dict[str, int] = {}
    for i, sources in matches.items():
        head.in_proj.weight[:, i] = torch.stack([heads[d].in_proj.weight[:, j] for d, j in sources]).mean(0)
        head.out_proj.weight[i] = torch.stack([heads[d].out_proj.weight[j] for d, j in sources]).mean(0)
        head.out_proj.bias[i] = torch.stack([heads[d].out_proj.bias[j] for d, j in sources]).mean()
        if head.change_log_gain is not None:
            head.change_log_gain[:, i] = torch.stack([heads[d].change_log_gain[:, j] for d, j in sources]).mean(0)
        for d, _ in sources:
            shares[d] = shares.get(d, 0) + 1
    # The shared parts, as a mean over the source datasets weighted by how many channels each one lends.
    weights = torch.tensor([float(n) for n in shares.values()])
    weights = (weights / weights.sum()).to(head.in_proj.bias)

    def mean_of(part) -> torch.Tensor:
        return sum(w * part(heads[d]) for w, d in zip(weights, shares))

    head.in_proj.bias.copy_(mean_of(lambda a: a.in_proj.bias))
    # A source's context is its embedding plus its scalars' projection; the new dataset's constants have no
    # known meaning yet, so its projection starts at zero and the embedding takes the sources' offsets.
    head.dataset_embedding.copy_(mean_of(
        lambda a: a.dataset_embedding + (a.scalar_proj.bias if a.scalar_proj is not None else 0.0)))
    if head.scalar_proj is not None:
        head.scalar_proj.weight.zero_()
        head.scalar_proj.bias.zero_()
