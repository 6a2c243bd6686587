"""Roll a model forward from the first frames of every trajectory of a file, and write the result in The Well's format.

    python -m pdefm.train.predict --model outputs/mini_well --input data/mini_well/shear_flow/data/test/x.hdf5 \\
        --steps 20 --out rollout.hdf5 [--adapter ADAPTER_DIR_OR_ID] [--n-steps-input 4]

The output is the input file with its time-varying fields replaced by the first `--n-steps-input` true frames followed
by `--steps` predicted ones (and the time axis extended to match), so every tool that reads The Well reads it,
`python -m pdefm.data.the_well check` included. Attributes `pdefm_model`, `pdefm_n_steps_input` and
`pdefm_predicted_steps` on the root record how it was made. The input file is only read.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from typing import Iterable

import h5py
import numpy as np
import torch

from modeling_pdefm.modeling_pdefm import PROGRESS_FROM_STEPS
from pdefm.data import WellSplitReader, collate_window_samples
from pdefm.runtime.cli_format import HelpFormatter
from pdefm.runtime.process import setup_process
from pdefm.data.well_format import FIELD_GROUPS
from pdefm.data.well_reader import open_hdf5

from .model_files.loading import load_pdefm
from .evaluation.forecasters import PDEFMForecaster
from .evaluation.rollout import NonFiniteForecastError, iter_rollout
from .training.run_lock import RunLockError, output_file_lock


def first_windows(reader: WellSplitReader, dataset_name: str, steps: int) -> dict:
    """The first `n_steps_input` frames of every trajectory as one batch, with time grids covering `steps` more."""
    per_traj = reader.windows_per_trajectory[0]
    samples = [reader[traj * per_traj] for traj in range(reader.meta.n_trajectories)]
    batch = collate_window_samples(samples)
    batch["dataset_name"] = dataset_name
    if "input_time_grid" in batch:
        grid = batch["input_time_grid"]
        dt = (batch["output_time_grid"][:, :1] - grid[:, -1:]) if "output_time_grid" in batch else grid[:, -1:] - grid[:, -2:-1]
        batch["output_time_grid"] = grid[:, -1:] + dt * torch.arange(1, steps + 1, dtype=grid.dtype)
    batch.pop("output_fields", None)
    return batch


def _field_values(frames: np.ndarray, channels: int, order: int, n_dims: int) -> np.ndarray:
    """`[n_traj, T, *space, channels]` -> The Well's layout of one field `[n_traj, T, *space, (n_dims,) * order]`."""
    return frames.reshape(*frames.shape[:-1], *([n_dims] * order)) if order else frames[..., 0]


def write_prediction(input_path: str, out_path: str, given: np.ndarray, predicted: Iterable[np.ndarray], steps: int,
                     model_id: str) -> None:
    """Copy `input_path` to `out_path` (atomically) with its time-varying fields set to the `given` frames
    `[n_traj, n_in, *space, C]` followed by `steps` frames from `predicted` (each `[n_traj, *space, C]`), written one
    at a time as they come, so a long forecast is never held in memory whole."""
    tmp = f"{out_path}.partial-{os.getpid()}"
    n_steps_input = given.shape[1]
    n_times = n_steps_input + steps
    try:
        with open_hdf5(input_path) as src, h5py.File(tmp, "w") as dst:
            for key, value in src.attrs.items():
                dst.attrs[key] = value
            dst.attrs["pdefm_model"] = model_id
            dst.attrs["pdefm_n_steps_input"] = n_steps_input
            dst.attrs["pdefm_predicted_steps"] = steps
            n_dims = int(src.attrs["n_spatial_dims"])
            for group in src:
                if group not in FIELD_GROUPS and group not in ("dimensions", "scalars"):
                    src.copy(src[group], dst, name=group)
            dims = dst.create_group("dimensions")
            for key, value in src["dimensions"].attrs.items():
                dims.attrs[key] = value
            for name, node in src["dimensions"].items():
                if name != "time":
                    src.copy(node, dims, name=name)
                    continue
                time = node[()]
                dt = np.diff(time, axis=-1)[..., -1:] if time.shape[-1] > 1 else np.ones_like(time[..., :1])
                start = time[..., :n_steps_input]
                extra = time[..., n_steps_input - 1 : n_steps_input] + dt * np.arange(1, n_times - n_steps_input + 1)
                new = dims.create_dataset("time", data=np.concatenate([start, extra], axis=-1).astype(time.dtype))
                for key, value in node.attrs.items():
                    new.attrs[key] = value
            scalars = dst.create_group("scalars")
            for key, value in src["scalars"].attrs.items():
                scalars.attrs[key] = value
            for name, node in src["scalars"].items():
                if node.attrs.get("time_varying", False):
                    raise ValueError(f"{input_path}: scalar {name!r} varies in time; predict cannot extend it")
                src.copy(node, scalars, name=name)
            fields = []  # (dataset, first channel, order, sample_varying) of every time-varying field
            channel = 0
            for order, group_name in enumerate(FIELD_GROUPS):
                if group_name not in src:
                    continue
                group = dst.create_group(group_name)
                for key, value in src[group_name].attrs.items():
                    group.attrs[key] = value
                for name in [n.decode() if isinstance(n, bytes) else str(n) for n in src[group_name].attrs["field_names"]]:
                    node = src[group_name][name]
                    if not node.attrs["time_varying"]:
                        src.copy(node, group, name=name)
                        continue
                    sample_varying = bool(node.attrs["sample_varying"])
                    shape = ((given.shape[0],) if sample_varying else ()) + (n_times, *given.shape[2:-1]) + (n_dims,) * order
                    new = group.create_dataset(name, shape=shape, dtype=node.dtype)
                    for key, value in node.attrs.items():
                        new.attrs[key] = value
                    new.attrs["dim_varying"] = np.ones(n_dims, dtype=bool)  # predictions vary along every axis
                    fields.append((new, channel, order, sample_varying))
                    channel += n_dims**order
            if channel != given.shape[-1]:
                raise ValueError(f"{input_path}: the file's time-varying fields hold {channel} channels, the model "
                                 f"predicts {given.shape[-1]}")

            def write(t: int, frame: np.ndarray) -> None:  # frame [n_traj, *space, C] at time index t
                for dataset, first, order, sample_varying in fields:
                    width = n_dims**order
                    values = _field_values(frame[..., first : first + width], width, order, n_dims)
                    if sample_varying:
                        dataset[:, t] = values.astype(dataset.dtype)
                    else:
                        dataset[t] = values[0].astype(dataset.dtype)

            for t in range(n_steps_input):
                write(t, given[:, t])
            written = 0
            for frame in predicted:
                write(n_steps_input + written, frame)
                written += 1
            if written != steps:
                raise ValueError(f"the rollout gave {written} frames, {steps} were asked for")
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one file: the same resolved path (symlinked folders included) or the same inode
    (hard links)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return False


def check_output_path(out_path: str, input_path: str, overwrite: bool = False) -> None:
    """Refuse an `--out` that is empty, a folder, inside a missing folder, or the input itself (by any path); one that
    exists unless `overwrite`, and one that is not a regular file (a link, a FIFO, a device) always."""
    if not out_path or not out_path.strip():
        raise ValueError("--out is empty: give the HDF5 file to write, e.g. --out forecast.hdf5")
    if os.path.isdir(out_path):
        raise ValueError(f"--out {out_path!r} is a folder; give the HDF5 file to write inside it")
    parent = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(parent):
        raise ValueError(f"--out {out_path!r}: its folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out_path!r}: its folder {parent} is not writable (permissions or a read-only file "
                         "system); give a path in a folder you can write")
    if same_file(out_path, input_path):
        raise ValueError(f"--out {out_path!r} is the input file {input_path!r}; the input is never overwritten")
    if os.path.lexists(out_path):
        if os.path.islink(out_path) or not os.path.isfile(out_path):
            raise ValueError(f"--out {out_path!r} exists and is not a regular file (a link, a FIFO or a device); "
                             "pdefm predict replaces only regular files: give another path")
        if not overwrite:
            raise ValueError(f"--out {out_path!r} already exists; pass --overwrite to replace it (a model folder's "
                             "weights or an earlier forecast are never replaced silently)")


def forecast_bytes(reader: WellSplitReader, steps: int) -> int:
    """Bytes of the forecast's time-varying fields for `steps` predicted frames (float32), before it is made."""
    meta = reader.meta
    channels = len(meta.field_names)
    return 4 * meta.n_trajectories * (reader.n_steps_input + steps) * int(np.prod(meta.resolution)) * channels


def predict_file(model, input_path: str, steps: int, out_path: str, n_steps_input: int | None = None,
                 dataset_name: str | None = None, model_id: str = "", overwrite: bool = False) -> tuple[int, int]:
    """Roll out `model` (a `PDEFMModel`) from every trajectory of `input_path` into `out_path`, frame by frame;
    returns (trajectories, frames written per trajectory).
    `n_steps_input` defaults to the input window the model was trained with (`model.config.n_steps_input`)."""
    if n_steps_input is None:
        n_steps_input = model.config.n_steps_input
    if isinstance(n_steps_input, bool) or not isinstance(n_steps_input, int) or n_steps_input < 1:
        raise ValueError(f"--n-steps-input must be a positive number of frames, got {n_steps_input!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"--steps must be >= 1, got {steps}")
    check_output_path(out_path, input_path, overwrite)
    with output_file_lock(out_path):
        check_output_path(out_path, input_path, overwrite)  # again, now that no other command can write it
        return _forecast_into(model, input_path, steps, out_path, n_steps_input, dataset_name, model_id)


def _forecast_into(model, input_path: str, steps: int, out_path: str, n_steps_input: int, dataset_name: str | None,
                   model_id: str) -> tuple[int, int]:
    reader = WellSplitReader([input_path], n_steps_input=n_steps_input, n_steps_output=1)
    size = forecast_bytes(reader, steps)
    # The forecast is written frame by frame as it is made: refuse one that the disk cannot hold before starting.
    free = shutil.disk_usage(os.path.dirname(os.path.abspath(out_path))).free
    if size > free:
        reader.close()
        raise ValueError(f"--steps {steps}: the forecast of {input_path} would take {size / 2**30:.1f} GiB, more than "
                         f"the free disk space ({free / 2**30:.1f} GiB) where --out is; predict fewer steps")
    name = dataset_name or reader.meta.dataset_name
    if name not in model.config.datasets:
        raise ValueError(f"the model has no dataset {name!r} (from {input_path}); known: {sorted(model.config.datasets)}. "
                         "Pass --adapter with a domain adapter for it, or --dataset-name to use another")
    field_names = reader.meta.field_names
    batch = first_windows(reader, name, steps)
    reader.close()
    frames = iter_rollout(PDEFMForecaster(model), batch, steps, progress=steps >= PROGRESS_FROM_STEPS,
                          require_finite=True)
    try:
        write_prediction(input_path, out_path, batch["input_fields"].float().numpy(),
                         (frame[:, 0].numpy() for frame in frames), steps, model_id)
    except NonFiniteForecastError as error:
        raise ValueError(f"the forecast of {input_path} is not finite from step {error.step} on (field "
                         f"{field_names[error.channel]!r}); nothing was written. The input may be far outside what "
                         "the model was trained on, or the model's weights are damaged") from None
    return batch["input_fields"].shape[0], n_steps_input + steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdefm predict", description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--model", required=True, help="PDE-FM folder or Hub id")
    parser.add_argument("--adapter", default=None, help="LoRA domain adapter folder or Hub id")
    parser.add_argument("--input", required=True, help="an HDF5 file in The Well's format")
    parser.add_argument("--steps", type=int, required=True, help="number of steps to predict")
    parser.add_argument("--out", required=True, help="output HDF5 file (an existing one only with --overwrite)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists (a regular file only)")
    parser.add_argument("--n-steps-input", type=int, default=None,
                        help="input frames the model sees (default: what it was trained with)")
    parser.add_argument("--dataset-name", default=None, help="the model's dataset to use (default: the file's)")
    args = parser.parse_args(argv)
    setup_process("train")  # threads and memory reuse (pdefm.runtime.process)

    try:
        if not os.path.isfile(args.input):
            raise FileNotFoundError(f"--input {args.input!r}: no such file")
        model = load_pdefm(args.model, adapter=args.adapter)
        with torch.inference_mode():
            n_traj, n_times = predict_file(model, args.input, args.steps, args.out, args.n_steps_input,
                                           args.dataset_name, overwrite=args.overwrite,
                                           model_id=args.model + (f" + {args.adapter}" if args.adapter else ""))
    except (FileNotFoundError, ValueError, OSError, RunLockError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {n_traj} trajectories x {n_times} steps ({n_times - args.steps} given + {args.steps} "
          "predicted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
