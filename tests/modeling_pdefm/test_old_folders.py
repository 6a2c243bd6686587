"""A model folder saved by an earlier pdefm keeps loading and predicting the same frames (renamed keys and classes
are mapped on load). The folder was written by `fixtures/make_pdefm_0_2_0.py` with pdefm 0.2.0."""

from pathlib import Path

import torch
from safetensors.torch import load_file

from modeling_pdefm import PDEFMModel

FOLDER_0_2_0 = Path(__file__).parent / "fixtures" / "pdefm_0_2_0"


def test_a_0_2_0_folder_loads_and_predicts_the_frames_it_predicted():
    model = PDEFMModel.from_pretrained(FOLDER_0_2_0).eval()
    saved = load_file(FOLDER_0_2_0 / "expected.safetensors")
    for name in ("flow2d", "blob3d"):
        inputs = {k[len(name) + 1:]: v for k, v in saved.items()
                  if k.startswith(name + "_") and not k.endswith("expected_step1")}
        with torch.no_grad():
            prediction = model(**inputs, dataset_name=name, n_steps=1).prediction
        torch.testing.assert_close(prediction, saved[f"{name}_expected_step1"], rtol=1e-5, atol=1e-6)
        assert float((prediction - inputs["input_fields"][:, -1:]).abs().max()) > 1e-3  # it predicts a change


def test_a_0_2_0_folder_is_saved_again_under_todays_names(tmp_path):
    """0.2.0's `adapters.<name>.*` weights and `adapter_channels` and `decoder` keys are read as the dataset heads,
    `latent_channels` and `decoder_type`, and written back under those names (plain `load_state_dict` renames them too)."""
    import json

    model = PDEFMModel.from_pretrained(FOLDER_0_2_0)
    old = json.load(open(FOLDER_0_2_0 / "config.json"))
    assert model.config.latent_channels == old["adapter_channels"] and model.config.decoder_type == old["decoder"]
    model.save_pretrained(tmp_path)
    saved = load_file(tmp_path / "model.safetensors")
    assert any(k.startswith("dataset_heads.flow2d.") for k in saved) and not any(k.startswith("adapters.") for k in saved)
    assert not {"adapter_channels", "decoder"} & set(json.load(open(tmp_path / "config.json")))
    again = PDEFMModel.from_pretrained(tmp_path)
    old = PDEFMModel(model.config)
    old.load_state_dict(load_file(FOLDER_0_2_0 / "model.safetensors"))
    for other in (again, old):
        for key, value in model.state_dict().items():
            assert torch.equal(other.state_dict()[key], value), key


def test_a_0_2_0_lora_adapter_with_a_new_dataset_head_loads_and_predicts_what_it_predicted():
    """0.2.0 saved the new dataset's head as PEFT `modules_to_save` named `adapters.<name>`; loaded today, that head
    must come with it (under `dataset_heads.<name>`), not start afresh. The folder itself is not written."""
    import os

    from pdefm.train.model_files.loading import load_pdefm

    folder = FOLDER_0_2_0.parent / "pdefm_0_2_0_adapter"
    before = {name: os.path.getmtime(folder / "waves_lora" / name) for name in os.listdir(folder / "waves_lora")}
    saved = load_file(folder / "expected.safetensors")
    for merge in (True, False):
        model = load_pdefm(str(FOLDER_0_2_0), adapter=str(folder / "waves_lora"), merge=merge).eval()
        with torch.no_grad():
            prediction = model(input_fields=saved["input_fields"], dataset_name="waves", n_steps=1).prediction
        torch.testing.assert_close(prediction, saved["expected_step1"], rtol=1e-5, atol=1e-6)
    assert {name: os.path.getmtime(folder / "waves_lora" / name) for name in os.listdir(folder / "waves_lora")} == before
