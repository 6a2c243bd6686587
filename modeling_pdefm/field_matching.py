"""Which fields of a new dataset are physical quantities the model already knows, by name.

The Well names a field's channels `<quantity>` (a scalar) or `<quantity>_x`, `_y`, `_z` (the components of a
vector). Two datasets share a channel when their quantities agree, after aliases, and so do the components:
`velocity_x` of shear_flow is `velocity_x` of rayleigh_benard, and `momentum_x` of Euler too under the default
alias `momentum` ~ `velocity`. `PDEFMModel.add_dataset(init="fields")` starts a new dataset's adapters from the
matching channels of the datasets the model was trained on.
"""

from __future__ import annotations

# Quantities that play the same role in the model's normalised units (each field is normalised per sample, so a
# momentum and a velocity, or a buoyancy and a passive tracer, look alike to it): declared, never guessed.
DEFAULT_FIELD_ALIASES: dict[str, str] = {"momentum": "velocity", "buoyancy": "tracer"}
COMPONENTS = ("x", "y", "z")


def split_component(channel: str) -> tuple[str, str | None]:
    """`"velocity_x"` -> `("velocity", "x")`; `"pressure"` -> `("pressure", None)`."""
    quantity, _, suffix = channel.rpartition("_")
    if quantity and suffix in COMPONENTS:
        return quantity, suffix
    return channel, None


def tensor_orders(channels: list[str]) -> dict[str, int]:
    """Each quantity's tensor order as its channel names show it: 0 for a scalar, 1 for a vector's components."""
    orders: dict[str, int] = {}
    for channel in channels:
        quantity, component = split_component(channel)
        orders[quantity] = max(orders.get(quantity, 0), 0 if component is None else 1)
    return orders


def check_aliases(aliases: dict[str, str], channels: list[str]) -> None:
    """Refuse an alias between a scalar and a vector quantity (as `channels`, the names of every dataset involved,
    show them); a quantity not among `channels` cannot be checked and passes."""
    orders = tensor_orders(channels)
    kind = {0: "a scalar", 1: "a vector"}
    for name, target in aliases.items():
        if name in orders and target in orders and orders[name] != orders[target]:
            raise ValueError(f"field alias {name!r} ~ {target!r} maps {kind[orders[name]]} quantity ({name!r}) to "
                             f"{kind[orders[target]]} quantity ({target!r}); an alias must join quantities of the same "
                             "tensor order")


def canonical_channel(channel: str, aliases: dict[str, str]) -> str:
    quantity, component = split_component(channel)
    quantity = aliases.get(quantity, quantity)
    return quantity if component is None else f"{quantity}_{component}"


def match_fields(new_channels: list[str], known: dict[str, list[str]],
                 aliases: dict[str, str] | None = None) -> dict[int, list[tuple[str, int]]]:
    """For each channel of a new dataset (by index), the `(dataset, channel index)` pairs of the `known` datasets'
    channels that are the same quantity and component. Channels without a match are left out."""
    aliases = DEFAULT_FIELD_ALIASES if aliases is None else aliases
    check_aliases(aliases, [*new_channels, *(c for channels in known.values() for c in channels)])
    index: dict[str, list[tuple[str, int]]] = {}
    for dataset, channels in known.items():
        for j, channel in enumerate(channels):
            index.setdefault(canonical_channel(channel, aliases), []).append((dataset, j))
    matches = {}
    for i, channel in enumerate(new_channels):
        found = index.get(canonical_channel(channel, aliases))
        if found:
            matches[i] = found
    return matches


def channel_order(model_names: list[str] | None, data_names, dataset: str) -> list[int] | None:
    """Where the model's channels are in the data: `order` with `data[..., order]` in the model's channel order, or
    None when the orders agree (or either side names no fields). `data_names` is one list of channel names or one
    per sample (a collated batch). Fields are matched by name, never by position: a different set of names is
    refused naming both lists."""
    if not model_names or data_names is None:
        return None
    if len(data_names) and isinstance(data_names[0], (list, tuple)):
        if any(list(n) != list(data_names[0]) for n in data_names):
            raise ValueError(f"dataset {dataset!r}: the samples of one batch name their fields differently; batch "
                             "windows of one dataset's files together")
        data_names = data_names[0]
    data_names = [str(n) for n in data_names]
    if data_names == list(model_names):
        return None
    if sorted(data_names) != sorted(model_names) or len(set(data_names)) != len(data_names):
        raise ValueError(f"dataset {dataset!r}: the data's fields {data_names} are not the fields the model was "
                         f"trained on for it, {list(model_names)}; fields are matched by name. Give this dataset's "
                         "files, or pass a dataset_name whose fields these are")
    return [data_names.index(name) for name in model_names]
