"""Loading a saved PDE-FM (folder or Hub id), with its LoRA domain adapters if asked: what every command uses."""

from __future__ import annotations

import json
import os

import torch

from modeling_pdefm import PDEFMConfig, PDEFMModel
from modeling_pdefm.modeling_pdefm import FIELD_RECORD_KEY

from .hub import ModelResolutionError, resolve_folder
from ..adapters.lora import load_domain_adapters


# Config keys that describe the saved model's datasets and provenance, not its architecture.
NON_ARCHITECTURE_KEYS = ("datasets", "architectures", "auto_map", "transformers_version", "model_type", "_name_or_path")


def architecture_settings(config) -> dict:
    """A `PDEFMConfig`'s keyword arguments without its datasets and provenance: the same architecture, to be given
    other datasets (`PDEFMConfig(**architecture_settings(c), datasets=...)`)."""
    return {k: v for k, v in config.to_dict().items() if k not in NON_ARCHITECTURE_KEYS}


FLOAT_DTYPES = ("F64", "F32", "F16", "BF16")
PICKLED_WEIGHTS = ("pytorch_model.bin", "model.pt", "model.pth", "pytorch_model.bin.index.json")


def weight_files(folder: str, path_or_id: str) -> list[str]:
    """The safetensors files of a saved model (one, or the shards its index lists); pickled weights are refused."""
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(index):
        try:
            with open(index) as f:
                shards = sorted(set(json.load(f)["weight_map"].values()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
            raise ModelResolutionError(f"model {path_or_id!r}: {index} is not a weight index ({error})") from None
        if any(os.path.basename(s) != s for s in shards):
            raise ModelResolutionError(f"model {path_or_id!r}: {index} names files outside the folder: {shards}")
        return [os.path.join(folder, s) for s in shards]
    single = os.path.join(folder, "model.safetensors")
    if os.path.isfile(single):
        return [single]
    pickled = [n for n in PICKLED_WEIGHTS if os.path.exists(os.path.join(folder, n))]
    if pickled:
        raise ModelResolutionError(f"model {path_or_id!r}: {folder} holds pickled weights ({', '.join(pickled)}), which "
                                   "pdefm never loads (unpickling runs code); save the model with save_pretrained, "
                                   "which writes model.safetensors")
    raise ModelResolutionError(f"model {path_or_id!r}: {folder} has no model.safetensors")


def check_weights(folder: str, path_or_id: str, config: PDEFMConfig) -> None:
    """Read the weight files' headers before transformers loads them: a truncated or damaged file, a tensor that is
    not floating point (transformers would cast an int64 weight silently), or one of another shape than the config
    builds is refused in one line naming the file and the tensor."""
    from safetensors import SafetensorError, safe_open

    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in PDEFMModel(config).state_dict().items()}
    recorded = {}
    for path in weight_files(folder, path_or_id):
        try:
            with safe_open(path, "pt") as f:
                recorded.update(json.loads((f.metadata() or {}).get(FIELD_RECORD_KEY, "{}")))
                for key in f.keys():
                    tensor = f.get_slice(key)
                    dtype, shape = tensor.get_dtype(), tuple(tensor.get_shape())
                    if dtype not in FLOAT_DTYPES:
                        raise ModelResolutionError(f"model {path_or_id!r}: {path}: tensor {key!r} is stored as "
                                                   f"{dtype}; PDE-FM's weights are floating point ({', '.join(FLOAT_DTYPES)})")
                    want = expected.get(PDEFMModel.renamed_weight(key))
                    if want is not None and want != shape:
                        raise ModelResolutionError(f"model {path_or_id!r}: {path}: tensor {key!r} has shape "
                                                   f"{list(shape)}, but its config.json builds {list(want)}; the "
                                                   "folder is damaged or mixes files of two models")
        except (SafetensorError, OSError, ValueError) as error:
            raise ModelResolutionError(f"model {path_or_id!r}: {path} cannot be read as safetensors ({error}); the "
                                       "file is truncated or damaged: save or download the model again") from None
    for name, spec in config.datasets.items():
        saved = recorded.get(name)
        if saved and spec.get("field_names") and list(saved) != list(spec["field_names"]):
            raise ModelResolutionError(f"model {path_or_id!r}: config.json says dataset {name!r} has the fields "
                                       f"{spec['field_names']}, its weights were saved for {saved}; the weights' "
                                       "channels follow the saved order: restore config.json's field_names")


def load_pdefm(path_or_id: str, adapter: str | list[str] | None = None, merge: bool = True, revision: str | None = None):
    """A `PDEFMModel` from a folder or Hub id, optionally with LoRA domain adapter(s) (folders or Hub ids).

    With one adapter and `merge=True` (default) the adapter is merged into the weights (a plain `PDEFMModel`);
    otherwise a `peft.PeftModel` with every adapter loaded and the first active."""
    folder = resolve_folder(path_or_id, "model", revision)
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise ModelResolutionError(f"model {path_or_id!r}: {folder} has no config.json (not a saved model)")
    try:
        config = PDEFMConfig.from_pretrained(folder)
    except (ValueError, TypeError) as error:
        raise ModelResolutionError(f"model {path_or_id!r}: {config_path}: {str(error).splitlines()[0]}") from None
    if getattr(config, "model_type", None) != "pdefm":
        raise ModelResolutionError(f"model {path_or_id!r} is not a PDE-FM model (model_type {config.model_type!r})")
    check_weights(folder, path_or_id, config)
    model, info = PDEFMModel.from_pretrained(folder, config=config, output_loading_info=True)
    # transformers initialises a weight that the file lacks afresh and only logs it: a forecast from such a model is
    # silently wrong, so a weights file that does not fit the config is refused.
    problems = {what: info.get(key) for what, key in (("missing from the weights file", "missing_keys"),
                                                       ("in the weights file but not in the model", "unexpected_keys"),
                                                       ("of another shape than the config says", "mismatched_keys"))}
    problems = {what: sorted(str(k) for k in keys) for what, keys in problems.items() if keys}
    if problems:
        listed = "; ".join(f"{len(keys)} {what} ({', '.join(keys[:4])}{', ...' if len(keys) > 4 else ''})"
                           for what, keys in problems.items())
        raise ModelResolutionError(f"model {path_or_id!r}: its weights do not fit its config.json: {listed}. The "
                                   "folder is damaged or mixes files of two models")
    model.name_or_path = path_or_id
    if adapter is None:
        return model.eval()
    adapters = [adapter] if isinstance(adapter, str) else list(adapter)
    peft_model = load_domain_adapters(model, adapters)
    if merge and len(adapters) == 1:
        return peft_model.merge_and_unload().eval()
    return peft_model.eval()
