"""YAML from files a user did not write (a dataset's `stats.yaml`, a shared config), read with bounds.

`yaml.safe_load` builds no objects but still expands aliases: a 1 KB file of nested anchors (a "billion laughs")
describes a list of 10^9 elements, and a single scalar may be any length. Here aliases are refused (no file pdefm or
The Well writes uses them) and the text is read up to `max_bytes`, so what a file can ask for is bounded by its size.
"""

from __future__ import annotations

from typing import IO, Any

import yaml

MAX_YAML_BYTES = 4 * 2**20  # statistics of hundreds of fields, or a config, are a few KB


class YAMLBoundsError(ValueError):
    """A YAML text past the bounds `load_yaml` accepts; the message names the source."""


class _NoAliasLoader(yaml.SafeLoader):
    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise YAMLBoundsError(f"uses the alias *{event.anchor} (line {event.start_mark.line + 1}); anchors and "
                                  "aliases are not accepted: write the values out")
        return super().compose_node(parent, index)


def load_yaml(source: str | IO, name: str = "<text>", max_bytes: int = MAX_YAML_BYTES) -> Any:
    """Parse `source` (text or an open text file) as YAML with `yaml.safe_load`'s types, refusing aliases and texts
    over `max_bytes`; errors name `name`. YAML syntax errors surface as `yaml.YAMLError`."""
    text = source if isinstance(source, str) else source.read(max_bytes + 1)
    if len(text) > max_bytes:
        raise YAMLBoundsError(f"{name}: larger than {max_bytes} bytes; a statistics or config file is a few KB")
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 - a SafeLoader subclass
    except YAMLBoundsError as error:
        raise YAMLBoundsError(f"{name}: {error}") from None
