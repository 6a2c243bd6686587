"""The Well's HDF5 format: metadata objects read from one file, and the checks that the file follows the format.

Layout of a file (PolymathicAI/the_well, docs/data_format.md and scripts/check_thewell_formatting.py):
root attributes `dataset_name`, `grid_type`, `n_spatial_dims`, `n_trajectories`, `simulation_parameters`;
groups `dimensions`, `boundary_conditions`, `scalars`, `t0_fields`, `t1_fields`, `t2_fields`. A field's stored shape is
`[n_traj if sample_varying] + [T if time_varying] + [axis length for each varying axis] + [n_dims] * order`.
An axis along which a field does not vary is omitted (the format) or stored with length 1 (some writers); both are
broadcast back to the full grid when read.
"""

from __future__ import annotations

import itertools
import os
import stat
from dataclasses import dataclass, field
from typing import Any, Iterator

import h5py
import numpy as np
from tqdm.auto import tqdm

from modeling_pdefm.configuration_pdefm import environment_limit

BC_CODES = {"WALL": 0, "OPEN": 1, "PERIODIC": 2}
FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
# What a file's declared shapes may ask a reader to hold at once, before anything is read: one frame of every
# field, or the time grid. The Well's largest frames are a few hundred MB; a small file can declare 40000 x 40000
# frames or 10^10 steps of fill values and make every reader allocate tens of GiB. The variable raises the bound.
MAX_READ_BYTES_VARIABLE = "PDEFM_MAX_READ_BYTES"
DEFAULT_MAX_READ_BYTES = 4 * 2**30


def max_read_bytes() -> int:
    return environment_limit(MAX_READ_BYTES_VARIABLE, DEFAULT_MAX_READ_BYTES, "bytes")


def _check_declared_bytes(file: str, path: str, what: str, needed: int) -> None:
    if needed > max_read_bytes():
        raise WellFormatError(file, path, f"declares {what}, {needed / 2**30:.1f} GiB to read at once, more than the "
                                          f"limit of {max_read_bytes() / 2**30:.1f} GiB; set {MAX_READ_BYTES_VARIABLE} "
                                          "higher if the file is real")


# A field that declares more than this many bytes must store at least 1/STORED_SHARE of them: chunks never written
# read back as fill values, so a 5 KB file can declare 10^7 trajectories that every scan then walks through.
SPARSE_FROM_BYTES = 2**30
PROGRESS_FROM_TRAJECTORIES = 1000
STORED_SHARE = 10_000


def _check_stored_share(file: str, data) -> None:
    declared = int(np.prod(data.shape, dtype=np.float64)) * data.dtype.itemsize
    if declared <= SPARSE_FROM_BYTES:
        return
    stored = data.id.get_storage_size()
    if stored * STORED_SHARE < declared:
        raise WellFormatError(file, data.name, f"declares {declared / 2**30:.1f} GiB of values (shape "
                                               f"{list(data.shape)}) but the file stores {stored / 2**20:.2f} MiB of "
                                               "them; the rest would read as fill values: a damaged or unfinished "
                                               "file")


ROOT_ATTRS = ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories", "simulation_parameters")


class WellFormatError(ValueError):
    """A file that does not follow The Well's format. Names the file, the HDF5 path and what was expected."""

    def __init__(self, file: str, hdf5_path: str, message: str):
        self.file, self.hdf5_path, self.problem = file, hdf5_path, message
        super().__init__(f"{file}: {hdf5_path}: {message}")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _text_list(value: Any) -> list[str]:
    if isinstance(value, (str, bytes)):
        return [_text(value)]
    return [_text(v) for v in np.asarray(value).reshape(-1).tolist()]


@dataclass(frozen=True)
class FieldInfo:
    """One field of a file. `channels` are the flattened component names (`velocity_x`, `C_xy`, ...)."""

    name: str
    order: int
    channels: tuple[str, ...]
    sample_varying: bool
    time_varying: bool
    dim_varying: tuple[bool, ...]
    stored_spatial_shape: tuple[int, ...]  # as stored: omitted axes absent, length-1 axes kept


@dataclass(frozen=True)
class ScalarInfo:
    name: str
    sample_varying: bool
    time_varying: bool


@dataclass
class WellFileMetadata:
    """What one HDF5 file of The Well holds."""

    path: str
    dataset_name: str
    grid_type: str
    n_spatial_dims: int
    n_trajectories: int
    n_steps: int
    spatial_dims: tuple[str, ...]
    resolution: tuple[int, ...]
    fields: list[FieldInfo]
    scalars: list[ScalarInfo]
    boundary_conditions: np.ndarray  # [n_dims, 2] codes, low and high side of each axis
    time_sample_varying: bool
    simulation_parameters: tuple[str, ...] = ()
    sample_varying_coordinates: tuple[bool, ...] = field(default_factory=tuple)

    @property
    def variable_fields(self) -> list[FieldInfo]:
        return [f for f in self.fields if f.time_varying]

    @property
    def constant_fields(self) -> list[FieldInfo]:
        return [f for f in self.fields if not f.time_varying]

    @property
    def field_names(self) -> list[str]:
        return [c for f in self.variable_fields for c in f.channels]

    @property
    def constant_field_names(self) -> list[str]:
        return [c for f in self.constant_fields for c in f.channels]

    @property
    def scalar_names(self) -> list[str]:
        return [s.name for s in self.scalars if s.time_varying]

    @property
    def constant_scalar_names(self) -> list[str]:
        return [s.name for s in self.scalars if not s.time_varying]

    @property
    def boundary_types(self) -> list[str]:
        names = {code: name for name, code in BC_CODES.items()}
        return sorted({names[int(c)] for c in self.boundary_conditions.reshape(-1)})

    def signature(self) -> dict[str, Any]:
        """What every file of one dataset must share."""
        return {
            "dataset_name": self.dataset_name,
            "n_spatial_dims": self.n_spatial_dims,
            "resolution": self.resolution,
            "fields": self.field_names,
            "constant_fields": self.constant_field_names,
            "scalars": self.scalar_names,
            "constant_scalars": self.constant_scalar_names,
        }

    def windows_per_trajectory(self, n_steps_input: int, n_steps_output: int, dt_stride: int) -> int:
        """The Well's count: `T - (1 + dt * (n_in + n_out - 1)) + 1` start times per trajectory."""
        return max(0, self.n_steps - dt_stride * (n_steps_input + n_steps_output - 1))

    def model_spec(self) -> dict[str, Any]:
        """The entry `PDEFMConfig(datasets={name: ...})` expects for this dataset."""
        return model_spec(self.field_names, self.constant_field_names, self.n_spatial_dims, len(self.constant_scalar_names))


def model_spec(field_names: list[str], constant_field_names: list[str], n_spatial_dims: int, n_constant_scalars: int) -> dict[str, Any]:
    """A dataset's entry in `PDEFMConfig(datasets=...)`."""
    return {
        "n_fields": len(field_names),
        "n_constant_fields": len(constant_field_names),
        "n_spatial_dims": n_spatial_dims,
        "n_constant_scalars": n_constant_scalars,
        "field_names": list(field_names),
    }


def _bool_attr(node, key: str, file: str) -> bool:
    if key not in node.attrs:
        raise WellFormatError(file, node.name, f"missing attribute '{key}' (a boolean)")
    value = node.attrs[key]
    if not isinstance(value, (bool, np.bool_)):
        raise WellFormatError(file, node.name, f"attribute '{key}' must be a boolean, got {value!r}")
    return bool(value)


def _require(node, key: str, file: str, what: str):
    if key not in node:
        raise WellFormatError(file, f"{node.name.rstrip('/')}/{key}", f"missing {what}")
    return node[key]


def _require_attr(node, key: str, file: str, what: str):
    if key not in node.attrs:
        raise WellFormatError(file, node.name, f"missing attribute '{key}' ({what})")
    return node.attrs[key]


def _expected_shape(lead: tuple[int, ...], got: tuple[int, ...], file: str, path: str, flags: str) -> None:
    if tuple(got) != tuple(lead):
        raise WellFormatError(file, path, f"shape {tuple(got)} disagrees with its flags ({flags}); expected {tuple(lead)}")


def read_file_metadata(h5: Any, file: str) -> WellFileMetadata:
    """Read and check the metadata of an open `h5py.File`; raise `WellFormatError` at the first problem."""
    for key in ROOT_ATTRS:
        _require_attr(h5, key, file, "a root attribute of every file of The Well")
    n_dims = int(h5.attrs["n_spatial_dims"])
    n_traj = int(h5.attrs["n_trajectories"])
    if n_traj < 1:
        raise WellFormatError(file, "/", f"attribute 'n_trajectories' is {n_traj}; a file must hold at least one trajectory")
    sim_params = tuple(_text_list(h5.attrs["simulation_parameters"])) if len(np.atleast_1d(h5.attrs["simulation_parameters"])) else ()

    dims = _require(h5, "dimensions", file, "group 'dimensions'")
    spatial_dims = tuple(_text_list(_require_attr(dims, "spatial_dims", file, "list of axis names")))
    if len(spatial_dims) != n_dims:
        raise WellFormatError(file, dims.name, f"spatial_dims {list(spatial_dims)} has {len(spatial_dims)} axes; n_spatial_dims is {n_dims}")
    time = _require(dims, "time", file, "time coordinates")
    time_sample_varying = _bool_attr(time, "sample_varying", file)
    expected_time_ndim = 2 if time_sample_varying else 1
    if time.ndim != expected_time_ndim or (time_sample_varying and time.shape[0] != n_traj):
        raise WellFormatError(file, time.name, f"shape {time.shape} disagrees with sample_varying={time_sample_varying}; expected {'(n_trajectories, T)' if time_sample_varying else '(T,)'}")
    n_steps = int(time.shape[-1])
    _check_declared_bytes(file, time.name, f"a time grid of shape {list(time.shape)}", int(np.prod(time.shape, dtype=np.float64)) * 8)
    check_time_grid(np.asarray(time[()], dtype=np.float64), file, time.name)
    resolution, coords_sample_varying = [], []
    for axis in spatial_dims:
        coord = _require(dims, axis, file, f"coordinates of axis '{axis}'")
        sv = _bool_attr(coord, "sample_varying", file)
        if coord.ndim != (2 if sv else 1):
            raise WellFormatError(file, coord.name, f"shape {coord.shape} disagrees with sample_varying={sv}")
        resolution.append(int(coord.shape[-1]))
        coords_sample_varying.append(sv)
    resolution = tuple(resolution)
    if any(n < 1 for n in resolution):
        raise WellFormatError(file, dims.name, f"axes {list(spatial_dims)} have {list(resolution)} points; every "
                                               "spatial axis needs at least one")

    fields: list[FieldInfo] = []
    frame_bytes = 0  # one frame of every field, as a window reads it
    for order, group_name in enumerate(FIELD_GROUPS):
        group = _require(h5, group_name, file, f"group '{group_name}' (may be empty, but must exist)")
        names = _text_list(_require_attr(group, "field_names", file, "list of the group's fields"))
        components = ["".join(c) for c in itertools.product(spatial_dims, repeat=order)]
        for name in names:
            data = _require(group, name, file, f"field listed in {group_name}/@field_names")
            sv = _bool_attr(data, "sample_varying", file)
            tv = _bool_attr(data, "time_varying", file)
            dim_varying = tuple(bool(v) for v in np.atleast_1d(_require_attr(data, "dim_varying", file, "one boolean per axis")))
            if len(dim_varying) != n_dims:
                raise WellFormatError(file, data.name, f"dim_varying has {len(dim_varying)} entries; expected {n_dims}")
            lead = ((n_traj,) if sv else ()) + ((n_steps,) if tv else ())
            full = tuple(n for n, varying in zip(resolution, dim_varying) if varying)
            size_one = tuple(n if varying else 1 for n, varying in zip(resolution, dim_varying))
            tensor = (n_dims,) * order
            shape = tuple(data.shape)
            if shape not in (lead + full + tensor, lead + size_one + tensor):
                raise WellFormatError(
                    file, data.name,
                    f"shape {shape} disagrees with its flags (sample_varying={sv}, time_varying={tv}, "
                    f"dim_varying={list(dim_varying)}, rank-{order} tensor on grid {resolution}); expected {lead + full + tensor}",
                )
            stored_space = shape[len(lead) : len(shape) - order]
            if data.dtype.kind not in "fiu":
                kind = "complex" if data.dtype.kind == "c" else f"{data.dtype} (not numeric)"
                raise WellFormatError(file, data.name, f"values are {kind}; fields must be real numbers (store a "
                                                       "complex field's real and imaginary parts as two fields, as "
                                                       "The Well does)")
            frame_bytes += int(np.prod(stored_space + tensor, dtype=np.float64)) * data.dtype.itemsize
            _check_stored_share(file, data)
            channels = tuple(f"{name}_{c}" if c else name for c in components)
            fields.append(FieldInfo(name, order, channels, sv, tv, dim_varying, stored_space))

    _check_declared_bytes(file, "/", f"frames of {len(fields)} fields on a grid of {list(resolution)} points",
                          frame_bytes)
    scalars_group = _require(h5, "scalars", file, "group 'scalars' (may be empty, but must exist)")
    scalars: list[ScalarInfo] = []
    for name in _text_list(_require_attr(scalars_group, "field_names", file, "list of the scalars")):
        data = _require(scalars_group, name, file, "scalar listed in scalars/@field_names")
        sv = _bool_attr(data, "sample_varying", file)
        tv = _bool_attr(data, "time_varying", file)
        lead = ((n_traj,) if sv else ()) + ((n_steps,) if tv else ())
        shape = tuple(data.shape)
        if shape != lead and not (shape == lead + (1,) or (not lead and shape in ((), (1,)))):
            _expected_shape(lead, shape, file, data.name, f"sample_varying={sv}, time_varying={tv}")
        scalars.append(ScalarInfo(name, sv, tv))
    for name in sim_params:
        if name not in scalars_group:
            raise WellFormatError(file, f"/scalars/{name}", "simulation parameter listed in @simulation_parameters has no dataset under /scalars")

    bc_group = _require(h5, "boundary_conditions", file, "group 'boundary_conditions'")
    boundary = read_boundary_conditions(bc_group, spatial_dims, resolution, file)
    return WellFileMetadata(
        path=file,
        dataset_name=_text(h5.attrs["dataset_name"]),
        grid_type=_text(h5.attrs["grid_type"]),
        n_spatial_dims=n_dims,
        n_trajectories=n_traj,
        n_steps=n_steps,
        spatial_dims=spatial_dims,
        resolution=resolution,
        fields=fields,
        scalars=scalars,
        boundary_conditions=boundary,
        time_sample_varying=time_sample_varying,
        simulation_parameters=sim_params,
        sample_varying_coordinates=tuple(coords_sample_varying),
    )


def not_a_regular_file(path: str) -> str | None:
    """Why a local `path` must not be opened (a folder, FIFO, device or socket: opening one blocks or reads
    garbage), or None for a regular file or a link to one."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    return "is a folder" if stat.S_ISDIR(mode) else "is not a regular file (a FIFO, device or socket)"


def storage_outside_file(h5: Any) -> Iterator[tuple[str, str]]:
    """`(hdf5_path, why)` for every place where reading `h5` would read bytes from outside the file: external links,
    datasets whose data lies in other files (external storage) and virtual datasets (views of other files' data).
    The Well's files keep everything inside; one that does not could make a reader copy any file on the machine into
    a forecast. Links are listed without being followed, so a link cycle cannot loop."""
    problems: list[tuple[str, str]] = []

    def visit(name: str, link) -> None:
        path = "/" + name
        if isinstance(link, h5py.ExternalLink):
            problems.append((path, f"an external link to {link.path!r} in {link.filename!r}; files of The Well "
                                   "keep their data inside them, so it is not followed"))
            return
        if isinstance(link, h5py.SoftLink):
            return  # a path inside this file: its target is visited as itself
        node = h5.get(name)
        if isinstance(node, h5py.Dataset):
            if node.is_virtual:
                problems.append((path, "a virtual dataset (a view of data in other files); files of The Well keep "
                                       "their data inside them, so it is not read"))
            elif node.external:
                places = ", ".join(repr(entry[0]) for entry in node.external)
                problems.append((path, f"its data is stored in other files ({places}); files of The Well keep their "
                                       "data inside them, so it is not read"))

    h5.visititems_links(visit)
    return iter(problems)


def check_time_grid(time: np.ndarray, file: str, path: str) -> None:
    """Frame times `[T]` or `[n_traj, T]` must be finite and strictly increasing: the model's time step and the
    window time grids come from their differences."""
    if not np.isfinite(time).all():
        where = np.argwhere(~np.isfinite(time))[0].tolist()
        raise WellFormatError(file, path, f"non-finite time value at index {where}")
    steps = np.diff(time, axis=-1)
    if steps.size and not (steps > 0).all():
        where = np.argwhere(~(steps > 0))[0].tolist()
        before = tuple(where[:-1]) + (where[-1],)
        after = tuple(where[:-1]) + (where[-1] + 1,)
        raise WellFormatError(file, path, f"times must increase strictly; time[{', '.join(map(str, before))}] = "
                                          f"{float(time[before]):.6g} is followed by {float(time[after]):.6g}")


def format_warnings(h5: Any, file: str) -> Iterator[str]:
    """What follows the format but may not be what was meant, in a file that passed `iter_format_problems`: fields
    not stored as float32 (The Well's files are; integer data in particular is usually a mistake). Readers pass the
    stored dtype on, as The Well's loader does; the model casts floating inputs to its own dtype and refuses integer
    ones."""
    for group in FIELD_GROUPS:
        for name in _text_list(h5[group].attrs["field_names"]):
            data = h5[group][name]
            if data.dtype != np.float32:
                kind = "integer" if np.issubdtype(data.dtype, np.integer) else str(data.dtype)
                yield f"{file}: {data.name}: stored as {kind} ({data.dtype}), not float32"


def read_boundary_conditions(group, spatial_dims: tuple[str, ...], resolution: tuple[int, ...], file: str) -> np.ndarray:
    """`[n_dims, 2]` codes (WALL=0, OPEN=1, PERIODIC=2) as The Well's loader derives them: OPEN unless a condition
    covers the edge; WALL needs the whole edge slice of its mask True, the other types any True."""
    axis_index = {axis: i for i, axis in enumerate(spatial_dims)}
    codes = np.full((len(spatial_dims), 2), BC_CODES["OPEN"], dtype=np.float32)
    for name in group.keys():
        bc = group[name]
        bc_type = _text(_require_attr(bc, "bc_type", file, "PERIODIC, WALL or OPEN")).upper()
        if bc_type not in BC_CODES:
            raise WellFormatError(file, bc.name, f"bc_type {bc_type!r} is not one of {sorted(BC_CODES)}")
        associated = _text_list(_require_attr(bc, "associated_dims", file, "list of axis names"))
        for axis in associated:
            if axis not in axis_index:
                raise WellFormatError(file, bc.name, f"associated_dims names axis {axis!r}, not one of {list(spatial_dims)}")
        mask = np.asarray(_require(bc, "mask", file, "boolean mask over the associated axes")[()])
        expected = tuple(resolution[axis_index[a]] for a in associated)
        if mask.shape != expected:
            raise WellFormatError(file, f"{bc.name}/mask", f"shape {mask.shape}; expected {expected} (the associated axes)")
        aggregate = np.all if bc_type == "WALL" else np.any
        for position, axis in enumerate(associated):
            for side, index in ((0, 0), (1, -1)):
                edge = np.take(mask, index, axis=position)
                if aggregate(edge):
                    codes[axis_index[axis], side] = BC_CODES[bc_type]
    return codes


def iter_format_problems(h5: Any, file: str) -> Iterator[str]:
    """Every problem found in a file, as messages (for the `check` command). Metadata first, then data values."""
    try:
        meta = read_file_metadata(h5, file)
    except WellFormatError as error:
        yield str(error)
        return
    except Exception as error:  # noqa: BLE001 - a damaged file can fail in h5py in many ways
        yield f"{file}: could not read the metadata: {error}"
        return
    for info in meta.fields:
        group = FIELD_GROUPS[info.order]
        data = h5[group][info.name]
        # One trajectory at a time: memory stays bounded on large files.
        trajectories = range(meta.n_trajectories if info.sample_varying else 1)
        if len(trajectories) >= PROGRESS_FROM_TRAJECTORIES:  # a long scan shows that it moves
            trajectories = tqdm(trajectories, desc=f"{os.path.basename(file)} /{group}/{info.name}", unit="traj",
                                leave=False)
        for traj in trajectories:
            values = data[traj] if info.sample_varying else data[()]
            bad = ~np.isfinite(values)
            if bad.any():
                where = np.argwhere(bad)[0].tolist()
                yield (f"{file}: /{group}/{info.name}: {int(bad.sum())} non-finite values"
                       f"{f' in trajectory {traj}' if info.sample_varying else ''}, first at index {where}")
                break
