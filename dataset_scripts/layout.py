"""Where things lie in a dataset folder of The Well's format, written down once:

    <dataset>/data/<split>/*.hdf5      the trajectories, split into train / valid / test
    <dataset>/stats.yaml               normalisation statistics of the train split

Paths are joined with "/", which local paths and fsspec URLs both take.
"""

from __future__ import annotations

import os

SPLITS = ("train", "valid", "test")
DATA_FOLDER = "data"
STATS_FILE = "stats.yaml"


def split_dir(dataset_dir: str, split: str) -> str:
    """`<dataset_dir>/data/<split>`."""
    return f"{dataset_dir.rstrip('/')}/{DATA_FOLDER}/{split}"


def stats_path(dataset_dir: str) -> str:
    """`<dataset_dir>/stats.yaml`."""
    return f"{dataset_dir.rstrip('/')}/{STATS_FILE}"


def dataset_dir_of_split(split_folder: str) -> str | None:
    """The dataset folder of a `<dataset>/data/<split>` folder, or None when the path does not end that way."""
    parts = split_folder.rstrip("/").rsplit("/", 2)
    return parts[0] if len(parts) == 3 and parts[1] == DATA_FOLDER else None


def has_split(dataset_dir: str, split: str) -> bool:
    """Whether a local dataset folder holds the split's folder."""
    return os.path.isdir(split_dir(dataset_dir, split))


def dataset_folders(data_dir: str, split: str = "train") -> list[str]:
    """Names of the local folders under `data_dir` that hold `split` (none if `data_dir` does not exist)."""
    if not os.path.isdir(data_dir):
        return []
    return sorted(d for d in os.listdir(data_dir) if has_split(os.path.join(data_dir, d), split))
