"""Loading a saved PDE-FM (folder or Hub id), with its LoRA domain adapters if asked: what every command uses."""

from __future__ import annotations

import os

from modeling_pdefm import PDEFMConfig, PDEFMModel

from .hub import ModelResolutionError, resolve_folder
from ..adapters.lora import load_domain_adapters


# Config keys that describe the saved model's datasets and provenance, not its architecture.
NON_ARCHITECTURE_KEYS = ("datasets", "architectures", "auto_map", "transformers_version", "model_type", "_name_or_path")


def architecture_settings(config) -> dict:
    """A `PDEFMConfig`'s keyword arguments without its datasets and provenance: the same architecture, to be given
    other datasets (`PDEFMConfig(**architecture_settings(c), datasets=...)`)."""
    return {k: v for k, v in config.to_dict().items() if k not in NON_ARCHITECTURE_KEYS}


def load_pdefm(path_or_id: str, adapter: str | list[str] | None = None, merge: bool = True, revision: str | None = None):
    """A `PDEFMModel` from a folder or Hub id, optionally with LoRA domain adapter(s) (folders or Hub ids).

    With one adapter and `merge=True` (default) the adapter is merged into the weights (a plain `PDEFMModel`);
    otherwise a `peft.PeftModel` with every adapter loaded and the first active."""
    folder = resolve_folder(path_or_id, "model", revision)
    config_path = os.path.join(folder, "config.json")
    if not os.path.isfile(config_path):
        raise ModelResolutionError(f"model {path_or_id!r}: {folder} has no config.json (not a saved model)")
    config = PDEFMConfig.from_pretrained(folder)
    if getattr(config, "model_type", None) != "pdefm":
        raise ModelResolutionError(f"model {path_or_id!r} is not a PDE-FM model (model_type {config.model_type!r})")
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
