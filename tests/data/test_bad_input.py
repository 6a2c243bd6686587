"""The data layer under bad input: non-regular files, broken time grids, empty files, odd dtypes, NaN statistics,
mismatched names, an unreachable Hub. Each gets a named error (or a warning), never a hang or a silent NaN."""

import os
import re
import subprocess
import sys
import threading

import h5py
import numpy as np
import pytest
import yaml

from pdefm.data import load_well_dataset
from pdefm.data.normalization import StatsError
from pdefm.data.the_well import check, compute_stats
from pdefm.data.the_well import main as well_main
from pdefm.data.well_format import WellFormatError
from pdefm.train.training.batches import model_specs
from pdefm.train.training.config import PretrainConfig

from well_files import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def dataset(tmp_path, name="toy", **kwargs):
    return write_dataset(str(tmp_path), name, n_steps=6, files_per_split=(1, 1, 1), **kwargs)


def replace_dataset(h5, path, **create):
    """Replace the HDF5 dataset at `path` by an unwritten one (`create`: shape, dtype, chunks; shape and dtype default
    to the old one's), keeping its attributes."""
    old = h5[path]
    attrs, create = dict(old.attrs), {"shape": old.shape, "dtype": old.dtype, **create}
    group, name = path.rsplit("/", 1)
    del h5[path]
    h5[group].create_dataset(name, **create).attrs.update(attrs)


def first_file(folder, split="train"):
    directory = os.path.join(folder, "data", split)
    return os.path.join(directory, sorted(os.listdir(directory))[0])


def finishes(function, seconds=30.0):
    """Run `function` in a thread; return what it raised or returned, or fail if it hangs."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function()
        except BaseException as error:  # noqa: BLE001
            outcome["error"] = error

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s (hangs)"
    return outcome


def test_a_fifo_named_hdf5_is_refused_not_waited_on(tmp_path, capsys):
    folder = dataset(tmp_path)
    fifo = os.path.join(folder, "data", "train", "zz_pipe.hdf5")
    os.mkfifo(fifo)
    outcome = finishes(lambda: load_well_dataset(folder, split="train", n_steps_input=2))
    assert isinstance(outcome.get("error"), WellFormatError) and "zz_pipe.hdf5" in str(outcome["error"])
    assert "not a regular file" in str(outcome["error"])
    outcome = finishes(lambda: check([folder]))
    assert outcome.get("value") == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "zz_pipe.hdf5" in out and f"ok   {first_file(folder)}" in out


@pytest.mark.parametrize("times, problem", [
    (np.linspace(0.5, 0.0, 6), r"times must increase strictly; time\[0\] = 0.5 is followed by 0.4"),
    (np.zeros(6), "times must increase strictly"),
    (np.array([0, 0.1, np.nan, 0.3, 0.4, 0.5]), r"non-finite time value at index \[2\]"),
])
def test_broken_time_grids_fail_check_and_the_reader(tmp_path, capsys, times, problem):
    folder = dataset(tmp_path)
    path = first_file(folder)
    with h5py.File(path, "r+") as f:
        f["dimensions/time"][...] = times
    assert check([path]) == 1
    assert re.search(problem, capsys.readouterr().out)
    with pytest.raises(WellFormatError, match=rf"{path}: /dimensions/time: {problem}"):
        load_well_dataset(folder, split="train", n_steps_input=2)


def test_a_file_with_no_trajectory_is_refused(tmp_path, capsys):
    folder = dataset(tmp_path)
    path = first_file(folder)
    with h5py.File(path, "r+") as f:
        f.attrs["n_trajectories"] = 0
    assert check([path]) == 1
    assert "at least one trajectory" in capsys.readouterr().out
    with pytest.raises(WellFormatError, match="'n_trajectories' is 0"):
        load_well_dataset(folder, split="train", n_steps_input=2)


@pytest.mark.parametrize("dtype", [np.float64, np.float16, np.int32])
def test_check_warns_on_fields_not_stored_as_float32(tmp_path, capsys, dtype):
    folder = dataset(tmp_path, constant_fields=False, tensor_fields=False)
    path = first_file(folder)
    with h5py.File(path, "r+") as f:
        values = f["t0_fields/a"][()]
        attrs = dict(f["t0_fields/a"].attrs)
        del f["t0_fields/a"]
        f["t0_fields"].create_dataset("a", data=values.astype(dtype))
        f["t0_fields/a"].attrs.update(attrs)
    assert check([path]) == 0
    out = capsys.readouterr().out
    assert f"WARN {path}: /t0_fields/a: stored as" in out and str(np.dtype(dtype)) in out


def test_stats_of_data_with_nan_are_refused_and_nothing_is_written(tmp_path, capsys):
    folder = write_dataset(str(tmp_path), "nan", n_steps=6, files_per_split=(1, 1, 1), nan_at=(0, 1, 3))
    with pytest.raises(StatsError, match=r"nan_00.hdf5: trajectory 1, channel 'a' holds non-finite values"):
        compute_stats(folder)
    assert not os.path.exists(os.path.join(folder, "stats.yaml"))
    assert well_main(["stats", folder]) == 1
    assert "no stats.yaml was written" in capsys.readouterr().err


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["std"].update(a=float("nan")), r"'std' of field 'a' is not finite"),
    (lambda s: s["mean"].update(a=float("inf")), r"'mean' of field 'a' is not finite"),
    (lambda s: s["std"].update(a=-1.0), r"'std' of field 'a' is negative"),
    (lambda s: s["std"].update(a="abc"), r"'std' of field 'a' is 'abc'; expected numbers"),
])
def test_a_stats_file_with_bad_values_is_refused(tmp_path, edit, message):
    folder = dataset(tmp_path)
    compute_stats(folder)
    path = os.path.join(folder, "stats.yaml")
    stats = yaml.safe_load(open(path))
    edit(stats)
    yaml.safe_dump(stats, open(path, "w"))
    with pytest.raises(StatsError, match=rf"{path}: {message}"):
        load_well_dataset(folder, split="train", n_steps_input=2, use_normalization=True)


def test_invalid_yaml_in_stats_is_a_stats_error(tmp_path):
    folder = dataset(tmp_path)
    path = os.path.join(folder, "stats.yaml")
    open(path, "w").write("mean: {a: [1, 2\nstd: ]]\n")
    with pytest.raises(StatsError, match=rf"{path}: not valid YAML"):
        load_well_dataset(folder, split="train", n_steps_input=2, use_normalization=True)


def test_a_fifo_named_stats_yaml_is_refused_not_waited_on(tmp_path):
    folder = dataset(tmp_path)
    os.mkfifo(os.path.join(folder, "stats.yaml"))
    outcome = finishes(lambda: load_well_dataset(folder, split="train", n_steps_input=2, use_normalization=True))
    assert isinstance(outcome.get("error"), StatsError) and "not a regular file" in str(outcome["error"])


BILLION_LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else '1, 1, 1, 1, 1, 1, 1, 1, 1'}]\n"
                         for i in range(9)) + "mean: {a: *l8}\nstd: {a: 1.0}\n"


def test_a_stats_yaml_of_nested_aliases_is_refused_before_it_grows(tmp_path):
    folder = dataset(tmp_path)
    path = os.path.join(folder, "stats.yaml")
    open(path, "w").write(BILLION_LAUGHS)  # ~1 KB describing 9^9 = 387 million numbers
    outcome = finishes(lambda: load_well_dataset(folder, split="train", n_steps_input=2, use_normalization=True))
    assert isinstance(outcome.get("error"), StatsError)
    assert f"{path}: uses the alias *l0" in str(outcome["error"]) and "not accepted" in str(outcome["error"])


@pytest.mark.parametrize("text, message", [
    ("3\n", "expected a mapping of config keys .*got a value of type int"),
    ("- max_steps\n", "expected a mapping of config keys .*got a value of type list"),
    ("max_steps: !!python/object/apply:os.system ['true']\n", "not a YAML config pdefm reads .*python/object/apply"),
    (BILLION_LAUGHS, "uses the alias"),
])
def test_a_config_file_that_is_not_a_plain_mapping_is_named(tmp_path, text, message):
    from pdefm.train.training.config import read_config_file

    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=rf"{path}: {message}"):
        read_config_file(str(path))


def test_a_folder_named_unlike_its_files_is_refused_before_training(tmp_path):
    folder = dataset(tmp_path, name="toy")
    os.rename(folder, os.path.join(tmp_path, "renamed"))
    with pytest.raises(ValueError, match=r"its files say dataset_name 'toy'; rename the folder to 'toy'"):
        model_specs(str(tmp_path), ["renamed"])


def test_config_refuses_unknown_model_keys_and_negative_seeds(tmp_path):
    with pytest.raises(ValueError, match=r"'model_overrides': unknown model keys \['hidden_sizee'\]"):
        PretrainConfig(data_dir=str(tmp_path), model_overrides={"hidden_sizee": 64}).validate()
    with pytest.raises(ValueError, match="config key 'seed' must be a whole number >= 0, got -1"):
        PretrainConfig(data_dir=str(tmp_path), seed=-1).validate()
    with pytest.raises(ValueError, match="config key 'model_preset' must be one of"):
        PretrainConfig(data_dir=str(tmp_path), model_preset="huge").validate()
    PretrainConfig(data_dir=str(tmp_path), model_overrides={"hidden_size": 64}).validate()


@pytest.mark.parametrize("command", [
    [sys.executable, "-m", "pdefm.cli", "push", "{folder}", "org/name"],
    [sys.executable, "-c", "from pdefm.data import load_well_dataset as l; l('hf://datasets/org/name', split='train')"],
])
def test_an_unreachable_hub_is_one_line_not_a_traceback(tmp_path, command):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_TOKEN": "hf_test", "PYTHONPATH": ROOT,
           "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run([c.format(folder=folder) for c in command], env=env, capture_output=True, text=True,
                            timeout=120, cwd=ROOT)
    assert result.returncode != 0
    assert "could not reach" in result.stderr and "HF_ENDPOINT (now http://127.0.0.1:9)" in result.stderr
    if "push" in command:
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr


@pytest.mark.parametrize("name", [".", "..", "../toy", "toy/../.."])
def test_a_dataset_name_under_a_base_path_is_a_name_not_a_path(tmp_path, name):
    dataset(tmp_path)
    with pytest.raises(ValueError, match=rf"with well_base_path, give a dataset name .* got '{re.escape(name)}'"):
        load_well_dataset(name, split="train", n_steps_input=2, well_base_path=str(tmp_path))


def test_a_local_folder_whose_name_holds_double_colons_is_read_as_a_folder(tmp_path):
    base = tmp_path / "runs::2026"
    base.mkdir()
    folder = dataset(base)
    assert len(load_well_dataset(folder, split="train", n_steps_input=2)) > 0


def test_declared_sizes_beyond_the_read_limit_are_refused_before_reading(tmp_path, capsys):
    folder = dataset(tmp_path)
    path = first_file(folder)
    with h5py.File(path, "r+") as f:
        replace_dataset(f, "dimensions/time", shape=(10**10,), dtype="f8", chunks=(1024,))
    assert os.path.getsize(path) < 10**6
    assert check([path]) == 1
    assert "/dimensions/time: declares a time grid of shape [10000000000], 74.5 GiB" in capsys.readouterr().out
    with pytest.raises(WellFormatError, match=r"declares a time grid .* set PDEFM_MAX_READ_BYTES higher"):
        load_well_dataset(folder, split="train", n_steps_input=2)


def test_frames_beyond_the_read_limit_are_refused_and_the_limit_can_be_raised(tmp_path, monkeypatch):
    folder = dataset(tmp_path)
    monkeypatch.setenv("PDEFM_MAX_READ_BYTES", "100")  # below one frame of the toy's fields (6 x 5 points)
    with pytest.raises(WellFormatError, match=r"declares frames of \d+ fields on a grid of \[6, 5\] points"):
        load_well_dataset(folder, split="train", n_steps_input=2)
    monkeypatch.setenv("PDEFM_MAX_READ_BYTES", "1e6")
    assert len(load_well_dataset(folder, split="train", n_steps_input=2)) > 0
    monkeypatch.setenv("PDEFM_MAX_READ_BYTES", "inf")
    with pytest.raises(ValueError, match="PDEFM_MAX_READ_BYTES='inf': expected a finite number of bytes >= 1"):
        load_well_dataset(folder, split="train", n_steps_input=2)


@pytest.mark.parametrize("dtype, message", [("c8", "values are complex"), (h5py.string_dtype(), r"values are object \(not numeric\)")])
def test_a_field_that_is_not_real_numbers_is_refused_by_name(tmp_path, dtype, message):
    folder = dataset(tmp_path)
    path = first_file(folder)
    with h5py.File(path, "r+") as f:
        replace_dataset(f, "t0_fields/a", dtype=dtype)
    with pytest.raises(WellFormatError, match=rf"{re.escape(path)}: /t0_fields/a: {message}"):
        load_well_dataset(folder, split="train", n_steps_input=2)
    with pytest.raises(WellFormatError, match=message):
        compute_stats(folder)


def test_a_spatial_axis_of_no_points_is_refused_by_name(tmp_path):
    folder = dataset(tmp_path)
    path = first_file(folder)
    with h5py.File(path, "r+") as f:
        replace_dataset(f, "dimensions/x", shape=(0,))
    with pytest.raises(WellFormatError, match=r"/dimensions: axes \['x', 'y'\] have \[0, 5\] points"):
        load_well_dataset(folder, split="train", n_steps_input=2)


def test_a_field_that_declares_far_more_than_it_stores_is_refused(tmp_path, capsys):
    folder = dataset(tmp_path)
    path = first_file(folder)
    with h5py.File(path, "r+") as f:
        n_steps = f["dimensions/time"].shape[-1]
        f.attrs["n_trajectories"] = 10**7
        for group in ("t0_fields", "t1_fields", "t2_fields", "scalars"):
            for name in list(f[group]):
                node = f[group][name]
                if node.attrs.get("sample_varying"):
                    replace_dataset(f, f"{group}/{name}", shape=(10**7, *node.shape[1:]), chunks=True)
    assert os.path.getsize(path) < 10**6 and n_steps > 1
    outcome = finishes(lambda: check([path]))
    assert outcome.get("value") == 1, outcome
    assert "GiB of values (shape [10000000," in capsys.readouterr().out


def test_a_dangling_link_in_a_split_folder_is_named(tmp_path, capsys):
    folder = dataset(tmp_path)
    link = os.path.join(folder, "data", "train", "moved.hdf5")
    os.symlink(str(tmp_path / "gone.hdf5"), link)
    with pytest.raises(WellFormatError, match=rf"{re.escape(link)}: /: a symbolic link to .*gone.hdf5', which does "
                                              r"not exist"):
        load_well_dataset(folder, split="train", n_steps_input=2)
    assert check([folder]) == 1
    assert "which does not exist" in capsys.readouterr().out


def test_a_split_whose_fields_differ_from_trains_is_named(tmp_path):
    folder = dataset(tmp_path)
    path = first_file(folder, "valid")
    with h5py.File(path, "r+") as f:
        f["t0_fields"].move("a", "salinity")
        f["t0_fields"].attrs["field_names"] = ["salinity" if n in (b"a", "a") else n
                                               for n in f["t0_fields"].attrs["field_names"]]
    with pytest.raises(ValueError, match=r"dataset 'toy': split 'valid' \(.*toy_00.hdf5 and the rest\) has the fields "
                                         r"\['salinity', .*split 'train' has \['a', "):
        model_specs(str(tmp_path), ["toy"])
