"""PDE-FM: a foundation model for partial differential equations.

Reads top to bottom: the output dataclass, the dataset adapters, the backbone, the decoder, the pretrained base
class, then `PDEFMModel`. Tensors follow The Well's layout: channels last, time first:
`input_fields [batch, T_in, *space, C]`, predictions `[batch, T_out, *space, C]`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.utils import ModelOutput, logging

from .attention_layers import TransformerBlock
from .conditioning_layers import (
    BC_PERIODIC,
    CrossAttentionFusion,
    FiLM,
    ModulationProjection,
    PhysicsContextEncoder,
    SpectralSummaryFusion,
    signed_log,
)
from .configuration_pdefm import PDEFMConfig, validate_dataset_spec
from .field_matching import match_fields
from .losses import pdefm_objective, unbiased_variance
from .mamba_layers import BidirectionalMamba, Mamba2Mixer, RMSNorm
from .spectral_layers import SpectralConv
from .tokenizer_layers import (
    FieldLinear,
    PatchEmbedding,
    PatchUnembedding,
    SpectralTokenizer,
    conv_class,
    sinusoidal_encoding,
)

logger = logging.get_logger(__name__)

# Keys of a window from The Well's loader (`pdefm.data.window.WellWindow`) that the model does not use; accepted so
# `model(**batch)` works. A test holds them to the reader's keys.
IGNORED_BATCH_KEYS = frozenset({"space_grid", "input_scalars", "output_scalars", "field_names"})
NORM_MIN_STD = 1e-6


# Rollouts of this many steps or more show a progress bar (transformers' `logging.disable_progress_bar()` hides it).
PROGRESS_FROM_STEPS = 50


def available_memory_bytes() -> int | None:
    """Memory the system can still give (Linux `MemAvailable`), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_rollout_memory(input_fields: torch.Tensor, n_steps: int) -> None:
    """Refuse a rollout whose predicted frames alone would not fit in the free memory of the host (CPU tensors):
    `n_steps=10**6` would otherwise run for hours while memory grows."""
    if input_fields.device.type != "cpu" or n_steps < 2:
        return
    needed = n_steps * input_fields[:, :1].numel() * 4 * 2  # float32 frames, kept in units and normalised
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise ValueError(f"n_steps={n_steps}: the predicted frames alone would take {needed / 2**30:.1f} GiB, more "
                         f"than the {available / 2**30:.1f} GiB of free memory; roll out fewer steps at a time "
                         "(each call continues from the last frames of the one before)")


@dataclass
class PDEFMOutput(ModelOutput):
    """Output of [`PDEFMModel`].

    Args:
        loss: the training objective when labels are given: `vrmse_loss + config.spectral_loss_weight *
            spectral_loss`, scalar.
        prediction: `[batch, T_out, *space, C]` predicted fields in the units of the input.
        last_hidden_state: `[batch, T_in, *patch_grid, hidden]` backbone output for the last predicted step.
        vrmse_loss: scalar mean VRMSE of `prediction` against `labels` (The Well's metric), when labels are given.
        spectral_loss: scalar wavenumber-weighted relative spectral error, when labels are given.
    """

    loss: torch.Tensor | None = None
    prediction: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    vrmse_loss: torch.Tensor | None = None
    spectral_loss: torch.Tensor | None = None


def dims_key(n_spatial_dims: int) -> str:
    return f"{n_spatial_dims}d"


class DatasetAdapter(nn.Module):
    """Per-dataset pointwise maps (1x1 convolutions) between the dataset's channels and the shared latent field
    space, plus the dataset's embedding of its constant scalars and its identity. Channels last:

    `encode`: `[n, *space, n_fields + n_constant_fields]` -> `[n, *space, adapter_channels]`.
    `decode`: `[n, *space, adapter_channels]` -> `[n, *space, n_fields]`.
    `context`: `constant_scalars [b, S]` -> `[b, hidden]`.
    """

    def __init__(self, spec: dict[str, Any], adapter_channels: int, hidden_size: int):
        super().__init__()
        self.in_proj = FieldLinear(spec["n_fields"] + spec["n_constant_fields"], adapter_channels)
        self.out_proj = FieldLinear(adapter_channels, spec["n_fields"])
        self.dataset_embedding = nn.Parameter(torch.zeros(hidden_size))
        self.scalar_proj = nn.Linear(spec["n_constant_scalars"], hidden_size) if spec["n_constant_scalars"] else None

    def encode(self, fields: torch.Tensor) -> torch.Tensor:
        return self.in_proj(fields)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        return self.out_proj(latent)

    def context(self, constant_scalars: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        context = self.dataset_embedding.expand(batch_size, -1)
        if self.scalar_proj is not None:
            context = context + self.scalar_proj(signed_log(constant_scalars).to(context.dtype))
        return context


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
        return sequence.reshape(permuted.shape).permute(torch.argsort(torch.tensor(order)).tolist())


class PDEFMBackbone(nn.Module):
    """Sequence model over the tokens of all input frames (time is a sequence axis): bidirectional Mamba-2 layers,
    or transformer blocks for the ablation, then a final norm. `[b, T, *grid, hidden]` in and out."""

    def __init__(self, config: PDEFMConfig):
        super().__init__()
        self.layers = nn.ModuleList(
            BackboneLayer(config, axis_shift=i if config.alternate_scan_axes else 0) for i in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            tokens = layer(tokens)
        return self.final_norm(tokens)


class DecoderBlock(nn.Module):
    """One full-resolution decoder block: `x + act(K(x) + W x)` with K a spectral convolution (FNO, `"fno"`) or a
    3x3 convolution (`"conv"`), and W pointwise; the residual keeps signal and gradient alive through the stack.
    `[n, *space, width]` in and out (channels last)."""

    def __init__(self, width: int, modes: int, n_spatial_dims: int, kind: str):
        super().__init__()
        # `kernel` keeps its name in every kind: saved models' state dicts and LoRA targets refer to it.
        conv = conv_class(n_spatial_dims)
        self.kernel = conv(width, width, 3, padding=1) if kind == "conv" else SpectralConv(width, width, modes, n_spatial_dims)
        self.pointwise = FieldLinear(width, width)

    def forward(self, x: torch.Tensor, periodic: tuple[bool, ...] | None = None) -> torch.Tensor:
        """`periodic`: per spatial axis, whether the 3x3 convolutions wrap around it (else they zero-pad it)."""
        if isinstance(self.kernel, SpectralConv):
            return x + F.gelu(self.pointwise(x) + self.kernel(x))
        d, conv = x.ndim - 2, self.kernel
        if type(conv) is conv_class(d) and type(self.pointwise) is FieldLinear:
            # W is the 3x3 convolution's centre tap: one convolution instead of a convolution, a matrix product and
            # a sum (a quarter of a block's training step at tiny's size). Layers wrapped by an adapter (LoRA) are
            # called as themselves below.
            tap = self.pointwise.weight.view(*self.pointwise.weight.shape, *[1] * d)
            return x + F.gelu(periodic_conv(x, conv.weight + F.pad(tap, [1, 1] * d), conv.bias + self.pointwise.bias,
                                            periodic))
        return x + F.gelu(self.pointwise(x) + boundary_conv(conv, x, periodic))


def periodic_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  periodic: tuple[bool, ...] | None) -> torch.Tensor:
    """A 3x3 convolution of a channels-last field `[n, *space, c]` with `weight [out, c, 3, ...]`, wrapping around
    the axes flagged in `periodic` and zero-padding the others (all of them when `periodic` is None)."""
    d = weight.ndim - 2
    periodic = tuple(periodic) if periodic else (False,) * d
    if any(periodic):
        # Wrap in the channels-last layout: the convolution then keeps its fast channels-last path, which a
        # channels-first circular `F.pad` would lose (20% of a tiny training step).
        x = wrap_periodic_axes(x, periodic)
    padding = tuple(0 if wraps else 1 for wraps in periodic)
    return getattr(F, f"conv{d}d")(x.movedim(-1, 1), weight, bias, padding=padding).movedim(1, -1)


def boundary_conv(conv: nn.Module, x: torch.Tensor, periodic: tuple[bool, ...] | None) -> torch.Tensor:
    """A 3x3 convolution layer (built with `padding=1`) applied to a channels-last field `[n, *space, c]`, wrapping
    around the axes flagged in `periodic` and zero-padding the others."""
    if type(conv) is conv_class(x.ndim - 2):
        return periodic_conv(x, conv.weight, conv.bias, periodic)
    # A wrapped layer (a LoRA adapter around the convolution) is called as itself, or its own part would be skipped:
    # its zero padding then adds a point outside the wrapped one, whose outputs are cropped.
    if not periodic or not any(periodic):
        return conv(x.movedim(-1, 1)).movedim(1, -1)
    out = conv(wrap_periodic_axes(x, periodic).movedim(-1, 1)).movedim(1, -1)
    return out[(slice(None), *[slice(1, -1) if wraps else slice(None) for wraps in periodic])]


def wrap_periodic_axes(x: torch.Tensor, periodic: tuple[bool, ...]) -> torch.Tensor:
    """`PeriodicPad` of a channels-last field `[n, *space, c]` on the spatial axes flagged in `periodic`."""
    return PeriodicPad.apply(x, tuple(axis for axis, wraps in enumerate(periodic, start=1) if wraps))


class PeriodicPad(torch.autograd.Function):
    """One point of periodic padding on each of `axes` of a tensor: `[..., n, ...]` -> `[..., n + 2, ...]`, the
    first point after the last and the last before the first (corners included).

    Written out because the same pad as `torch.cat` of edge slices costs twice as much backwards: autograd gives
    every slice a zero-filled gradient of the whole input and sums them; here the gradient is the interior plus
    the padded rows folded back onto the edges they copy.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, axes: tuple[int, ...]) -> torch.Tensor:
        ctx.axes = axes
        shape = list(x.shape)
        for axis in axes:
            shape[axis] += 2
        out = x.new_empty(shape)
        out[tuple(slice(1, -1) if axis in axes else slice(None) for axis in range(x.ndim))] = x
        # Axis by axis over the whole extent of the others, so the corners copy already-wrapped rows.
        for axis in axes:
            n = x.shape[axis]
            out.narrow(axis, 0, 1).copy_(out.narrow(axis, n, 1))
            out.narrow(axis, n + 1, 1).copy_(out.narrow(axis, 1, 1))
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        grad = grad.clone()
        # Reverse order of the forward: fold each axis's padded rows onto the rows they copied, then drop them.
        for axis in reversed(ctx.axes):
            n = grad.shape[axis] - 2
            grad.narrow(axis, 1, 1).add_(grad.narrow(axis, n + 1, 1))
            grad.narrow(axis, n, 1).add_(grad.narrow(axis, 0, 1))
            grad = grad.narrow(axis, 1, n)
        return grad, None


class FNODecoder(nn.Module):
    """Decodes the last frame's tokens back to a full-resolution latent field.

    Tokens are un-patched to `adapter_channels` features per point, joined with the latent fields of the last
    `config.skip_frames()` input frames (a full-resolution skip: patches alone lose sub-patch detail), lifted to
    `decoder_width`, passed through `decoder_layers` Fourier blocks and projected back to the shared latent space.

    `tokens [n, n_patches, hidden]`, `skip [n, *space, skip_frames * adapter_channels]` ->
    `[n, *space, adapter_channels]`.
    """

    def __init__(self, config: PDEFMConfig, n_spatial_dims: int):
        super().__init__()
        patch, _, modes = config.grid_settings(n_spatial_dims)
        channels = config.adapter_channels
        self.unpatch = PatchUnembedding(config.hidden_size, channels, patch, n_spatial_dims)
        self.lift = FieldLinear((1 + config.skip_frames()) * channels, config.decoder_width)
        self.blocks = nn.ModuleList(
            DecoderBlock(config.decoder_width, modes, n_spatial_dims, config.decoder) for _ in range(config.decoder_layers)
        )
        self.project = FieldLinear(config.decoder_width, channels)
        self.wrap_periodic = config.decoder_conv_padding == "boundary"
        # Wall padding keeps Fourier layers from coupling opposite walls; 3x3 blocks that zero-pad walls need none.
        self.pads_walls = "wall_padding" not in config.inactive_keys()

    def forward(self, tokens: torch.Tensor, grid: tuple[int, ...], skip: torch.Tensor,
                wall_pad: tuple[int, ...] | None = None, periodic: tuple[bool, ...] | None = None) -> torch.Tensor:
        """`wall_pad`: points of zero padding on both sides of each spatial axis for the Fourier blocks (0 for a
        periodic axis; see `wall_padding`). `periodic`: per spatial axis, whether every sample's boundary on it is
        periodic (`decoder_conv_padding`)."""
        space = tuple(skip.shape[1:-1])
        x = self.lift(torch.cat([self.unpatch(tokens, grid, space), skip], dim=-1))
        wrap = periodic if self.wrap_periodic else None
        padded = self.pads_walls and bool(wall_pad) and any(wall_pad)
        if padded:
            x = F.pad(x, [0, 0] + [p for pad in reversed(wall_pad) for p in (pad, pad)])
        for block in self.blocks:
            x = block(x, wrap)
        if padded:
            x = x[(slice(None), *[slice(pad, pad + n) for pad, n in zip(wall_pad, space)])]
        return self.project(x)


class PDEFMPreTrainedModel(PreTrainedModel):
    config_class = PDEFMConfig
    base_model_prefix = "pdefm"
    main_input_name = "input_fields"
    supports_gradient_checkpointing = True
    # The loss is a mean over samples, steps and fields (VRMSE), not a sum over tokens: `transformers.Trainer` must
    # not pass `num_items_in_batch` and must scale the loss for gradient accumulation itself.
    accepts_loss_kwargs = False
    _no_split_modules = ["BackboneLayer"]

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        # Transformers' generic init would reset Mamba's A, D and dt bias; every module type is handled here.
        # Transformers calls this only for modules that hold parameters themselves (children first), so an init
        # must name the module that owns the tensor (`ModulationProjection`, not `FiLM`).
        std = self.config.initializer_range
        if isinstance(module, Mamba2Mixer):
            for param, value in zip((module.A_log, module.D, module.dt_bias), module.ssm_initial_values()):
                init.copy_(param, value)
        elif isinstance(module, SpectralConv):
            scale = 1.0 / (module.in_channels * module.out_channels)
            init.uniform_(module.weight, -scale, scale)
        elif isinstance(module, ModulationProjection):
            init.zeros_(module.weight)  # FiLM starts as the identity modulation
            init.zeros_(module.bias)
        elif isinstance(module, DatasetAdapter):
            init.normal_(module.dataset_embedding, std=std)
            init.zeros_(module.out_proj.weight)  # a new dataset starts by predicting "no change"
            init.zeros_(module.out_proj.bias)
        elif isinstance(module, (FieldLinear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            # Fan-in scaling: field maps often see few channels (an adapter from 2 fields, a decoder of width 16),
            # where a fixed std of 0.02 would shrink the signal tenfold per layer.
            fan_in = module.weight[0].numel()
            init.normal_(module.weight, std=fan_in**-0.5)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, (nn.LayerNorm, RMSNorm)):
            init.ones_(module.weight)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)


class PDEFMModel(PDEFMPreTrainedModel):
    """PDE-FM: dataset adapters, dual spatial/spectral tokenizer, physics conditioning (FiLM and cross-attention),
    a bidirectional Mamba-2 backbone over space and time, and an FNO decoder.

    `model(input_fields=..., dataset_name=..., labels=...)` predicts the next `T_out` frames (`T_out` from `labels`
    or `output_time_grid`, else 1); more than one is rolled out autoregressively.
    """

    def __init__(self, config: PDEFMConfig):
        super().__init__(config)
        hidden = config.hidden_size
        self.adapters = nn.ModuleDict()
        self.patch_embeddings = nn.ModuleDict()
        self.decoders = nn.ModuleDict()
        self.spectral_tokenizer = SpectralTokenizer(config.adapter_channels, hidden) if config.use_spectral_tokens else None
        if config.use_spectral_tokens:
            self.fusion = CrossAttentionFusion(hidden, config.num_attention_heads) if config.use_cross_attention else SpectralSummaryFusion(hidden)
        else:
            self.fusion = None
        self.context_encoder = PhysicsContextEncoder(hidden) if config.use_film else None
        self.film = FiLM(hidden, hidden) if config.use_film else None
        self.frame_proj = nn.Linear(hidden, hidden)
        self.backbone = PDEFMBackbone(config)
        for name, spec in config.datasets.items():
            self._build_dataset_modules(name, spec)
        self.post_init()

    # ----------------------------------------------------------------------------------------- datasets
    def _build_dataset_modules(self, name: str, spec: dict[str, Any]) -> list[nn.Module]:
        created: list[nn.Module] = []
        self.adapters[name] = DatasetAdapter(spec, self.config.adapter_channels, self.config.hidden_size)
        created.append(self.adapters[name])
        key = dims_key(spec["n_spatial_dims"])
        if key not in self.patch_embeddings:
            patch = self.config.grid_settings(spec["n_spatial_dims"])[0]
            self.patch_embeddings[key] = PatchEmbedding(self.config.adapter_channels, self.config.hidden_size, patch, spec["n_spatial_dims"])
            self.decoders[key] = FNODecoder(self.config, spec["n_spatial_dims"])
            created += [self.patch_embeddings[key], self.decoders[key]]
        return created

    @property
    def is_gradient_checkpointing(self) -> bool:
        # PEFT still asks under this name, which transformers 5 deprecated with a warning on every adapter load.
        return any(getattr(m, "gradient_checkpointing", False) for m in self.modules())

    def add_dataset(
        self,
        name: str,
        n_fields: int,
        n_spatial_dims: int,
        n_constant_fields: int = 0,
        n_constant_scalars: int = 0,
        field_names: list[str] | None = None,
        field_scales: list[float] | None = None,
        adapter_init: str = "fields",
        field_aliases: dict[str, str] | None = None,
    ) -> DatasetAdapter:
        """Give the model a new domain: registers it in the config and creates its adapter, plus the patch
        embedding and decoder of its dimensionality if the model had none. `field_scales` (each field's std over
        the dataset) sets its normalisation floor (see `PDEFMConfig.norm_std_floor`). Returns the adapter, whose
        `initialised_from` says where each field's weights came from.

        `adapter_init="fields"` (the default) starts the adapter from the datasets the model knows: each field channel that
        is a known quantity (by name, `field_matching`; `field_aliases` replaces its default aliases) takes the
        mean of their adapter weights for it, the dataset embedding the mean of theirs, so the model can forecast
        the new dataset before any training. Other input channels start at zero (ignored until trained), other
        output channels predict no change. Without a shared field (or without `field_names`) it says so and falls
        back to `adapter_init="random"`: a fresh adapter that predicts no change.
        """
        if name in self.config.datasets:
            raise ValueError(f"dataset {name!r} is already known to the model; pick another name")
        if adapter_init not in ("fields", "random"):
            raise ValueError(f"adapter_init must be 'fields' or 'random', got {adapter_init!r}")
        spec = validate_dataset_spec(
            name,
            {"n_fields": n_fields, "n_spatial_dims": n_spatial_dims, "n_constant_fields": n_constant_fields,
             "n_constant_scalars": n_constant_scalars, "field_names": field_names, "field_scales": field_scales},
        )
        if n_constant_scalars > self.config.max_constant_scalars:
            raise ValueError(f"n_constant_scalars={n_constant_scalars} exceeds max_constant_scalars={self.config.max_constant_scalars}")
        known = {k: v["field_names"] for k, v in self.config.datasets.items() if v.get("field_names")}
        matches = match_fields(field_names, known, field_aliases) if adapter_init == "fields" and field_names else {}
        device = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        for module in self._build_dataset_modules(name, spec):
            module.to(device=device, dtype=dtype)
            module.apply(self._init_weights)
        adapter = self.adapters[name]
        adapter.initialised_from = {}
        if matches:
            self._init_adapter_from_fields(adapter, matches)
            adapter.initialised_from = {field_names[i]: [f"{d}/{self.config.datasets[d]['field_names'][j]}" for d, j in m]
                                        for i, m in matches.items()}
        elif adapter_init == "fields":
            why = (f"no field of {field_names} is a quantity of the known datasets {sorted(known)}" if field_names
                   else "no field_names given to match")
            logger.warning(f"add_dataset({name!r}, adapter_init='fields'): {why}; its adapter starts fresh "
                           "(adapter_init='random')")
        self.config.datasets = {**self.config.datasets, name: spec}
        return adapter

    @torch.no_grad()
    def _init_adapter_from_fields(self, adapter: DatasetAdapter, matches: dict[int, list[tuple[str, int]]]) -> None:
        adapter.in_proj.weight.zero_()
        shares: dict[str, int] = {}
        for i, sources in matches.items():
            adapter.in_proj.weight[:, i] = torch.stack([self.adapters[d].in_proj.weight[:, j] for d, j in sources]).mean(0)
            adapter.out_proj.weight[i] = torch.stack([self.adapters[d].out_proj.weight[j] for d, j in sources]).mean(0)
            adapter.out_proj.bias[i] = torch.stack([self.adapters[d].out_proj.bias[j] for d, j in sources]).mean()
            for d, _ in sources:
                shares[d] = shares.get(d, 0) + 1
        # The shared parts, as a mean over the source datasets weighted by how many channels each one lends.
        weights = torch.tensor([float(n) for n in shares.values()])
        weights = (weights / weights.sum()).to(adapter.in_proj.bias)

        def mean_of(part) -> torch.Tensor:
            return sum(w * part(self.adapters[d]) for w, d in zip(weights, shares))

        adapter.in_proj.bias.copy_(mean_of(lambda a: a.in_proj.bias))
        # A source's context is its embedding plus its scalars' projection; the new dataset's constants have no
        # known meaning yet, so its projection starts at zero and the embedding takes the sources' offsets.
        adapter.dataset_embedding.copy_(mean_of(
            lambda a: a.dataset_embedding + (a.scalar_proj.bias if a.scalar_proj is not None else 0.0)))
        if adapter.scalar_proj is not None:
            adapter.scalar_proj.weight.zero_()
            adapter.scalar_proj.bias.zero_()

    # ----------------------------------------------------------------------------------------- validation
    def _resolve_dataset(self, dataset_name: Any) -> str:
        if isinstance(dataset_name, (list, tuple)):  # a collated batch carries one name per sample
            names = set(dataset_name)
            if len(names) != 1:
                raise ValueError(f"a batch must hold one dataset, got dataset_name values {sorted(names)}")
            dataset_name = names.pop()
        if dataset_name is None:
            if len(self.config.datasets) == 1:
                return next(iter(self.config.datasets))
            raise ValueError(f"dataset_name is required; known datasets: {sorted(self.config.datasets)}")
        if dataset_name not in self.config.datasets:
            raise ValueError(
                f"unknown dataset_name {dataset_name!r}; known datasets: {sorted(self.config.datasets)}. "
                "Use model.add_dataset(...) to add a new one."
            )
        return dataset_name

    def _check_inputs(self, name: str, spec: dict[str, Any], input_fields, constant_fields, constant_scalars,
                      boundary_conditions, input_time_grid, output_time_grid, labels) -> None:
        d = spec["n_spatial_dims"]
        if not torch.is_tensor(input_fields) or input_fields.ndim != d + 3:
            shape = tuple(input_fields.shape) if torch.is_tensor(input_fields) else type(input_fields).__name__
            raise ValueError(
                f"input_fields for dataset {name!r} ({d} spatial dims) must be [batch, T_in, {', '.join('xyz'[:d])}, "
                f"channels] ({d + 3} dims); got shape {shape}"
            )
        batch, t_in, *space, channels = input_fields.shape
        if batch == 0 or t_in == 0:
            raise ValueError(f"input_fields must hold at least one sample and one input frame; got shape {tuple(input_fields.shape)}")
        if min(space) < 2:
            raise ValueError(f"input_fields must have at least 2 grid points along every spatial axis (a field's spatial "
                             f"variance is its VRMSE scale); got grid {tuple(space)}")
        for key, tensor in (("input_fields", input_fields), ("labels", labels), ("constant_fields", constant_fields),
                            ("constant_scalars", constant_scalars)):
            if tensor is not None and not tensor.is_floating_point():
                raise ValueError(f"{key} must be a floating-point tensor (it is cast to the model's dtype); got {tensor.dtype}")
        if labels is not None and labels.ndim >= 2 and labels.shape[1] == 0:
            raise ValueError(f"labels must hold at least one output frame; got shape {tuple(labels.shape)}")
        if channels != spec["n_fields"]:
            raise ValueError(f"input_fields has {channels} channels but dataset {name!r} has n_fields={spec['n_fields']}")
        if labels is not None and tuple(labels.shape[2:]) != tuple(input_fields.shape[2:]):
            raise ValueError(f"labels must be [batch, T_out, {', '.join(map(str, space))}, {channels}]; got {tuple(labels.shape)}")
        if labels is not None and labels.shape[0] != batch:
            raise ValueError(f"labels has batch size {labels.shape[0]}, input_fields has {batch}")
        n_const = spec["n_constant_fields"]
        if n_const:
            expected = (batch, *space, n_const)
            if constant_fields is None or tuple(constant_fields.shape) != expected:
                got = None if constant_fields is None else tuple(constant_fields.shape)
                raise ValueError(f"constant_fields for dataset {name!r} must have shape {expected}; got {got}")
        n_scalars = spec["n_constant_scalars"]
        if n_scalars:
            if constant_scalars is None or tuple(constant_scalars.shape) != (batch, n_scalars):
                got = None if constant_scalars is None else tuple(constant_scalars.shape)
                raise ValueError(f"constant_scalars for dataset {name!r} must have shape {(batch, n_scalars)}; got {got}")
        if boundary_conditions is not None:
            if tuple(boundary_conditions.shape) != (batch, d, 2):
                raise ValueError(
                    f"boundary_conditions must have shape {(batch, d, 2)} (axis, low/high side); got {tuple(boundary_conditions.shape)}"
                )
            codes = boundary_conditions.double()
            invalid = (codes != 0) & (codes != 1) & (codes != 2)  # also catches 1.7, which used to read as OPEN
            if bool(invalid.any()):
                raise ValueError(f"boundary_conditions codes must be WALL=0, OPEN=1 or PERIODIC=2; got {codes[invalid][0].item()}")
        if input_time_grid is not None and tuple(input_time_grid.shape) != (batch, t_in):
            raise ValueError(f"input_time_grid must have shape {(batch, t_in)} (one time per input frame); got {tuple(input_time_grid.shape)}")
        if output_time_grid is not None:
            if output_time_grid.ndim != 2 or output_time_grid.shape[0] != batch:
                raise ValueError(f"output_time_grid must have shape [batch={batch}, T_out]; got {tuple(output_time_grid.shape)}")
            if labels is not None and output_time_grid.shape[1] != labels.shape[1]:
                raise ValueError(f"output_time_grid has {output_time_grid.shape[1]} steps but labels have {labels.shape[1]}")
        if self.config.check_finite_inputs:
            for key, tensor in (("input_fields", input_fields), ("constant_fields", constant_fields),
                                ("constant_scalars", constant_scalars), ("labels", labels)):
                # A sum is finite only if every term is (NaN and inf propagate), and it reads the tensor without
                # writing a mask of it; only a non-finite sum (or an overflowing one) pays for the exact check.
                if (tensor is not None and tensor.is_floating_point() and not torch.isfinite(tensor.sum())
                        and not torch.isfinite(tensor).all()):
                    bad = (~torch.isfinite(tensor)).nonzero()
                    raise ValueError(f"{key} holds {bad.shape[0]} non-finite values (first at index {tuple(bad[0].tolist())})")

    # ----------------------------------------------------------------------------------------- forward
    def _step_times(self, batch: int, n_steps: int, input_time_grid, output_time_grid, device) -> torch.Tensor:
        """`[batch, n_steps]` time step from the frame before each output to that output (NaN where unknown)."""
        if output_time_grid is not None and input_time_grid is not None and output_time_grid.shape[1] >= n_steps:
            times = torch.cat([input_time_grid[:, -1:], output_time_grid[:, :n_steps]], dim=1).float()
            return times.diff(dim=1)
        if input_time_grid is not None and input_time_grid.shape[1] >= 2:
            return (input_time_grid[:, -1] - input_time_grid[:, -2]).float()[:, None].expand(batch, n_steps)
        return torch.full((batch, n_steps), float("nan"), device=device)

    def _wall_pad(self, boundary_conditions: torch.Tensor, space: tuple[int, ...]) -> tuple[int, ...]:
        """Decoder padding per spatial axis: `wall_padding` of its length where any sample's boundary on that axis is
        not periodic, else 0."""
        if not self.config.wall_padding:
            return (0,) * len(space)
        periodic = self._periodic_axes(boundary_conditions)
        return tuple(0 if p else max(1, round(self.config.wall_padding * n)) for p, n in zip(periodic, space))

    @staticmethod
    def _periodic_axes(boundary_conditions: torch.Tensor) -> tuple[bool, ...]:
        """Per spatial axis, whether every sample's boundary on both sides of it is periodic."""
        return tuple((boundary_conditions == BC_PERIODIC).all(dim=2).all(dim=0).tolist())

    def _std_floor(self, spec: dict[str, Any], window: torch.Tensor) -> torch.Tensor:
        """Smallest std the per-sample normalisation divides by, `[1, 1, *1, C]`: `norm_std_floor` times the
        dataset's field scales when the dataset entry has them, else an absolute 1e-6."""
        shape = [1] * (window.ndim - 1) + [window.shape[-1]]
        scales = spec.get("field_scales")
        if scales is None or not self.config.norm_std_floor:
            return window.new_full(shape, NORM_MIN_STD)
        floor = torch.tensor(scales, dtype=window.dtype, device=window.device) * self.config.norm_std_floor
        return floor.clamp_min(NORM_MIN_STD).view(shape)

    def _predict_next(self, name: str, window: torch.Tensor, constants: torch.Tensor | None, context: torch.Tensor | None,
                      wall_pad: tuple[int, ...] | None = None,
                      periodic: tuple[bool, ...] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One step. `window [b, T, *space, C]` (normalised) -> next frame `[b, *space, C]` and backbone tokens."""
        adapter = self.adapters[name]
        batch, frames = window.shape[:2]
        space = tuple(window.shape[2:-1])
        d = len(space)
        x = window
        if constants is not None:
            x = torch.cat([x, constants.unsqueeze(1).expand(-1, frames, *constants.shape[1:])], dim=-1)
        latent = adapter.encode(x.flatten(0, 1))  # [b*T, *space, A]
        tokens, grid = self.patch_embeddings[dims_key(d)](latent)  # [b*T, N, H]
        if self.film is not None:
            tokens = self.film(tokens, context.repeat_interleave(frames, dim=0))
        if self.spectral_tokenizer is not None:
            modes = self.config.grid_settings(d)[1]
            tokens = self.fusion(tokens, self.spectral_tokenizer(latent, modes))
        hidden = tokens.shape[-1]
        offsets = torch.arange(frames - 1, -1, -1, device=tokens.device)[:, None]
        frame_code = self.frame_proj(sinusoidal_encoding(offsets, hidden).to(tokens.dtype))  # [T, H]
        tokens = tokens.view(batch, frames, -1, hidden) + frame_code[None, :, None]
        tokens = self.backbone(tokens.view(batch, frames, *grid, hidden))
        skip_frames = self.config.skip_frames()
        if frames < skip_frames:
            raise ValueError(f"this model's decoder joins the last {skip_frames} input frames (decoder_skip_frames); "
                             f"input_fields has {frames}: give it windows of at least {skip_frames} frames, or build "
                             f"the config for this window (PDEFMConfig.from_preset(..., n_steps_input={frames}))")
        skip = latent.view(batch, frames, *latent.shape[1:])[:, frames - skip_frames:]  # [b, k, *space, A]
        skip = skip.movedim(1, -2).flatten(-2)  # [b, *space, k*A], oldest frame first
        decoded = self.decoders[dims_key(d)](tokens[:, -1].reshape(batch, -1, hidden), grid, skip, wall_pad, periodic)
        delta = adapter.decode(decoded)
        return (window[:, -1] + delta if self.config.predict_increment else delta), tokens

    def forward(
        self,
        input_fields: torch.Tensor,
        dataset_name: str | list[str] | None = None,
        labels: torch.Tensor | None = None,
        constant_fields: torch.Tensor | None = None,
        constant_scalars: torch.Tensor | None = None,
        boundary_conditions: torch.Tensor | None = None,
        input_time_grid: torch.Tensor | None = None,
        output_time_grid: torch.Tensor | None = None,
        output_fields: torch.Tensor | None = None,
        n_steps: int | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> PDEFMOutput | tuple:
        r"""
        Args:
            input_fields: `[batch, T_in, *space, C]` the last `T_in` frames.
            dataset_name: which dataset adapter to use (one per batch).
            labels: `[batch, T_out, *space, C]` target frames (`output_fields` is accepted as an alias).
            constant_fields: `[batch, *space, C_const]` fields constant in time (e.g. material maps).
            constant_scalars: `[batch, S]` physical parameters.
            boundary_conditions: `[batch, n_dims, 2]` codes WALL=0, OPEN=1, PERIODIC=2 for the low and high side.
            input_time_grid: `[batch, T_in]`, output_time_grid: `[batch, T_out]` frame times.
            n_steps: number of frames to predict when labels do not say it (default: as many as output_time_grid
                holds, else 1); a longer output_time_grid then only gives the times of the first n_steps.

        Returns:
            [`PDEFMOutput`] with `prediction [batch, T_out, *space, C]` and, when labels are given, `loss` (VRMSE +
            `config.spectral_loss_weight` x spectral loss) with its parts `vrmse_loss` and `spectral_loss`.
        """
        unknown = set(kwargs) - IGNORED_BATCH_KEYS
        if unknown:
            raise TypeError(f"PDEFMModel.forward got unexpected arguments {sorted(unknown)}")
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        if labels is None:
            labels = output_fields
        name = self._resolve_dataset(dataset_name)
        spec = self.config.datasets[name]
        self._check_inputs(name, spec, input_fields, constant_fields, constant_scalars, boundary_conditions,
                           input_time_grid, output_time_grid, labels)
        d = spec["n_spatial_dims"]
        batch = input_fields.shape[0]
        if n_steps is not None and (isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1):
            raise ValueError(f"n_steps must be a positive int (frames to predict), got {n_steps!r}")
        if labels is not None:
            n_out = labels.shape[1]
        elif n_steps is not None:  # asked for explicitly: a longer output_time_grid only gives the steps' times
            n_out = n_steps
        elif output_time_grid is not None:
            n_out = output_time_grid.shape[1]
            if n_out == 0:
                raise ValueError("output_time_grid holds no output frame; give at least one time or use n_steps")
        else:
            n_out = 1
        check_rollout_memory(input_fields, n_out)
        # One dtype inside: floating inputs of another precision (float64 files, half tensors) are cast to the model's.
        dtype = self.dtype
        input_fields, labels, constant_fields, constant_scalars = (
            None if t is None else t.to(dtype) for t in (input_fields, labels, constant_fields, constant_scalars))

        # Channels last throughout, as The Well stores fields: window [b, T, *space, C].
        window = input_fields
        if self.config.normalize_inputs:
            axes = tuple(range(1, d + 2))  # time and space
            mean = window.mean(dim=axes, keepdim=True)
            centered = window - mean
            std = torch.maximum(unbiased_variance(centered, axes).sqrt(), self._std_floor(spec, window))
        else:
            mean = window.new_zeros(batch, *([1] * (d + 1)), window.shape[-1])
            std = torch.ones_like(mean)
            centered = window
        window = centered / std
        constants = None
        if spec["n_constant_fields"]:
            constants = constant_fields  # [b, *space, C_const]
            if self.config.normalize_inputs:
                const_axes = tuple(range(1, d + 1))
                constants = (constants - constants.mean(const_axes, keepdim=True)) / constants.std(const_axes, keepdim=True).clamp_min(NORM_MIN_STD)
        if boundary_conditions is None:
            boundary_conditions = torch.full((batch, d, 2), BC_PERIODIC, device=input_fields.device, dtype=torch.long)
        scalar_context = self.adapters[name].context(constant_scalars, batch)
        wall_pad = self._wall_pad(boundary_conditions, tuple(input_fields.shape[2:-1]))
        periodic = self._periodic_axes(boundary_conditions)
        step_dt = self._step_times(batch, n_out, input_time_grid, output_time_grid, input_fields.device)

        frames = []
        tokens = None
        for step in logging.tqdm(range(n_out), desc="rollout", unit="step", disable=n_out < PROGRESS_FROM_STEPS):
            context = None
            if self.context_encoder is not None:
                context = self.context_encoder(boundary_conditions, step_dt[:, step].to(input_fields.device), scalar_context)
            next_frame, tokens = self._predict_next(name, window, constants, context, wall_pad, periodic)
            frames.append(next_frame)
            window = torch.cat([window[:, 1:], next_frame.unsqueeze(1)], dim=1)
        prediction_norm = torch.stack(frames, dim=1)  # [b, T_out, *space, C]
        prediction = prediction_norm * std + mean

        loss = vrmse = spectral = None
        if labels is not None:
            target_norm = (labels - mean) / std
            # VRMSE and the spectral loss are invariant to the per-channel affine normalisation, so computing them in
            # normalised units gives The Well's value while keeping their epsilon relative to the data's scale.
            loss, vrmse, spectral = pdefm_objective(prediction_norm, target_norm, d,
                                                    self.config.spectral_loss_weight)
        if not return_dict:
            return tuple(v for v in (loss, prediction, tokens, vrmse, spectral) if v is not None)
        return PDEFMOutput(loss=loss, prediction=prediction, last_hidden_state=tokens, vrmse_loss=vrmse,
                           spectral_loss=spectral)

    @torch.no_grad()
    def rollout(self, batch: dict[str, Any], n_steps: int, dataset_name: str | None = None) -> torch.Tensor:
        """Autoregressive rollout from a batch of The Well's layout: `[batch, n_steps, *space, C]`.

        Uses `output_time_grid` for the step sizes where it covers `n_steps`, else the spacing of
        `input_time_grid`. Targets in the batch are ignored.
        """
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f"n_steps must be a positive int, got {n_steps!r}")
        inputs = {k: v for k, v in batch.items() if k not in ("labels", "output_fields")}
        if dataset_name is not None:
            inputs["dataset_name"] = dataset_name
        grid = inputs.get("output_time_grid")
        if grid is not None and grid.shape[1] < n_steps:
            inputs.pop("output_time_grid")
        elif grid is not None:
            inputs["output_time_grid"] = grid[:, :n_steps]
        return self(**inputs, n_steps=n_steps, return_dict=True).prediction
