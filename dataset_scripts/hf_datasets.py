"""The Well as Hugging Face `datasets`: `load_well_dataset(...)`.

Map-style: a `datasets.Dataset` whose only column is the window index (a few bytes per window) with a transform that
reads the window from HDF5 on access, so nothing is materialised in memory or on disk; `len()`, random access,
`shuffle`, `select` and `split_dataset_by_node` work as on any HF dataset. Streaming: a `datasets.IterableDataset`
whose shards are the files, so `split_dataset_by_node` and DataLoader workers split the work by file.

Why not the packaged `hdf5` builder of `datasets` 5: it makes one row per entry along each HDF5 dataset's first
axis, converted to Arrow. The Well's samples are windows along the *time* axis of each trajectory, fields carry
flags that say which axes exist and must be broadcast, tensor fields are flattened into channels, and boundary
conditions and names live in attributes that the builder does not read; converting 15 TB to Arrow is also what
this loader exists to avoid.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any

import fsspec
import torch

from pdefm.runtime.remote import RemoteUnreachableError, is_unreachable, unreachable_message

from .layout import SPLITS, dataset_dir_of_split, split_dir, stats_path
from .normalization import WellNormalizer
from .registry import WELL_DATASETS
from .well_reader import NonFiniteWindowError, WellSplitReader, list_split_files

# A dataset name under `well_base_path`: a folder name, never a path ('.', '..', 'a/b').
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")

if TYPE_CHECKING:
    import datasets

logger = logging.getLogger(__name__)


def resolve_split_files(path_or_name: str, split: str | None, well_base_path: str | None = None,
                        storage_options: dict | None = None) -> tuple[list[str], Any, str | None]:
    """Find the HDF5 files of a split. Returns (files, filesystem, stats.yaml path or None).

    `path_or_name` is a dataset folder (`<dir>/data/<split>/*.hdf5`), a folder of HDF5 files, one HDF5 file, an
    fsspec URL of any of these (`hf://datasets/polymathic-ai/shear_flow`), or the name of a dataset of The Well
    with `well_base_path` (a folder or URL holding one folder per dataset).
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if well_base_path is not None:
        if path_or_name not in WELL_DATASETS and not NAME_PATTERN.fullmatch(str(path_or_name)):
            # '.', '..' or a path would read the base folder, its parent or elsewhere.
            raise ValueError(f"with well_base_path, give a dataset name (letters, digits, '_', '-'), not a path; got "
                             f"{path_or_name!r}")
        path_or_name = well_base_path.rstrip("/") + "/" + path_or_name
    elif path_or_name in WELL_DATASETS and not os.path.exists(path_or_name):
        raise ValueError(
            f"{path_or_name!r} is a dataset of The Well; say where it is with well_base_path= (a local folder with "
            f"one folder per dataset, or 'hf://datasets/polymathic-ai' to read from the Hub)"
        )
    if os.path.exists(path_or_name):
        # A local path is read as one, also when its name holds '::' or '://' (which fsspec reads as a URL chain).
        fs, root = fsspec.filesystem("file"), os.path.abspath(path_or_name)
    else:
        fs, root = fsspec.core.url_to_fs(path_or_name, **(storage_options or {}))
    root = root.rstrip("/")
    try:
        return _find_split_files(fs, root, path_or_name, split)
    except Exception as error:  # noqa: BLE001 - only connection failures are turned into a one-line error
        if is_unreachable(error):
            raise RemoteUnreachableError(unreachable_message(path_or_name, error)) from None
        raise


def _find_split_files(fs, root: str, path_or_name: str, split: str | None) -> tuple[list[str], Any, str | None]:
    if fs.isfile(root):
        files, dataset_dir = [root], None
    elif split is not None and fs.isdir(split_dir(root, split)):
        files, dataset_dir = list_split_files(split_dir(root, split), fs), root
    else:
        files = list_split_files(root, fs)
        dataset_dir = dataset_dir_of_split(root)
        if not files and split is not None:
            raise FileNotFoundError(f"{path_or_name}: no HDF5 files in {split_dir(root, split)}/ nor in {root}/")
    if not files:
        raise FileNotFoundError(f"{path_or_name}: no HDF5 files (*.hdf5 or *.h5) found")
    stats = stats_path(dataset_dir) if dataset_dir is not None else None
    return files, fs, stats


def open_well_split(path_or_name: str, split: str | None = "train", n_steps_input: int = 4, n_steps_output: int = 1,
                    dt_stride: int = 1, use_normalization: bool = False, normalization: str = "zscore",
                    well_base_path: str | None = None, on_nonfinite: str = "raise", min_std: float = 1e-4,
                    storage_options: dict | None = None, stats_path: str | None = None) -> WellSplitReader:
    """A `WellSplitReader` over a split (the torch-level reader `load_well_dataset` wraps)."""
    files, fs, default_stats = resolve_split_files(path_or_name, split, well_base_path, storage_options)
    reader = WellSplitReader(files, fs=fs, n_steps_input=n_steps_input, n_steps_output=n_steps_output,
                             dt_stride=dt_stride, on_nonfinite=on_nonfinite)
    if use_normalization:
        stats = stats_path or default_stats
        if stats is None:
            raise ValueError(f"{path_or_name}: use_normalization needs stats.yaml beside data/; pass stats_path=")
        reader.normalizer = WellNormalizer.from_file(stats, reader.meta.variable_fields, reader.meta.constant_fields,
                                                     normalization, min_std, fs=fs)
    return reader


def split_resolution(path_or_name: str, split: str = "train") -> tuple[int, ...]:
    """The spatial grid of a split's fields, e.g. `(32, 32)`, from its files' metadata (no field is read)."""
    reader = open_well_split(path_or_name, split, n_steps_input=1, n_steps_output=1)
    try:
        return tuple(reader.meta.resolution)
    finally:
        reader.close()


def collate_window_samples(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack samples of one dataset into a batch (tensors stacked, names kept as lists)."""
    batch: dict[str, Any] = {}
    for key in samples[0]:
        values = [s[key] for s in samples]
        batch[key] = torch.stack(values) if torch.is_tensor(values[0]) else values
    return batch


class _ReadWindows:
    """The transform of the map-style dataset: window indices in, windows out (a batch of them)."""

    def __init__(self, reader: WellSplitReader):
        self.reader = reader

    def __call__(self, batch: dict[str, list]) -> dict[str, Any]:
        if len(batch["window"]) == 1:  # `dataset[i]`: a view with a batch axis, no copy
            sample = self.reader.sample(int(batch["window"][0]))
            return {k: v.unsqueeze(0) if torch.is_tensor(v) else [v] for k, v in sample.items()}
        return collate_window_samples([self.reader.sample(int(i)) for i in batch["window"]])


def split_reader(dataset) -> WellSplitReader:
    """The reader behind a map-style dataset made by `load_well_dataset` (also after `select` or `shuffle`, which keep
    the transform): its `meta` (fields, grid, boundaries), per-file `metadata`, `window_indices()` and `locate()`,
    so that nobody has to open the split a second time to learn them."""
    transform = (getattr(dataset, "format", None) or {}).get("format_kwargs", {}).get("transform")
    if not isinstance(transform, _ReadWindows):
        raise TypeError(f"expected a map-style dataset from load_well_dataset, got {type(dataset).__name__} without "
                        "its window reader (streaming datasets carry none)")
    return transform.reader


def _generate_windows(shards: list[dict[str, Any]]):
    """Generator behind the streaming dataset: each shard is one file, read window by window in order."""
    for shard in shards:
        reader = WellSplitReader([shard["file"]], fs=shard["fs"], n_steps_input=shard["n_steps_input"],
                                 n_steps_output=shard["n_steps_output"], dt_stride=shard["dt_stride"],
                                 normalizer=shard["normalizer"])
        skipped = 0
        try:
            for index in range(len(reader)):
                try:
                    yield reader[index]
                except NonFiniteWindowError:
                    if shard["on_nonfinite"] != "skip":
                        raise
                    skipped += 1
        finally:
            reader.close()
        if skipped:
            logger.warning("skipped %d windows holding NaN/Inf in %s", skipped, shard["file"])


def load_well_dataset(
    path_or_name: str,
    split: str = "train",
    n_steps_input: int = 4,
    n_steps_output: int = 1,
    dt_stride: int = 1,
    use_normalization: bool = False,
    normalization: str = "zscore",
    streaming: bool = False,
    well_base_path: str | None = None,
    on_nonfinite: str = "raise",
    min_std: float = 1e-4,
    storage_options: dict | None = None,
    stats_path: str | None = None,
) -> datasets.Dataset | datasets.IterableDataset:
    """The Well (or any data in its format) as a Hugging Face dataset of windows.

    Each sample is a dict in The Well's layout (channels last, time first): `input_fields [T_in, *space, C]`,
    `output_fields [T_out, *space, C]`, `constant_fields [*space, C_const]`, `input_scalars`/`output_scalars`
    (time-varying scalars), `constant_scalars [S]`, `boundary_conditions [n_dims, 2]` (WALL=0, OPEN=1,
    PERIODIC=2), `space_grid [*space, n_dims]`, `input_time_grid [T_in]`, `output_time_grid [T_out]` (relative to the
    window start), plus `dataset_name` and `field_names`. Empty entries are left out, as in The Well.

    Args:
        path_or_name: a dataset folder, split folder, HDF5 file or fsspec URL, or a dataset name with `well_base_path`.
        split: `train`, `valid` or `test`.
        n_steps_input, n_steps_output, dt_stride: window shape.
        use_normalization, normalization, min_std: normalise fields with `stats.yaml` (`zscore` or `rms`);
            `pdefm.data.WellNormalizer.denormalize` maps predictions back.
        streaming: return a `datasets.IterableDataset` sharded by file instead of a map-style dataset.
        on_nonfinite: `raise` (default: an error naming file, trajectory, time and channel) or `skip`.
        storage_options: passed to fsspec for remote paths.
    """
    import datasets  # here, not at the top: the readers and the command line start a second faster without it

    reader = open_well_split(path_or_name, split, n_steps_input, n_steps_output, dt_stride, use_normalization,
                             normalization, well_base_path, on_nonfinite if not streaming else "raise", min_std,
                             storage_options, stats_path)
    if streaming:
        shards = [
            {"file": f, "fs": reader.fs, "n_steps_input": n_steps_input, "n_steps_output": n_steps_output,
             "dt_stride": dt_stride, "normalizer": reader.normalizer, "on_nonfinite": on_nonfinite}
            for f in reader.files
        ]
        reader.close()
        return datasets.IterableDataset.from_generator(_generate_windows, gen_kwargs={"shards": shards})
    index = datasets.Dataset.from_dict({"window": reader.window_indices()})
    index.set_transform(_ReadWindows(reader))
    return index
