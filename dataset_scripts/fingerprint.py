"""A short fingerprint of a dataset's files, so that a resumed run notices that its data changed underneath it.

Per dataset: the names and sizes of its split files and a hash of each file's first and last 64 KiB (HDF5 keeps its
superblock and metadata at the start and appended data at the end), without reading whole files
(`dataset_fingerprint`); and, apart, the dataset's statistics file and the files' modification times
(`dataset_version`), which see an edit in the middle of a file or a recomputed `stats.yaml`.
"""

from __future__ import annotations

import hashlib

import fsspec

from pdefm.runtime.safe_yaml import MAX_YAML_BYTES

from .layout import STATS_FILE, split_dir
from .well_reader import list_split_files

SAMPLE_BYTES = 64 * 1024


def dataset_fingerprint(dataset_dir: str, splits: tuple[str, ...] = ("train", "valid")) -> str:
    """Hex digest (16 characters) of the files of `splits` under `dataset_dir` (a local path or fsspec URL)."""
    fs, root = fsspec.core.url_to_fs(dataset_dir)
    digest = hashlib.sha256()
    for split in splits:
        for path in list_split_files(split_dir(root, split), fs):
            size = int(fs.info(path)["size"])
            digest.update(f"{split}/{path.rsplit('/', 1)[-1]}:{size}\n".encode())
            with fs.open(path, "rb") as f:
                digest.update(f.read(SAMPLE_BYTES))
                if size > SAMPLE_BYTES:
                    f.seek(max(SAMPLE_BYTES, size - SAMPLE_BYTES))
                    digest.update(f.read(SAMPLE_BYTES))
    return digest.hexdigest()[:16]


def dataset_version(dataset_dir: str, splits: tuple[str, ...] = ("train", "valid")) -> str:
    """Hex digest (16 characters) of the dataset's `stats.yaml` (its bytes, if it has one) and of the modification
    times of the files of `splits`, where the file system records them."""
    fs, root = fsspec.core.url_to_fs(dataset_dir)
    digest = hashlib.sha256()
    stats = f"{root.rstrip('/')}/{STATS_FILE}"
    if fs.isfile(stats):
        with fs.open(stats, "rb") as f:
            digest.update(f.read(MAX_YAML_BYTES + 1))
    for split in splits:
        for path in list_split_files(split_dir(root, split), fs):
            info = fs.info(path)
            modified = info.get("mtime") or info.get("last_modified") or info.get("LastModified") or ""
            digest.update(f"{split}/{path.rsplit('/', 1)[-1]}:{modified}\n".encode())
    return digest.hexdigest()[:16]
