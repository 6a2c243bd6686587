import hashlib
import logging
import os
import shutil

import fsspec
import h5py
import numpy as np
import pytest
import the_well.data as the_well  # noqa: E402  (test dependency: pip install --no-deps the-well==1.2.0)
import torch
import yaml
from datasets.distributed import split_dataset_by_node
from the_well.data.normalization import RMSNormalization, ZScoreNormalization  # noqa: E402

from pdefm.data import (
    WELL_DATASETS,
    NonFiniteWindowError,
    StatsError,
    WellFormatError,
    WellNormalizer,
    collate_window_samples,
    load_well_dataset,
    open_well_split,
)
from pdefm.data.the_well import compute_stats
from pdefm.data.the_well import main as cli

from well_files import write_dataset


@pytest.fixture(scope="module")
def toy2d(tmp_path_factory):
    folder = write_dataset(str(tmp_path_factory.mktemp("well")), "toy2d", n_dims=2)
    compute_stats(folder)
    return folder


@pytest.fixture(scope="module")
def toy3d(tmp_path_factory):
    folder = write_dataset(str(tmp_path_factory.mktemp("well")), "toy3d", n_dims=3, sample_varying_time=True,
                           boundaries={"x": "OPEN", "y": ("PERIODIC", "WALL"), "z": ("WALL", "WALL")})
    compute_stats(folder)
    return folder


def assert_same_sample(ours: dict, theirs: dict):
    names = {"dataset_name", "field_names"}
    assert set(ours) - names == set(theirs), (sorted(ours), sorted(theirs))
    for key, value in theirs.items():
        assert tuple(ours[key].shape) == tuple(value.shape), key
        assert torch.allclose(ours[key].double(), value.double(), atol=1e-6, rtol=0), key


PARITY_CASES = [
    dict(n_steps_input=1, n_steps_output=1),
    dict(n_steps_input=4, n_steps_output=1),
    dict(n_steps_input=2, n_steps_output=3),
    dict(n_steps_input=2, n_steps_output=1, dt_stride=2),
]


@pytest.mark.parametrize("case", PARITY_CASES, ids=str)
@pytest.mark.parametrize("fixture", ["toy2d", "toy3d"])
@pytest.mark.parametrize("normalization", [None, "zscore", "rms"])
def test_parity_with_the_wells_loader(request, fixture, case, normalization):
    folder = request.getfixturevalue(fixture)
    stride = case.get("dt_stride", 1)
    theirs = the_well.WellDataset(
        path=folder, well_split_name="train", n_steps_input=case["n_steps_input"], n_steps_output=case["n_steps_output"],
        min_dt_stride=stride, max_dt_stride=stride, use_normalization=normalization is not None,
        normalization_type={"zscore": ZScoreNormalization, "rms": RMSNormalization, None: None}[normalization],
    )
    ours = load_well_dataset(folder, split="train", use_normalization=normalization is not None,
                             normalization=normalization or "zscore", **case)
    assert len(ours) == len(theirs)
    for index in sorted({0, 1, len(theirs) // 2, len(theirs) - 1}):
        assert_same_sample(ours[index], theirs[index])


def test_every_boundary_type_is_decoded(toy3d):
    sample = load_well_dataset(toy3d, n_steps_input=1)[0]
    # x OPEN both sides, y PERIODIC low / WALL high, z WALL both: codes WALL=0, OPEN=1, PERIODIC=2.
    assert sample["boundary_conditions"].tolist() == [[1, 1], [2, 0], [0, 0]]


def test_windows_follow_the_wells_order(toy2d):
    reader = open_well_split(toy2d, n_steps_input=2, n_steps_output=1)
    windows = reader.windows_per_trajectory[0]
    assert windows == 9 - 2
    assert reader.locate(0) == (0, 0, 0)
    assert reader.locate(windows + 1) == (0, 1, 1)
    assert reader.locate(2 * windows) == (1, 0, 0)


def test_sample_holds_names_and_batches_for_the_model(toy2d):
    from modeling_pdefm import PDEFMConfig, PDEFMModel

    ds = load_well_dataset(toy2d, n_steps_input=2)
    sample = ds[0]
    assert sample["dataset_name"] == "toy2d"
    assert sample["field_names"] == ["a", "v_x", "v_y", "C_xx", "C_xy", "C_yx", "C_yy"]
    reader = open_well_split(toy2d, n_steps_input=2)
    config = PDEFMConfig.from_preset("tiny", datasets={"toy2d": reader.meta.model_spec()}, n_steps_input=2)
    batch = collate_window_samples([ds[i] for i in range(3)])
    out = PDEFMModel(config)(**batch)
    assert out.prediction.shape == batch["output_fields"].shape


def test_torch_dataloader_with_workers(toy2d):
    ds = load_well_dataset(toy2d, n_steps_input=2)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, collate_fn=collate_window_samples)
    seen = torch.cat([b["input_fields"] for b in loader])
    assert seen.shape[0] == len(ds)
    assert torch.equal(seen[5], ds[5]["input_fields"])


def test_streaming_yields_the_same_samples_in_order(toy2d):
    mapped = load_well_dataset(toy2d, n_steps_input=2)
    streamed = load_well_dataset(toy2d, n_steps_input=2, streaming=True)
    assert streamed.num_shards == 2  # one shard per file
    samples = list(streamed)
    assert len(samples) == len(mapped)
    for i in (0, 7, len(mapped) - 1):
        assert torch.equal(samples[i]["input_fields"], mapped[i]["input_fields"])
        assert torch.equal(samples[i]["boundary_conditions"], mapped[i]["boundary_conditions"])


def test_streaming_splits_by_node(toy2d):
    streamed = load_well_dataset(toy2d, n_steps_input=2, streaming=True)
    parts = [list(split_dataset_by_node(streamed, rank=r, world_size=2)) for r in range(2)]
    total = len(load_well_dataset(toy2d, n_steps_input=2))
    assert len(parts[0]) + len(parts[1]) == total and len(parts[0]) == total // 2
    first = {p["input_fields"].sum().item() for p in parts[0]}
    assert not first & {p["input_fields"].sum().item() for p in parts[1]}


def test_map_style_splits_by_node(toy2d):
    ds = load_well_dataset(toy2d, n_steps_input=2)
    halves = [split_dataset_by_node(ds, rank=r, world_size=2) for r in range(2)]
    assert len(halves[0]) + len(halves[1]) == len(ds)
    assert torch.equal(halves[1][0]["input_fields"], ds[len(halves[0])]["input_fields"])


def test_denormalization_inverts_normalization(toy2d):
    raw = load_well_dataset(toy2d, n_steps_input=2)[4]
    normed = load_well_dataset(toy2d, n_steps_input=2, use_normalization=True)[4]
    reader = open_well_split(toy2d, n_steps_input=2, use_normalization=True)
    assert not torch.allclose(raw["input_fields"], normed["input_fields"])
    back = reader.normalizer.denormalize(normed["input_fields"])
    assert torch.allclose(back, raw["input_fields"], atol=1e-5)
    back_const = reader.normalizer.denormalize(normed["constant_fields"], "constant_fields")
    assert torch.allclose(back_const, raw["constant_fields"], atol=1e-5)


def test_stats_match_numpy_and_floor_std(tmp_path, toy2d):
    stats = yaml.safe_load(open(os.path.join(toy2d, "stats.yaml")))
    values = []
    for name in sorted(os.listdir(os.path.join(toy2d, "data", "train"))):
        with h5py.File(os.path.join(toy2d, "data", "train", name)) as f:
            values.append(f["t1_fields/v"][()])
            deltas = f["t0_fields/a"][()]
    v = np.concatenate(values)
    assert np.allclose(stats["mean"]["v"], v.reshape(-1, 2).mean(0), atol=1e-6)
    assert np.allclose(stats["std"]["v"], v.reshape(-1, 2).std(0), atol=1e-6)
    assert np.array(stats["mean"]["C"]).shape == (2, 2)
    assert "b" in stats["mean"] and "a" in stats["std_delta"]
    del deltas
    reader = open_well_split(toy2d)
    normalizer = WellNormalizer({"mean": {**stats["mean"], "a": 0.0}, "std": {**stats["std"], "a": 0.0}},
                                reader.meta.variable_fields, reader.meta.constant_fields)
    assert normalizer.scale["fields"][0] == np.float32(1e-4)


def test_load_by_name_from_the_registry(tmp_path):
    write_dataset(str(tmp_path), "shear_flow", n_dims=2, tensor_fields=False, constant_fields=False)
    ds = load_well_dataset("shear_flow", well_base_path=str(tmp_path), split="valid", n_steps_input=1)
    assert len(ds) == 2 * 8
    assert WELL_DATASETS["shear_flow"].model_spec()["n_fields"] == 4
    with pytest.raises(ValueError, match="well_base_path"):
        load_well_dataset("shear_flow")


def test_fsspec_url_reads_without_local_files(toy2d):
    memory = fsspec.filesystem("memory")
    for root, _, files in os.walk(toy2d):
        for name in files:
            rel = os.path.relpath(os.path.join(root, name), toy2d)
            with open(os.path.join(root, name), "rb") as src, memory.open(f"/remote/toy2d/{rel}", "wb") as dst:
                dst.write(src.read())
    remote = load_well_dataset("memory://remote/toy2d", n_steps_input=2, use_normalization=True)
    local = load_well_dataset(toy2d, n_steps_input=2, use_normalization=True)
    assert len(remote) == len(local)
    assert torch.equal(remote[3]["input_fields"], local[3]["input_fields"])


def test_fields_not_varying_along_an_axis_are_broadcast(tmp_path):
    from pdefm.data.well_writer import WellField, axis_boundaries, write_well_file

    os.makedirs(tmp_path / "d" / "data" / "train")
    profile = np.arange(4, dtype=np.float32)  # varies along x only; y omitted as the format says
    write_well_file(
        tmp_path / "d" / "data" / "train" / "f.hdf5", dataset_name="d", spatial_dims=("x", "y"),
        coordinates={"x": np.arange(4), "y": np.arange(3)}, time=np.arange(5.0), n_trajectories=1,
        fields=[WellField("u", np.zeros((1, 5, 4, 3))),
                WellField("k", profile, time_varying=False, sample_varying=False, dim_varying=[True, False])],
        boundaries=axis_boundaries(("x", "y"), (4, 3), {"x": "PERIODIC", "y": "PERIODIC"}),
    )
    sample = load_well_dataset(str(tmp_path / "d"), n_steps_input=1)[0]
    assert sample["constant_fields"].shape == (4, 3, 1)
    assert torch.equal(sample["constant_fields"][:, 2, 0], torch.from_numpy(profile))


# ------------------------------------------------------------------------------------------- bad input
def _copy(folder, tmp_path):
    target = tmp_path / os.path.basename(folder)
    shutil.copytree(folder, target)
    return str(target)


def _first_train_file(folder):
    train = os.path.join(folder, "data", "train")
    return os.path.join(train, sorted(os.listdir(train))[0])


def test_missing_group_names_file_and_path(tmp_path, toy2d):
    folder = _copy(toy2d, tmp_path)
    path = _first_train_file(folder)
    with h5py.File(path, "a") as f:
        del f["scalars"]
    with pytest.raises(WellFormatError, match=r"toy2d_00.hdf5: /scalars: missing group 'scalars'"):
        load_well_dataset(folder)


def test_missing_attribute(tmp_path, toy2d):
    folder = _copy(toy2d, tmp_path)
    with h5py.File(_first_train_file(folder), "a") as f:
        del f["t1_fields/v"].attrs["dim_varying"]
    with pytest.raises(WellFormatError, match=r"/t1_fields/v: missing attribute 'dim_varying'"):
        load_well_dataset(folder)


def test_shape_that_disagrees_with_flags(tmp_path, toy2d):
    folder = _copy(toy2d, tmp_path)
    with h5py.File(_first_train_file(folder), "a") as f:
        f["t0_fields/a"].attrs["sample_varying"] = False
    with pytest.raises(WellFormatError, match=r"/t0_fields/a: shape \(2, 9, 6, 5\) disagrees with its flags \(sample_varying=False.*expected \(9, 6, 5\)"):
        load_well_dataset(folder)


def test_truncated_and_foreign_files(tmp_path, toy2d):
    folder = _copy(toy2d, tmp_path)
    path = _first_train_file(folder)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 3])
    with pytest.raises(WellFormatError, match=r"toy2d_00.hdf5: /: not a readable HDF5 file"):
        load_well_dataset(folder)
    open(path, "w").write("name,value\nx,1\n")
    with pytest.raises(WellFormatError, match="not a readable HDF5 file"):
        load_well_dataset(folder)


def test_files_that_disagree(tmp_path, toy2d):
    folder = _copy(toy2d, tmp_path)
    write_dataset(str(tmp_path / "other"), "toy2d", n_dims=2, resolution=(8, 5), files_per_split=(1, 0, 0))
    shutil.copy(tmp_path / "other" / "toy2d" / "data" / "train" / "toy2d_00.hdf5", os.path.join(folder, "data", "train", "toy2d_99.hdf5"))
    with pytest.raises(WellFormatError, match=r"toy2d_99.hdf5: /: disagrees with .*toy2d_00.hdf5 on resolution: resolution \(8, 5\) vs \(6, 5\)"):
        load_well_dataset(folder)


def test_stats_missing_a_field(tmp_path, toy2d):
    folder = _copy(toy2d, tmp_path)
    stats_path = os.path.join(folder, "stats.yaml")
    stats = yaml.safe_load(open(stats_path))
    del stats["std"]["C"]
    yaml.safe_dump(stats, open(stats_path, "w"))
    with pytest.raises(StatsError, match=r"stats.yaml: 'std' has no entry for field 'C'"):
        load_well_dataset(folder, use_normalization=True)


def test_window_longer_than_the_trajectory(toy2d):
    with pytest.raises(ValueError, match=r"trajectories have 9 steps, fewer than a window of 6 input and 4 output steps"):
        load_well_dataset(toy2d, n_steps_input=6, n_steps_output=4)


def test_nan_is_reported_with_its_location(tmp_path):
    folder = write_dataset(str(tmp_path), "nan", nan_at=(1, 1, 5))
    ds = load_well_dataset(folder, n_steps_input=2)
    reader = open_well_split(folder, n_steps_input=2)
    bad = reader.file_offsets[1] + 1 * reader.windows_per_trajectory[1] + 4  # frames 4, 5, 6
    with pytest.raises(NonFiniteWindowError, match=r"nan_01.hdf5: trajectory 1, time index 5, channel 'a'"):
        ds[bad]
    ds[bad - 4]  # a window without the NaN reads fine


def test_skip_option_drops_and_counts_nan_windows(tmp_path, caplog):
    folder = write_dataset(str(tmp_path), "nan", nan_at=(1, 1, 5))
    with caplog.at_level(logging.WARNING):
        ds = load_well_dataset(folder, n_steps_input=2, on_nonfinite="skip")
    full = open_well_split(folder, n_steps_input=2)
    assert len(ds) == len(full) - 3  # the windows starting at 3, 4 and 5 hold step 5
    assert "skipped 3 of" in caplog.text
    assert all(torch.isfinite(ds[i]["input_fields"]).all() for i in range(len(ds)))
    streamed = list(load_well_dataset(folder, n_steps_input=2, streaming=True, on_nonfinite="skip"))
    assert len(streamed) == len(ds)


def test_reader_never_writes_data_files(toy2d):
    def digests():
        out = {}
        for root, _, files in os.walk(os.path.join(toy2d, "data")):
            for name in files:
                path = os.path.join(root, name)
                out[path] = (os.path.getmtime(path), hashlib.sha256(open(path, "rb").read()).hexdigest())
        return out

    before = digests()
    ds = load_well_dataset(toy2d, n_steps_input=2, use_normalization=True)
    for i in range(len(ds)):
        ds[i]
    list(load_well_dataset(toy2d, streaming=True))
    assert digests() == before


def test_bad_arguments(toy2d):
    with pytest.raises(ValueError, match="split must be one of"):
        load_well_dataset(toy2d, split="training")
    with pytest.raises(ValueError, match="n_steps_input must be a positive int"):
        load_well_dataset(toy2d, n_steps_input=0)
    with pytest.raises(ValueError, match="normalization must be one of"):
        load_well_dataset(toy2d, use_normalization=True, normalization="minmax")
    with pytest.raises(FileNotFoundError, match="no HDF5 files"):
        load_well_dataset(os.path.join(toy2d, "nowhere"))


# ------------------------------------------------------------------------------------------- command line
def test_cli_check_reports_problems(tmp_path, toy2d, capsys):
    assert cli(["check", toy2d]) == 0
    assert "all files follow The Well's format" in capsys.readouterr().out
    folder = _copy(toy2d, tmp_path)
    with h5py.File(_first_train_file(folder), "a") as f:
        del f["dimensions/x"]
    assert cli(["check", folder]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "/dimensions/x: missing coordinates of axis 'x'" in out


def test_cli_info(toy3d, capsys):
    assert cli(["info", toy3d, "--n-steps-input", "2"]) == 0
    out = capsys.readouterr().out
    assert "[train] toy3d: 2 files, 4 trajectories of 9 steps, 28 windows (2 in, 1 out)" in out
    assert "boundary y: low PERIODIC, high WALL" in out
    assert "C_zz" in out


def test_recycled_window_memory_is_never_overwritten_while_held(toy3d, monkeypatch):
    import pdefm.data.well_reader as well_reader

    monkeypatch.setattr(well_reader, "OUTPUT_POOL_MIN_ELEMENTS", 0)  # recycle even these small windows
    reader = open_well_split(toy3d, "train", n_steps_input=2, n_steps_output=1)
    expected = [open_well_split(toy3d, "train", n_steps_input=2, n_steps_output=1)[i] for i in range(3)]
    held = reader[0]["input_fields"]  # a view of the window's memory, kept
    first_ptr = held.data_ptr()
    second = reader[1]
    assert torch.equal(held, expected[0]["input_fields"]) and second["input_fields"].data_ptr() != first_ptr
    del held
    third = reader[2]["input_fields"]  # the first window's memory is free again and is recycled
    assert third.data_ptr() == first_ptr and torch.equal(third, expected[2]["input_fields"])
    assert torch.equal(second["input_fields"], expected[1]["input_fields"])


def test_the_window_format_is_what_the_reader_gives_and_the_model_takes(tmp_path):
    """`pdefm.data.window.WellWindow` is the one description of a window: a sample with every optional entry has
    exactly its keys, and the model takes each key either as an argument or as one it knowingly ignores."""
    import inspect

    from modeling_pdefm.modeling_pdefm import IGNORED_BATCH_KEYS, PDEFMModel
    from pdefm.data import WINDOW_KEYS, WellWindow

    folder = write_dataset(str(tmp_path), "full", n_dims=2, files_per_split=(1, 1, 1), constant_fields=True,
                           time_scalars=True)
    sample = load_well_dataset(folder, split="train", n_steps_input=2)[0]
    assert set(sample) == WINDOW_KEYS
    assert WellWindow.__required_keys__ <= set(sample)
    arguments = set(inspect.signature(PDEFMModel.forward).parameters) - {"self", "kwargs"}
    assert WINDOW_KEYS - arguments == IGNORED_BATCH_KEYS


def test_split_reader_refuses_a_dataset_without_a_window_reader(toy2d):
    import datasets

    from pdefm.data import split_reader

    with pytest.raises(TypeError, match="expected a map-style dataset from load_well_dataset, got Dataset"):
        split_reader(datasets.Dataset.from_dict({"window": [0, 1]}))
    with pytest.raises(TypeError, match="streaming datasets carry none"):
        split_reader(load_well_dataset(toy2d, split="train", n_steps_input=2, streaming=True))


def test_cli_info_of_one_file_names_its_datasets_stats(toy3d, capsys):
    from pdefm.data.the_well import compute_stats

    path = compute_stats(toy3d)
    first = os.path.join(toy3d, "data", "train", sorted(os.listdir(os.path.join(toy3d, "data", "train")))[0])
    assert cli(["info", first, "--n-steps-input", "2"]) == 0
    assert f"stats.yaml: {path} (its dataset's)" in capsys.readouterr().out
