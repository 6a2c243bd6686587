"""What a saved `PDEFMConfig` may hold besides today's keys: keys and values that were removed (measured worse,
docs/decisions.md), renamed keys, the format number a config is written with, and the keys transformers itself
saves. Kept apart from the configuration so that reading it shows the architecture only."""

from __future__ import annotations

from typing import Any

from transformers import PretrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

# Version of the config's keys, saved with it: a config written by a newer format may hold keys this code does not know.
PDEFM_FORMAT = 1
# Options that were measured worse and removed: key -> (the value every model now behaves as, the last pdefm version
# that supported another). A saved config holding that value still loads; one holding another is refused by name.
REMOVED_KEYS = {"film_every_layer": (False, "0.1.0"), "increment_scale": ("field", "0.1.0")}
# Values of kept keys removed the same way: key -> {value: last pdefm version that supported it}.
REMOVED_VALUES = {"decoder_type": {"fno_conv": "0.1.0"}}
# Keys renamed since an earlier pdefm: old key -> (new key, the last version that wrote the old one). A saved config
# holding the old key loads under the new one.
RENAMED_KEYS = {"adapter_channels": ("latent_channels", "0.2.0"), "decoder": ("decoder_type", "0.2.0")}
# transformers' own keys of a saved config and of `from_pretrained`, beside a default config's attributes.
TRANSFORMERS_EXTRA_KEYS = frozenset({"auto_map", "torch_dtype", "_commit_hash", "attn_implementation", "name_or_path",
                                     "pad_token_id", "bos_token_id", "eos_token_id", "num_labels",
                                     "tie_word_embeddings"})


def drop_removed_keys(kwargs: dict[str, Any]) -> None:
    """Drop the removed keys of a saved config (`kwargs`, popped in place) that hold the value models now behave as;
    refuse, naming the key, one that holds another."""
    for key, (kept, version) in REMOVED_KEYS.items():
        if key in kwargs and kwargs.pop(key) != kept:
            raise ValueError(f"PDEFMConfig key {key!r} was removed (docs/decisions.md says why); this config sets it "
                             f"to something other than {kept!r}, which pdefm {version} was the last to support: "
                             f"load it with pdefm {version}, or drop the key to get {kept!r}")


def renamed_value(kwargs: dict[str, Any], new_key: str, value: Any) -> Any:
    """The value of `new_key`: `value`, or what a saved config holds under its old name (popped from `kwargs`)."""
    for old, (new, _) in RENAMED_KEYS.items():
        if new == new_key and old in kwargs:
            return kwargs.pop(old)
    return value


def refuse_removed_values(config: Any) -> None:
    """Refuse a kept key holding a removed value, saying why it is gone (before the lists of allowed values)."""
    for key, removed in REMOVED_VALUES.items():
        value = getattr(config, key)
        if value in removed:
            raise ValueError(f"PDEFMConfig key {key!r}: {value!r} was removed (docs/decisions.md says why); "
                             f"pdefm {removed[value]} was the last to support it")


def transformers_config_keys() -> set[str]:
    default = PretrainedConfig()
    return set(vars(default)) | set(default.to_dict()) | TRANSFORMERS_EXTRA_KEYS


def refuse_unknown_keys(kwargs: dict[str, Any], pdefm_format: Any, known: list[str]) -> None:
    """A key that is neither PDE-FM's nor transformers' would be saved and silently ignored (a typo such as
    `hidden_sise`): refused, or only warned about when the config was written by a newer format of PDE-FM."""
    unknown = sorted(set(kwargs) - transformers_config_keys())
    if not unknown:
        return
    if isinstance(pdefm_format, int) and pdefm_format > PDEFM_FORMAT:
        logger.warning(f"PDEFMConfig: keys {unknown} come from a newer PDE-FM (config format {pdefm_format}, "
                       f"this one reads {PDEFM_FORMAT}) and are ignored; upgrade pdefm to use them")
        return
    raise ValueError(f"unknown PDEFMConfig keys {unknown} (a typo would be saved and silently ignored); known: "
                     f"{sorted(known)}")
