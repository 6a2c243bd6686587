"""Pretraining configuration: a versioned YAML file, any key overridable on the command line (`--max_steps 200`).

Bad values fail before training starts, with the key named.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import os
import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import yaml

from modeling_pdefm import PRESETS, PDEFMConfig
from modeling_pdefm.config_versions import RENAMED_KEYS
from modeling_pdefm.configuration_pdefm import check_name
from pdefm.runtime.cli_format import HelpFormatter
from pdefm.data.layout import has_split
from pdefm.runtime.paths import check_output_folder
from pdefm.runtime.safe_yaml import load_yaml

CONFIG_VERSION = 1
# Training keys the run writes into the saved model's config (evaluation and prediction default to them).
TRAINING_KEYS_IN_MODEL = ("n_steps_input", "n_steps_output", "spectral_loss_weight")
MIXED_PRECISION = ("no", "bf16", "auto")
CURRICULUM_SHARES = ("windows", "compute")
# Keys a resumed run may change without --allow_config_change: the horizon (the schedule follows the new one) and
# bookkeeping. Every other key changes what the run computes, so a difference from the checkpoint is refused.
CHANGEABLE_ON_RESUME = ("max_steps", "time_budget_minutes", "output_dir", "checkpoint_every", "keep_checkpoints",
                        "eval_every", "eval_batches", "log_every", "log_with", "max_nonfinite_in_a_row", "report_split",
                        "report_rollout_steps",
                        "generate_if_missing", "suite")


@dataclass
class PretrainConfig:
    # data
    data_dir: str = "data/mini_well"  # folder with one folder per dataset (<name>/data/{train,valid,test}/*.hdf5)
    datasets: list[str] | None = None  # names under data_dir, comma-separated on the command line (a,b); null: all found
    generate_if_missing: bool = False  # generate the Mini-Well suite into data_dir when it is empty (or finish it)
    suite: str = "mini_well"  # which suite generate_if_missing makes: mini_well (six systems) or mini_well_all (ten)
    n_steps_input: int = 4  # input frames per window
    n_steps_output: int = 1  # output frames per window (trained autoregressively)
    use_normalization: bool = False  # z-score with stats.yaml; the model normalises each sample itself anyway
    train_trajectories: int | None = None  # train on the first N trajectories of each train split (few-shot)
    # model
    model_preset: str = "tiny"  # tiny, small or base (README: Presets)
    model_overrides: dict[str, Any] = field(default_factory=dict)  # PDEFMConfig keys over the preset, e.g. '{hidden_size: 64}'
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (less memory, more time)
    # optimisation
    max_steps: int = 1000  # optimizer steps (the cosine decays over them)
    time_budget_minutes: float | None = None  # stop at this wall-clock budget (the cosine decays over it)
    batch_size: int = 8  # windows per batch, all from one dataset
    # windows per batch of the named datasets, over batch_size (e.g. {MHD_64: 2}): with shares of compute a costly
    # dataset then gets more, smaller updates for the same share
    batch_sizes: dict[str, int] = field(default_factory=dict)
    learning_rate: float = 1e-3  # peak AdamW learning rate
    weight_decay: float = 0.01  # AdamW weight decay
    warmup_steps: int = 50  # linear warm-up steps
    min_lr_ratio: float = 0.05  # final learning rate as a fraction of the peak
    grad_clip: float = 1.0  # gradient norm clipping
    gradient_accumulation_steps: int = 1  # micro-batches per optimizer step
    mixed_precision: str = "auto"  # auto (bf16 where the hardware has it), bf16 or no
    spectral_loss_weight: float = 0.1  # weight of the wavenumber-weighted spectral loss next to VRMSE
    # Gaussian noise on the training inputs, this fraction of each field's std over the window (DPOT, arXiv
    # 2403.03542): the model learns to forecast from slightly wrong inputs, as its own rollouts give it. 0: none.
    input_noise: float = 0.0
    # Pushforward (arXiv 2202.03376): each optimizer step first rolls the model 0..n steps (drawn per step) from the
    # true window without a gradient and trains on the window that rollout ends in, as a rollout's later steps see
    # it; n grows from 0 to N over training. Training windows hold n_steps_output + N output frames. 0: true
    # windows only.
    pushforward_steps: int = 0
    # curriculum: p_i ~ |D_i|^temperature * (eps + L_i)^difficulty_alpha
    temperature: float = 0.5  # dataset size exponent: 0 uniform, 1 proportional to size
    difficulty_alpha: float = 1.0  # difficulty exponent: 0 turns difficulty off
    difficulty_eps: float = 0.05  # floor added to the difficulty L_i
    difficulty_ema: float = 0.7  # running-average weight of past difficulties
    # L_i is the validation VRMSE divided by persistence's on the same windows ("relative"): how far the model is from
    # beating the trivial forecast, comparable across datasets whose VRMSE scales differ; by the better of
    # persistence's and the least-squares linear stencil's ("yardstick"): how far it is from beating the best
    # forecast that costs nothing to learn; or the raw VRMSE ("absolute").
    difficulty_measure: str = "relative"  # relative, yardstick or absolute
    # What the curriculum's weights share out: "windows" (p_i ~ w_i) or "compute" (p_i ~ w_i / grid points per frame
    # of dataset i, so that a 3D dataset's costly windows do not take the wall-clock of the 2D ones).
    curriculum_shares: str = "compute"
    # bookkeeping
    output_dir: str = "outputs/pretrain"  # model, report, checkpoints and logs go here (one run at a time)
    checkpoint_every: int = 200  # steps between checkpoints
    keep_checkpoints: int = 2  # newest checkpoints kept
    eval_every: int = 200  # steps between validations
    eval_batches: int = 4  # validation batches per dataset
    log_every: int = 10  # steps between logged metrics
    log_with: str = "tensorboard"  # any accelerate tracker name, or "none"
    max_nonfinite_in_a_row: int = 5  # stop after more non-finite losses than this in a row
    seed: int = 0  # seed of weights, data order and curriculum
    # the final report (one-step VRMSE per dataset on this split, against persistence)
    report_split: str = "test"  # split of the final report: train, valid or test
    report_rollout_steps: int = 0  # >0: the report also rolls out this many steps and draws its figures (0: one-step only)
    version: int = CONFIG_VERSION  # config format version

    def validate(self) -> "PretrainConfig":
        # YAML reads 1e-3 (no dot) as a string: convert numeric text in numeric fields, or name the key.
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            default = getattr(PretrainConfig(), f.name) if f.default is dataclasses.MISSING else f.default
            if isinstance(value, str) and isinstance(default, (int, float)) and not isinstance(default, bool):
                try:
                    setattr(self, f.name, type(default)(float(value)) if isinstance(default, int) else float(value))
                except ValueError:
                    raise ValueError(f"config key '{f.name}' must be a number, got {value!r}") from None
        positive = ("max_steps", "batch_size", "checkpoint_every", "keep_checkpoints", "eval_every", "eval_batches",
                    "log_every", "n_steps_input", "n_steps_output", "gradient_accumulation_steps", "max_nonfinite_in_a_row")
        for key in positive:
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"config key '{key}' must be a positive integer, got {value!r}")
        if not isinstance(self.pushforward_steps, int) or isinstance(self.pushforward_steps, bool) \
                or self.pushforward_steps < 0:
            raise ValueError(f"config key 'pushforward_steps' must be a whole number >= 0, got {self.pushforward_steps!r}")
        for key in ("learning_rate", "grad_clip"):
            if not getattr(self, key) > 0:
                raise ValueError(f"config key '{key}' must be > 0, got {getattr(self, key)!r}")
        for key in ("train_trajectories", "time_budget_minutes"):
            value = getattr(self, key)
            if isinstance(value, str):
                try:
                    value = float(value)
                except ValueError:
                    raise ValueError(f"config key '{key}' must be a number, got {value!r}") from None
            if value is not None and not value > 0:
                raise ValueError(f"config key '{key}' must be > 0 (or null), got {value!r}")
            if key == "train_trajectories" and value is not None:
                if float(value) != int(value):
                    raise ValueError(f"config key '{key}' must be a whole number, got {value!r}")
                value = int(value)
            setattr(self, key, value)
        for key in ("weight_decay", "spectral_loss_weight", "temperature", "difficulty_alpha", "difficulty_eps",
                    "warmup_steps", "input_noise"):
            if not 0 <= getattr(self, key) < float("inf"):
                raise ValueError(f"config key '{key}' must be a finite number >= 0, got {getattr(self, key)!r}")
        if not 0 <= self.min_lr_ratio <= 1 or not 0 <= self.difficulty_ema < 1:
            raise ValueError("config keys 'min_lr_ratio' must be in [0, 1] and 'difficulty_ema' in [0, 1)")
        if self.difficulty_measure not in DIFFICULTY_MEASURES:
            raise ValueError(f"config key 'difficulty_measure' must be one of {DIFFICULTY_MEASURES}, got "
                             f"{self.difficulty_measure!r}")
        if self.difficulty_measure == "yardstick" and self.use_normalization:
            raise ValueError("config key 'difficulty_measure: yardstick' fits the linear stencil on the fields in "
                             "physical units; it cannot be used with use_normalization")
        if self.curriculum_shares not in CURRICULUM_SHARES:
            raise ValueError(f"config key 'curriculum_shares' must be one of {CURRICULUM_SHARES}, got {self.curriculum_shares!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"config key 'mixed_precision' must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        if isinstance(self.report_rollout_steps, bool) or not isinstance(self.report_rollout_steps, int) \
                or self.report_rollout_steps < 0:
            raise ValueError(f"config key 'report_rollout_steps' must be a whole number >= 0, got {self.report_rollout_steps!r}")
        if self.report_split not in ("train", "valid", "test"):
            raise ValueError(f"config key 'report_split' must be train, valid or test, got {self.report_split!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"config key 'seed' must be a whole number >= 0, got {self.seed!r}")
        if not isinstance(self.batch_sizes, dict) or any(
                isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in self.batch_sizes.values()):
            raise ValueError(f"config key 'batch_sizes' must map dataset names to whole numbers >= 1, such as "
                             f"{{MHD_64: 2}}, got {self.batch_sizes!r}")
        if not isinstance(self.model_overrides, dict):
            raise ValueError(f"config key 'model_overrides' must be a mapping such as {{hidden_size: 64}}, got {self.model_overrides!r}")
        if self.model_preset not in PRESETS:
            raise ValueError(f"config key 'model_preset' must be one of {sorted(PRESETS)}, got {self.model_preset!r}")
        training_keys = sorted(set(self.model_overrides) & set(TRAINING_KEYS_IN_MODEL))
        if training_keys:
            raise ValueError(f"config key 'model_overrides': {training_keys} are training keys that the run writes "
                             f"into the model's config; set them as config keys instead (e.g. --{training_keys[0]} ...)")
        # A key's earlier name (`decoder`, today `decoder_type`) is read as the model config reads it.
        unknown = sorted(set(self.model_overrides) - set(PDEFMConfig.settable_keys()) - set(RENAMED_KEYS))
        if unknown:
            raise ValueError(f"config key 'model_overrides': unknown model keys {unknown}; known: {sorted(PDEFMConfig.settable_keys())}")
        if self.datasets is not None:
            if isinstance(self.datasets, str) or not isinstance(self.datasets, (list, tuple)):
                raise ValueError(f"config key 'datasets' must be a list of dataset names (a,b on the command line), "
                                 f"got {self.datasets!r}")
            if not self.datasets:
                raise ValueError(f"config key 'datasets' lists no dataset (got {self.datasets!r}); name at least one, "
                                 "or leave it out (null) for every dataset found in data_dir")
            for name in self.datasets:
                check_name(name, "config key 'datasets': dataset name")
        if self.version != CONFIG_VERSION:
            raise ValueError(f"config key 'version' is {self.version}; this code reads version {CONFIG_VERSION}")
        check_output_folder(self.output_dir, "config key 'output_dir'")
        if "://" not in self.data_dir and has_split(self.data_dir, "train"):
            parent, name = os.path.split(os.path.abspath(self.data_dir))
            raise ValueError(f"config key 'data_dir': {self.data_dir!r} is one dataset's folder (it holds data/train/); "
                             f"give the folder above it and pick the dataset: --data_dir {parent} --datasets {name}")
        from pdefm.data.generate import SUITES  # here, not at the top: the solvers load only when a config is checked

        if not isinstance(self.suite, str) or self.suite not in SUITES:
            raise ValueError(f"config key 'suite' is {self.suite!r}; Mini-Well's suites are {sorted(SUITES)}")
        if not self.generate_if_missing and not os.path.isdir(self.data_dir) and "://" not in self.data_dir:
            raise ValueError(f"config key 'data_dir': folder {self.data_dir!r} does not exist "
                             "(set generate_if_missing: true to generate Mini-Well there)")
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Prefix of the run settings that hold each dataset's file fingerprint (`pdefm.data.fingerprint`).
DIFFICULTY_MEASURES = ("relative", "yardstick", "absolute")
DATA_FILES_KEY = "data_files"
# Prefix of those that hold its statistics file and files' modification times (`dataset_version`).
DATA_VERSION_KEY = "data_version"
# Keys added after checkpoints were first written, with the behaviour a checkpoint that lacks them was trained under.
SETTINGS_BEFORE_THE_KEY = {"curriculum_shares": "windows", "pushforward_steps": 0}
# Keys that were measured worse and removed (docs/decisions.md): key -> (the value every run now behaves as, the last
# pdefm version that supported another). A config or checkpoint holding that value is taken as it is.
REMOVED_TRAINING_KEYS = {"gradient_balance": (False, "0.1.0")}


def drop_removed_keys(values: dict[str, Any], where: str) -> dict[str, Any]:
    """`values` without the removed keys that hold the value runs now behave as; one holding another is refused,
    naming the key, the place (`where`) and the last version that supported it."""
    for key, (kept, version) in REMOVED_TRAINING_KEYS.items():
        if key in values and values[key] != kept:
            raise ValueError(f"{where}: config key {key!r} was removed (docs/decisions.md says why); {values[key]!r} "
                             f"was last supported by pdefm {version}. Drop the key (runs now behave as {kept!r})")
    return {k: v for k, v in values.items() if k not in REMOVED_TRAINING_KEYS}


def resume_conflicts(saved: dict[str, Any], current: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Settings of the run in a checkpoint (`saved`) that differ from this run's, other than those a resume may
    change: {key: (checkpoint's value, this run's value)}."""
    # A checkpoint written before a key's removal ran as today's runs do when it holds the kept value.
    removed = {key: kept for key, (kept, _) in REMOVED_TRAINING_KEYS.items()}
    before = {key: value for key, value in SETTINGS_BEFORE_THE_KEY.items() if key in current}
    saved, current = {**before, **removed, **saved}, {**removed, **current}
    keys = (set(saved) | set(current)) - set(CHANGEABLE_ON_RESUME)
    # Checkpoints written before data fingerprints were recorded cannot be compared on them.
    keys -= {k for k in current if k.startswith((DATA_FILES_KEY + ".", DATA_VERSION_KEY + ".")) and k not in saved}
    return {k: (saved.get(k), current.get(k)) for k in sorted(keys) if saved.get(k) != current.get(k)}


def _coerce(name: str, text: str, current: Any, annotation: str) -> Any:
    """Parse a command-line value for `name` as YAML, then check it against the field's type; a list is also
    accepted as comma-separated names (`a,b`)."""
    if "list" in annotation and isinstance(text, str) and not text.lstrip().startswith("["):
        value = [v.strip() for v in text.split(",") if v.strip()]
    else:
        try:
            value = load_yaml(text, f"--{name}")
        except yaml.YAMLError as error:
            raise ValueError(f"--{name} {text!r} is not a value pdefm reads ({' '.join(str(error).split())[:160]})") from None
    if "dict" in annotation and not isinstance(value, dict):
        raise ValueError(f"--{name} expects a mapping such as '{{hidden_size: 64}}', got {text!r}")
    if isinstance(current, bool) and not isinstance(value, bool):
        raise ValueError(f"--{name} expects true or false, got {text!r}")
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    return value


def config_parser(description: str = "", add_help: bool = True, prog: str | None = None,
                  shown_defaults: dict[str, str] | None = None) -> argparse.ArgumentParser:
    """The command line of a training run: `--config`, `--resume`, `--allow_config_change` and every config key.
    `shown_defaults`: what the help shows as a key's default where the command sets its own (finetune's output
    folder)."""
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter,
                                     add_help=add_help, usage="%(prog)s [--config FILE] [--resume | --overwrite_output_dir] [--KEY VALUE ...]")
    parser.add_argument("--config", default=None, metavar="FILE_OR_NAME",
                        help="YAML file with any of the keys below (or a bundled one by name: mini_well, mini_well_all, the_well); "
                             "options given here override it")
    parser.add_argument("--resume", action="store_true", help="continue from the latest checkpoint in output_dir")
    parser.add_argument("--allow_config_change", action="store_true",
                        help="with --resume: accept settings that differ from the checkpoint's (batch size, data...)")
    parser.add_argument("--overwrite_output_dir", action="store_true",
                        help="start afresh in an output_dir that holds an earlier run, deleting its checkpoints and "
                             "results first (without it such a run is refused)")
    fields = {f.name: f for f in dataclasses.fields(PretrainConfig)}
    defaults = PretrainConfig()
    comments = field_comments()
    for name, f in fields.items():
        default = (shown_defaults or {}).get(name, getattr(defaults, name))
        kind = str(f.type).replace("typing.", "").replace(" | None", "")
        parser.add_argument(f"--{name}", default=None, metavar=kind.split("[")[0].upper(),
                            help=f"{comments.get(name, '')} (default: {default!r})".lstrip())
    return parser


def field_comments() -> dict[str, str]:
    """Each config key's comment in the `PretrainConfig` source, trailing its line or in the lines just above it: the
    one place its meaning is written."""
    comments, above = {}, []
    for line in inspect.getsource(PretrainConfig).splitlines():
        match = re.match(r"\s+(\w+): [^=]+=.*?\s+#\s*(.+)$", line)
        field = re.match(r"\s+(\w+): [^=]+=", line)
        if match:
            comments[match.group(1)] = match.group(2).strip()
        elif field and above:
            comments[field.group(1)] = " ".join(above)
        comment = re.match(r"\s+#\s*(.+)$", line)
        above = above + [comment.group(1).strip()] if comment else []
    return comments


# Configs shipped with the package: `--config mini_well` works from any directory once pdefm is installed.
BUNDLED_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")


def bundled_configs() -> list[str]:
    return sorted(name[: -len(".yaml")] for name in os.listdir(BUNDLED_CONFIGS) if name.endswith(".yaml"))


def resolve_config_path(value: str) -> str:
    """A config file: `value` itself when it exists, else the bundled config of that name (`mini_well`,
    `the_well`, with or without `.yaml`)."""
    if os.path.exists(value):
        return value
    name = os.path.basename(value)
    name = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if name in bundled_configs():
        return os.path.join(BUNDLED_CONFIGS, f"{name}.yaml")
    raise ValueError(f"--config: no file {value!r}, and no bundled config of that name (bundled: "
                     f"{', '.join(bundled_configs())})")


class LoadedConfig(NamedTuple):
    """What `load_config` read: the validated config, the parsed command line (`--resume` and friends), and the
    keys the config file or the command line set (the others are `PretrainConfig`'s defaults)."""

    config: PretrainConfig
    args: argparse.Namespace | None
    explicit_keys: frozenset[str]


def read_config_file(value: str) -> dict[str, Any]:
    """The keys of a config file (or a bundled config by name), removed keys dropped, unknown keys refused."""
    path = resolve_config_path(value)
    try:
        with open(path) as f:
            loaded = load_yaml(f, path) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not a YAML config pdefm reads ({' '.join(str(error).split())[:300]})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping of config keys (such as 'max_steps: 3200'), got a value of type "
                         f"{type(loaded).__name__}")
    loaded = drop_removed_keys(loaded, path)
    unknown = sorted(set(loaded) - {f.name for f in dataclasses.fields(PretrainConfig)})
    if unknown:
        raise ValueError(f"{path}: unknown config keys {unknown}; known: {sorted(f.name for f in dataclasses.fields(PretrainConfig))}")
    return loaded


def config_from_file(config: str | None = None, **overrides: Any) -> LoadedConfig:
    """The Python API of `load_config`: a config file or bundled name (`mini_well`), then `overrides` as Python
    values (`max_steps=100, datasets=["shear_flow"]`), validated. `args` of the result is None."""
    fields = {f.name for f in dataclasses.fields(PretrainConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown config keys {unknown}; known: {sorted(fields)}")
    values = {**(read_config_file(config) if config else {}), **overrides}
    return LoadedConfig(PretrainConfig(**values).validate(), None, frozenset(values))


def load_config(argv: list[str] | None = None, description: str = "", prog: str | None = None) -> LoadedConfig:
    """`--config FILE_OR_NAME` plus `--key value` overrides for every field, plus `--resume`."""
    fields = {f.name: f for f in dataclasses.fields(PretrainConfig)}
    args = config_parser(description, prog=prog).parse_args(argv)
    values: dict[str, Any] = read_config_file(args.config) if args.config else {}
    defaults = PretrainConfig()
    for name, f in fields.items():
        text = getattr(args, name)
        if text is not None:
            values[name] = _coerce(name, text, values.get(name, getattr(defaults, name)), str(f.type))
    config = PretrainConfig(**values)
    return LoadedConfig(config.validate(), args, frozenset(values))
