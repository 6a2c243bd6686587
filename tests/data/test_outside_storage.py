"""Files that point outside themselves (HDF5 external storage, external links, virtual datasets) are refused by the
reader, the checker and predict, naming the file and the HDF5 path; nothing of the other file is read."""

import os
import shutil

import h5py
import numpy as np
import pytest

from pdefm.data import load_well_dataset
from pdefm.data.the_well import check
from pdefm.data.well_format import WellFormatError

from well_files import write_dataset

SECRET = b"TOP-SECRET-TOKEN" * 1024


def _dataset(tmp_path):
    return write_dataset(str(tmp_path / "data"), "toy", n_steps=6, files_per_split=(1, 1, 1))


def _train_file(folder):
    directory = os.path.join(folder, "data", "train")
    return os.path.join(directory, sorted(os.listdir(directory))[0])


def _plant(tmp_path, kind):
    """A dataset whose train file's field `a` is replaced by `kind` pointing at a secret file or another file."""
    folder = _dataset(tmp_path)
    path = _train_file(folder)
    secret = tmp_path / "secret.txt"
    secret.write_bytes(SECRET)
    other = tmp_path / "other.h5"
    with h5py.File(path, "r") as f:
        shape, dtype = f["t0_fields/a"].shape, f["t0_fields/a"].dtype
        attrs = dict(f["t0_fields/a"].attrs)
    with h5py.File(other, "w") as f:
        f.create_dataset("a", data=np.zeros(shape, dtype))
    with h5py.File(path, "a") as f:
        del f["t0_fields/a"]
        if kind == "external_storage":
            f["t0_fields"].create_dataset("a", shape=shape, dtype=dtype,
                                          external=[(str(secret), 0, int(np.prod(shape)) * dtype.itemsize)])
        elif kind == "external_link":
            f["t0_fields/a"] = h5py.ExternalLink(str(other), "/a")
        else:
            layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
            layout[...] = h5py.VirtualSource(str(other), "a", shape=shape)
            f["t0_fields"].create_virtual_dataset("a", layout)
        if kind != "external_link":
            for key, value in attrs.items():
                f["t0_fields/a"].attrs[key] = value
    return folder, path


@pytest.mark.parametrize("kind", ["external_storage", "external_link", "virtual"])
def test_reader_refuses_data_outside_the_file(tmp_path, kind):
    folder, path = _plant(tmp_path, kind)
    with pytest.raises(WellFormatError) as error:
        load_well_dataset(folder, split="train", n_steps_input=2)
    assert path in str(error.value) and "/t0_fields/a" in str(error.value)


@pytest.mark.parametrize("kind", ["external_storage", "external_link", "virtual"])
def test_checker_fails_a_file_with_data_outside_it(tmp_path, kind, capsys):
    folder, path = _plant(tmp_path, kind)
    assert check([folder]) >= 1
    out = capsys.readouterr().out
    assert f"FAIL {path}: /t0_fields/a" in out and f"ok   {path}" not in out


def test_a_soft_link_inside_the_file_is_still_read(tmp_path):
    folder = _dataset(tmp_path)
    path = _train_file(folder)
    with h5py.File(path, "a") as f:
        f.move("t0_fields/a", "a_store")
        f["t0_fields/a"] = h5py.SoftLink("/a_store")
    assert len(load_well_dataset(folder, split="train", n_steps_input=2)) > 0


def test_predict_does_not_copy_an_outside_file_into_its_forecast(tmp_path, capsys):
    from modeling_pdefm import PDEFMConfig, PDEFMModel
    from pdefm.train.predict import main as predict_main

    folder, path = _plant(tmp_path, "external_storage")
    model_dir = tmp_path / "model"
    spec = {"toy": {"n_fields": 1 + 2 + 4, "n_constant_fields": 1, "n_spatial_dims": 2, "n_constant_scalars": 2}}
    PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=spec, n_steps_input=2)).save_pretrained(model_dir)
    out = tmp_path / "pred.hdf5"
    code = predict_main(["--model", str(model_dir), "--input", path, "--steps", "1", "--out", str(out),
                         "--n-steps-input", "2"])
    assert code != 0 and not out.exists()
    assert "/t0_fields/a" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "data")
