"""`pdefm predict` and model loading under hostile or careless input: the input is never replaced, a forecast that is
not finite or would not fit is refused, a weights file that does not fit its config is refused, and configs that
ask for absurd sizes or unknown keys are refused before anything is built."""

import json
import os

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from modeling_pdefm import PDEFMConfig, PDEFMModel
from pdefm.train.model_files.loading import load_pdefm
from pdefm.train.predict import main as predict_main

from well_files import write_dataset

SPEC = {"toy": {"n_fields": 1 + 2 + 4, "n_constant_fields": 1, "n_spatial_dims": 2, "n_constant_scalars": 2}}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("predict_safety")
    folder = write_dataset(str(root / "data"), "toy", n_steps=6, files_per_split=(1, 1, 1), time_scalars=False)
    torch.manual_seed(0)
    model_dir = root / "model"
    PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=SPEC, n_steps_input=2)).save_pretrained(model_dir)
    source = os.path.join(folder, "data", "test", sorted(os.listdir(os.path.join(folder, "data", "test")))[0])
    return root, str(model_dir), source


def predict(model, source, out, *extra):
    return predict_main(["--model", model, "--input", source, "--out", str(out), "--n-steps-input", "2", *extra])


def test_out_through_a_symlinked_folder_never_replaces_the_input(setup, tmp_path, capsys):
    _, model, source = setup
    before = open(source, "rb").read()
    link = tmp_path / "link"
    link.symlink_to(os.path.dirname(source))
    assert predict(model, source, link / os.path.basename(source), "--steps", "1") == 2
    assert "is the input file" in capsys.readouterr().err
    hard = tmp_path / "hard.hdf5"
    os.link(source, hard)
    assert predict(model, str(hard), source, "--steps", "1") == 2
    assert open(source, "rb").read() == before


@pytest.mark.parametrize("out, message", [("", "--out is empty"), (".", "is a folder"),
                                          ("missing/x.hdf5", "does not exist")])
def test_bad_output_paths_are_named(setup, tmp_path, out, message, capsys, monkeypatch):
    _, model, source = setup
    monkeypatch.chdir(tmp_path)
    assert predict(model, source, out, "--steps", "1") == 2
    assert message in capsys.readouterr().err


def test_zero_input_frames_and_zero_steps_are_refused(setup, tmp_path, capsys):
    _, model, source = setup
    assert predict_main(["--model", model, "--input", source, "--out", str(tmp_path / "p.hdf5"), "--steps", "1",
                         "--n-steps-input", "0"]) == 2
    assert "--n-steps-input must be a positive" in capsys.readouterr().err
    assert predict(model, source, tmp_path / "p.hdf5", "--steps", "0") == 2
    assert "--steps must be >= 1" in capsys.readouterr().err


def test_a_forecast_too_large_for_the_disk_is_refused_at_once(setup, tmp_path, capsys):
    _, model, source = setup
    assert predict(model, source, tmp_path / "p.hdf5", "--steps", str(10**12)) == 2
    assert "free disk space" in capsys.readouterr().err and not (tmp_path / "p.hdf5").exists()
    loaded = PDEFMModel.from_pretrained(model)
    batch = {"input_fields": torch.zeros(1, 2, 6, 5, 7), "dataset_name": "toy",
             "constant_fields": torch.zeros(1, 6, 5, 1), "constant_scalars": torch.ones(1, 2)}
    with pytest.raises(ValueError, match="n_steps=1000000000000: the predicted frames alone"):
        loaded.rollout(batch, n_steps=10**12)


def test_a_forecast_that_is_not_finite_is_not_written(setup, tmp_path, capsys):
    _, model, source = setup
    broken = tmp_path / "broken"
    PDEFMModel.from_pretrained(model).save_pretrained(broken)
    weights = load_file(broken / "model.safetensors")
    key = next(k for k in weights if "out_proj.weight" in k)
    weights[key] = torch.full_like(weights[key], float("nan"))
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    assert predict(str(broken), source, tmp_path / "p.hdf5", "--steps", "2") == 2
    err = capsys.readouterr().err
    assert "not finite from step 1" in err and "field 'a'" in err and not (tmp_path / "p.hdf5").exists()


def test_a_weights_file_missing_a_weight_is_refused(setup, tmp_path):
    _, model, _ = setup
    damaged = tmp_path / "damaged"
    PDEFMModel.from_pretrained(model).save_pretrained(damaged)
    weights = load_file(damaged / "model.safetensors")
    dropped = next(k for k in weights if "decoders" in k)
    del weights[dropped]
    save_file(weights, damaged / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(OSError, match=rf"1 missing from the weights file \({dropped}"):
        load_pdefm(str(damaged))


def test_absurd_sizes_are_refused_before_anything_is_built(setup, tmp_path, monkeypatch):
    _, model, _ = setup
    big = tmp_path / "big"
    os.makedirs(big)
    config = json.load(open(os.path.join(model, "config.json")))
    config["num_layers"] = 1_000_000
    json.dump(config, open(big / "config.json", "w"))
    with pytest.raises(ValueError, match="about .* parameters .*num_layers=1000000.*PDEFM_MAX_PARAMETERS"):
        PDEFMConfig.from_pretrained(big)
    monkeypatch.setenv("PDEFM_MAX_PARAMETERS", "1e12")
    assert PDEFMConfig.from_pretrained(big).num_layers == 1_000_000  # asked for explicitly: built as told
    monkeypatch.setenv("PDEFM_MAX_PARAMETERS", "lots")
    with pytest.raises(ValueError, match="PDEFM_MAX_PARAMETERS='lots'"):
        PDEFMConfig()


def test_unknown_config_keys_are_refused_unless_a_newer_format_wrote_them(setup, tmp_path, caplog):
    _, model, _ = setup
    with pytest.raises(ValueError, match=r"unknown PDEFMConfig keys \['hidden_sise'\]"):
        PDEFMConfig(hidden_sise=64)
    typo = tmp_path / "typo"
    os.makedirs(typo)
    config = json.load(open(os.path.join(model, "config.json")))
    json.dump({**config, "num_layer": 3}, open(typo / "config.json", "w"))
    with pytest.raises(ValueError, match="num_layer"):
        PDEFMConfig.from_pretrained(typo)
    json.dump({**config, "num_layer": 3, "pdefm_format": 99}, open(typo / "config.json", "w"))
    assert PDEFMConfig.from_pretrained(typo).num_layers == config["num_layers"]


def test_a_long_forecast_is_written_frame_by_frame_with_the_same_values(setup, tmp_path, monkeypatch):
    """The forecast streams to the file (no frame list is kept) and equals the in-memory rollout."""
    import h5py

    from pdefm.data import WellSplitReader
    from pdefm.train import predict as predict_module
    from pdefm.train.evaluation.forecasters import PDEFMForecaster
    from pdefm.train.evaluation.rollout import rollout

    _, model, source = setup
    out = tmp_path / "p.hdf5"
    written = []
    original = predict_module.write_prediction

    def spy(input_path, out_path, given, predicted, steps, model_id):
        assert not isinstance(predicted, (list, tuple, np.ndarray))  # a stream, not a held forecast

        def counted():
            for frame in predicted:
                written.append(frame.shape)
                yield frame
        return original(input_path, out_path, given, counted(), steps, model_id)

    monkeypatch.setattr(predict_module, "write_prediction", spy)
    assert predict(model, source, out, "--steps", "4") == 0
    assert len(written) == 4
    reader = WellSplitReader([str(out)], n_steps_input=2, n_steps_output=4)
    loaded = PDEFMModel.from_pretrained(model)
    batch = predict_module.first_windows(WellSplitReader([source], n_steps_input=2, n_steps_output=1), "toy", 4)
    expected = rollout(PDEFMForecaster(loaded), batch, 4)
    torch.testing.assert_close(reader[0]["output_fields"], expected[0].to(reader[0]["output_fields"].dtype),
                               atol=1e-5, rtol=1e-5)
    with h5py.File(out) as f:
        assert f.attrs["pdefm_predicted_steps"] == 4


def test_an_existing_out_is_replaced_only_when_asked_and_only_if_it_is_a_regular_file(setup, tmp_path, capsys):
    """`--out` naming an existing file (an earlier forecast, the model's own weights) is refused unless
    `--overwrite`; a FIFO or a link is never written through."""
    _, model, source = setup
    weights = os.path.join(model, "model.safetensors")
    before = open(weights, "rb").read()
    assert predict(model, source, weights, "--steps", "1") == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert open(weights, "rb").read() == before
    earlier = tmp_path / "earlier.hdf5"
    earlier.write_bytes(b"an earlier forecast")
    assert predict(model, source, earlier, "--steps", "1") == 2
    assert earlier.read_bytes() == b"an earlier forecast"
    assert predict(model, source, earlier, "--steps", "1", "--overwrite") == 0
    assert earlier.read_bytes()[:8] == b"\x89HDF\r\n\x1a\n"  # replaced by the forecast
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link.hdf5"
    link.symlink_to(tmp_path / "elsewhere.hdf5")
    for path in (fifo, link):
        assert predict(model, source, path, "--steps", "1", "--overwrite") == 2
        assert "is not a regular file" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere.hdf5").exists()
