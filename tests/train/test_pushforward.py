"""Pushforward: a training window moved `k` steps into the model's own rollout, without a gradient."""

import json

import pytest
import torch
from accelerate.state import AcceleratorState

import pdefm.train.pretrain as pretrain
from modeling_pdefm import PDEFMModel
from pdefm.train.training.config import PretrainConfig, resume_conflicts
from pdefm.train.training.pushforward import pushforward_batch, pushforward_most, pushforward_steps_at

from conftest import make_batch, tiny_config
from well_files import write_dataset

T_IN, T_OUT, MOST = 2, 2, 2


def _model() -> PDEFMModel:
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config())
    with torch.no_grad():  # a fresh adapter predicts "no change"; give it a change to roll out
        model.dataset_heads["shear_flow"].out_proj.weight.normal_(std=0.3)
    return model


def _batch() -> dict:
    batch = make_batch("shear_flow", t_in=T_IN, t_out=T_OUT + MOST)
    batch["output_fields"] = batch.pop("labels")
    return batch


def test_the_drawn_steps_cover_zero_to_the_most_and_are_fixed_by_seed_and_step():
    draws = [pushforward_steps_at(0, step, MOST) for step in range(200)]
    assert set(draws) == set(range(MOST + 1))
    assert draws == [pushforward_steps_at(0, step, MOST) for step in range(200)]  # a resumed run draws the same
    assert draws != [pushforward_steps_at(1, step, MOST) for step in range(200)]
    assert {pushforward_steps_at(0, step, 0) for step in range(50)} == {0}


def test_the_most_steps_grow_from_zero_to_the_configured_over_training():
    assert [pushforward_most(p, 3) for p in (0.0, 0.2, 0.25, 0.5, 0.74, 0.75, 0.99, 1.0)] == [0, 0, 1, 2, 2, 3, 3, 3]
    assert pushforward_most(0.9, 0) == 0


def test_zero_steps_keep_the_true_window_and_trim_the_targets():
    batch = _batch()
    moved = pushforward_batch(_model(), batch, 0, T_OUT, "cpu")
    assert torch.equal(moved["input_fields"], batch["input_fields"])
    assert torch.equal(moved["output_fields"], batch["output_fields"][:, :T_OUT])
    assert torch.equal(moved["output_time_grid"], batch["output_time_grid"][:, :T_OUT])


@pytest.mark.parametrize("steps", [1, 2])
def test_the_window_ends_in_the_models_own_rollout_and_the_targets_follow_it(steps):
    model, batch = _model(), _batch()
    moved = pushforward_batch(model, batch, steps, T_OUT, "cpu")
    with torch.no_grad():
        rolled = model(**{k: v for k, v in batch.items() if k != "output_fields"}, n_steps=steps).prediction
    expected = torch.cat([batch["input_fields"], rolled], dim=1)[:, -T_IN:]
    torch.testing.assert_close(moved["input_fields"], expected)
    assert not moved["input_fields"].requires_grad  # the rollout's steps cost no memory for a backward pass
    assert float((moved["input_fields"][:, -1] - batch["input_fields"][:, -1]).abs().max()) > 1e-3
    assert torch.equal(moved["output_fields"], batch["output_fields"][:, steps:steps + T_OUT])
    times = torch.cat([batch["input_time_grid"], batch["output_time_grid"]], dim=1)
    assert torch.equal(moved["input_time_grid"], times[:, steps:steps + T_IN])
    assert torch.equal(moved["output_time_grid"], batch["output_time_grid"][:, steps:steps + T_OUT])
    loss = model(**{k: v for k, v in moved.items() if k != "output_fields"}, labels=moved["output_fields"]).loss
    loss.backward()  # the usual step on the moved window trains the model
    assert model.dataset_heads["shear_flow"].out_proj.weight.grad.abs().sum() > 0


def test_a_window_too_short_for_the_steps_is_named():
    batch = _batch()
    with pytest.raises(ValueError, match="pushforward of 3 steps needs windows of 5 output frames, got 4"):
        pushforward_batch(_model(), batch, 3, T_OUT, "cpu")


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_a_bad_pushforward_steps_is_named(value):
    with pytest.raises(ValueError, match="config key 'pushforward_steps' must be a whole number >= 0"):
        PretrainConfig(data_dir="x", pushforward_steps=value).validate()


def test_a_checkpoint_from_before_the_key_resumes_as_no_pushforward():
    now = {"seed": 0, "curriculum_shares": "compute"}
    before = dict(now)  # a checkpoint written before the key existed does not hold it
    assert resume_conflicts(before, {**now, "pushforward_steps": 0}) == {}
    assert resume_conflicts(before, {**now, "pushforward_steps": 2}) == {"pushforward_steps": (0, 2)}


def test_a_run_with_pushforward_trains_and_resumes_to_the_same_weights(tmp_path):
    write_dataset(str(tmp_path / "data"), "flow2d", n_dims=2, resolution=(16, 12), n_steps=8, files_per_split=(1, 1, 1))

    def config(out, **keys):
        return PretrainConfig(data_dir=str(tmp_path / "data"), output_dir=str(tmp_path / out), model_preset="tiny",
                              max_steps=6, batch_size=2, n_steps_input=2, n_steps_output=2, pushforward_steps=2,
                              checkpoint_every=3, eval_every=3, eval_batches=1, log_with="none", warmup_steps=2,
                              **keys).validate()

    AcceleratorState._reset_state(True)
    pretrain.train(config("straight"))
    AcceleratorState._reset_state(True)
    with pytest.raises(KeyboardInterrupt):
        pretrain.train(config("broken"), stop_after=4)
    AcceleratorState._reset_state(True)
    pretrain.train(config("broken"), resume=True)
    AcceleratorState._reset_state(True)
    saved = json.loads((tmp_path / "straight" / "pretrain_config.json").read_text())
    assert saved["pushforward_steps"] == 2
    expected = PDEFMModel.from_pretrained(tmp_path / "straight").state_dict()
    got = PDEFMModel.from_pretrained(tmp_path / "broken").state_dict()
    for key, value in expected.items():
        assert torch.equal(got[key], value), key
