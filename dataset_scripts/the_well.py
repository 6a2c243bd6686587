"""Command line for data in The Well's format.

    python -m pdefm.data.the_well check PATH [PATH ...]   # validate files or dataset folders; exit 1 on problems
    python -m pdefm.data.the_well info PATH               # fields, shapes, windows, boundary conditions
    python -m pdefm.data.the_well stats DATASET_DIR       # compute DATASET_DIR/stats.yaml from data/train

Nothing here writes to a data file; `stats` writes only `stats.yaml` (atomically).
"""

from __future__ import annotations

import argparse
import os
import sys

import fsspec
import numpy as np
from tqdm.auto import tqdm

from pdefm.runtime.cli_format import HelpFormatter

from .dynamics import format_dynamics, relative_step_change, summarise_dynamics
from .hf_datasets import resolve_split_files
from .layout import SPLITS, dataset_dir_of_split, split_dir, stats_path
from .normalization import RunningMoments, StatsError, stats_document, write_stats_yaml
from .well_format import format_warnings, iter_format_problems
from .well_reader import WellSplitReader, list_split_files, open_hdf5


def _files_under(path: str) -> list[str]:
    fs, root = fsspec.core.url_to_fs(path)
    if fs.exists(root) and not fs.isdir(root):
        return [path]
    found = []
    for split in SPLITS:
        found += list_split_files(split_dir(root, split), fs)
    return found or list_split_files(root, fs)


def _is_folder(path: str) -> bool:
    fs, root = fsspec.core.url_to_fs(path)
    return fs.isdir(root)


def check(paths: list[str]) -> int:
    """Print every problem; return the number of files with problems."""
    bad = 0
    failed: set[str] = set()
    for path in paths:
        files = _files_under(path)
        if not files:
            print(f"{path}: no HDF5 files found")
            bad += 1
            continue
        for file in files:
            warnings_found: list[str] = []
            try:
                h5 = open_hdf5(file)
                problems = list(iter_format_problems(h5, file))
                if not problems:
                    warnings_found = list(format_warnings(h5, file))
            except Exception as error:  # noqa: BLE001 - report and go on with the other files
                problems = [str(error)]
            if problems:
                bad += 1
                failed.add(file)
                for problem in problems:
                    print(f"FAIL {problem}")
            else:
                print(f"ok   {file}")
                for warning in warnings_found:
                    print(f"WARN {warning}")
        # Files of one split must agree with each other: building the reader checks that (over the files that passed
        # on their own, so a bad file is reported once).
        for split in (SPLITS if _is_folder(path) else ()):
            try:
                split_files, fs, _ = resolve_split_files(path, split)
            except (FileNotFoundError, ValueError):
                continue
            split_files = [f for f in split_files if f not in failed]
            if not split_files:
                continue
            try:
                WellSplitReader(split_files, fs=fs, n_steps_input=1, n_steps_output=1)
            except Exception as error:  # noqa: BLE001
                print(f"FAIL {split}: {error}")
                bad += 1
    return bad


def _dataset_stats_of_file(path: str) -> str:
    """For one file of a `<dataset>/data/<split>/` folder: its dataset's stats.yaml if there is one (shown, not read:
    a file's reader normalises only with stats it is given), else '-'."""
    dataset_dir = dataset_dir_of_split(os.path.dirname(os.path.abspath(path)))
    found = dataset_dir is not None and os.path.isfile(stats_path(dataset_dir))
    return f"{stats_path(dataset_dir)} (its dataset's)" if found else "-"


def info(path: str, n_steps_input: int, n_steps_output: int, dynamics_trajectories: int = 16) -> None:
    """Print what a file or dataset folder holds, split by split; with `dynamics_trajectories` > 0, also how much
    its fields change from frame to frame (over at most that many trajectories per split). A path with nothing to
    describe raises `FileNotFoundError`; a file that is not The Well's raises `WellFormatError` naming it."""
    fs, root = fsspec.core.url_to_fs(path)
    if not fs.exists(root):
        raise FileNotFoundError(f"{path}: no such file or folder")
    described = 0
    for split in (SPLITS if _is_folder(path) else (None,)):
        try:
            files, fs, stats = resolve_split_files(path, split)
        except FileNotFoundError:
            continue
        described += 1
        reader = WellSplitReader(files, fs=fs, n_steps_input=n_steps_input, n_steps_output=n_steps_output)
        meta = reader.meta
        trajectories = sum(m.n_trajectories for m in reader.metadata)
        print(f"[{split or 'file'}] {meta.dataset_name}: {len(files)} files, {trajectories} trajectories of {meta.n_steps} steps, "
              f"{len(reader)} windows ({n_steps_input} in, {n_steps_output} out)")
        print(f"  grid {meta.grid_type}, axes {list(meta.spatial_dims)}, resolution {meta.resolution}")
        print(f"  fields ({len(meta.field_names)} channels): {meta.field_names}")
        print(f"  constant fields: {meta.constant_field_names or '-'}")
        print(f"  scalars: {meta.scalar_names or '-'}; constant scalars: {meta.constant_scalar_names or '-'}")
        names = {0: "WALL", 1: "OPEN", 2: "PERIODIC"}
        for axis, (low, high) in zip(meta.spatial_dims, meta.boundary_conditions.astype(int).tolist()):
            print(f"  boundary {axis}: low {names[low]}, high {names[high]}")
        print(f"  input_fields {[n_steps_input, *meta.resolution, len(meta.field_names)]}, "
              f"output_fields {[n_steps_output, *meta.resolution, len(meta.field_names)]}, stats.yaml: "
              f"{stats or _dataset_stats_of_file(path)}")
        if dynamics_trajectories > 0 and meta.n_steps >= 2:
            changes = [relative_step_change(reader.trajectory_fields(file_index, traj))
                       for _, (file_index, traj) in zip(range(dynamics_trajectories), reader.iter_trajectories())]
            for line in format_dynamics(summarise_dynamics(changes, meta.field_names)):
                print(line)
        reader.close()
    if not described:
        raise FileNotFoundError(f"{path}: no HDF5 files (*.hdf5 or *.h5) in it, nor in data/<split>/ below it")


def _require_finite(values: np.ndarray, channels: list[str], file: str, traj: int) -> None:
    """Statistics of data holding NaN/Inf would be NaN and turn every normalised window into NaN: refuse."""
    if not np.isfinite(values).all():
        where = np.argwhere(~np.isfinite(values))[0]
        raise StatsError(f"{file}: trajectory {traj}, channel '{channels[where[-1]]}' holds non-finite values (first at "
                         f"index {where[:-1].tolist()}); statistics would be NaN, so no stats.yaml was written")


def compute_stats(dataset_dir: str, output: str | None = None) -> str:
    """One streaming pass over `data/train`: per-field mean, std, rms and the same for one-step increments."""
    files, fs, found_stats = resolve_split_files(dataset_dir, "train")
    reader = WellSplitReader(files, fs=fs, n_steps_input=1, n_steps_output=1)
    meta = reader.meta
    variable = RunningMoments(len(meta.field_names))
    delta = RunningMoments(len(meta.field_names))
    constant = RunningMoments(len(meta.constant_field_names))
    total = sum(m.n_trajectories for m in reader.metadata)
    with tqdm(total=total, desc="stats", unit="traj") as bar:
        for file_index, file_meta in enumerate(reader.metadata):
            for traj in range(file_meta.n_trajectories):
                values = reader.trajectory_fields(file_index, traj)
                _require_finite(values, meta.field_names, reader.files[file_index], traj)
                variable.update(values)
                delta.update(values[1:] - values[:-1])
                if meta.constant_fields and (traj == 0 or any(f.sample_varying for f in meta.constant_fields)):
                    values = np.concatenate([reader._field(file_index, f, traj, None) for f in meta.constant_fields], -1)
                    _require_finite(values, meta.constant_field_names, reader.files[file_index], traj)
                    constant.update(values)
                bar.update(1)
    document = stats_document(meta.variable_fields, variable, delta)
    if meta.constant_fields:
        for key, fields in stats_document(meta.constant_fields, constant, None).items():
            document.setdefault(key, {}).update(fields)
    target = output or found_stats or stats_path(dataset_dir)
    write_stats_yaml(target, document)
    reader.close()
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pdefm", description=__doc__,
                                     formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="validate files or dataset folders against The Well's format")
    p_check.add_argument("paths", nargs="+", help="HDF5 files or dataset folders")
    p_info = sub.add_parser("info", help="print fields, shapes, windows and boundary conditions")
    p_info.add_argument("path", help="an HDF5 file or a dataset folder")
    p_info.add_argument("--n-steps-input", type=int, default=4, help="input frames per window")
    p_info.add_argument("--n-steps-output", type=int, default=1, help="output frames per window")
    p_info.add_argument("--dynamics-trajectories", type=int, default=16, metavar="N",
                        help="summarise frame-to-frame change over at most N trajectories per split (0: skip)")
    p_stats = sub.add_parser("stats", help="compute stats.yaml from the train split in one streaming pass")
    p_stats.add_argument("dataset_dir", help="a dataset folder with data/train/")
    p_stats.add_argument("--output", default=None, help="where to write (default: DATASET_DIR/stats.yaml)")
    args = parser.parse_args(argv)
    if args.command == "check":
        bad = check(args.paths)
        print(f"{bad} file(s) with problems" if bad else "all files follow The Well's format")
        return 1 if bad else 0
    if args.command == "info":
        for flag, value in (("--n-steps-input", args.n_steps_input), ("--n-steps-output", args.n_steps_output)):
            if value < 1:
                print(f"error: {flag} must be at least 1, got {value}", file=sys.stderr)
                return 2
        try:
            info(args.path, args.n_steps_input, args.n_steps_output, args.dynamics_trajectories)
        except (ValueError, OSError) as error:  # WellFormatError is a ValueError naming the file
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    try:
        print(f"wrote {compute_stats(args.dataset_dir, args.output)}")
    except (ValueError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
