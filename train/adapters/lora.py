"""LoRA domain adapters for PDE-FM with PEFT: wrapping, saving, and loading several onto one base model.

A domain adapter is PEFT's adapter folder (`adapter_config.json`, `adapter_model.safetensors`) plus
`pdefm_adapter.json`: the dataset it serves (its field description, so a base without that dataset can be given
one) and a fingerprint of the base weights it was trained on, so it is never applied to another base.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from typing import Any

from torch import nn

from modeling_pdefm.configuration_pdefm import check_name

from ..model_files.hub import resolve_folder

ADAPTER_INFO = "pdefm_adapter.json"
# Backbone layers by backbone kind (`PDEFMConfig.backbone`): the Mamba mixers' projections, or the transformer
# blocks' attention projections and MLP; then the tokenizer (patch and spectral) and decoder layers shared by both.
BACKBONE_TARGETS = {
    "mamba": r"backbone\.layers\.\d+\.mixer\.(forward|backward)_mixer\.(in_proj|out_proj)",
    "attention": r"backbone\.layers\.\d+\.mixer\.(attn\.(q_proj|k_proj|v_proj|o_proj)|mlp_in|mlp_out)",
}
SHARED_TARGETS = (r"patch_embeddings\.\w+\.proj|spectral_tokenizer\.proj"
                  r"|decoders\.\w+\.(lift|project|unpatch\.proj|blocks\.\d+\.(pointwise|kernel))")


def default_target_pattern(backbone: str) -> str:
    """The regular expression of the layers LoRA adapts by default, for a model with this backbone."""
    if backbone not in BACKBONE_TARGETS:
        raise ValueError(f"no default LoRA targets for backbone {backbone!r}; known: {sorted(BACKBONE_TARGETS)}")
    return rf"({BACKBONE_TARGETS[backbone]}|{SHARED_TARGETS})"


LORA_LAYER_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def default_target_modules(model: nn.Module, n_spatial_dims: int | None = None, dataset: str | None = None) -> list[str]:
    """The layers (of types LoRA supports) that `default_target_pattern` of this model's backbone names, restricted,
    when `n_spatial_dims` is given, to the shared layers and those of that dimensionality, and with `dataset` to the
    decoder that dataset uses (LoRA on a tokenizer or decoder the dataset never calls would train nothing)."""
    own = f"{n_spatial_dims}d" if n_spatial_dims is not None else None
    own_decoder = model.decoder_key(dataset, n_spatial_dims) if dataset is not None and own is not None else own
    pattern = default_target_pattern(model.config.backbone)
    chosen = []
    for name, module in model.named_modules():
        if not isinstance(module, LORA_LAYER_TYPES) or not re.fullmatch(pattern, name):
            continue
        parts = name.split(".")
        if own is not None and parts[0] == "patch_embeddings" and parts[1] != own:
            continue
        if own is not None and parts[0] == "decoders" and parts[1] != own_decoder:
            continue
        chosen.append(name)
    return chosen


class AdapterMismatchError(ValueError):
    """An adapter that does not belong to this base model."""


def base_fingerprint(model: nn.Module) -> str:
    """A hash of the shared weights (everything but the dataset heads), taken before any dataset is added."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if name.startswith("dataset_heads."):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().float().numpy().tobytes())
    return digest.hexdigest()[:16]


def lora_candidates(model: nn.Module) -> list[str]:
    return [name for name, module in model.named_modules() if isinstance(module, LORA_LAYER_TYPES)]


def check_target_modules(model: nn.Module, target_modules: str | list[str]) -> list[str]:
    """The layer names the targets select (PEFT's rule: a regex over full names, or name suffixes); an error naming
    each target that selects nothing."""
    candidates = lora_candidates(model)
    if isinstance(target_modules, str):
        chosen = [n for n in candidates if re.fullmatch(target_modules, n)]
        if not chosen:
            raise ValueError(f"--target-modules {target_modules!r} matches no Linear/Conv layer of the model; "
                             f"layers are named like {candidates[:6]}")
        return chosen
    chosen = []
    for target in target_modules:
        hits = [n for n in candidates if n == target or n.endswith("." + target)]
        if not hits:
            suffixes = sorted({n.rsplit(".", 1)[-1] for n in candidates})
            raise ValueError(f"LoRA target {target!r} matches no Linear/Conv layer of the model; "
                             f"available layer names end in {suffixes}")
        chosen += hits
    return sorted(set(chosen))


def wrap_with_lora(model: nn.Module, adapter_name: str, trainable_modules: list[str], r: int = 8, alpha: int | None = None,
                   dropout: float = 0.0, target_modules: str | list[str] | None = None):
    """`peft.get_peft_model` with LoRA on `target_modules` (default: `default_target_modules` of the model's
    backbone) and `trainable_modules` (the new dataset's head, and any module added for it) fully trained and
    saved with the adapter."""
    from peft import LoraConfig, get_peft_model

    if r < 1:
        raise ValueError(f"--lora-r must be >= 1, got {r}")
    check_name(adapter_name, "adapter name")
    if adapter_name in model.config.datasets:
        # PEFT strips ".<adapter name>" from saved keys, which would also cut the dataset's module path
        # (`dataset_heads.<name>`).
        raise ValueError(f"--adapter-name {adapter_name!r} is also the name of a dataset of the model; pick another "
                         f"name, e.g. {adapter_name + '_lora'!r}")
    if target_modules is None:
        target_modules = default_target_modules(model)
    # The names a pattern selects are saved, not the pattern: a loader then matches names, never runs a regex.
    target_modules = check_target_modules(model, target_modules)
    config = LoraConfig(r=r, lora_alpha=alpha or r, lora_dropout=dropout, target_modules=target_modules,
                        modules_to_save=list(trainable_modules) or None, init_lora_weights=True)
    return get_peft_model(model, config, adapter_name=adapter_name)


def trainable_parameters(model: nn.Module) -> dict[str, Any]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return {"trainable": trainable, "total": total, "fraction": trainable / max(total, 1)}


def save_domain_adapter(peft_model, output_dir: str, adapter_name: str, dataset_name: str, spec: dict[str, Any],
                        fingerprint: str, base: str) -> str:
    """Save one adapter into `output_dir/adapter_name/`; returns that folder."""
    check_name(adapter_name, "adapter name")
    folder = os.path.join(output_dir, adapter_name)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(output_dir, f".tmp_{adapter_name}")
    peft_model.save_pretrained(tmp, selected_adapters=[adapter_name])
    written = os.path.join(tmp, adapter_name) if os.path.isdir(os.path.join(tmp, adapter_name)) else tmp
    for name in os.listdir(written):
        os.replace(os.path.join(written, name), os.path.join(folder, name))
    info = {"adapter_name": adapter_name, "dataset_name": dataset_name, "dataset_spec": spec,
            "base_model": base, "base_fingerprint": fingerprint}
    with open(os.path.join(folder, ADAPTER_INFO), "w") as f:
        json.dump(info, f, indent=2)
    shutil.rmtree(tmp, ignore_errors=True)
    return folder


# What `pdefm_adapter.json` must hold, and its type.
ADAPTER_INFO_KEYS = {"base_fingerprint": str, "dataset_name": str, "adapter_name": str, "dataset_spec": dict}
# adapter_config.json keys PEFT reads as regular expressions over module names.
PATTERN_KEYS = ("target_modules", "exclude_modules", "layers_pattern")
PATTERN_DICT_KEYS = ("rank_pattern", "alpha_pattern")
MAX_PATTERN_LENGTH = 2000
# A quantified group ("(a|b)*", "(x+)+", "(...){2,}") is what makes a regular expression take exponential time.
REPEATED_GROUP = re.compile(r"\)[*+{]|\)\?[*+]")


def _read_json_object(path: str, what: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            value = json.load(f)
    except FileNotFoundError:
        raise AdapterMismatchError(f"{path}: missing; {what}") from None
    except (OSError, ValueError) as error:
        raise AdapterMismatchError(f"{path}: not valid JSON ({error}); {what}") from None
    if not isinstance(value, dict):
        raise AdapterMismatchError(f"{path}: expected a JSON object, got {type(value).__name__}; {what}")
    return value


def check_pattern(pattern: Any, where: str) -> None:
    """Refuse a module-name pattern from an adapter folder (untrusted: it may come from the Hub) that is not a
    string or a list of strings, is longer than `MAX_PATTERN_LENGTH`, or repeats a group (catastrophic backtracking:
    `(.|.)*Z` spins for hours inside PEFT's match)."""
    patterns = [pattern] if isinstance(pattern, str) else pattern if isinstance(pattern, list) else None
    if patterns is None or not all(isinstance(p, str) for p in patterns):
        raise AdapterMismatchError(f"{where}: expected a module name, a pattern or a list of names, got {pattern!r:.80}")
    for p in patterns:
        if len(p) > MAX_PATTERN_LENGTH or REPEATED_GROUP.search(p):
            raise AdapterMismatchError(f"{where}: the pattern {p[:80]!r} is refused (longer than {MAX_PATTERN_LENGTH} "
                                       "characters, or a repeated group, which can take exponential time to match); "
                                       "list the module names instead")


def check_adapter_folder(folder: str, path_or_id: str) -> dict[str, Any]:
    """The folder's `pdefm_adapter.json` once it and `adapter_config.json` are checked: every key the loader reads
    present with its type, and every pattern PEFT will match bounded (`check_pattern`). Errors name the file."""
    hint = "not a PDE-FM domain adapter folder as `pdefm finetune` writes it"
    info = _read_json_object(os.path.join(folder, ADAPTER_INFO), hint)
    for key, kind in ADAPTER_INFO_KEYS.items():
        if not isinstance(info.get(key), kind):
            raise AdapterMismatchError(f"{os.path.join(folder, ADAPTER_INFO)}: key {key!r} missing or not a "
                                       f"{kind.__name__} (adapter {path_or_id!r}); {hint}")
    config_path = os.path.join(folder, "adapter_config.json")
    config = _read_json_object(config_path, hint)
    for key in PATTERN_KEYS:
        if config.get(key) is not None:
            check_pattern(config[key], f"{config_path}: {key}")
    for key in PATTERN_DICT_KEYS:
        value = config.get(key) or {}
        if not isinstance(value, dict):
            raise AdapterMismatchError(f"{config_path}: {key}: expected an object of pattern -> value")
        for pattern in value:
            check_pattern(pattern, f"{config_path}: {key}")
    check_pattern(config.get("modules_to_save") or [], f"{config_path}: modules_to_save")
    return info


def read_adapter_info(path_or_id: str) -> tuple[str, dict[str, Any]]:
    folder = resolve_folder(path_or_id, "adapter")
    if not os.path.isfile(os.path.join(folder, ADAPTER_INFO)):
        raise AdapterMismatchError(f"adapter {path_or_id!r}: no {ADAPTER_INFO} in {folder}; not a PDE-FM domain adapter "
                                   "(save adapters with pdefm.train.finetune)")
    return folder, check_adapter_folder(folder, path_or_id)


def old_folder_renamed(folder: str) -> str:
    """`folder`, or a temporary copy of it under today's module names when it was saved by pdefm 0.2.0: its
    `modules_to_save` and weights then name the dataset heads `adapters.<name>`, which PEFT would not find (the new
    dataset's head would load untrained, silently). The copy is made in a temporary folder; `folder` is not written."""
    import tempfile

    from safetensors.torch import load_file, save_file

    config_path = os.path.join(folder, "adapter_config.json")
    with open(config_path) as f:
        config = json.load(f)
    saved = config.get("modules_to_save") or []
    if not any(m.startswith("adapters.") for m in saved):
        return folder
    copy = tempfile.mkdtemp(prefix="pdefm_adapter_0_2_0_")
    for name in os.listdir(folder):
        source = os.path.join(folder, name)
        if os.path.isfile(source) and not os.path.islink(source) and name not in ("adapter_config.json",
                                                                               "adapter_model.safetensors"):
            shutil.copyfile(source, os.path.join(copy, name))
    config["modules_to_save"] = [m.replace("adapters.", "dataset_heads.", 1) if m.startswith("adapters.") else m
                                 for m in saved]
    with open(os.path.join(copy, "adapter_config.json"), "w") as f:
        json.dump(config, f, indent=2)
    weights = load_file(os.path.join(folder, "adapter_model.safetensors"))
    save_file({key.replace(".adapters.", ".dataset_heads.", 1): value for key, value in weights.items()},
              os.path.join(copy, "adapter_model.safetensors"))
    return copy


def load_domain_adapters(model: nn.Module, adapters: list[str], is_trainable: bool = False):
    """Load domain adapters (folders or Hub ids) onto `model`; each adapter's dataset is added to the model first
    when the model lacks it. Returns a `peft.PeftModel` with the first adapter active (`set_adapter` switches)."""
    from peft import PeftModel

    if not adapters:
        raise ValueError("no adapters given")
    fingerprint = base_fingerprint(model)
    loaded = []
    for path_or_id in adapters:
        folder, info = read_adapter_info(path_or_id)
        if info["base_fingerprint"] != fingerprint:
            raise AdapterMismatchError(
                f"adapter {path_or_id!r} was trained on base {info['base_model']!r} (weights fingerprint "
                f"{info['base_fingerprint']}), not on this base model (fingerprint {fingerprint}); load it onto the "
                "base it was trained from"
            )
        name = info["dataset_name"]
        if name not in model.config.datasets:
            spec = info["dataset_spec"]
            model.add_dataset(name, n_fields=spec["n_fields"], n_spatial_dims=spec["n_spatial_dims"],
                              n_constant_fields=spec.get("n_constant_fields", 0),
                              n_constant_scalars=spec.get("n_constant_scalars", 0), field_names=spec.get("field_names"),
                              field_scales=spec.get("field_scales"))
        loaded.append((old_folder_renamed(folder), info))
    peft_model = None
    for (folder, info), path_or_id in zip(loaded, adapters):
        try:
            if peft_model is None:
                peft_model = PeftModel.from_pretrained(model, folder, adapter_name=info["adapter_name"],
                                                       is_trainable=is_trainable)
            else:
                peft_model.load_adapter(folder, adapter_name=info["adapter_name"], is_trainable=is_trainable)
        except RuntimeError as error:
            if "size mismatch" not in str(error):
                raise
            first = next(line.strip() for line in str(error).splitlines() if "size mismatch" in line)
            raise AdapterMismatchError(f"adapter {path_or_id!r}: the weights in {folder}/adapter_model.safetensors do "
                                       f"not fit the shapes its adapter_config.json and {ADAPTER_INFO} describe "
                                       f"({first[:200]}); re-save the adapter with `pdefm finetune`") from None
    peft_model.set_adapter(loaded[0][1]["adapter_name"])
    return peft_model
