"""bench/jitter_average.py: one model's weights evaluated at several grid counts, each evaluation kept and read back."""

import json
import os
import sys

import pytest
import torch

from modeling_pdefm import PDEFMConfig, PDEFMModel
from pdefm.train.training.batches import model_specs
from well_files import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import jitter_average  # noqa: E402


def _model(tmp_path, patch_jitter: bool) -> str:
    data = tmp_path / "data"
    if not data.exists():
        write_dataset(str(data), "flow2d", n_dims=2, resolution=(16, 16), n_steps=14, files_per_split=(1, 1, 1))
    torch.manual_seed(0)
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(str(data), ["flow2d"]),
                                               patch_jitter=patch_jitter))
    with torch.no_grad():  # a fresh head predicts no change, the same on every grid
        model.dataset_heads["flow2d"].out_proj.weight.normal_(std=0.3)
    folder = tmp_path / f"model_{patch_jitter}"
    model.save_pretrained(folder)
    return str(folder)


def test_each_count_is_evaluated_once_and_the_saved_model_keeps_its_own(tmp_path, capsys):
    folder = _model(tmp_path, patch_jitter=True)
    out = tmp_path / "out"
    argv = ["--data", str(tmp_path / "data"), "--split", "test", "--counts", "1", "3", "--rollout-steps", "4",
            "--out", str(out), f"m={folder}"]
    assert jitter_average.main(argv) == 0
    table = capsys.readouterr().out
    rows = [line for line in table.splitlines() if line.startswith("| m |")]
    assert [row.split(" | ")[1] for row in rows] == ["1", "3"]
    scores = [json.loads((out / "m" / k / "evaluation.json").read_text()) for k in ("k1", "k3")]
    assert [s["jitter_average"] for s in scores] == [1, 3]
    one, three = (s["datasets"]["flow2d"]["one_step"]["vrmse"] for s in scores)
    assert one != three  # the grids disagree, so their mean is another forecast
    assert json.loads((tmp_path / "model_True" / "config.json").read_text()).get("jitter_average", 1) == 1
    (out / "m" / "k3" / "evaluation.json").write_text(json.dumps({**scores[1], "datasets": scores[0]["datasets"]}))
    assert jitter_average.main(argv) == 0  # read back, not computed again: k3's row now shows k1's numbers
    again = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| m |")]
    assert again[1].split(" | ")[2:] == again[0].split(" | ")[2:]


def test_a_model_without_patch_jitter_is_refused_by_name(tmp_path):
    folder = _model(tmp_path, patch_jitter=False)
    with pytest.raises(SystemExit, match="trained without patch_jitter"):
        jitter_average.main(["--data", str(tmp_path / "data"), "--split", "test", "--counts", "2", "--out",
                             str(tmp_path / "out"), f"m={folder}"])
