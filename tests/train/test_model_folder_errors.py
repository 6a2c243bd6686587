"""A saved model folder that is damaged or edited is refused in one line naming the file, the key and what was
expected: config values of the wrong type, weights that are truncated, pickled, of another dtype or shape."""

import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from modeling_pdefm import PDEFMConfig, PDEFMModel
from pdefm.train.model_files.hub import ModelResolutionError
from pdefm.train.model_files.loading import load_pdefm

SPEC = {"flow": {"n_fields": 2, "n_spatial_dims": 2, "field_names": ["u", "p"]}}


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model")
    PDEFMModel(PDEFMConfig(datasets=SPEC)).save_pretrained(folder)
    return folder


def copy_of(saved, tmp_path):
    folder = tmp_path / "copy"
    shutil.copytree(saved, folder)
    return folder


@pytest.mark.parametrize("key, value, message", [
    ("use_film", "false", "use_film must be true or false"),
    ("compile_mamba", "false", "compile_mamba must be true or false"),
    ("predict_increment", "false", "predict_increment must be true or false"),
    ("normalize_inputs", "no", "normalize_inputs must be true or false"),
    ("layer_norm_eps", float("inf"), "layer_norm_eps must be a finite number"),
])
def test_a_config_value_of_the_wrong_type_is_refused_by_key(saved, tmp_path, key, value, message):
    folder = copy_of(saved, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config[key] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelResolutionError, match=rf"config.json: {message}"):
        load_pdefm(str(folder))
    with pytest.raises(ValueError, match=message):
        PDEFMConfig(datasets=SPEC, **{key: value})


def test_weights_stored_as_integers_are_refused_not_cast(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    weights = load_file(folder / "model.safetensors")
    key = next(k for k in weights if k.endswith("frame_proj.weight"))
    weights[key] = weights[key].round().to(torch.int64)
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ModelResolutionError, match=rf"tensor '{key}' is stored as I64"):
        load_pdefm(str(folder))


def test_weights_of_another_shape_are_refused_by_our_check(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    weights = load_file(folder / "model.safetensors")
    key = next(k for k in weights if k.endswith("frame_proj.weight"))
    weights[key] = torch.zeros(3, 3)
    save_file(weights, folder / "model.safetensors")
    with pytest.raises(ModelResolutionError, match=rf"tensor '{key}' has shape \[3, 3\], but its config.json builds"):
        load_pdefm(str(folder))


def test_a_truncated_weights_file_is_named(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(ModelResolutionError, match=r"model.safetensors cannot be read as safetensors .*truncated"):
        load_pdefm(str(folder))


def test_pickled_weights_are_refused_by_name_never_unpickled(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    os.remove(folder / "model.safetensors")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle")
    with pytest.raises(ModelResolutionError, match=r"holds pickled weights \(pytorch_model.bin\), which pdefm never "
                                                   r"loads"):
        load_pdefm(str(folder))


def test_field_names_edited_in_config_json_are_refused_against_the_weights_record(saved, tmp_path):
    from safetensors import safe_open

    with safe_open(saved / "model.safetensors", "pt") as f:
        assert json.loads(f.metadata()["pdefm_field_names"]) == {"flow": ["u", "p"]}
    load_pdefm(str(saved))
    folder = copy_of(saved, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["datasets"]["flow"]["field_names"] = ["p", "u"]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelResolutionError, match=r"config.json says dataset 'flow' has the fields \['p', 'u'\], its "
                                                   r"weights were saved for \['u', 'p'\]"):
        load_pdefm(str(folder))
