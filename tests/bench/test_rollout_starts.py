"""bench/rollout_starts.py: rollout VRMSE per start, whose mean over starts is the evaluation's rollout."""

import os
import sys

import numpy as np

from modeling_pdefm import PDEFMConfig, PDEFMModel
from pdefm.train.evaluation.forecasters import PDEFMForecaster
from pdefm.train.evaluation.rollout import evaluate_rollout
from pdefm.train.training.batches import model_specs
from well_files import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import rollout_starts  # noqa: E402


def test_the_mean_over_starts_is_the_evaluations_rollout(tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset(str(data), "flow2d", n_dims=2, resolution=(16, 16), n_steps=14, files_per_split=(1, 1, 1))
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(str(data), ["flow2d"])))
    model.save_pretrained(tmp_path / "model")
    forecaster = PDEFMForecaster(model)
    labels, scores = rollout_starts.per_start({"m": forecaster}, str(data / "flow2d"), 2, 6, 3,
                                             forecaster.n_steps_input)
    whole = evaluate_rollout(forecaster, str(data / "flow2d"), "test", 2, max_steps=6, starts_per_trajectory=3)
    assert len(labels) == whole["starts"] and scores["m"].shape == (whole["starts"], 6)
    np.testing.assert_allclose(scores["m"].mean(axis=0), whole["vrmse_per_step"], rtol=1e-5)
    np.testing.assert_allclose(scores["persistence"].mean(axis=0), whole["persistence_vrmse_per_step"], rtol=1e-5)
    assert len({frame for _, _, frame in labels}) == 3  # starts spread over each trajectory
    argv = ["--data", str(data), "--dataset", "flow2d", "--starts", "3", "--steps", "6", "--show", "1,6",
            f"m={tmp_path / 'model'}"]
    assert rollout_starts.main(argv) == 0
    out = capsys.readouterr().out
    mean_row = [line for line in out.splitlines() if line.startswith("| all (") and "| m |" in line][0]
    assert f"| {scores['m'].mean(axis=0)[-1]:.3f} |" in mean_row
