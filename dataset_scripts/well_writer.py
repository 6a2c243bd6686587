"""Writing files in The Well's HDF5 format (used by the Mini-Well generators and by tests that make their own data).

A file is written under a temporary name and renamed when complete, so an interrupted write never leaves a file
that looks finished.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

import h5py
import numpy as np

from .well_format import BC_CODES, FIELD_GROUPS


@dataclass
class WellField:
    """A field to write. `data` has shape `[n_traj if sample_varying] + [T if time_varying] + [each varying axis]
    + [n_dims] * order`; `dim_varying` defaults to all axes varying."""

    name: str
    data: np.ndarray
    order: int = 0
    time_varying: bool = True
    sample_varying: bool = True
    dim_varying: Sequence[bool] | None = None
    symmetric: bool | None = None


@dataclass
class WellScalar:
    name: str
    value: np.ndarray | float
    sample_varying: bool = False
    time_varying: bool = False


@dataclass
class WellBoundary:
    """One boundary condition: `mask` over the `associated_dims` axes, True where the condition holds."""

    name: str
    bc_type: str
    associated_dims: Sequence[str]
    mask: np.ndarray


def axis_boundaries(spatial_dims: Sequence[str], resolution: Sequence[int], types: dict[str, str | tuple[str, str]]) -> list[WellBoundary]:
    """Boundary conditions of an axis-aligned box: `types[axis]` is one type for both sides or `(low, high)`."""
    out: list[WellBoundary] = []
    for axis, n in zip(spatial_dims, resolution):
        low, high = (types[axis], types[axis]) if isinstance(types[axis], str) else types[axis]
        for bc_type in dict.fromkeys((low.upper(), high.upper())):
            if bc_type not in BC_CODES:
                raise ValueError(f"boundary type {bc_type!r} for axis {axis!r} is not one of {sorted(BC_CODES)}")
            mask = np.zeros(n, dtype=bool)
            mask[0] = low.upper() == bc_type
            mask[-1] = high.upper() == bc_type
            out.append(WellBoundary(f"{axis}_{bc_type.lower()}", bc_type, [axis], mask))
    return out


def _string_list(values: Sequence[str]) -> np.ndarray:
    return np.array(list(values), dtype=h5py.string_dtype())


def write_well_file(
    path: str | os.PathLike,
    *,
    dataset_name: str,
    spatial_dims: Sequence[str],
    coordinates: dict[str, np.ndarray],
    time: np.ndarray,
    fields: Sequence[WellField],
    scalars: Sequence[WellScalar] = (),
    boundaries: Sequence[WellBoundary] = (),
    n_trajectories: int,
    grid_type: str = "cartesian",
    simulation_parameters: Sequence[str] = (),
    time_sample_varying: bool = False,
) -> None:
    """Write one file atomically (temporary name, then rename)."""
    path = os.fspath(path)
    tmp = f"{path}.partial-{os.getpid()}"
    n_dims = len(spatial_dims)
    scalar_values = {s.name: s for s in scalars}
    try:
        with h5py.File(tmp, "w") as f:
            f.attrs["dataset_name"] = dataset_name
            f.attrs["grid_type"] = grid_type
            f.attrs["n_spatial_dims"] = np.int64(n_dims)
            f.attrs["n_trajectories"] = np.int64(n_trajectories)
            f.attrs["simulation_parameters"] = _string_list(simulation_parameters)
            for name in simulation_parameters:
                value = np.asarray(scalar_values[name].value)
                f.attrs[name] = value if value.ndim else value.item()

            dims = f.create_group("dimensions")
            dims.attrs["spatial_dims"] = _string_list(spatial_dims)
            t = dims.create_dataset("time", data=np.asarray(time, dtype=np.float32))
            t.attrs["sample_varying"] = time_sample_varying
            t.attrs["time_varying"] = True
            for axis in spatial_dims:
                c = dims.create_dataset(axis, data=np.asarray(coordinates[axis], dtype=np.float32))
                c.attrs["sample_varying"] = False
                c.attrs["time_varying"] = False

            bcs = f.create_group("boundary_conditions")
            for bc in boundaries:
                g = bcs.create_group(bc.name)
                g.attrs["bc_type"] = bc.bc_type.upper()
                g.attrs["associated_dims"] = _string_list(bc.associated_dims)
                g.attrs["associated_fields"] = _string_list([])
                g.attrs["sample_varying"] = False
                g.attrs["time_varying"] = False
                g.create_dataset("mask", data=np.asarray(bc.mask, dtype=bool))
                g.create_dataset("values", data=np.zeros(int(np.asarray(bc.mask).sum()), dtype=np.float32))

            sg = f.create_group("scalars")
            sg.attrs["field_names"] = _string_list([s.name for s in scalars])
            for s in scalars:
                d = sg.create_dataset(s.name, data=np.asarray(s.value, dtype=np.float32))
                d.attrs["sample_varying"] = s.sample_varying
                d.attrs["time_varying"] = s.time_varying

            for order, group_name in enumerate(FIELD_GROUPS):
                group = f.create_group(group_name)
                mine = [fld for fld in fields if fld.order == order]
                group.attrs["field_names"] = _string_list([fld.name for fld in mine])
                for fld in mine:
                    d = group.create_dataset(fld.name, data=np.asarray(fld.data, dtype=np.float32))
                    d.attrs["sample_varying"] = fld.sample_varying
                    d.attrs["time_varying"] = fld.time_varying
                    d.attrs["dim_varying"] = np.array(fld.dim_varying if fld.dim_varying is not None else [True] * n_dims)
                    if order == 2:
                        d.attrs["symmetric"] = bool(fld.symmetric)
                        d.attrs["antisymmetric"] = False
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
