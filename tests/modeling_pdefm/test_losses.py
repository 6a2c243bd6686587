"""The training objective: VRMSE + spectral loss, computed inside the model."""

import pytest
import torch

from modeling_pdefm import PDEFMModel
from modeling_pdefm.losses import pdefm_objective, spectral_loss, unbiased_variance, vrmse_training_loss

from conftest import make_batch, tiny_config


def _wave(n: int, kx: int, ky: int) -> torch.Tensor:
    x = torch.arange(n) * 2 * torch.pi / n
    grid_x, grid_y = torch.meshgrid(x, x, indexing="ij")
    return torch.sin(kx * grid_x + ky * grid_y)[None, None, ..., None]


def test_spectral_loss_weights_fine_scales_more():
    target = _wave(32, 1, 0) + _wave(32, 8, 0)
    assert spectral_loss(target, target, 2).item() < 1e-5
    low_error = target + 0.1 * _wave(32, 1, 0)
    high_error = target + 0.1 * _wave(32, 8, 0)
    assert spectral_loss(high_error, target, 2) > 2 * spectral_loss(low_error, target, 2)
    mean = target.mean(dim=(2, 3), keepdim=True).expand_as(target)
    assert spectral_loss(mean, target, 2).item() == pytest.approx(1.0, rel=1e-3)


@pytest.mark.parametrize("n", [16, 15])
def test_the_same_error_along_x_and_along_y_scores_the_same(n):
    target = torch.randn(2, 1, n, n, 3, generator=torch.Generator().manual_seed(0))
    along_x, along_y = 0.2 * _wave(n, 3, 0), 0.2 * _wave(n, 0, 3)
    assert spectral_loss(target + along_x, target, 2).item() == pytest.approx(
        spectral_loss(target + along_y, target, 2).item(), rel=1e-5)


@pytest.mark.parametrize("n_spatial_dims, n", [(2, 16), (2, 13), (3, 8)])
def test_rotating_error_and_target_by_90_degrees_leaves_the_loss_unchanged(n_spatial_dims, n):
    g = torch.Generator().manual_seed(1)
    shape = (2, 1, *([n] * n_spatial_dims), 2)
    target = torch.randn(*shape, generator=g)
    prediction = target + 0.3 * torch.randn(*shape, generator=g)
    rotate = lambda t: torch.rot90(t, 1, dims=(2, 3))  # noqa: E731 - a 90 degree turn in the first two axes
    assert spectral_loss(rotate(prediction), rotate(target), n_spatial_dims).item() == pytest.approx(
        spectral_loss(prediction, target, n_spatial_dims).item(), rel=1e-5)
    if n_spatial_dims == 3:  # the last axis (the one-sided axis of the real FFT) against the first
        swap = lambda t: t.transpose(2, 4)  # noqa: E731
        assert spectral_loss(swap(prediction), swap(target), 3).item() == pytest.approx(
            spectral_loss(prediction, target, 3).item(), rel=1e-5)


def test_spectral_loss_is_parseval_consistent_with_the_full_spectrum():
    """Against a direct sum over the full (two-sided) FFT: the half spectrum counts each mirrored mode twice."""
    g = torch.Generator().manual_seed(2)
    target, prediction = torch.randn(1, 1, 12, 10, 1, generator=g), torch.randn(1, 1, 12, 10, 1, generator=g)
    diff = torch.fft.fftn((prediction - target)[0, 0, ..., 0], norm="forward")
    ref = torch.fft.fftn(target[0, 0, ..., 0], norm="forward")
    kx = torch.fft.fftfreq(12) * 12
    ky = torch.fft.fftfreq(10) * 10
    weight = (kx[:, None] ** 2 + ky[None, :] ** 2).sqrt()
    expected = torch.sqrt((weight * diff.abs() ** 2).sum() / (weight * ref.abs() ** 2).sum())
    assert spectral_loss(prediction, target, 2).item() == pytest.approx(expected.item(), rel=1e-5)


def test_the_models_loss_is_its_training_objective():
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(spectral_loss_weight=0.25))
    batch = make_batch("shear_flow", t_out=2)
    out = model(**batch)
    assert out.loss.item() == pytest.approx(out.vrmse_loss.item() + 0.25 * out.spectral_loss.item(), rel=1e-6)
    # Computed in normalised units, the parts equal the physical-unit values (both are scale and shift invariant).
    total, vrmse, spectral = pdefm_objective(out.prediction, batch["labels"], 2, 0.25)
    assert out.vrmse_loss.item() == pytest.approx(vrmse.item(), rel=1e-4)
    assert out.spectral_loss.item() == pytest.approx(spectral.item(), rel=1e-4)
    assert vrmse.item() == pytest.approx(vrmse_training_loss(out.prediction, batch["labels"], 2).item(), rel=1e-6)
    # The spectral term reaches the weights through loss.backward(), as in any training loop.
    out.spectral_loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


def test_a_zero_spectral_weight_trains_on_vrmse_alone():
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(spectral_loss_weight=0.0))
    out = model(**make_batch("shear_flow"))
    assert out.loss.item() == out.vrmse_loss.item() and out.spectral_loss.item() == 0.0


def test_the_objective_trains_under_transformers_trainer(tmp_path):
    """A user's own training loop (here `transformers.Trainer`) gets the full objective from the model."""
    from transformers import Trainer, TrainingArguments

    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(spectral_loss_weight=0.5))
    rows = [{k: (v[0] if torch.is_tensor(v) else v) for k, v in make_batch("shear_flow", batch=1, seed=s).items()}
            for s in range(4)]

    def collate(items):
        return {k: (torch.stack([i[k] for i in items]) if torch.is_tensor(items[0][k]) else items[0][k]) for k in items[0]}

    seen = []
    original = model.forward

    def recording_forward(*args, **kwargs):
        out = original(*args, **kwargs)
        seen.append((out.loss.item(), out.vrmse_loss.item(), out.spectral_loss.item()))
        return out

    model.forward = recording_forward
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=2, report_to=[],
                             use_cpu=True, save_strategy="no", logging_strategy="no", remove_unused_columns=False)
    result = Trainer(model=model, args=args, train_dataset=rows, data_collator=collate).train()
    assert len(seen) == 2 and all(t == pytest.approx(v + 0.5 * s, rel=1e-6) for t, v, s in seen)
    assert result.training_loss == pytest.approx(sum(t for t, _, _ in seen) / 2, rel=1e-4)


def test_two_pass_variance_equals_torch_var():
    torch.manual_seed(0)
    x = torch.randn(3, 4, 9, 7, 2, dtype=torch.float64) * 5 + 100  # a large mean: one-pass formulas lose digits here
    for dims in ((1, 2, 3), (-3, -2)):
        centered = x - x.mean(dim=dims, keepdim=True)
        torch.testing.assert_close(unbiased_variance(centered, dims), x.var(dim=dims, keepdim=True))
        torch.testing.assert_close(unbiased_variance(centered, dims, keepdim=False), x.var(dim=dims))



def test_the_change_normalised_loss_scores_persistence_one_where_vrmse_scores_it_near_zero():
    from modeling_pdefm.losses import change_normalised_loss, vrmse_per_field

    torch.manual_seed(0)
    last = torch.randn(2, 16, 16, 1) * 10.0  # a large spatial spread
    target = (last + 2.0 * torch.randn_like(last)).unsqueeze(1)  # a change 1/5 of it (above the 1% floor)
    persistence = last.unsqueeze(1)
    assert vrmse_per_field(persistence, target, 2).mean() < 0.25
    torch.testing.assert_close(change_normalised_loss(persistence, target, last, 2), torch.tensor(1.0), rtol=1e-4,
                               atol=1e-4)
    assert change_normalised_loss(target, target, last, 2) < 1e-3
    # A field that does not move at all is floored, not divided by zero.
    still = change_normalised_loss(persistence + 1.0, persistence, last, 2)  # error 1, spread 10: floor 0.1 * 10
    torch.testing.assert_close(still, torch.tensor(1.0), rtol=0.05, atol=0)
