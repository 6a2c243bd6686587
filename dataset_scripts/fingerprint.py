"""A short fingerprint of a dataset's files, so that a resumed run notices that its data changed underneath it.

Per dataset: the names and sizes of its split files and a hash of each file's first and last 64 KiB (HDF5 keeps its
superblock and metadata at the start and appended data at the end), without reading whole files.
"""

from __future__ import annotations

import hashlib

import fsspec

from .layout import split_dir
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
