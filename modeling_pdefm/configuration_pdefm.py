"""Configuration of PDE-FM: model sizes, ablation switches and the registry of known datasets."""

from __future__ import annotations

import copy
import inspect
import math
import os
import re
from typing import Any

from torch import nn
from transformers import PretrainedConfig

from .config_versions import (PDEFM_FORMAT, REMOVED_KEYS, RENAMED_KEYS, drop_removed_keys, refuse_removed_values,
                              refuse_unknown_keys, renamed_value, transformers_config_keys)

# Size presets. `tiny` (what `PDEFMConfig()` builds) runs in seconds on a CPU and is the main job's model, `small` is
# the paper's model size (about 13M parameters with 2D datasets), `base` is about 100M parameters. A first 3D dataset
# adds a 3D patch embedding and decoder (`python bench/model_sizes.py` prints the counts).
PRESETS: dict[str, dict[str, Any]] = {
    # The constructor's defaults. Measured on the Mini-Well suites (docs/decisions.md): 3x3 decoder blocks beat the
    # paper's FNO decoder at this size ("The tiny decoder and the unit of the change"), wrapping around periodic axes
    # ("Periodic edges in the 3x3 decoder"), and the decoder sees every input frame at full resolution ("Every input
    # frame in the decoder, trained on two-step rollouts"). `small` and `base` keep the paper's decoder until measured.
    "tiny": {},
    "small": dict(
        hidden_size=256, num_layers=8, latent_channels=16, patch_size=16, patch_size_3d=8,
        ssm_state_size=64, ssm_head_dim=64, ssm_expand=2, ssm_chunk_size=64,
        spectral_token_modes=8, spectral_token_modes_3d=4, num_attention_heads=8,
        decoder_width=64, decoder_layers=4, decoder_modes=8, decoder_modes_3d=4,
        decoder_type="fno", decoder_conv_padding="zeros", decoder_skip_frames=1,  # the paper's decoder
    ),
    "base": dict(
        hidden_size=768, num_layers=8, latent_channels=48, patch_size=16, patch_size_3d=8,
        ssm_state_size=64, ssm_head_dim=64, ssm_expand=2, ssm_chunk_size=64,
        spectral_token_modes=12, spectral_token_modes_3d=6, num_attention_heads=12,
        decoder_width=96, decoder_layers=4, decoder_modes=12, decoder_modes_3d=6,
        decoder_type="fno", decoder_conv_padding="zeros", decoder_skip_frames=1,  # the paper's decoder
    ),
}

DATASET_KEYS = ("n_fields", "n_constant_fields", "n_spatial_dims", "n_constant_scalars")
# field_names: one per field; field_scales: each field's std over the dataset, in the units the model is fed.
OPTIONAL_DATASET_KEYS = ("field_names", "field_scales")
SUPPORTED_SPATIAL_DIMS = (2, 3)
BACKBONES = ("mamba", "attention")
DECODERS = ("fno", "conv")
CONV_PADDINGS = ("zeros", "boundary")
ROLLOUT_NORMALIZATIONS = ("every_window", "first_window")
DECODER_UNPATCH = ("linear", "interpolate")
BOOLEAN_KEYS = ("compile_mamba", "use_spectral_tokens", "use_film", "use_cross_attention", "alternate_scan_axes",
                "predict_increment", "normalize_inputs", "patch_jitter", "linear_stencil", "check_finite_inputs",
                "decoder_film", "decoder_per_dataset")


# What a dataset or adapter name may be: it becomes a folder name (adapters, runs) and a module key (`adapters.<name>`),
# so no path separator, no `..` and no `.` (torch refuses dots in module names; PEFT cuts saved keys at them).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


def check_name(name: Any, what: str) -> str:
    """`name` if it is a plain name (letters, digits, `_`, `-`; starting with a letter or digit; at most 128
    characters), else a ValueError that says `what` it is for."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not a plain name: use letters, digits, '_' and '-' (starting with a "
                         "letter or digit, at most 128 characters); it becomes a folder name and a module key, so "
                         "path separators, '..' and '.' are refused")
    return name


# A config asks for memory before anything is checked: one with `num_layers: 1000000` would build for minutes while
# memory grows. Sizes whose estimated parameter count exceeds this are refused (`base` has about 100M); the variable
# raises the limit for a machine that can hold more.
MAX_PARAMETERS_VARIABLE = "PDEFM_MAX_PARAMETERS"
DEFAULT_MAX_PARAMETERS = 2_000_000_000


def environment_limit(variable: str, default: int, unit: str) -> int:
    """A size limit the user may raise through the environment `variable` (a number such as 5e9 of `unit`), else
    `default`; anything but a finite number >= 1 is refused by name. Also the data layer's (`PDEFM_MAX_READ_BYTES`):
    this package travels alone as remote code, so the helper lives here."""
    value = os.environ.get(variable, "")
    if not value:
        return default
    try:
        limit = float(value)
        if not 1 <= limit < float("inf"):
            raise ValueError
        return int(limit)
    except ValueError:
        raise ValueError(f"{variable}={value!r}: expected a finite number of {unit} >= 1, e.g. 5e9") from None


def max_parameters() -> int:
    return environment_limit(MAX_PARAMETERS_VARIABLE, DEFAULT_MAX_PARAMETERS, "parameters")


# Names nn.ModuleDict refuses as keys (`training`) or that would shadow a method (`forward`, `to`, ...).
RESERVED_DATASET_NAMES = frozenset(name for name in dir(nn.ModuleDict) if not name.startswith("_")) | {"training"}


def validate_dataset_spec(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Return a clean copy of one dataset entry, or raise a ValueError naming the bad key."""
    check_name(name, "dataset name")
    if name in RESERVED_DATASET_NAMES:
        raise ValueError(f"dataset name {name!r} is the name of an attribute of torch's modules (the dataset heads are "
                         "kept by name in one); rename the dataset")
    if not isinstance(spec, dict):
        raise ValueError(f"datasets[{name!r}] must be a dict with keys {DATASET_KEYS}, got {type(spec).__name__}")
    unknown = set(spec) - set(DATASET_KEYS) - set(OPTIONAL_DATASET_KEYS)
    if unknown:
        raise ValueError(f"datasets[{name!r}] has unknown keys {sorted(unknown)}; expected {DATASET_KEYS}")
    clean: dict[str, Any] = {
        "n_fields": spec.get("n_fields"),
        "n_constant_fields": spec.get("n_constant_fields", 0),
        "n_spatial_dims": spec.get("n_spatial_dims"),
        "n_constant_scalars": spec.get("n_constant_scalars", 0),
    }
    for key, value in clean.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"datasets[{name!r}][{key!r}] must be an int, got {value!r}")
    if clean["n_fields"] < 1:
        raise ValueError(f"datasets[{name!r}]['n_fields'] must be at least 1, got {clean['n_fields']}")
    if clean["n_constant_fields"] < 0 or clean["n_constant_scalars"] < 0:
        raise ValueError(f"datasets[{name!r}]: constant field and scalar counts must be >= 0")
    if clean["n_spatial_dims"] not in SUPPORTED_SPATIAL_DIMS:
        raise ValueError(
            f"datasets[{name!r}]['n_spatial_dims'] must be one of {SUPPORTED_SPATIAL_DIMS}, "
            f"got {clean['n_spatial_dims']}"
        )
    if "field_names" in spec and spec["field_names"] is not None:
        names = list(spec["field_names"])
        if len(names) != clean["n_fields"]:
            raise ValueError(
                f"datasets[{name!r}]['field_names'] has {len(names)} names but n_fields is {clean['n_fields']}"
            )
        clean["field_names"] = names
    if spec.get("field_scales") is not None:
        try:
            scales = [float(v) for v in spec["field_scales"]]
        except (TypeError, ValueError):
            raise ValueError(f"datasets[{name!r}]['field_scales'] must be a list of numbers, got {spec['field_scales']!r}") from None
        if len(scales) != clean["n_fields"] or not all(math.isfinite(v) and v >= 0 for v in scales):
            raise ValueError(f"datasets[{name!r}]['field_scales'] must hold {clean['n_fields']} finite numbers >= 0 "
                             f"(each field's std over the dataset), got {spec['field_scales']!r}")
        clean["field_scales"] = scales
    return clean


class PDEFMConfig(PretrainedConfig):
    r"""Configuration of [`PDEFMModel`]. With no arguments it describes `tiny`, the main job's model (about 0.2M
    parameters with the six Mini-Well datasets): a 2-layer bidirectional Mamba-2 backbone of width 32 over 8-point
    patches, and a 3x3 convolutional decoder that sees every input frame at full resolution. `from_preset("small")`
    gives the paper's size and FNO decoder. docs/decisions.md has the measurements behind each default.

    Args:
        datasets (`dict[str, dict]`, *optional*): the datasets the model knows, by name. Each entry holds
            `n_fields` (channels of the evolving fields), `n_constant_fields`, `n_spatial_dims` (2 or 3),
            `n_constant_scalars` and optionally `field_names` and `field_scales` (each field's std over the
            dataset, which sets the normalisation floor).
        hidden_size (`int`, *optional*, defaults to 32): token width of the backbone.
        num_layers (`int`, *optional*, defaults to 2): number of backbone layers.
        latent_channels (`int`, *optional*, defaults to 8): width of the shared latent field space that the
            per-dataset adapters map into.
        patch_size (`int`, *optional*, defaults to 8), patch_size_3d (`int`, *optional*, defaults to 4): patch edge
            for 2D / 3D grids.
        ssm_state_size (`int`, *optional*, defaults to 16), ssm_head_dim (`int`, *optional*, defaults to 16),
        ssm_expand (`int`, *optional*, defaults to 2), ssm_conv_kernel (`int`, *optional*, defaults to 4),
        ssm_chunk_size (`int`, *optional*, defaults to 16): Mamba-2 mixer sizes (any chunk size computes the same
            scan; 16 is the fastest on a CPU at tiny's sequence lengths).
        ssm_segment_size (`int`, *optional*, defaults to 2048): on a CPU, longer sequences are scanned in segments
            of this many tokens (0: never).
        compile_mamba (`bool`, *optional*, defaults to `False`): run each Mamba-2 mixer's PyTorch path under
            `torch.compile` (one graph shared by the mixers; the first step of each new input shape pays the
            compile time, tens of seconds on a CPU). Ignored where mamba-ssm's CUDA kernels run. A runtime switch:
            the weights do not depend on it.
        spectral_token_modes (`int`, *optional*, defaults to 4), spectral_token_modes_3d (`int`, *optional*,
            defaults to 2): lowest Fourier modes kept per axis by the spectral tokenizer.
        num_attention_heads (`int`, *optional*, defaults to 2): heads of the cross-attention fusion and of the
            attention backbone.
        decoder_type (`str`, *optional*, defaults to `"conv"`): the decoder blocks' kernel, `"conv"` (3x3
            convolutions) or `"fno"` (spectral convolutions, the paper's FNO decoder). Called `decoder` until pdefm
            0.2.0 (a saved config's `decoder` is read as it): transformers reads a `decoder` attribute as a
            sub-config.
        decoder_width (`int`, *optional*, defaults to 16), decoder_layers (`int`, *optional*, defaults to 2),
        decoder_modes (`int`, *optional*, defaults to 4), decoder_modes_3d (`int`, *optional*, defaults to 2):
            decoder sizes (the modes are used by `"fno"` only).
        decoder_skip_frames (`int`, *optional*, defaults to 4): the decoder joins the latent fields of the last
            input frames, this many but at most `n_steps_input` when the config is built (`skip_frames()`), at full
            resolution (oldest first) to the un-patched tokens. With 1 it sees only the last frame in full detail,
            and every change over time below the patch scale must pass through the tokens; more frames give it that
            change directly, as the baselines see every input frame.
        decoder_conv_padding (`str`, *optional*, defaults to `"boundary"`): how the 3x3 blocks see past the grid's
            edge. `"zeros"`: zero padding on every axis. `"boundary"`: periodic axes wrap around and walls are
            zero-padded; such a decoder needs no `wall_padding` and skips it.
        use_spectral_tokens, use_film, use_cross_attention (`bool`, *optional*, default to `True`): ablation
            switches.
        backbone (`str`, *optional*, defaults to `"mamba"`): `"mamba"` (bidirectional Mamba-2) or `"attention"`
            (transformer encoder of the same width).
        alternate_scan_axes (`bool`, *optional*, defaults to `True`): scan the spatial axes in a rotated order in
            successive Mamba layers.
        predict_increment (`bool`, *optional*, defaults to `True`): predict the change over the last input frame
            instead of the next frame.
        normalize_inputs (`bool`, *optional*, defaults to `True`): normalise each sample's fields by their mean and
            std over the input window (statistics are reused to map the prediction back to physical units).
        rollout_normalization (`str`, *optional*, defaults to `"every_window"`): which statistics each step of a
            rollout normalises its window with: `"every_window"` recomputes them from the window the step is given,
            `"first_window"` keeps the first window's for the whole rollout (docs/decisions.md, "One rollout").
        decoder_unpatch (`str`, *optional*, defaults to `"linear"`): how the decoder brings the tokens back to full
            resolution: `"linear"` maps each token to a `patch^d` block of features; `"interpolate"` maps it to one
            feature vector and interpolates the grid of them (no step at patch edges).
        linear_stencil (`bool`, *optional*, defaults to `False`): give each dataset a linear path, a 3x3 (3x3x3)
            convolution from its last `n_steps_input` normalised frames to the change of every field, added to the
            network's change; it starts at zero and trains with the rest (the network then learns what is not
            linear).
        linear_stencil_frames (`int`, *optional*, defaults to 0): input frames the linear path reads, the last ones;
            0 reads all `n_steps_input` (1: a one-step stencil of the last frame, which cannot extrapolate in time).
        linear_stencil_datasets (`list[str]`, *optional*): with `linear_stencil`, the datasets that get the linear
            path (a dataset added later gets one if it is named here); None gives it to every dataset.
        patch_jitter (`bool`, *optional*, defaults to `False`): shift the patch grid every step (random in training,
            a fixed sequence in evaluation) and shift the decoded field back, so patch edges do not stay in one place
            over a rollout (`jitter_layers`; Walrus, arXiv 2511.15684). Not exportable with `torch.export`.
        jitter_average (`int`, *optional*, defaults to 1): with `patch_jitter`, outside training each step decodes
            through this many shifts of the patch grid (successive points of the evaluation's sequence) and averages
            the decoded fields: an ensemble over grids at that many times the network's cost per step. Training
            draws one shift per step whatever it is; it can be changed on a trained model.
        decoder_film (`bool`, *optional*, defaults to `False`): modulate the input of every decoder block by the
            step's context (dataset, constants, boundaries, time step; FiLM, starting as the identity), so the
            datasets that share a decoder can each shape its full-resolution local operator. Needs `use_film`.
        decoder_per_dataset (`bool`, *optional*, defaults to `False`): give every dataset its own decoder instead
            of one per dimensionality (`decoders.<dataset>` in the weights); a dataset added later starts from the
            mean of the known decoders of its dimensionality.
        change_filter_bands (`int`, *optional*, defaults to 0): give each dataset a learned gain per field on each of
            this many bands of |k| / k_Nyquist of the predicted change (`spectral_layers.band_gain_filter`; walls
            mirrored), starting at 1, so a dataset can hold back scales its truth does not move. 0: none.
        check_finite_inputs (`bool`, *optional*, defaults to `True`): refuse inputs holding NaN or Inf by name.
        norm_std_floor (`float`, *optional*, defaults to 0.05): with `normalize_inputs`, a field's std over the
            input window is floored at this fraction of its scale over the dataset (`field_scales` of its dataset
            entry; without them the floor is an absolute 1e-6), so a field that is constant over the window can
            still change. 0 keeps the absolute floor.
        wall_padding (`float`, *optional*, defaults to 0.125): before the decoder's spectral layers, axes whose
            boundary is not periodic are zero-padded by this fraction of their length on both sides (and cropped
            after), so the Fourier layers do not couple the two walls as if they were neighbours. 0 switches it off.
        n_steps_input (`int`, *optional*, defaults to 4), n_steps_output (`int`, *optional*, defaults to 1): frames
            per input window and predicted frames per training window; evaluation and prediction default to them.
        spectral_loss_weight (`float`, *optional*, defaults to 0.1): weight of the wavenumber-weighted spectral
            loss next to VRMSE in `loss` (the training objective).
        change_loss_weight (`float`, *optional*, defaults to 0): weight of the change-normalised error
            (`losses.change_normalised_loss`: the error over the true change's size, per field) added to `loss`.
        band_loss_weight (`float`, *optional*, defaults to 0): weight of `losses.band_energy_loss` (how many orders
            of magnitude the predicted change's energy per band of |k| / k_Nyquist is from the true change's, the
            change from the last input frame) added to `loss`.
        max_constant_scalars (`int`, *optional*, defaults to 16): most constant scalars a dataset may have.
        initializer_range (`float`, *optional*, defaults to 0.02): std of the normal init of linear layers.
        layer_norm_eps (`float`, *optional*, defaults to 1e-5): epsilon of the norms.
        preset (`str`, *optional*): the preset the config was built from (`from_preset`), recorded.

    Example:

    ```python
    >>> from modeling_pdefm import PDEFMConfig, PDEFMModel

    >>> config = PDEFMConfig(datasets={"shear_flow": {"n_fields": 4, "n_spatial_dims": 2, "n_constant_scalars": 2}})
    >>> model = PDEFMModel(config)  # tiny: the main job's model
    >>> paper_sized = PDEFMConfig.from_preset("small", datasets=config.datasets)
    ```
    """

    model_type = "pdefm"
    # The names generic tools read (transformers' `num_hidden_layers`) for this config's own.
    attribute_map = {"num_hidden_layers": "num_layers"}

    def __init__(
        self,
        datasets: dict[str, dict[str, Any]] | None = None,
        hidden_size: int = 32,
        num_layers: int = 2,
        latent_channels: int = 8,
        patch_size: int = 8,
        patch_size_3d: int = 4,
        ssm_state_size: int = 16,
        ssm_head_dim: int = 16,
        ssm_expand: int = 2,
        ssm_conv_kernel: int = 4,
        ssm_chunk_size: int = 16,
        ssm_segment_size: int = 2048,
        compile_mamba: bool = False,
        spectral_token_modes: int = 4,
        spectral_token_modes_3d: int = 2,
        num_attention_heads: int = 2,
        decoder_width: int = 16,
        decoder_layers: int = 2,
        decoder_modes: int = 4,
        decoder_modes_3d: int = 2,
        use_spectral_tokens: bool = True,
        use_film: bool = True,
        use_cross_attention: bool = True,
        backbone: str = "mamba",
        decoder_type: str = "conv",
        decoder_skip_frames: int = 4,
        decoder_conv_padding: str = "boundary",
        alternate_scan_axes: bool = True,
        predict_increment: bool = True,
        normalize_inputs: bool = True,
        rollout_normalization: str = "every_window",
        decoder_unpatch: str = "linear",
        linear_stencil: bool = False,
        linear_stencil_frames: int = 0,
        linear_stencil_datasets: list[str] | None = None,
        patch_jitter: bool = False,
        jitter_average: int = 1,
        decoder_film: bool = False,
        decoder_per_dataset: bool = False,
        change_filter_bands: int = 0,
        check_finite_inputs: bool = True,
        norm_std_floor: float = 0.05,
        wall_padding: float = 0.125,
        n_steps_input: int = 4,
        n_steps_output: int = 1,
        spectral_loss_weight: float = 0.1,
        change_loss_weight: float = 0.0,
        band_loss_weight: float = 0.0,
        max_constant_scalars: int = 16,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-5,
        preset: str | None = None,
        pdefm_format: int = PDEFM_FORMAT,
        **kwargs,
    ):
        self.datasets = {name: validate_dataset_spec(name, spec) for name, spec in (datasets or {}).items()}
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.latent_channels = renamed_value(kwargs, "latent_channels", latent_channels)
        self.patch_size = patch_size
        self.patch_size_3d = patch_size_3d
        self.ssm_state_size = ssm_state_size
        self.ssm_head_dim = ssm_head_dim
        self.ssm_expand = ssm_expand
        self.ssm_conv_kernel = ssm_conv_kernel
        self.ssm_chunk_size = ssm_chunk_size
        self.ssm_segment_size = ssm_segment_size
        self.compile_mamba = compile_mamba
        self.spectral_token_modes = spectral_token_modes
        self.spectral_token_modes_3d = spectral_token_modes_3d
        self.num_attention_heads = num_attention_heads
        self.decoder_width = decoder_width
        self.decoder_layers = decoder_layers
        self.decoder_modes = decoder_modes
        self.decoder_modes_3d = decoder_modes_3d
        self.use_spectral_tokens = use_spectral_tokens
        self.use_film = use_film
        self.use_cross_attention = use_cross_attention
        self.backbone = backbone
        self.decoder_type = renamed_value(kwargs, "decoder_type", decoder_type)
        self.decoder_skip_frames = decoder_skip_frames
        self.decoder_conv_padding = decoder_conv_padding
        self.alternate_scan_axes = alternate_scan_axes
        self.predict_increment = predict_increment
        self.normalize_inputs = normalize_inputs
        self.rollout_normalization = rollout_normalization
        self.decoder_unpatch = decoder_unpatch
        self.linear_stencil = linear_stencil
        self.linear_stencil_frames = linear_stencil_frames
        self.linear_stencil_datasets = list(linear_stencil_datasets) if isinstance(linear_stencil_datasets, tuple) \
            else linear_stencil_datasets
        self.patch_jitter = patch_jitter
        self.jitter_average = jitter_average
        self.decoder_film = decoder_film
        self.decoder_per_dataset = decoder_per_dataset
        self.change_filter_bands = change_filter_bands
        self.check_finite_inputs = check_finite_inputs
        self.norm_std_floor = norm_std_floor
        self.wall_padding = wall_padding
        self.n_steps_input = n_steps_input
        self.n_steps_output = n_steps_output
        self.spectral_loss_weight = spectral_loss_weight
        self.change_loss_weight = change_loss_weight
        self.band_loss_weight = band_loss_weight
        self.max_constant_scalars = max_constant_scalars
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.preset = preset
        self.pdefm_format = pdefm_format
        drop_removed_keys(kwargs)
        refuse_unknown_keys(kwargs, pdefm_format, self.settable_keys())
        super().__init__(**kwargs)
        self._validate()
        # A preset's skip (tiny: 4) on a shorter window: the decoder is built for the frames there are.
        self.decoder_skip_frames = min(self.decoder_skip_frames, self.n_steps_input)

    def _validate(self) -> None:
        refuse_removed_values(self)
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.decoder_type not in DECODERS:
            raise ValueError(f"decoder_type must be one of {DECODERS}, got {self.decoder_type!r}")
        if self.rollout_normalization not in ROLLOUT_NORMALIZATIONS:
            raise ValueError(f"rollout_normalization must be one of {ROLLOUT_NORMALIZATIONS}, got {self.rollout_normalization!r}")
        if isinstance(self.linear_stencil_frames, bool) or not isinstance(self.linear_stencil_frames, int) \
                or not 0 <= self.linear_stencil_frames <= self.n_steps_input:
            raise ValueError(f"linear_stencil_frames must be an int from 0 (all input frames) to n_steps_input="
                             f"{self.n_steps_input}, got {self.linear_stencil_frames!r}")
        if self.linear_stencil_datasets is not None and (not isinstance(self.linear_stencil_datasets, list) or not all(
                isinstance(n, str) for n in self.linear_stencil_datasets)):
            raise ValueError(f"linear_stencil_datasets must be a list of dataset names or None (every dataset), got "
                             f"{self.linear_stencil_datasets!r}")
        if isinstance(self.change_filter_bands, bool) or not isinstance(self.change_filter_bands, int) \
                or self.change_filter_bands < 0:
            raise ValueError(f"change_filter_bands must be an int >= 0 (0: no filter), got {self.change_filter_bands!r}")
        if self.decoder_unpatch not in DECODER_UNPATCH:
            raise ValueError(f"decoder_unpatch must be one of {DECODER_UNPATCH}, got {self.decoder_unpatch!r}")
        if self.decoder_conv_padding not in CONV_PADDINGS:
            raise ValueError(f"decoder_conv_padding must be one of {CONV_PADDINGS}, got {self.decoder_conv_padding!r}")
        for key in ("hidden_size", "num_layers", "latent_channels", "patch_size", "patch_size_3d",
                    "ssm_state_size", "ssm_head_dim", "ssm_expand", "ssm_conv_kernel", "ssm_chunk_size",
                    "spectral_token_modes", "spectral_token_modes_3d", "num_attention_heads",
                    "decoder_width", "decoder_layers", "decoder_modes", "decoder_modes_3d", "decoder_skip_frames",
                    "n_steps_input", "n_steps_output", "jitter_average"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        if (self.hidden_size * self.ssm_expand) % self.ssm_head_dim:
            raise ValueError(
                f"hidden_size * ssm_expand ({self.hidden_size * self.ssm_expand}) must be divisible by "
                f"ssm_head_dim ({self.ssm_head_dim})"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads "
                f"({self.num_attention_heads})"
            )
        for key in BOOLEAN_KEYS:
            value = getattr(self, key)
            if not isinstance(value, bool):
                # A string "false" is truthy: it would switch the option on without a word.
                raise ValueError(f"{key} must be true or false (a JSON boolean), got {value!r}")
        if self.decoder_film and not self.use_film:
            raise ValueError("decoder_film modulates the decoder by the context that use_film builds: set use_film=True "
                             "or decoder_film=False")
        for key in ("norm_std_floor", "wall_padding", "spectral_loss_weight", "change_loss_weight", "band_loss_weight",
                    "initializer_range",
                    "layer_norm_eps"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise ValueError(f"{key} must be a finite number >= 0, got {value!r}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps!r}")
        if isinstance(self.max_constant_scalars, bool) or not isinstance(self.max_constant_scalars, int) \
                or self.max_constant_scalars < 0:
            raise ValueError(f"max_constant_scalars must be an int >= 0, got {self.max_constant_scalars!r}")
        if self.wall_padding > 1:
            raise ValueError(f"wall_padding is a fraction of each axis (0 to 1), got {self.wall_padding!r}")
        estimate, limit = self.estimated_num_parameters(), max_parameters()
        if estimate > limit:
            raise ValueError(f"this config asks for about {estimate:.3g} parameters (hidden_size={self.hidden_size}, "
                             f"num_layers={self.num_layers}, decoder_width={self.decoder_width}, "
                             f"decoder_layers={self.decoder_layers}, patch_size={self.patch_size}), more than the limit "
                             f"of {limit:.3g}; set {MAX_PARAMETERS_VARIABLE} to a larger number to build it anyway")
        for name, spec in self.datasets.items():
            if spec["n_constant_scalars"] > self.max_constant_scalars:
                raise ValueError(
                    f"datasets[{name!r}] has {spec['n_constant_scalars']} constant scalars; "
                    f"max_constant_scalars is {self.max_constant_scalars}"
                )

    def estimated_num_parameters(self) -> int:
        """An estimate of the model's parameter count from its sizes (the largest terms; within about 10%),
        computed before anything is built."""
        h, inner = self.hidden_size, self.hidden_size * self.ssm_expand
        heads = max(1, inner // self.ssm_head_dim)
        if self.backbone == "mamba":
            mixer = h * (2 * inner + 2 * self.ssm_state_size + heads) + inner * h
            mixer += (inner + 2 * self.ssm_state_size) * self.ssm_conv_kernel
            layer = 2 * mixer  # bidirectional
        else:
            layer = 12 * h * h
        total = self.num_layers * layer + 4 * h * h  # fusion, FiLM and frame projections
        for d in (self.spatial_dims_in_use or [2]):
            patch, _, modes = self.grid_settings(d)
            width = self.decoder_width
            kernel = 3**d if self.decoder_type == "conv" else 2 * 2 ** (d - 1) * modes**d
            total += self.latent_channels * patch**d * h  # patch embedding
            unpatch = self.latent_channels * h * (patch**d if self.decoder_unpatch == "linear" else 1)
            film = 2 * width * h if self.decoder_film else 0
            decoder = unpatch + self.decoder_layers * (width * width * (kernel + 1) + film)
            decoders = sum(s["n_spatial_dims"] == d for s in self.datasets.values()) if self.decoder_per_dataset else 1
            total += max(decoders, 1) * decoder
        total += sum(self.latent_channels * 2 * (spec["n_fields"] + spec["n_constant_fields"]) + h
                     + self.change_filter_bands * spec["n_fields"] for spec in self.datasets.values())
        return int(total)

    @classmethod
    def from_preset(cls, preset: str, datasets: dict[str, dict[str, Any]] | None = None, **overrides) -> "PDEFMConfig":
        """Build a config from a named size preset (`tiny`, `small`, `base`); keyword arguments override it."""
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known presets: {sorted(PRESETS)}")
        # transformers' own keys (output_hidden_states, ...) and earlier names of renamed keys are taken as given.
        unknown = sorted(set(overrides) - set(cls.settable_keys()) - set(REMOVED_KEYS) - set(RENAMED_KEYS)
                         - transformers_config_keys())
        if unknown:
            raise ValueError(f"unknown PDEFMConfig keys {unknown} (a typo would be saved and silently ignored); "
                             f"known: {sorted(cls.settable_keys())}")
        values = {**copy.deepcopy(PRESETS[preset]), **overrides}  # a removed key goes on to be refused by name
        return cls(datasets=datasets, preset=preset, **values)

    @classmethod
    def settable_keys(cls) -> list[str]:
        """The architecture and behaviour keys of `__init__` (what a preset may be overridden with)."""
        parameters = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in parameters
                if p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("self", "datasets", "preset", "pdefm_format")]

    def inactive_keys(self) -> set[str]:
        """Keys whose value changes nothing under this config's other settings (what a comparison of two models
        should not count as a difference)."""
        inactive = set()
        if self.decoder_type == "fno":
            inactive.add("decoder_conv_padding")  # only 3x3 blocks pad
        if self.decoder_type == "conv" and self.decoder_conv_padding == "boundary":
            inactive.add("wall_padding")  # such a decoder has no Fourier layer and skips it
        return inactive

    def skip_frames(self) -> int:
        """Input frames the decoder joins at full resolution: `decoder_skip_frames`, which the constructor caps at
        the `n_steps_input` it is given. It is part of the architecture (the decoder's first layer is built for it),
        so a later change of `n_steps_input` (a finetuning window) does not change it: a window with fewer frames
        is refused by the model."""
        return self.decoder_skip_frames

    def stencil_frames(self, name: str | None = None) -> int:
        """Input frames the linear path of dataset `name` reads (0: it has none)."""
        if not self.linear_stencil or (name is not None and self.linear_stencil_datasets is not None
                                       and name not in self.linear_stencil_datasets):
            return 0
        return self.linear_stencil_frames or self.n_steps_input

    def grid_settings(self, n_spatial_dims: int) -> tuple[int, int, int]:
        """(patch size, spectral token modes, decoder modes) for a grid of `n_spatial_dims` axes."""
        if n_spatial_dims == 3:
            return self.patch_size_3d, self.spectral_token_modes_3d, self.decoder_modes_3d
        return self.patch_size, self.spectral_token_modes, self.decoder_modes

    @property
    def spatial_dims_in_use(self) -> list[int]:
        return sorted({spec["n_spatial_dims"] for spec in self.datasets.values()})
