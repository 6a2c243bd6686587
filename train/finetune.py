"""Finetune a pretrained PDE-FM on a new system with a LoRA domain adapter (PEFT).

    accelerate launch -m pdefm.train.finetune --base outputs/mini_well --data data/my_system --adapter-name my_system \\
        [--lora-r 8 --lora-alpha 8 --target-modules in_proj out_proj] [--max_steps 500 --output_dir out/ft]

The base comes from a folder or the Hub (`from_pretrained`; the offline cache with `HF_HUB_OFFLINE=1`). A dataset the
base does not know gets new adapters from the data files' field description (`model.add_dataset`); they are trained
in full (`modules_to_save`), LoRA goes on the backbone's, tokenizer's and decoder's linear and convolution layers
(`--target-modules`: layer-name suffixes, or `--target-regex`). Training is the pretraining loop (loss, curriculum,
atomic checkpoints, `--resume`); every pretraining key can be overridden (`--max_steps`, `--learning_rate`, ...).
The adapter is saved in `<output_dir>/<adapter-name>/` with a model card.

`--mode` compares finetuning strategies on the same data and budget: `lora` (default), `spectral_lora` (LoRA plus
frequency-band adapters on the decoder's Fourier layers, which LoRA cannot reach: `adapters/spectral.py`; saved
merged, as a full model), `heads` (only the new dataset's head trains: its input and output maps), `full` (every
weight of the base trains), `scratch` (the base's architecture, freshly initialised).

A new dataset's head starts from the base's heads for the fields it shares with the base's datasets (`--head-init
fields`, the default; by name, with aliases `momentum`~`velocity` and `buoyancy`~`tracer`, or those given by
`--field-alias`), so the model forecasts it before any training; `--head-init random` starts it fresh. pdefm 0.2.0
called the heads adapters: `--mode adapters` and `--adapter-init` still work, with a warning.

From Python: `finetune(FinetuneConfig(base=..., data=..., adapter_name=...), config)` with a `PretrainConfig`
(`pdefm.train.training.config.config_from_file`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import warnings

from accelerate.utils import set_seed
from pdefm.data.layout import has_split

from modeling_pdefm.configuration_pdefm import check_name
from pdefm.runtime.cli_format import HelpFormatter
from pdefm.runtime.process import setup_process

from .adapters.lora import (
    base_fingerprint,
    default_target_modules,
    save_domain_adapter,
    trainable_parameters,
    wrap_with_lora,
)
from .adapters.spectral import add_spectral_adapters, merge_spectral_adapters
from .model_files.loading import architecture_settings, load_pdefm
from .model_files.model_card import write_model_card
from .training.batches import model_specs
from .training.checkpointing import CheckpointError
from .training.config import config_parser, load_config
from .training.fit import TRAINING_KEYS_IN_MODEL, fit, make_accelerator, print_outputs, write_report
from .training.output_dir import prepare_output_dir, run_names
from .training.run_lock import RunLockError

MODES = ("lora", "spectral_lora", "heads", "full", "scratch")
# 0.2.0's names of today's options (the per-dataset maps were called adapters), still accepted with a warning.
DEPRECATED_MODES = {"adapters": "heads"}


@dataclasses.dataclass
class FinetuneConfig:
    """What to finetune and how; the training itself is a `PretrainConfig` (steps, learning rate, output folder)."""

    base: str  # pretrained PDE-FM folder or Hub id
    data: str  # the new dataset's folder (The Well's layout)
    adapter_name: str  # name of the PEFT adapter (also its folder name)
    mode: str = "lora"  # lora, spectral_lora, heads, full or scratch
    lora_r: int = 8
    lora_alpha: int | None = None  # default: equal to lora_r
    lora_dropout: float = 0.0
    target_modules: list[str] | None = None  # LoRA on layers whose names end in these
    target_regex: str | None = None  # LoRA on layers whose full names match this regex
    spectral_rank: int = 4  # spectral_lora: rank of the lowest frequency band
    spectral_bands: int = 3  # spectral_lora: frequency bands per Fourier layer
    head_init: str = "fields"  # a new dataset's head: from the base's for shared fields, or "random"
    field_alias: list[str] | None = None  # QUANTITY=QUANTITY pairs replacing the default field aliases

    def __post_init__(self):
        if self.mode in DEPRECATED_MODES:
            warnings.warn(f"finetune mode {self.mode!r} is deprecated: the per-dataset maps are dataset heads now; "
                          f"use {DEPRECATED_MODES[self.mode]!r}", FutureWarning, stacklevel=3)
            self.mode = DEPRECATED_MODES[self.mode]
        if self.mode not in MODES:
            raise ValueError(f"finetune mode must be one of {MODES}, got {self.mode!r}")
        if self.head_init not in ("fields", "random"):
            raise ValueError(f"head_init must be 'fields' or 'random', got {self.head_init!r}")


def _finetune_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--base", required=True, help="pretrained PDE-FM folder or Hub id")
    parser.add_argument("--data", required=True, help="the new dataset's folder (The Well's layout)")
    parser.add_argument("--adapter-name", required=True, help="name of the LoRA adapter (also its folder name)")
    parser.add_argument("--mode", default="lora", choices=(*MODES, *DEPRECATED_MODES),
                        help="what trains (adapters: 0.2.0's name of heads, deprecated)")
    parser.add_argument("--lora-r", type=int, default=8)
    parser.add_argument("--lora-alpha", type=int, default=None, help="default: equal to --lora-r")
    parser.add_argument("--lora-dropout", type=float, default=0.0)
    parser.add_argument("--target-modules", nargs="+", default=None, help="LoRA on layers whose names end in these")
    parser.add_argument("--target-regex", default=None, help="LoRA on layers whose full names match this regex")
    parser.add_argument("--spectral-rank", type=int, default=4, help="spectral_lora: rank of the lowest frequency band")
    parser.add_argument("--spectral-bands", type=int, default=3, help="spectral_lora: frequency bands per Fourier layer")
    parser.add_argument("--head-init", default="fields", choices=("fields", "random"),
                        help="a new dataset's head: from the base's for shared fields, or fresh")
    parser.add_argument("--adapter-init", dest="adapter_init", default=None, choices=("fields", "random"),
                        help="0.2.0's name of --head-init (deprecated)")
    parser.add_argument("--field-alias", nargs="+", default=None, metavar="QUANTITY=QUANTITY",
                        help="replace the default field aliases (momentum=velocity buoyancy=tracer)")
    return parser


def parse_field_aliases(values: list[str] | None) -> dict[str, str] | None:
    """`["momentum=velocity"]` -> `{"momentum": "velocity"}`; None keeps the model's default aliases."""
    if values is None:
        return None
    aliases = {}
    for value in values:
        name, sep, target = value.partition("=")
        if not sep or not name or not target:
            raise ValueError(f"--field-alias {value!r}: expected QUANTITY=QUANTITY, e.g. momentum=velocity")
        aliases[name] = target
    return aliases


def finetune_arguments(argv: list[str] | None) -> tuple[FinetuneConfig, list[str]]:
    """The finetuning options as a `FinetuneConfig`, and the rest (training config keys) for `load_config`."""
    args, rest = _finetune_parser().parse_known_args(argv)
    options = vars(args)
    old_init = options.pop("adapter_init")
    if old_init is not None:
        warnings.warn("--adapter-init is deprecated: the per-dataset maps are dataset heads now; use --head-init",
                      FutureWarning, stacklevel=2)
        options["head_init"] = old_init
    return FinetuneConfig(**options), rest


def new_dataset_modules(model, name: str, spec: dict | None, base: str, head_init: str = "fields",
                        field_aliases: dict[str, str] | None = None) -> list[str]:
    """Give `model` the dataset `name` if it lacks it; returns the names of the modules that belong to it and train
    in full (its head, plus the patch embedding and decoder of a dimensionality the base never saw)."""
    if name in model.config.datasets:
        known = model.config.datasets[name]
        if spec is not None:
            for key in ("n_fields", "n_spatial_dims", "n_constant_fields", "n_constant_scalars"):
                if known[key] != spec[key]:
                    raise ValueError(f"dataset {name!r}: the base model {base!r} knows it with {key}={known[key]}, "
                                     f"the data has {key}={spec[key]}; to add it as a new dataset, give its folder and "
                                     "its files' dataset_name another name")
        return [f"dataset_heads.{name}", *own_decoder(model, name)]
    if spec is None:
        raise ValueError(f"the base model {base!r} has no dataset {name!r} and no field description was given: point "
                         "--data at files in The Well's format (their t0_fields/t1_fields describe the fields)")
    dims_before, decoders_before = set(model.patch_embeddings.keys()), set(model.decoders)
    model.add_dataset(name, n_fields=spec["n_fields"], n_spatial_dims=spec["n_spatial_dims"],
                      n_constant_fields=spec["n_constant_fields"], n_constant_scalars=spec["n_constant_scalars"],
                      field_names=spec.get("field_names"), field_scales=spec.get("field_scales"),
                      head_init=head_init, field_aliases=field_aliases)
    if model.dataset_heads[name].initialised_from:
        print(f"dataset {name!r}: its head starts from the base's fields "
              + "; ".join(f"{k} <- {', '.join(v)}" for k, v in model.dataset_heads[name].initialised_from.items()))
    added_dims = [k for k in model.patch_embeddings.keys() if k not in dims_before]
    added_decoders = [k for k in model.decoders if k not in decoders_before]
    return [f"dataset_heads.{name}", *[f"patch_embeddings.{k}" for k in added_dims],
            *[f"decoders.{k}" for k in added_decoders]]


def own_decoder(model, name: str) -> list[str]:
    """The decoder that belongs to dataset `name` alone (`decoder_per_dataset`), as a module name; none when the
    datasets of a dimensionality share one."""
    key = model.decoder_key(name, model.config.datasets[name]["n_spatial_dims"])
    return [f"decoders.{key}"] if key == name else []


def base_hub_id(base: str) -> str | None:
    """The Hub id of a base given as a Hub id or as a folder of the Hugging Face cache; None for a local folder."""
    if not os.path.exists(base):
        return base
    parts = os.path.abspath(base).split(os.sep)
    for part in reversed(parts):
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/")
    return None


def build_model(args: FinetuneConfig, base_model, name: str, spec: dict):
    """The model to train for `args.mode`, and the names of its fully trained modules."""
    if args.mode == "scratch":
        from modeling_pdefm import PDEFMConfig, PDEFMModel

        return PDEFMModel(PDEFMConfig(**architecture_settings(base_model.config), datasets={name: spec})), []
    trained = new_dataset_modules(base_model, name, spec, args.base, args.head_init,
                                  parse_field_aliases(args.field_alias))
    if args.mode == "full":
        return base_model, trained
    if args.mode == "heads":
        for param_name, param in base_model.named_parameters():
            param.requires_grad = any(param_name.startswith(m + ".") for m in trained)
        return base_model, trained
    targets = args.target_regex or args.target_modules or default_target_modules(base_model, spec["n_spatial_dims"], name)
    model = wrap_with_lora(base_model, args.adapter_name, trained, args.lora_r, args.lora_alpha, args.lora_dropout,
                           targets)
    decoder = f"decoders.{base_model.decoder_key(name, spec['n_spatial_dims'])}"
    if args.mode == "spectral_lora":
        if decoder in trained:  # a decoder the base never had trains in full already
            print(f"spectral_lora: {decoder} is new and trains in full; no spectral adapters needed")
        else:
            add_spectral_adapters(model, [decoder], args.spectral_rank, args.spectral_bands)
    return model, trained


def finetune(args: FinetuneConfig, config, resume: bool = False, stop_after: int | None = None, allow_config_change: bool = False,
             explicit_keys: set[str] | None = None, overwrite_output_dir: bool = False) -> dict:
    """Finetune `args.base` on `config.datasets[0]`. Training keys the model records (input window, objective) that
    are not in `explicit_keys` (those the user set) follow the base's config when `explicit_keys` is given."""
    own = run_names("finetune")
    if args.adapter_name in own:
        raise ValueError(f"--adapter-name {args.adapter_name!r} is the name of a folder or file the run itself writes "
                         f"in --output_dir ({', '.join(n for n in own if not n.endswith('.py'))}); pick another name")
    # A folder that holds a finished run or the user's files is refused before the base is loaded.
    prepare_output_dir(config.output_dir, resume, overwrite_output_dir, "finetune", clear=False,
                       extra_names=(args.adapter_name,))
    base_model = load_pdefm(args.base)
    if explicit_keys is not None:
        for key in TRAINING_KEYS_IN_MODEL:
            if key not in explicit_keys:
                setattr(config, key, getattr(base_model.config, key))
    if config.n_steps_input < base_model.config.skip_frames():
        raise ValueError(f"n_steps_input {config.n_steps_input}: the base model {args.base!r} decodes from its last "
                         f"{base_model.config.skip_frames()} input frames (decoder_skip_frames); finetune it on windows "
                         f"of at least that many frames")
    accelerator = make_accelerator(config)
    set_seed(config.seed)
    fingerprint = base_fingerprint(base_model)
    name = config.datasets[0]
    spec = model_specs(config.data_dir, [name], config.use_normalization)[name]
    model, trained_modules = build_model(args, base_model, name, spec)
    counts = trainable_parameters(model)
    accelerator.print(f"mode {args.mode}: {counts['trainable']:,} trainable parameters of {counts['total']:,} "
                      f"({100 * counts['fraction']:.2f}%)")

    hub_id = base_hub_id(args.base)

    def finish(unwrapped, report: dict, seconds: float, step: int) -> None:
        command = " ".join(["python -m pdefm.train.finetune", *(sys.argv[1:])])
        details = {"mode": args.mode, "base": args.base, "dataset": name, "trainable_parameters": counts,
                   "lora_r": args.lora_r if args.mode in ("lora", "spectral_lora") else None, "trained_modules": trained_modules}
        if args.mode == "lora":
            folder = save_domain_adapter(unwrapped, config.output_dir, args.adapter_name, name, spec, fingerprint, args.base)
            library, tags = "peft", ["lora", "peft"]
        elif args.mode == "spectral_lora":  # PEFT cannot save the spectral adapters: saved merged, as a full model
            merge_spectral_adapters(unwrapped)
            folder = os.path.join(config.output_dir, args.adapter_name)
            unwrapped.merge_and_unload().save_pretrained(folder)
            library, tags = "transformers", ["lora", "spectral-adapter"]
        else:
            folder = os.path.join(config.output_dir, args.adapter_name)
            (unwrapped.get_base_model() if hasattr(unwrapped, "get_base_model") else unwrapped).save_pretrained(folder)
            library, tags = "transformers", []
        write_report(config, report, seconds, step, title=f"Finetuning report ({args.mode}, {name})")
        with open(os.path.join(config.output_dir, "finetune.json"), "w") as f:
            json.dump({**details, "steps": step, "train_seconds": seconds, "report": report, "adapter": folder}, f, indent=2)
        write_model_card(
            folder, title=f"PDE-FM domain adapter `{args.adapter_name}` for {name}", datasets=[name], report=report,
            base_model=hub_id if args.mode != "scratch" else None, extra_tags=tags, library_name=library,
            command=command,
            description=f"{args.mode} finetuning of {f'`{hub_id}`' if hub_id else f'a local base model (`{args.base}`, not on the Hub)'} "
                        f"on `{name}` for {step} steps: "
                        f"{counts['trainable']:,} trainable parameters of {counts['total']:,} "
                        f"({100 * counts['fraction']:.2f}%). Load with `pdefm.train.model_files.loading.load_pdefm(base, adapter=...)`.",
        )
        print_outputs(config, "finetune", model_folder=folder)

    # Compared with a checkpoint's on --resume, with the training config.
    settings = {"finetune": {"base": args.base, "mode": args.mode, "adapter_name": args.adapter_name,
                             "lora_r": args.lora_r, "lora_alpha": args.lora_alpha, "lora_dropout": args.lora_dropout,
                             "target_modules": args.target_modules, "target_regex": args.target_regex,
                             "head_init": args.head_init,
                             "field_alias": args.field_alias}}
    report = fit(accelerator, config, model, [name], {name: spec}, resume=resume, allow_config_change=allow_config_change,
                 run_settings=settings, stop_after=stop_after, finish=finish, run_name="finetune",
                 overwrite_output_dir=overwrite_output_dir, output_names=(args.adapter_name,))
    return {"report": report, "trainable_parameters": counts}


def main(argv: list[str] | None = None) -> int:
    if {"-h", "--help"} & set(sys.argv[1:] if argv is None else argv):
        parser = argparse.ArgumentParser(prog="pdefm finetune", description=__doc__,
                                         formatter_class=HelpFormatter,
                                         parents=[_finetune_parser(), config_parser(add_help=False, shown_defaults={
                                             "output_dir": "outputs/finetune/<adapter-name>"})])
        parser.print_help()
        return 0
    try:
        args, rest = finetune_arguments(argv)
    except SystemExit:
        print(__doc__)
        raise
    try:
        check_name(args.adapter_name, "--adapter-name")
        if args.target_regex is not None:
            try:
                re.compile(args.target_regex)
            except re.error as error:
                raise ValueError(f"--target-regex {args.target_regex!r} is not a regular expression ({error})") from None
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    data = os.path.abspath(args.data.rstrip("/"))
    if not has_split(data, "train"):
        print(f"error: --data {args.data!r}: expected a dataset folder with data/train/ (The Well's layout)", file=sys.stderr)
        return 2
    overrides = ["--data_dir", os.path.dirname(data), "--datasets", os.path.basename(data),
                 "--output_dir", os.path.join("outputs", "finetune", args.adapter_name)]
    try:
        config, parsed, explicit_keys = load_config([*overrides, *rest], __doc__)
        setup_process("train", keep_current=True)  # threads and memory reuse (pdefm.runtime.process)
        finetune(args, config, resume=parsed.resume, allow_config_change=parsed.allow_config_change,
                 explicit_keys=explicit_keys, overwrite_output_dir=parsed.overwrite_output_dir)
    except (ValueError, OSError, RunLockError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
