"""bench/window_vrmse.py: per-window one-step VRMSE, whose mean is the split's and whose worst windows are listed."""

import os
import sys

import numpy as np

from modeling_pdefm import PDEFMConfig, PDEFMModel
from pdefm.data import load_well_dataset
from pdefm.train.evaluation.forecasters import PDEFMForecaster
from pdefm.train.evaluation.rollout import evaluate_one_step
from pdefm.train.training.batches import model_specs
from well_files import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import window_vrmse  # noqa: E402


def test_the_windows_mean_is_the_splits_one_step_vrmse(tmp_path, capsys):
    write_dataset(str(tmp_path / "data"), "flow2d", n_dims=2, resolution=(16, 16), n_steps=8, files_per_split=(1, 1, 1))
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(str(tmp_path / "data"), ["flow2d"])))
    model.save_pretrained(tmp_path / "model")
    dataset = load_well_dataset(str(tmp_path / "data" / "flow2d"), split="test", n_steps_input=4, n_steps_output=1)
    scores = window_vrmse.window_scores(str(tmp_path / "model"), dataset, 2)
    assert len(scores["model"]) == len(dataset) and (scores["target_std"] > 0).all()
    whole = evaluate_one_step(PDEFMForecaster(model), dataset, 2)
    np.testing.assert_allclose(scores["model"].mean(), whole["vrmse"], rtol=1e-5)
    np.testing.assert_allclose(scores["persistence"].mean(), whole["persistence_vrmse"], rtol=1e-5)
    assert window_vrmse.main([str(tmp_path / "model"), "--data", str(tmp_path / "data"), "--dataset", "flow2d"]) == 0
    row = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"| {tmp_path / 'model'}")][0]
    assert f"| {scores['model'].mean():.4f} |" in row and row.count("#") == min(5, len(dataset))
