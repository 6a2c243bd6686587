"""Patch jitter: the shift of the patch grid and its inverse, and `jitter_average`'s ensemble over grids."""

import pytest
import torch

import modeling_pdefm.modeling_pdefm as modeling
from modeling_pdefm import PDEFMConfig, PDEFMModel
from modeling_pdefm.jitter_layers import patch_shifts, shift_fields, unshift_fields

from conftest import make_batch, tiny_config


@pytest.mark.parametrize("periodic", [(True, True), (False, True), (False, False)])
def test_unshift_undoes_shift_on_periodic_and_walled_axes(periodic):
    x = torch.randn(2, 12, 20, 3)
    shifted = shift_fields(x, (3, 5), periodic, 8)
    grown = tuple(n + (0 if p else 8) for n, p in zip((12, 20), periodic))
    assert tuple(shifted.shape[1:3]) == grown  # a walled axis gains one patch, so its walls never meet
    torch.testing.assert_close(unshift_fields(shifted, (3, 5), periodic, (12, 20)), x, rtol=0, atol=0)


def test_evaluation_shifts_are_a_fixed_sequence_that_moves():
    shifts = [patch_shifts(8, 2, step, training=False) for step in range(8)]
    assert shifts == [patch_shifts(8, 2, step, training=False) for step in range(8)]
    assert len(set(shifts)) > 4 and all(0 <= s < 8 for pair in shifts for s in pair)


def _model(**overrides) -> PDEFMModel:
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(patch_jitter=True, **overrides)).eval()
    with torch.no_grad():  # a fresh adapter predicts "no change"; give it one
        model.dataset_heads["shear_flow"].out_proj.weight.normal_(std=0.3)
    return model


def _predict(model: PDEFMModel, batch: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**{k: v for k, v in batch.items() if k != "labels"}).prediction


def test_jitter_average_of_one_is_the_model_as_before():
    batch = make_batch("shear_flow")
    torch.testing.assert_close(_predict(_model(jitter_average=1), batch), _predict(_model(), batch), rtol=0, atol=0)


def test_jitter_average_predicts_the_mean_of_the_single_grid_predictions(monkeypatch):
    """Everything after the decoder is affine (the 1x1 output projection), so the ensemble's frame is the mean of the
    frames each of its grids gives alone; the grids are the sequence's points `step * k .. step * k + k - 1`."""
    batch = make_batch("shear_flow", space=(16, 24))
    averaged = _predict(_model(jitter_average=3), batch)
    single = _model()
    alone = []
    for index in range(3):
        fixed = patch_shifts(8, 2, index, training=False)
        monkeypatch.setattr(modeling, "patch_shifts", lambda *args, fixed=fixed, **kwargs: fixed)
        alone.append(_predict(single, batch))
    monkeypatch.undo()
    torch.testing.assert_close(averaged, torch.stack(alone).mean(0), rtol=1e-5, atol=1e-5)
    assert float((alone[0] - alone[1]).abs().max()) > 1e-4  # the grids do disagree: the mean is not one of them


def test_training_draws_one_grid_whatever_jitter_average_says():
    batch = make_batch("shear_flow")
    losses = []
    for k in (1, 4):
        model = _model(jitter_average=k).train()
        torch.manual_seed(1)  # the same random shift for both
        losses.append(model(**batch).loss)
    torch.testing.assert_close(losses[0], losses[1], rtol=0, atol=0)


@pytest.mark.parametrize("value", [0, -2, True, 1.5, "2"])
def test_jitter_average_refuses_what_is_not_a_count(value):
    with pytest.raises(ValueError, match="jitter_average must be a positive int"):
        PDEFMConfig.from_preset("tiny", jitter_average=value)
