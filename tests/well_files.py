"""Small files in The Well's format, written for tests (nothing is downloaded)."""

from __future__ import annotations

import os

import numpy as np

from pdefm.data.well_writer import WellField, WellScalar, axis_boundaries, write_well_file

AXES = ("x", "y", "z")


def write_dataset(root, name="toy", n_dims=2, resolution=None, n_steps=9, files_per_split=(2, 1, 1), n_traj=2,
                  tensor_fields=True, constant_fields=True, time_scalars=True, sample_varying_time=False,
                  boundaries=None, seed=0, nan_at=None, second_scalar=False):
    """Write `root/name/data/{train,valid,test}/*.hdf5`; returns the dataset folder.

    Fields: `a` (t0), `p` (t0, if second_scalar), `b` (t0, time-constant, if constant_fields), `v` (t1), `C` (t2 if
    tensor_fields).
    `nan_at=(file_index, traj, step)` puts one NaN into field `a` of the first train file listed.
    """
    rng = np.random.default_rng(seed)
    resolution = resolution or ((6, 5) if n_dims == 2 else (4, 3, 5))
    axes = AXES[:n_dims]
    folder = os.path.join(root, name)
    for split, count in zip(("train", "valid", "test"), files_per_split):
        os.makedirs(os.path.join(folder, "data", split), exist_ok=True)
        for f in range(count):
            lead = (n_traj, n_steps)
            fields = [WellField("a", rng.normal(size=lead + resolution) * 3 + 1)]
            if nan_at is not None and split == "train" and f == nan_at[0]:
                fields[0].data[nan_at[1], nan_at[2], (0,) * n_dims] = np.nan
            if second_scalar:
                fields.append(WellField("p", rng.normal(size=lead + resolution) - 2))
            if constant_fields:
                fields.append(WellField("b", rng.normal(size=(n_traj,) + resolution), time_varying=False))
            fields.append(WellField("v", rng.normal(size=lead + resolution + (n_dims,)), order=1))
            if tensor_fields:
                fields.append(WellField("C", rng.normal(size=lead + resolution + (n_dims, n_dims)) + 5, order=2))
            scalars = [WellScalar("Re", rng.uniform(100, 1000, size=n_traj).astype(np.float32), sample_varying=True),
                       WellScalar("gamma", 1.4)]
            if time_scalars:
                scalars.append(WellScalar("forcing", rng.normal(size=(n_traj, n_steps)), sample_varying=True, time_varying=True))
            if sample_varying_time:
                time = np.cumsum(rng.uniform(0.05, 0.2, size=(n_traj, n_steps)), axis=1)
            else:
                time = np.linspace(0.0, 0.1 * (n_steps - 1), n_steps)
            bcs = boundaries if boundaries is not None else {a: t for a, t in zip(axes, ("PERIODIC", ("WALL", "OPEN"), "WALL"))}
            write_well_file(
                os.path.join(folder, "data", split, f"{name}_{f:02d}.hdf5"),
                dataset_name=name,
                spatial_dims=axes,
                coordinates={a: np.linspace(0, 1, n, endpoint=False) for a, n in zip(axes, resolution)},
                time=time,
                fields=fields,
                scalars=scalars,
                boundaries=axis_boundaries(axes, resolution, bcs),
                n_trajectories=n_traj,
                simulation_parameters=["Re", "gamma"],
                time_sample_varying=sample_varying_time,
            )
    return folder


def write_base_and_new_system(root) -> None:
    """`flow2d` (a base model's data) and `waves` (a system new to it, other fields), as the finetuning and Hub
    tests use them."""
    write_dataset(root, "flow2d", n_dims=2, resolution=(16, 12), n_steps=8, files_per_split=(1, 1, 1), time_scalars=False)
    write_dataset(root, "waves", n_dims=2, resolution=(16, 12), n_steps=8, files_per_split=(1, 1, 1), seed=3,
                  tensor_fields=False, time_scalars=False)


def write_two_system_suite(root, files_per_split=(1, 1, 1)) -> str:
    """`flow2d` and `waves` (fields `a`, `v` shared; `flow2d` also has a tensor field) on 16x16 grids with their
    stats.yaml, as the benchmark and transfer tests use them; returns `root`."""
    from pdefm.data.the_well import compute_stats

    for name, seed in (("flow2d", 0), ("waves", 5)):
        write_dataset(root, name, n_dims=2, resolution=(16, 16), n_steps=10, files_per_split=files_per_split,
                      time_scalars=False, tensor_fields=name == "flow2d", seed=seed)
        compute_stats(os.path.join(root, name))
    return root
