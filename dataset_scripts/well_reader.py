"""Lazy reading of The Well's windows from HDF5 files (local or any fsspec URL), in The Well's own order.

A window is `n_steps_input + n_steps_output` frames `dt_stride` apart from one trajectory. Window `i` runs over files
(sorted by name), then trajectories, then start times, as in The Well's `WellDataset`. Files are opened read-only,
once per process, and only the requested slices are read.
"""

from __future__ import annotations

import logging
import math
import os
from bisect import bisect_right
from typing import Any

import fsspec
import h5py
import numpy as np
import torch

from .normalization import WellNormalizer
from .well_format import (
    FIELD_GROUPS,
    FieldInfo,
    WellFileMetadata,
    WellFormatError,
    not_a_regular_file,
    read_file_metadata,
    storage_outside_file,
)
from .window import WellWindow

logger = logging.getLogger(__name__)

NONFINITE_POLICIES = ("raise", "skip")
# Window tensors recycled once released: only large ones (page faults matter from a few MB), a few per shape.
OUTPUT_POOL_MIN_ELEMENTS = 1 << 20
OUTPUT_POOL_SIZE = 4


class NonFiniteWindowError(ValueError):
    """A window holds NaN or Inf; the message gives the file, trajectory, time index and channel."""


def open_hdf5(path: str, fs=None) -> h5py.File:
    """Open a file of The Well read-only; a damaged or foreign file raises `WellFormatError` naming it, and so does a
    file that would make a reader read from other files (external links, external storage, virtual datasets)."""
    try:
        if fs is None or _is_local(fs):
            if os.path.islink(path) and not os.path.exists(path):
                raise WellFormatError(path, "/", f"a symbolic link to {os.readlink(path)!r}, which does not exist; "
                                                 "remove the link or restore its file")
            problem = not_a_regular_file(path)  # a FIFO would block the open forever
            if problem:
                raise WellFormatError(path, "/", f"{problem}, not an HDF5 file; remove it or rename it so that it "
                                                 "does not end in .hdf5/.h5")
            h5 = h5py.File(path, "r")
        else:
            h5 = h5py.File(fs.open(path, "rb", block_size=8 * 1024 * 1024), "r")
    except FileNotFoundError:
        raise
    except OSError as error:
        raise WellFormatError(path, "/", f"not a readable HDF5 file (truncated, damaged or another format): {error}") from None
    try:
        outside = next(storage_outside_file(h5), None)
    except Exception as error:  # noqa: BLE001 - a damaged link table can fail in h5py in many ways
        h5.close()
        raise WellFormatError(path, "/", f"not a readable HDF5 file (its links cannot be listed: {error})") from None
    if outside is not None:
        h5.close()
        raise WellFormatError(path, *outside)
    return h5


def _is_local(fs) -> bool:
    return "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))


def _expand_space(values: np.ndarray, info: FieldInfo, lead: int, resolution: tuple[int, ...]) -> np.ndarray:
    """Broadcast a field's stored spatial axes (omitted or length-1 where not varying) to the full grid and flatten
    its tensor components into channels: `[*lead, *stored, *tensor]` -> `[*lead, *resolution, channels]`."""
    order = info.order
    if info.stored_spatial_shape != tuple(n if v else 1 for n, v in zip(resolution, info.dim_varying)):
        # Omitted axes: put length-1 axes back where they belong.
        shape = list(values.shape[:lead])
        stored = iter(values.shape[lead : values.ndim - order])
        for varying in info.dim_varying:
            shape.append(next(stored) if varying else 1)
        values = values.reshape(*shape, *values.shape[values.ndim - order :])
    full = values.shape[:lead] + tuple(resolution) + values.shape[values.ndim - order :]
    if values.shape != full:
        values = np.broadcast_to(values, full)
    return values.reshape(*full[: lead + len(resolution)], -1)


class WellSplitReader:
    """The files of one split of one dataset, indexed into windows and read lazily.

    Args:
        files: HDF5 paths (local paths or paths on `fs`).
        fs: an fsspec filesystem for remote files (None: local).
        n_steps_input, n_steps_output, dt_stride: window shape, as in The Well.
        normalizer: a `WellNormalizer` to apply to fields, or None.
        on_nonfinite: `"raise"` (default) or `"skip"`: windows holding NaN/Inf are left out of the index (found in
            one bounded-memory pass over the data at construction) and counted in `n_skipped_windows`.
    """

    def __init__(self, files: list[str], fs=None, n_steps_input: int = 4, n_steps_output: int = 1, dt_stride: int = 1,
                 normalizer: WellNormalizer | None = None, on_nonfinite: str = "raise"):
        if not files:
            raise FileNotFoundError("no HDF5 files (*.hdf5 or *.h5) given")
        for key, value in (("n_steps_input", n_steps_input), ("n_steps_output", n_steps_output), ("dt_stride", dt_stride)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be a positive int, got {value!r}")
        if on_nonfinite not in NONFINITE_POLICIES:
            raise ValueError(f"on_nonfinite must be one of {NONFINITE_POLICIES}, got {on_nonfinite!r}")
        self.files = sorted(files)
        self.fs = fs
        self.n_steps_input, self.n_steps_output, self.dt_stride = n_steps_input, n_steps_output, dt_stride
        self.normalizer = normalizer
        self.on_nonfinite = on_nonfinite
        self._handles: dict[int, h5py.File] = {}
        self._pid = os.getpid()
        self._cache: dict[tuple[int, str], Any] = {}
        self._buffers: dict[tuple, np.ndarray] = {}
        self._output_pool: dict[tuple, list] = {}
        self.metadata: list[WellFileMetadata] = []
        for index, path in enumerate(self.files):
            meta = read_file_metadata(self._handle(index), path)
            if self.metadata and meta.signature() != self.metadata[0].signature():
                first = self.metadata[0].signature()
                diff = [k for k in first if first[k] != meta.signature()[k]]
                raise WellFormatError(
                    path, "/",
                    f"disagrees with {self.metadata[0].path} on {', '.join(diff)}: "
                    + "; ".join(f"{k} {meta.signature()[k]!r} vs {first[k]!r}" for k in diff),
                )
            windows = meta.windows_per_trajectory(n_steps_input, n_steps_output, dt_stride)
            if windows < 1:
                raise ValueError(
                    f"{path}: trajectories have {meta.n_steps} steps, fewer than a window of {n_steps_input} input and "
                    f"{n_steps_output} output steps {dt_stride} apart needs ({dt_stride * (n_steps_input + n_steps_output - 1) + 1})"
                )
            self.metadata.append(meta)
        self.windows_per_trajectory = [m.windows_per_trajectory(n_steps_input, n_steps_output, dt_stride) for m in self.metadata]
        self.file_offsets = [0]
        for meta, windows in zip(self.metadata, self.windows_per_trajectory):
            self.file_offsets.append(self.file_offsets[-1] + meta.n_trajectories * windows)
        self.valid_windows: np.ndarray | None = None
        self.n_skipped_windows = 0
        if on_nonfinite == "skip":
            self._index_finite_windows()

    # ------------------------------------------------------------------------------------------ files
    def _handle(self, file_index: int) -> h5py.File:
        if os.getpid() != self._pid:  # forked into a DataLoader worker: HDF5 handles do not survive a fork
            self._handles, self._pid = {}, os.getpid()
            self._cache = self._without_open_objects(self._cache)
        if file_index not in self._handles:
            self._handles[file_index] = open_hdf5(self.files[file_index], self.fs)
        return self._handles[file_index]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}
        self._cache = self._without_open_objects(self._cache)

    @staticmethod
    def _without_open_objects(cache: dict) -> dict:
        return {k: v for k, v in cache.items() if not k[1].startswith("dataset:")}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_handles"] = {}
        state["_cache"] = self._without_open_objects(self._cache)
        state["_buffers"] = {}
        state["_output_pool"] = {}
        return state

    # ------------------------------------------------------------------------------------------ index
    @property
    def meta(self) -> WellFileMetadata:
        return self.metadata[0]

    @property
    def n_windows(self) -> int:
        return self.file_offsets[-1]

    def __len__(self) -> int:
        return self.n_windows if self.valid_windows is None else len(self.valid_windows)

    def window_indices(self) -> np.ndarray:
        """Global indices (The Well's numbering) of the windows this reader serves."""
        return np.arange(self.n_windows) if self.valid_windows is None else self.valid_windows

    def locate(self, index: int) -> tuple[int, int, int]:
        """Global window index -> (file index, trajectory, start time index)."""
        if not 0 <= index < self.n_windows:
            raise IndexError(f"window {index} out of range: the split has {self.n_windows} windows")
        file_index = bisect_right(self.file_offsets, index) - 1
        local = index - self.file_offsets[file_index]
        windows = self.windows_per_trajectory[file_index]
        return file_index, local // windows, local % windows

    # ------------------------------------------------------------------------------------------ reading
    def _dataset(self, file_index: int, path: str):
        """An h5py dataset object, looked up once per file (group lookups cost more than small reads)."""
        key = (file_index, "dataset:" + path)
        if key not in self._cache:
            self._cache[key] = self._handle(file_index)[path]
        return self._cache[key]

    def _small(self, file_index: int, path: str) -> np.ndarray:
        """A whole small dataset (scalars, time coordinates), read once per file."""
        key = (file_index, "array:" + path)
        if key not in self._cache:
            self._cache[key] = np.asarray(self._dataset(file_index, path)[()])
        return self._cache[key]

    def _field(self, file_index: int, info: FieldInfo, traj: int, time: slice | None) -> np.ndarray:
        data = self._dataset(file_index, f"{FIELD_GROUPS[info.order]}/{info.name}")
        index: tuple = ((traj,) if info.sample_varying else ()) + ((time,) if time is not None else ())
        if not info.sample_varying and time is None:
            key = (file_index, f"field/{info.name}")
            if key not in self._cache:
                self._cache[key] = _expand_space(np.asarray(data[()]), info, 0, self.meta.resolution)
            return self._cache[key]
        return _expand_space(np.asarray(data[index]), info, 1 if time is not None else 0, self.meta.resolution)

    def trajectory_fields(self, file_index: int, traj: int) -> np.ndarray:
        """Every frame of one trajectory's time-varying fields, unnormalised: `[T, *space, channels]`."""
        return np.concatenate([self._field(file_index, f, traj, slice(None)) for f in self.meta.variable_fields], -1)

    def iter_trajectories(self):
        """(file index, trajectory) of every trajectory, in reading order."""
        for file_index, file_meta in enumerate(self.metadata):
            for traj in range(file_meta.n_trajectories):
                yield file_index, traj

    def _read_fields(self, file_index: int, infos: list[FieldInfo], traj: int,
                     time: slice | None) -> tuple[torch.Tensor, bool]:
        """`[*lead, *space, channels]` of the given fields, and whether all their values are finite (summed per field
        right after its read, while it is still in cache). Each field is read whole, then copied into its slice of the
        output. (Slice copies beat `torch.cat` on this hot path, about 1.6x on 3D windows where a scalar field sits
        beside a vector one; reading with h5py straight into the interleaved slices is slower still: HDF5 then
        scatters element by element.)"""
        parts, finite = [], True
        for info in infos:
            parts.append(torch.from_numpy(self._read_reusing_buffer(file_index, info, traj, time)))
            # One sum is NaN/Inf when some value is (or, rarely, when float32 overflows): then `_check_finite` looks.
            finite = finite and bool(torch.isfinite(parts[-1].sum()))
        if len(parts) == 1:
            return parts[0].clone(), finite
        dtype = parts[0].dtype
        for part in parts[1:]:
            dtype = torch.promote_types(dtype, part.dtype)
        out = self._output_tensor((*parts[0].shape[:-1], sum(p.shape[-1] for p in parts)), dtype)
        channel = 0
        for part in parts:
            out[..., channel : channel + part.shape[-1]] = part
            channel += part.shape[-1]
        return out, finite

    def _output_tensor(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """An uninitialised tensor for a window's fields: one handed out before whose memory nobody references any
        more (every view of it released), else a new one. Fresh multi-MB tensors are fresh pages from the OS, faulted
        in on first write; recycling them spares that on 3D windows. Needs torch's storage use count; without it,
        always a new tensor."""
        use_count = getattr(torch._C, "_storage_Use_Count", None)
        if use_count is None or math.prod(shape) < OUTPUT_POOL_MIN_ELEMENTS:
            return torch.empty(shape, dtype=dtype)
        pool = self._output_pool.setdefault((shape, dtype), [])
        for tensor, alone in pool:
            if use_count(tensor.untyped_storage()._cdata) == alone:
                return tensor
        tensor = torch.empty(shape, dtype=dtype)
        if len(pool) < OUTPUT_POOL_SIZE:
            pool.append((tensor, use_count(tensor.untyped_storage()._cdata)))
        return tensor

    def _read_reusing_buffer(self, file_index: int, info: FieldInfo, traj: int, time: slice | None) -> np.ndarray:
        """A field's window read into a buffer kept between calls (valid until the next read of this field).

        A fresh multi-MB array per read is fresh, page-faulted memory from the OS each time; reusing one buffer per
        field made 3D windows about 1.5x faster to read."""
        data = self._dataset(file_index, f"{FIELD_GROUPS[info.order]}/{info.name}")
        if time is None or not all(info.dim_varying) or data.dtype != np.float32:
            return np.ascontiguousarray(self._field(file_index, info, traj, time))
        n_steps = len(range(*time.indices(self.metadata[file_index].n_steps)))
        shape = (n_steps, *self.meta.resolution, *((self.meta.n_spatial_dims,) * info.order))
        key = (info.name, shape)
        buffer = self._buffers.get(key)
        if buffer is None:
            buffer = self._buffers[key] = np.empty(shape, dtype=np.float32)
        data.read_direct(buffer, np.s_[traj, time] if info.sample_varying else np.s_[time])
        return buffer.reshape(*shape[: 1 + len(self.meta.resolution)], -1)

    def _space_grid(self, file_index: int, traj: int) -> np.ndarray:
        meta = self.metadata[file_index]
        key = (file_index, "space_grid")
        if key in self._cache:
            return self._cache[key]
        dims = self._handle(file_index)["dimensions"]
        coords = [np.asarray(dims[a][traj] if sv else dims[a][()]) for a, sv in zip(meta.spatial_dims, meta.sample_varying_coordinates)]
        grid = np.stack(np.meshgrid(*coords, indexing="ij"), axis=-1).astype(np.float32)
        if not any(meta.sample_varying_coordinates):
            self._cache[key] = grid
        return grid

    def read_window(self, index: int) -> dict[str, torch.Tensor]:
        """One window as tensors with The Well's keys and layout (channels last, time first): the tensors of a
        `window.WellWindow`."""
        file_index, traj, start = self.locate(index)
        meta = self.metadata[file_index]
        n_total = self.n_steps_input + self.n_steps_output
        time = slice(start, start + n_total * self.dt_stride, self.dt_stride)
        sample: dict[str, torch.Tensor] = {}

        fields, finite = self._read_fields(file_index, meta.variable_fields, traj, time)
        if not finite:
            self._check_finite(fields, file_index, traj, start, meta.field_names)
        if self.normalizer is not None:
            fields = self.normalizer.normalize(fields, "fields")
        sample["input_fields"] = fields[: self.n_steps_input]
        sample["output_fields"] = fields[self.n_steps_input :]
        if meta.constant_fields:
            constants, finite = self._read_fields(file_index, meta.constant_fields, traj, None)
            if not finite:
                self._check_finite(constants[None], file_index, traj, None, meta.constant_field_names)
            if self.normalizer is not None:
                constants = self.normalizer.normalize(constants, "constant_fields")
            sample["constant_fields"] = constants

        variable = [self._small(file_index, f"scalars/{s.name}")[(traj, time) if s.sample_varying else time].reshape(n_total)
                    for s in meta.scalars if s.time_varying]
        if variable:
            stacked = torch.from_numpy(np.stack(variable, axis=-1).astype(np.float32))
            sample["input_scalars"] = stacked[: self.n_steps_input]
            sample["output_scalars"] = stacked[self.n_steps_input :]
        constant = [np.asarray(self._small(file_index, f"scalars/{s.name}")[traj] if s.sample_varying
                               else self._small(file_index, f"scalars/{s.name}")).reshape(())
                    for s in meta.scalars if not s.time_varying]
        if constant:
            sample["constant_scalars"] = torch.from_numpy(np.stack(constant).astype(np.float32))

        sample["boundary_conditions"] = torch.from_numpy(meta.boundary_conditions.copy())
        sample["space_grid"] = torch.from_numpy(self._space_grid(file_index, traj))
        times = self._small(file_index, "dimensions/time")
        window_time = times[traj, time] if meta.time_sample_varying else times[time]
        window_time = torch.from_numpy(window_time - window_time.min())
        sample["input_time_grid"] = window_time[: self.n_steps_input]
        sample["output_time_grid"] = window_time[self.n_steps_input :]
        return sample

    def _check_finite(self, values: torch.Tensor, file_index: int, traj: int, start: int | None, names: list[str]) -> None:
        """Raise naming the first non-finite value, if any (called when a field's sum was not finite)."""
        if bool(torch.isfinite(values).all()):
            return
        bad = ~torch.isfinite(values)
        where = bad.nonzero()[0].tolist()
        channel = names[where[-1]]
        when = "in a constant field" if start is None else f"time index {start + int(where[0]) * self.dt_stride}"
        raise NonFiniteWindowError(
            f"{self.files[file_index]}: trajectory {traj}, {when}, channel '{channel}': "
            f"{int(bad.sum())} non-finite values in the window (pass on_nonfinite='skip' to leave such windows out)"
        )

    def sample(self, global_index: int) -> WellWindow:
        """Window `global_index` (The Well's numbering) as a `WellWindow`: torch tensors, plus the dataset and field
        names."""
        sample: WellWindow = self.read_window(global_index)
        sample["dataset_name"] = self.meta.dataset_name
        sample["field_names"] = self.meta.field_names
        return sample

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Window `index` of this reader (counting only the windows it serves, after any skipping)."""
        return self.sample(int(index if self.valid_windows is None else self.valid_windows[index]))

    # ------------------------------------------------------------------------------------------ NaN scan
    def _index_finite_windows(self) -> None:
        """Drop windows with NaN/Inf: one pass, one trajectory of one field at a time."""
        valid = []
        span = self.dt_stride * (self.n_steps_input + self.n_steps_output - 1)
        for file_index, meta in enumerate(self.metadata):
            for traj in range(meta.n_trajectories):
                bad_steps = np.zeros(meta.n_steps, dtype=bool)
                for info in meta.fields:
                    values = self._field(file_index, info, traj, slice(None) if info.time_varying else None)
                    if info.time_varying:
                        bad_steps |= ~np.isfinite(values.reshape(meta.n_steps, -1)).all(axis=1)
                    elif not np.isfinite(values).all():
                        bad_steps[:] = True
                base = self.file_offsets[file_index] + traj * self.windows_per_trajectory[file_index]
                for start in range(self.windows_per_trajectory[file_index]):
                    if not bad_steps[start : start + span + 1 : self.dt_stride].any():
                        valid.append(base + start)
        self.valid_windows = np.asarray(valid, dtype=np.int64)
        self.n_skipped_windows = self.n_windows - len(valid)
        if self.n_skipped_windows:
            logger.warning("skipped %d of %d windows holding NaN/Inf in %s", self.n_skipped_windows, self.n_windows,
                           os.path.dirname(self.files[0]))


def list_split_files(split_dir: str, fs=None) -> list[str]:
    """The `*.hdf5` and `*.h5` files of a folder, sorted by name (`open_hdf5` refuses those that are not regular
    files)."""
    fs = fs or fsspec.filesystem("file")
    # Listed, not globbed: a folder name holding `[`, `*` or `?` is a name, never a pattern.
    try:
        entries = fs.ls(split_dir.rstrip("/"), detail=False)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(str(e) for e in entries if str(e).endswith((".hdf5", ".h5")))
