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
