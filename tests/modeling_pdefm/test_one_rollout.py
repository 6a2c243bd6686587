"""One rollout: `forward(n_steps=k)`, `model.rollout`, `model.iter_rollout` and the evaluation's rollout give the
same frames at every step, under each normalisation policy."""

import pytest
import torch

from modeling_pdefm import PDEFMModel
from pdefm.train.evaluation.forecasters import PDEFMForecaster
from pdefm.train.evaluation.rollout import iter_rollout, per_step_rollout

from conftest import make_batch, tiny_config

STEPS = 4


def _model(policy: str) -> PDEFMModel:
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(rollout_normalization=policy)).eval()
    with torch.no_grad():  # a fresh adapter predicts "no change"; give it a change to roll out
        model.dataset_heads["shear_flow"].out_proj.weight.normal_(std=0.3)
    return model


def _batch() -> dict:
    batch = make_batch("shear_flow", t_out=STEPS)
    batch["input_fields"] = batch["input_fields"] * torch.tensor([1.0, 0.5, 2.0, 0.1]) + torch.tensor([3.0, -1.0, 0.0, 10.0])
    batch["output_fields"] = batch.pop("labels")
    return batch


@pytest.mark.parametrize("policy", ["every_window", "first_window"])
def test_forward_rollout_iter_rollout_and_the_evaluation_rollout_give_the_same_frames(policy):
    model, batch = _model(policy), _batch()
    inputs = {k: v for k, v in batch.items() if k != "output_fields"}
    with torch.no_grad():
        forward = model(**inputs, n_steps=STEPS).prediction
        rollout = model.rollout(batch, STEPS)
        frames = torch.cat(list(model.iter_rollout(STEPS, **batch)), dim=1)  # targets in the batch do not count
        evaluation = torch.cat(list(iter_rollout(PDEFMForecaster(model), batch, STEPS)), dim=1)
    assert forward.shape == (2, STEPS, 12, 20, 4)
    for other in (rollout, frames, evaluation):
        for step in range(STEPS):  # every step, not only the first
            torch.testing.assert_close(other[:, step], forward[:, step], rtol=1e-5, atol=1e-5)
    assert float((forward[:, -1] - forward[:, 0]).abs().max()) > 1e-2  # the frames do move


def test_every_window_is_a_chain_of_one_step_forecasts_and_first_window_is_not():
    """Under `every_window` step k is the one-step forecast from the window that ends with step k-1's frame, which
    is what feeding one-step forecasts back (`per_step_rollout`) computes; `first_window` keeps the first window's
    statistics and differs from step 2 on."""
    batch = _batch()
    chained = {}
    for policy in ("every_window", "first_window"):
        model = _model(policy)
        with torch.no_grad():
            rolled = model(**{k: v for k, v in batch.items() if k != "output_fields"}, n_steps=STEPS).prediction
            one_step = PDEFMForecaster(model)
            chained[policy] = (rolled, torch.cat(list(per_step_rollout(one_step, batch, STEPS)), dim=1))
    rolled, by_steps = chained["every_window"]
    torch.testing.assert_close(rolled, by_steps, rtol=1e-5, atol=1e-5)
    first, _ = chained["first_window"]
    torch.testing.assert_close(first[:, 0], rolled[:, 0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(first[:, 1:], rolled[:, 1:], rtol=1e-3, atol=1e-3)


def test_the_training_loss_scores_the_rollout_it_is_given():
    """The loss of `forward(labels=...)` is The Well's VRMSE of the frames the same call predicts."""
    from pdefm.train.evaluation.metrics import vrmse

    model, batch = _model("every_window"), _batch()
    inputs = {k: v for k, v in batch.items() if k != "output_fields"}
    with torch.no_grad():
        out = model(**inputs, labels=batch["output_fields"])
    expected = vrmse(out.prediction, batch["output_fields"], 2).mean()
    torch.testing.assert_close(out.vrmse_loss, expected.to(out.vrmse_loss.dtype), rtol=1e-3, atol=1e-4)


def test_an_unknown_rollout_normalization_is_refused_by_name():
    with pytest.raises(ValueError, match="rollout_normalization must be one of"):
        tiny_config(rollout_normalization="sometimes")


def test_iter_rollout_rolls_out_n_steps_whatever_targets_the_batch_holds():
    model, batch = _model("every_window"), _batch()
    batch["output_fields"] = batch["output_fields"][:, :1]  # a one-step training window's target
    batch["output_time_grid"] = batch["output_time_grid"][:, :1]
    with torch.no_grad():
        frames = list(model.iter_rollout(STEPS, **batch))
    assert len(frames) == STEPS and frames[0].shape == (2, 1, 12, 20, 4)
