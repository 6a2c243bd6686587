"""Training data: one dataset per batch, each process reading its own shard, in an order that is a pure function
of (seed, dataset, rank, number of batches drawn), so a resumed run reads exactly what an uninterrupted one would."""

from __future__ import annotations

import os
import zlib
from typing import Any

import numpy as np
from datasets.distributed import split_dataset_by_node

from pdefm.data import WellNormalizer, load_well_dataset, open_well_split, split_reader
from pdefm.data.layout import dataset_folders, has_split, stats_path


def find_datasets(data_dir: str, names: list[str] | None) -> list[str]:
    """Dataset folders under `data_dir` that hold a train split; `names` must all be among them."""
    found = dataset_folders(data_dir)
    if names is None:
        if not found:
            raise ValueError(f"config key 'data_dir': no datasets (folders with data/train/) in {data_dir!r}")
        return found
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"config key 'datasets': {unknown} not found in {data_dir!r}; available: {found}")
    return list(names)


def model_specs(data_dir: str, names: list[str], use_normalization: bool = False) -> dict[str, dict[str, Any]]:
    """Each dataset's entry for `PDEFMConfig(datasets=...)`, with `field_scales` (each field channel's std over the
    dataset, in the units the model will be fed: 1 under `use_normalization`) where `stats.yaml` exists."""
    specs = {}
    for name in names:
        folder = os.path.join(data_dir, name)
        reader = open_well_split(folder, "train", n_steps_input=1, n_steps_output=1)
        specs[name] = reader.meta.model_spec()
        stats = stats_path(folder)
        if use_normalization:
            specs[name]["field_scales"] = [1.0] * specs[name]["n_fields"]
        elif os.path.isfile(stats):
            normalizer = WellNormalizer.from_file(stats, reader.meta.variable_fields, reader.meta.constant_fields)
            specs[name]["field_scales"] = [float(v) for v in normalizer.scale["fields"]]
        reader.close()
        for split in ("valid", "test"):
            if not has_split(folder, split):
                continue
            other = open_well_split(folder, split, n_steps_input=1, n_steps_output=1)
            other.close()
            for what, mine, theirs in (("fields", reader.meta.field_names, other.meta.field_names),
                                       ("constant fields", reader.meta.constant_field_names,
                                        other.meta.constant_field_names)):
                if list(mine) != list(theirs):
                    raise ValueError(f"dataset {name!r}: split '{split}' ({other.files[0]} and the rest) has the "
                                     f"{what} {list(theirs)}, split 'train' has {list(mine)}; every split of a "
                                     "dataset must hold the same fields")
        if reader.meta.dataset_name != name:
            # Batches carry the files' dataset_name, the model is keyed by the folder: they must agree.
            raise ValueError(f"dataset folder {os.path.join(data_dir, name)!r}: its files say dataset_name "
                             f"{reader.meta.dataset_name!r}; rename the folder to {reader.meta.dataset_name!r} (the "
                             "name the model will know it by) or set the files' dataset_name attribute to the folder's name")
    return specs


def first_trajectory_rows(dataset, n_trajectories: int, where: str = "the split") -> list[int]:
    """Rows of a dataset from `load_well_dataset` whose windows lie in its first `n_trajectories` trajectories
    (files in name order, then trajectories in file order)."""
    reader = split_reader(dataset)
    located = [reader.locate(int(w))[:2] for w in reader.window_indices()]
    order = {pair: rank for rank, pair in enumerate(sorted(set(located)))}
    if n_trajectories > len(order):
        raise ValueError(f"config key 'train_trajectories' is {n_trajectories} but {where} has only "
                         f"{len(order)} trajectories")
    return [row for row, pair in enumerate(located) if order[pair] < n_trajectories]


def load_shard(data_dir: str, name: str, split: str, n_steps_input: int, n_steps_output: int, use_normalization: bool,
               rank: int, world_size: int, trajectories: int | None = None):
    """This process's part of one split of one dataset (optionally of its first `trajectories` only), and the
    split's full size."""
    path = os.path.join(data_dir, name)
    full = load_well_dataset(path, split=split, n_steps_input=n_steps_input,
                             n_steps_output=n_steps_output, use_normalization=use_normalization)
    if trajectories is not None:
        full = full.select(first_trajectory_rows(full, trajectories, f"{path} ({split})"))
    shard = split_dataset_by_node(full, rank=rank, world_size=world_size) if world_size > 1 else full
    return shard, len(full)


class ShardBatches:
    """Shuffled batches of one dataset's shard of this process; `draws` is its whole state."""

    def __init__(self, name: str, dataset, batch_size: int, seed: int, rank: int):
        self.name, self.dataset, self.seed, self.rank = name, dataset, seed, rank
        self.batch_size = min(batch_size, len(dataset))
        self.draws = 0

    def next_batch(self) -> dict[str, Any]:
        per_epoch = len(self.dataset) // self.batch_size
        epoch, k = divmod(self.draws, per_epoch)
        order = np.random.default_rng([self.seed, zlib.crc32(self.name.encode()), self.rank, epoch]).permutation(len(self.dataset))
        self.draws += 1
        return self.dataset[order[k * self.batch_size : (k + 1) * self.batch_size].tolist()]


def windows_per_batch(name: str, batch_size: int, batch_sizes: dict[str, int] | None) -> int:
    """How many windows a batch of dataset `name` holds: its entry in `batch_sizes` (config key `batch_sizes`),
    else `batch_size`."""
    return (batch_sizes or {}).get(name, batch_size)


class MultiDatasetBatches:
    """The `ShardBatches` of every dataset; checkpointed with the run (state: batches drawn per dataset)."""

    def __init__(self, data_dir: str, names: list[str], split: str, batch_size: int, n_steps_input: int,
                 n_steps_output: int, use_normalization: bool, seed: int, rank: int, world_size: int,
                 trajectories: int | None = None, batch_sizes: dict[str, int] | None = None):
        """`batch_sizes`: windows per batch of the named datasets, over `batch_size` (names not in `names` are
        not drawn from here)."""
        self.streams: dict[str, ShardBatches] = {}
        self.full_sizes: dict[str, int] = {}
        self.grid_points: dict[str, int] = {}  # points per frame: what one window of each dataset costs a step
        for name in names:
            shard, self.full_sizes[name] = load_shard(data_dir, name, split, n_steps_input, n_steps_output,
                                                      use_normalization, rank, world_size, trajectories)
            self.streams[name] = ShardBatches(name, shard, windows_per_batch(name, batch_size, batch_sizes), seed, rank)
            self.grid_points[name] = int(np.prod(split_reader(shard).meta.resolution))

    def step_costs(self) -> dict[str, int]:
        """What one step on each dataset costs, in grid points: points per frame times windows per batch."""
        return {name: self.grid_points[name] * stream.batch_size for name, stream in self.streams.items()}

    def next_batch(self, name: str) -> dict[str, Any]:
        return self.streams[name].next_batch()

    def shard_sizes(self) -> dict[str, int]:
        return {name: len(s.dataset) for name, s in self.streams.items()}

    def state_dict(self) -> dict:
        return {name: s.draws for name, s in self.streams.items()}

    def load_state_dict(self, state: dict) -> None:
        for name, draws in state.items():
            if name in self.streams:  # a dataset dropped on resume (--allow_config_change) has no stream
                self.streams[name].draws = draws
