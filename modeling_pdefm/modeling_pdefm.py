"""PDE-FM: a foundation model for partial differential equations.

Reads top to bottom: the output dataclass, the inputs of a forecast, the pretrained base class, then `PDEFMModel`, whose
`forward` runs in named stages (resolve and check the inputs, roll out, loss); the layers live in `*_layers.py`.
Tensors follow The Well's layout: channels last, time first: `input_fields [batch, T_in, *space, C]`, predictions
`[batch, T_out, *space, C]`. `docs/architecture.md` follows the shapes through `forward` stage by stage.
"""

from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.conversion_mapping import register_checkpoint_conversion_mapping
from transformers.core_model_loading import WeightRenaming
from transformers.utils import ModelOutput, logging

from .backbone_layers import PDEFMBackbone
from .conditioning_layers import (
    BC_PERIODIC,
    CrossAttentionFusion,
    FiLM,
    ModulationProjection,
    PhysicsContextEncoder,
    SpectralSummaryFusion,
    periodic_axes,
)
from .configuration_pdefm import PDEFMConfig, validate_dataset_spec
from .decoder_layers import FieldDecoder
from .field_matching import channel_order, match_fields
from .head_layers import DatasetHead, init_head_from_fields
from .jitter_layers import patch_shifts, position_offsets, shift_fields, unshift_fields
from .input_checks import check_inputs, check_rollout_memory, resolve_dataset, resolve_n_steps, tracing
from .losses import pdefm_objective, unbiased_variance
from .mamba_layers import Mamba2Mixer, RMSNorm
from .spectral_layers import SpectralConv
from .tokenizer_layers import FieldLinear, PatchEmbedding, PatchEmbeddings, SpectralTokenizer, sinusoidal_encoding

logger = logging.get_logger(__name__)

# Keys of a window from The Well's loader (`pdefm.data.window.WellWindow`) that the model does not use; accepted so
# `model(**batch)` works. A test holds them to the reader's keys.
IGNORED_BATCH_KEYS = frozenset({"space_grid", "input_scalars", "output_scalars"})
NORM_MIN_STD = 1e-6
# Weights renamed since an earlier pdefm, old prefix -> new: 0.2.0 called the dataset heads `adapters`. Renamed on
# load by transformers' conversion mapping (`from_pretrained`) and by a state-dict pre-hook (`load_state_dict`).
RENAMED_WEIGHT_PREFIXES = {"adapters.": "dataset_heads."}
register_checkpoint_conversion_mapping(
    PDEFMConfig.model_type, [WeightRenaming(source_patterns=f"^{old[:-1]}\\.", target_patterns=new)
                   for old, new in RENAMED_WEIGHT_PREFIXES.items()], overwrite=True)
# Rollouts of this many steps or more show a progress bar (transformers' `logging.disable_progress_bar()` hides it).
PROGRESS_FROM_STEPS = 50


# The weights file's own record of each dataset's field names (safetensors metadata): `config.json`'s list can be
# edited by hand, the weights' channels cannot follow it, so a loader compares the two.
FIELD_RECORD_KEY = "pdefm_field_names"


def record_field_names(folder: str, field_names: dict[str, list[str] | None]) -> None:
    """Write `field_names` into the metadata of the safetensors weight files in `folder` (rewritten atomically)."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    for name in sorted(os.listdir(folder)):
        if not name.endswith(".safetensors") or not name.startswith("model"):
            continue
        path = os.path.join(folder, name)
        with safe_open(path, "pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {key: f.get_tensor(key) for key in f.keys()}
        metadata[FIELD_RECORD_KEY] = json.dumps(field_names, sort_keys=True)
        tmp = f"{path}.tmp-{os.getpid()}"
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)


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
        hidden_states: with `output_hidden_states`, the token states of the last predicted step, each `[batch, T_in,
            *patch_grid, hidden]`: after the tokenizer, fusion and frame code (the backbone's input), then after
            every backbone layer, the last one after the final norm (`last_hidden_state`); `num_layers + 1` in all.
    """

    loss: torch.Tensor | None = None
    prediction: torch.Tensor | None = None
    last_hidden_state: torch.Tensor | None = None
    vrmse_loss: torch.Tensor | None = None
    spectral_loss: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


def dims_key(n_spatial_dims: int) -> str:
    return f"{n_spatial_dims}d"


@dataclass
class ForecastInputs:
    """What one forecast needs once `forward`'s arguments are resolved and checked: `window [b, T_in, *space, C]` in
    the model's dtype and physical units, `constants [b, *space, C_const]` normalised (or None), the dataset's
    `context [b, hidden]` from its scalars, `boundary_conditions [b, d, 2]`, the first window's per-sample `mean` and
    `std` `[b, 1, *1, C]` (`_window_statistics`), the time grids as given. Fields are in the model's channel order;
    `in_data_order` maps a prediction back to the order of the data's `field_names`."""

    name: str
    spec: dict[str, Any]
    window: torch.Tensor
    n_steps: int
    constants: torch.Tensor | None
    context: torch.Tensor
    boundary_conditions: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    labels: torch.Tensor | None = None
    input_time_grid: torch.Tensor | None = None
    output_time_grid: torch.Tensor | None = None
    output_hidden_states: bool = False
    to_data: list[int] | None = None  # channel order of the data, from the model's, when they differ (`field_names`)

    def in_data_order(self, x: torch.Tensor) -> torch.Tensor:
        """A prediction in the model's channel order `[..., C]` -> in the order of the data it was given."""
        return x if self.to_data is None else x[..., self.to_data]


class PDEFMPreTrainedModel(PreTrainedModel):
    config_class = PDEFMConfig
    base_model_prefix = "pdefm"
    main_input_name = "input_fields"
    supports_gradient_checkpointing = True
    # The loss is a mean over samples, steps and fields (VRMSE), not a sum over tokens: `transformers.Trainer` must
    # not pass `num_items_in_batch` and must scale the loss for gradient accumulation itself.
    accepts_loss_kwargs = False
    _no_split_modules = ["BackboneLayer"]

    def save_pretrained(self, save_directory, *args, save_original_format: bool = False, **kwargs):
        # Today's weight names on disk: transformers would otherwise write back the names a conversion mapping read
        # (`RENAMED_WEIGHT_PREFIXES`, 0.2.0's), even for a model that was never loaded from such a folder.
        result = super().save_pretrained(save_directory, *args, save_original_format=save_original_format, **kwargs)
        if kwargs.get("is_main_process", True):
            record_field_names(str(save_directory), {name: spec.get("field_names")
                                                     for name, spec in self.config.datasets.items()})
        return result

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
        elif isinstance(module, DatasetHead):
            init.normal_(module.dataset_embedding, std=std)
            init.zeros_(module.out_proj.weight)  # a new dataset starts by predicting "no change"
            init.zeros_(module.out_proj.bias)
            if module.stencil_weight is not None:
                init.zeros_(module.stencil_weight)  # the linear path starts at "no change" too
            if module.change_log_gain is not None:
                init.zeros_(module.change_log_gain)  # every band's gain starts at 1
        elif isinstance(module, (FieldLinear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            # Fan-in scaling: field maps often see few channels (a head's map from 2 fields, a decoder of width 16),
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
    """PDE-FM: dataset heads, dual spatial/spectral tokenizer, physics conditioning (FiLM and cross-attention),
    a bidirectional Mamba-2 backbone over space and time, and a full-resolution decoder.

    `model(input_fields=..., dataset_name=..., labels=...)` predicts the next `T_out` frames (`T_out` from `labels`,
    `n_steps` or `output_time_grid`, else 1); more than one is rolled out autoregressively by `iter_rollout`, the
    one rollout that training, `rollout`, evaluation and prediction share.
    """

    def __init__(self, config: PDEFMConfig):
        super().__init__(config)
        hidden = config.hidden_size
        self.dataset_heads = nn.ModuleDict()
        self.patch_embeddings = PatchEmbeddings()
        self.decoders = nn.ModuleDict()
        self.spectral_tokenizer = SpectralTokenizer(config.latent_channels, hidden) if config.use_spectral_tokens else None
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
        self._register_load_state_dict_pre_hook(self._rename_old_weights)
        self.post_init()

    @staticmethod
    def renamed_weight(key: str) -> str:
        """A weight's name today, given its name in a file an earlier pdefm saved (`RENAMED_WEIGHT_PREFIXES`)."""
        for old, new in RENAMED_WEIGHT_PREFIXES.items():
            if key.startswith(old):
                return new + key[len(old):]
        return key

    @classmethod
    def _rename_old_weights(cls, state_dict: dict[str, torch.Tensor], prefix: str, *args) -> None:
        """Weights saved under an earlier name (`RENAMED_WEIGHT_PREFIXES`) load under today's."""
        for key in list(state_dict):
            if key.startswith(prefix):
                renamed = prefix + cls.renamed_weight(key[len(prefix):])
                if renamed != key:
                    state_dict[renamed] = state_dict.pop(key)

    # ----------------------------------------------------------------------------------------- datasets
    def _build_dataset_modules(self, name: str, spec: dict[str, Any]) -> list[nn.Module]:
        created: list[nn.Module] = []
        self.dataset_heads[name] = DatasetHead(spec, self.config.latent_channels, self.config.hidden_size,
                                               self.config.stencil_frames(name), self.config.change_filter_bands)
        created.append(self.dataset_heads[name])
        key = dims_key(spec["n_spatial_dims"])
        if key not in self.patch_embeddings:
            patch = self.config.grid_settings(spec["n_spatial_dims"])[0]
            self.patch_embeddings[key] = PatchEmbedding(self.config.latent_channels, self.config.hidden_size, patch, spec["n_spatial_dims"])
            created.append(self.patch_embeddings[key])
        decoder_key = self.decoder_key(name, spec["n_spatial_dims"])
        if decoder_key not in self.decoders:
            self.decoders[decoder_key] = FieldDecoder(self.config, spec["n_spatial_dims"])
            created.append(self.decoders[decoder_key])
        return created

    def decoder_key(self, name: str, n_spatial_dims: int) -> str:
        """The decoder a dataset uses: its own (`decoder_per_dataset`) or the one of its dimensionality."""
        return name if self.config.decoder_per_dataset else dims_key(n_spatial_dims)

    @torch.no_grad()
    def _init_decoder_from_known(self, name: str, n_spatial_dims: int) -> None:
        """A new dataset's own decoder starts as the mean of the known datasets' decoders of its dimensionality,
        so it decodes like them before any training (nothing to do without per-dataset decoders or peers)."""
        peers = [self.decoders[k] for k, s in self.config.datasets.items()
                 if s["n_spatial_dims"] == n_spatial_dims and k in self.decoders and k != name]
        if not self.config.decoder_per_dataset or not peers:
            return
        states = [peer.state_dict() for peer in peers]
        for key, value in self.decoders[name].state_dict().items():
            value.copy_(torch.stack([state[key] for state in states]).mean(0))

    def get_input_embeddings(self) -> PatchEmbeddings:
        """The patch embeddings: the first learned map the fields of every dataset share (transformers and PEFT
        hook it to make the backbone's inputs require grad under reentrant gradient checkpointing)."""
        return self.patch_embeddings

    def set_input_embeddings(self, value: PatchEmbeddings) -> None:
        self.patch_embeddings = value

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
        head_init: str = "fields",
        field_aliases: dict[str, str] | None = None,
        adapter_init: str | None = None,
    ) -> DatasetHead:
        """Give the model a new domain: registers it in the config and creates its head, plus the patch embedding
        and decoder of its dimensionality if the model had none. `field_scales` (each field's std over the dataset)
        sets its normalisation floor (see `PDEFMConfig.norm_std_floor`). Returns the head, whose `initialised_from`
        says where each field's weights came from.

        `head_init="fields"` (the default) starts the head from the datasets the model knows: each field channel
        that is a known quantity (by name, `field_matching`; `field_aliases` replaces its default aliases) takes
        the mean of their head weights for it, the dataset embedding the mean of theirs, so the model can forecast
        the new dataset before any training. Other input channels start at zero (ignored until trained), other
        output channels predict no change. Without a shared field (or without `field_names`) it says so and falls
        back to `head_init="random"`: a fresh head that predicts no change. `adapter_init` is 0.2.0's name of
        `head_init` (deprecated).
        """
        if adapter_init is not None:
            warnings.warn("add_dataset(adapter_init=...) is deprecated: the per-dataset maps are dataset heads now; "
                          "use head_init=...", FutureWarning, stacklevel=2)
            head_init = adapter_init
        if name in self.config.datasets:
            raise ValueError(f"dataset {name!r} is already known to the model; pick another name")
        if head_init not in ("fields", "random"):
            raise ValueError(f"head_init must be 'fields' or 'random', got {head_init!r}")
        spec = validate_dataset_spec(
            name,
            {"n_fields": n_fields, "n_spatial_dims": n_spatial_dims, "n_constant_fields": n_constant_fields,
             "n_constant_scalars": n_constant_scalars, "field_names": field_names, "field_scales": field_scales},
        )
        if n_constant_scalars > self.config.max_constant_scalars:
            raise ValueError(f"n_constant_scalars={n_constant_scalars} exceeds max_constant_scalars={self.config.max_constant_scalars}")
        known = {k: v["field_names"] for k, v in self.config.datasets.items() if v.get("field_names")}
        matches = match_fields(field_names, known, field_aliases) if head_init == "fields" and field_names else {}
        device = next(self.parameters()).device
        dtype = next(self.parameters()).dtype
        for module in self._build_dataset_modules(name, spec):
            module.to(device=device, dtype=dtype)
            module.apply(self._init_weights)
        head = self.dataset_heads[name]
        head.initialised_from = {}
        if head_init == "fields":
            self._init_decoder_from_known(name, n_spatial_dims)
        if matches:
            init_head_from_fields(head, self.dataset_heads, matches)
            head.initialised_from = {field_names[i]: [f"{d}/{self.config.datasets[d]['field_names'][j]}" for d, j in m]
                                        for i, m in matches.items()}
        elif head_init == "fields":
            why = (f"no field of {field_names} is a quantity of the known datasets {sorted(known)}" if field_names
                   else "no field_names given to match")
            logger.warning(f"add_dataset({name!r}, head_init='fields'): {why}; its head starts fresh "
                           "(head_init='random')")
        self.config.datasets = {**self.config.datasets, name: spec}
        return head

    # ----------------------------------------------------------------------------------------- forward
    def forward(self, input_fields: torch.Tensor, dataset_name: str | list[str] | None = None,
                labels: torch.Tensor | None = None, constant_fields: torch.Tensor | None = None,
                constant_scalars: torch.Tensor | None = None, boundary_conditions: torch.Tensor | None = None,
                input_time_grid: torch.Tensor | None = None, output_time_grid: torch.Tensor | None = None,
                output_fields: torch.Tensor | None = None, n_steps: int | None = None,
                field_names: list[str] | list[list[str]] | None = None, output_hidden_states: bool | None = None,
                return_dict: bool | None = None, **kwargs) -> PDEFMOutput | tuple:
        r"""
        Args:
            input_fields: `[batch, T_in, *space, C]` the last `T_in` frames.
            dataset_name: which dataset's head to use (one per batch).
            labels: `[batch, T_out, *space, C]` target frames (`output_fields` is accepted as an alias).
            constant_fields: `[batch, *space, C_const]` fields constant in time (e.g. material maps).
            constant_scalars: `[batch, S]` physical parameters.
            boundary_conditions: `[batch, n_dims, 2]` codes WALL=0, OPEN=1, PERIODIC=2 for the low and high side.
            input_time_grid: `[batch, T_in]`, output_time_grid: `[batch, T_out]` frame times.
            n_steps: frames to predict when labels do not say it (default: as many as output_time_grid holds, else 1).
            field_names: the names of the `C` channels of `input_fields` and `labels` (one list, or one per sample as
                The Well's loader gives them): fields are matched to the model's by name and reordered when the
                order differs; a different set of fields is refused. Without it channels are taken in the model's
                order (`config.datasets[name]["field_names"]`).
            output_hidden_states: return the token states (default: `config.output_hidden_states`).
            kwargs: keys of The Well's windows the model does not use; `output_attentions` and `use_cache` as False.

        Returns:
            [`PDEFMOutput`]: `prediction [batch, T_out, *space, C]`; with labels `loss` (VRMSE +
            `config.spectral_loss_weight` x spectral loss) and its parts `vrmse_loss` and `spectral_loss`.
        """
        inputs = self._resolve_inputs(input_fields, dataset_name, output_fields if labels is None else labels,
                                      constant_fields, constant_scalars, boundary_conditions, input_time_grid,
                                      output_time_grid, n_steps, field_names=field_names,
                                      output_hidden_states=output_hidden_states, **kwargs)
        check_rollout_memory(inputs.window, inputs.n_steps)
        frames, states = [], None
        for frame, states in logging.tqdm(self._rollout(inputs), total=inputs.n_steps, desc="rollout", unit="step",
                                          disable=inputs.n_steps < PROGRESS_FROM_STEPS):
            frames.append(frame)
        prediction = torch.stack(frames, dim=1)  # [b, T_out, *space, C]
        loss, vrmse, spectral = self._loss(prediction, inputs) if inputs.labels is not None else (None, None, None)
        output = PDEFMOutput(loss=loss, prediction=inputs.in_data_order(prediction), last_hidden_state=states[-1], vrmse_loss=vrmse,
                             spectral_loss=spectral, hidden_states=states if inputs.output_hidden_states else None)
        return output if (return_dict if return_dict is not None else self.config.return_dict) else output.to_tuple()

    def iter_rollout(self, n_steps: int, **inputs) -> Iterator[torch.Tensor]:
        """The autoregressive rollout, frame by frame: yields each predicted frame `[batch, 1, *space, C]` in the
        units of the input as it is made (nothing but the current window is held, so a long rollout can be written
        as it goes). `inputs` are `forward`'s arguments; `forward(n_steps=k)` stacks the same frames."""
        targets = ("labels", "output_fields")  # a batch's targets do not say how far to roll out: n_steps does
        inputs = self._resolve_inputs(**{k: v for k, v in inputs.items() if k not in targets}, n_steps=n_steps)
        for frame, _ in self._rollout(inputs):
            yield inputs.in_data_order(frame.unsqueeze(1))

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
        return self(**inputs, n_steps=n_steps, return_dict=True).prediction

    # ----------------------------------------------------------------------------------------- stages
    def _resolve_inputs(self, input_fields, dataset_name=None, labels=None, constant_fields=None, constant_scalars=None,
                        boundary_conditions=None, input_time_grid=None, output_time_grid=None, n_steps=None,
                        output_fields=None, field_names=None, output_hidden_states=None, output_attentions=None,
                        use_cache=None, **batch_keys) -> ForecastInputs:
        """Stage 1: which dataset, how many steps, checked shapes, one dtype, and what conditions every step."""
        unknown = set(batch_keys) - IGNORED_BATCH_KEYS
        if unknown:
            raise TypeError(f"PDEFMModel.forward got unexpected arguments {sorted(unknown)}")
        # Generic wrappers pass these as False; only a value the model cannot honour is refused.
        if output_attentions:
            raise ValueError("output_attentions=True: PDE-FM returns no attention maps (its backbone is a state-space "
                             "model); leave it out or pass False (output_hidden_states=True gives the token states)")
        if use_cache:
            raise ValueError("use_cache=True: PDE-FM keeps no cache between calls (every step reads its whole input "
                             "window); leave it out or pass False")
        name = resolve_dataset(self.config, dataset_name)
        spec = self.config.datasets[name]
        labels = output_fields if labels is None else labels
        check_inputs(self.config, name, spec, input_fields, constant_fields, constant_scalars, boundary_conditions,
                     input_time_grid, output_time_grid, labels)
        n_steps = resolve_n_steps(n_steps, labels, output_time_grid)
        to_model = channel_order(spec.get("field_names"), field_names, name)
        to_data = None
        if to_model is not None:
            input_fields = input_fields[..., to_model]
            labels = None if labels is None else labels[..., to_model]
            to_data = [to_model.index(i) for i in range(len(to_model))]
        # One dtype inside: floating inputs of another precision (float64 files, half tensors) are cast to the model's.
        window, labels, constant_fields, constant_scalars = (
            None if t is None else t.to(self.dtype) for t in (input_fields, labels, constant_fields, constant_scalars))
        batch, d = window.shape[0], spec["n_spatial_dims"]
        if boundary_conditions is None:
            boundary_conditions = torch.full((batch, d, 2), BC_PERIODIC, device=window.device, dtype=torch.long)
        constants = None
        if spec["n_constant_fields"]:
            constants = constant_fields  # [b, *space, C_const]
            if self.config.normalize_inputs:
                axes = tuple(range(1, d + 1))
                constants = (constants - constants.mean(axes, keepdim=True)) / constants.std(axes, keepdim=True).clamp_min(NORM_MIN_STD)
        mean, std = self._window_statistics(spec, window)
        return ForecastInputs(name=name, spec=spec, window=window, n_steps=n_steps, constants=constants,
                              context=self.dataset_heads[name](constant_scalars, batch), mean=mean, std=std,
                              boundary_conditions=boundary_conditions, labels=labels,
                              input_time_grid=input_time_grid, output_time_grid=output_time_grid, to_data=to_data,
                              output_hidden_states=bool(self.config.output_hidden_states if output_hidden_states is None
                                                        else output_hidden_states))

    def _rollout(self, inputs: ForecastInputs) -> Iterator[tuple[torch.Tensor, tuple[torch.Tensor, ...]]]:
        """Stage 2, the one rollout: normalise the window, predict the next frame, map it back to the input's units,
        shift it into the window; `n_steps` times. Yields `(frame [b, *space, C], token states)`: the backbone's input
        and every layer's output with `output_hidden_states`, else the last (`[b, T, *grid, hidden]` each).

        `config.rollout_normalization` says which statistics a step's window is normalised with: `"every_window"`
        recomputes them from the window each step is given (a step sees what a one-step forecast from that window
        would see), `"first_window"` keeps the first window's (docs/decisions.md, "One rollout").
        """
        periodic = self._periodic_axes(inputs.boundary_conditions)
        window, mean, std = inputs.window, inputs.mean, inputs.std
        window_norm = (window - mean) / std
        for step in range(inputs.n_steps):
            context = None
            if self.context_encoder is not None:
                dt = self._step_time(inputs, step).to(window.device)
                context = self.context_encoder(inputs.boundary_conditions, dt, inputs.context)
            next_norm, states = self._predict_next(inputs.name, window_norm, inputs.constants, context, periodic,
                                                   inputs.output_hidden_states, step)
            frame = next_norm * std[:, 0] + mean[:, 0]
            yield frame, states
            if step + 1 == inputs.n_steps:
                break
            if self.config.rollout_normalization == "every_window":
                window = torch.cat([window[:, 1:], frame.unsqueeze(1)], dim=1)
                mean, std = self._window_statistics(inputs.spec, window)
                window_norm = (window - mean) / std
            else:
                window_norm = torch.cat([window_norm[:, 1:], next_norm.unsqueeze(1)], dim=1)

    def _loss(self, prediction: torch.Tensor, inputs: ForecastInputs) -> tuple[torch.Tensor, ...]:
        """Stage 3: `(loss, vrmse, spectral)` of `prediction` against the labels. VRMSE and the spectral loss are
        invariant to a per-channel affine map, so they are computed in the first window's normalised units: The
        Well's value, with their epsilon relative to the data's scale."""
        mean, std = inputs.mean, inputs.std
        return pdefm_objective((prediction - mean) / std, (inputs.labels - mean) / std, inputs.spec["n_spatial_dims"],
                               self.config.spectral_loss_weight, self.config.change_loss_weight,
                               (inputs.window[:, -1] - mean[:, 0]) / std[:, 0], self.config.band_loss_weight)

    def _window_statistics(self, spec: dict[str, Any], window: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per sample and field, `mean` and `std` `[b, 1, *1, C]` over the window's time and space (the std floored,
        `norm_std_floor`); zeros and ones without `normalize_inputs`."""
        if not self.config.normalize_inputs:
            mean = window.new_zeros(window.shape[0], *([1] * (window.ndim - 2)), window.shape[-1])
            return mean, torch.ones_like(mean)
        axes = tuple(range(1, window.ndim - 1))  # time and space
        mean = window.mean(dim=axes, keepdim=True)
        std = torch.maximum(unbiased_variance(window - mean, axes).sqrt(), self._std_floor(spec, window))
        return mean, std

    @staticmethod
    def _step_time(inputs: ForecastInputs, step: int) -> torch.Tensor:
        """`[batch]` time from the frame before output `step` to that output: from `output_time_grid` where it
        covers the rollout, else the spacing of `input_time_grid`, else NaN (unknown)."""
        before, after = inputs.input_time_grid, inputs.output_time_grid
        if after is not None and before is not None and after.shape[1] >= inputs.n_steps:
            previous = before[:, -1] if step == 0 else after[:, step - 1]
            return (after[:, step] - previous).float()
        if before is not None and before.shape[1] >= 2:
            return (before[:, -1] - before[:, -2]).float()
        return torch.full((inputs.window.shape[0],), float("nan"), device=inputs.window.device)

    @staticmethod
    def _periodic_axes(boundary_conditions: torch.Tensor) -> tuple[bool, ...] | torch.Tensor:
        """Per spatial axis, whether every sample's boundary on both sides of it is periodic: a tuple, or under a
        trace (`torch.export`) a bool tensor `[d]` the decoder pads by with tensor ops instead of branching."""
        periodic = periodic_axes(boundary_conditions)
        return periodic if tracing() else tuple(periodic.tolist())

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
                      periodic: tuple[bool, ...], all_states: bool = False,
                      step: int = 0) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """One step. `window [b, T, *space, C]` (normalised) -> next frame `[b, *space, C]` and the token states
        `[b, T, *grid, hidden]` (every layer's with `all_states`, else the backbone's output alone). `step`, the
        rollout's step, picks the patch grid's shift under `patch_jitter` (outside training, the `jitter_average`
        shifts whose decoded fields are averaged)."""
        head = self.dataset_heads[name]
        batch, frames = window.shape[:2]
        space = tuple(window.shape[2:-1])
        d = len(space)
        x = window
        if constants is not None:
            x = torch.cat([x, constants.unsqueeze(1).expand(-1, frames, *constants.shape[1:])], dim=-1)
        latent = head.encode(x.flatten(0, 1))  # [b*T, *space, A]
        grids: list[tuple[int, ...] | None] = [None]
        if self.config.patch_jitter:
            if tracing():
                raise NotImplementedError("patch_jitter decides per axis whether to roll or pad, which a trace cannot "
                                          "follow: export a model whose config has patch_jitter=False")
            patch = self.config.grid_settings(d)[0]
            # Outside training, `jitter_average` successive points of the shift sequence per step (one: the step's).
            k = 1 if self.training else self.config.jitter_average
            grids = [patch_shifts(patch, d, step * k + j, self.training) for j in range(k)]
        decoded, states = None, None
        for shifts in grids:
            one, grid_states = self._decode_on_grid(name, latent, shifts, periodic, context, batch, frames, all_states)
            decoded = one if decoded is None else decoded + one
            states = grid_states if states is None else states  # a token state belongs to one grid: the first's
        if len(grids) > 1:
            decoded = decoded / len(grids)
        delta = head.decode(decoded)
        if head.stencil_weight is not None:
            delta = delta + head.stencil(window, periodic)
        if head.change_log_gain is not None:  # on the whole change: a linear path can pile up small scales too
            delta = head.filter_change(delta, periodic)
        return (window[:, -1] + delta if self.config.predict_increment else delta), states

    def _decode_on_grid(self, name: str, latent: torch.Tensor, shifts: tuple[int, ...] | None,
                        periodic: tuple[bool, ...], context: torch.Tensor | None, batch: int, frames: int,
                        all_states: bool) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The network's part of one step on one patch grid: `latent [b*T, *space, A]` shifted by `shifts` (None: the
        fixed grid), tokenised, through the backbone and decoded, shifted back -> decoded latent change
        `[b, *space, A]` and the token states (as `_predict_next`)."""
        space = tuple(latent.shape[1:-1])
        d = len(space)
        offset = None
        if shifts is not None:
            patch = self.config.grid_settings(d)[0]
            latent, offset = shift_fields(latent, shifts, periodic, patch), position_offsets(shifts, patch)
        tokens = self.patch_embeddings(latent, offset)  # [b*T, N, H]
        grid = self.patch_embeddings.grid(tuple(latent.shape[1:-1]))
        if self.film is not None:
            tokens = self.film(tokens, context.repeat_interleave(frames, dim=0))
        if self.spectral_tokenizer is not None:
            modes = self.config.grid_settings(d)[1]
            tokens = self.fusion(tokens, self.spectral_tokenizer(latent, modes))
        hidden = tokens.shape[-1]
        offsets = torch.arange(frames - 1, -1, -1, device=tokens.device)[:, None]
        frame_code = self.frame_proj(sinusoidal_encoding(offsets, hidden).to(tokens.dtype))  # [T, H]
        tokens = tokens.view(batch, frames, -1, hidden) + frame_code[None, :, None]
        states = self.backbone(tokens.view(batch, frames, *grid, hidden), all_states)
        tokens = states[-1]
        skip_frames = self.config.skip_frames()
        if frames < skip_frames:
            raise ValueError(f"this model's decoder joins the last {skip_frames} input frames (decoder_skip_frames); "
                             f"input_fields has {frames}: give it windows of at least {skip_frames} frames, or build "
                             f"the config for this window (PDEFMConfig.from_preset(..., n_steps_input={frames}))")
        skip = latent.view(batch, frames, *latent.shape[1:])[:, frames - skip_frames:]  # [b, k, *space, A]
        skip = skip.movedim(1, -2).flatten(-2)  # [b, *space, k*A], oldest frame first
        decoded = self.decoders[self.decoder_key(name, d)](tokens[:, -1].reshape(batch, -1, hidden), grid, skip,
                                                            periodic, context)
        if shifts is not None:
            decoded = unshift_fields(decoded, shifts, periodic, space)
        return decoded, states
