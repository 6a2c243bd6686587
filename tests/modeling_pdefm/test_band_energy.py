"""The spectral side of the change: the band-energy loss, and each dataset's learned gain per band of |k| on the
predicted change (`change_filter_bands`)."""

import math

import pytest
import torch

from modeling_pdefm import PDEFMConfig, PDEFMModel
from modeling_pdefm.losses import BAND_EDGES, band_energy_loss, nyquist_band_onehot
from modeling_pdefm.spectral_layers import band_gain_filter, nyquist_fraction

from conftest import make_batch, tiny_config


def _wave(n: int, kx: int, ky: int) -> torch.Tensor:
    x = torch.arange(n) * 2 * torch.pi / n
    grid_x, grid_y = torch.meshgrid(x, x, indexing="ij")
    return torch.sin(kx * grid_x + ky * grid_y)[None, ..., None]


def _band_energy(x: torch.Tensor, low: float, high: float) -> float:
    f = torch.fft.rfftn(x, dim=(1, 2)).abs().pow(2)[..., 0]
    fraction = nyquist_fraction(tuple(x.shape[1:3]))
    return float((f * ((fraction >= low) & (fraction < high))).sum())


def test_band_energy_loss_is_zero_for_the_truth_and_counts_orders_of_magnitude():
    truth = _wave(32, 2, 0) + 1e-3 * _wave(32, 12, 0)  # |k| / k_Nyquist 0.125 and 0.75
    assert band_energy_loss(truth, truth, 2).item() < 1e-6
    # 100x the truth's energy in the upper band, the others right: log(100) in one of four bands.
    louder = _wave(32, 2, 0) + 1e-2 * _wave(32, 12, 0)
    assert band_energy_loss(louder, truth, 2).item() == pytest.approx(math.log(100) / 4, rel=0.01)
    # Smoothing that band away (it holds 1e-6 of the energy) costs down to the floor, 1e-8 of the energy.
    smooth = _wave(32, 2, 0)
    assert band_energy_loss(smooth, truth, 2).item() == pytest.approx(math.log(101) / 4, rel=0.01)


def test_band_energy_loss_ignores_the_mean_and_counts_each_mirrored_mode_once():
    truth = _wave(16, 3, 1)
    assert band_energy_loss(truth + 5.0, truth, 2).item() < 1e-6
    onehot = nyquist_band_onehot((16, 16), BAND_EDGES)
    # Every mode but the mean in exactly one band, mirrored rfft modes twice: 16 * 16 - 1 modes in all.
    assert onehot.sum().item() == 16 * 16 - 1


def test_measured_on_the_change_no_change_is_far_off_and_the_true_change_exact():
    # A field that barely moves: on the fields, predicting no change keeps every band's energy nearly right; on the
    # change (what training uses), it is as far off as the floor allows.
    last = (_wave(32, 2, 0) + 1e-3 * _wave(32, 12, 0)).unsqueeze(1)[:, 0]
    step = 0.01 * _wave(32, 3, 0) + 1e-5 * _wave(32, 12, 0)
    truth = (last + step).unsqueeze(1)  # [b, T=1, *space, C]
    still = last.unsqueeze(1)
    assert band_energy_loss(still, truth, 2).item() < 0.01
    assert band_energy_loss(still, truth, 2, before=last).item() > 3.0
    assert band_energy_loss(truth, truth, 2, before=last).item() < 1e-6
    noisy = truth + 1e-4 * _wave(32, 12, 0).unsqueeze(1)  # 10x the change's amplitude in the upper band
    assert band_energy_loss(noisy, truth, 2, before=last).item() == pytest.approx(math.log(121) / 4, rel=0.02)


@pytest.mark.parametrize("periodic", [(True, True), (False, True), (False, False)])
def test_zero_gains_are_the_identity(periodic):
    x = torch.randn(2, 12, 10, 3, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(band_gain_filter(x, torch.zeros(8, 3), periodic), x, atol=1e-5)


def test_a_band_gain_scales_that_band_and_field_only():
    x = torch.cat([_wave(32, 2, 0) + _wave(32, 12, 0), _wave(32, 12, 0)], dim=-1)
    log_gain = torch.zeros(4, 2)
    log_gain[3, 0] = math.log(0.1)  # |k| / k_Nyquist >= 0.75, field 0
    out = band_gain_filter(x, log_gain, (True, True))
    assert _band_energy(out[..., :1], 0.75, 2) == pytest.approx(0.01 * _band_energy(x[..., :1], 0.75, 2), rel=1e-4)
    assert _band_energy(out[..., :1], 0, 0.75) == pytest.approx(_band_energy(x[..., :1], 0, 0.75), rel=1e-4)
    assert torch.allclose(out[..., 1:], x[..., 1:], atol=1e-5)


def test_walls_are_mirrored_not_joined_to_the_opposite_wall():
    # A ramp between two walls: joined periodically it jumps at the edge, which a low-pass rings around; mirrored
    # it is continuous, and cutting the upper bands leaves it nearly as it is.
    ramp = torch.linspace(0, 1, 32).view(1, 32, 1, 1).expand(1, 32, 8, 1).contiguous()
    cut = torch.zeros(8, 1)
    cut[4:] = -30.0
    walled = band_gain_filter(ramp, cut, (False, True))
    wrapped = band_gain_filter(ramp, cut, (True, True))
    assert (walled - ramp).abs().max() < 0.03
    assert (wrapped - ramp).abs().max() > 0.1


def test_config_refuses_bad_filter_and_band_loss_values():
    spec = {"a": {"n_fields": 2, "n_spatial_dims": 2}}
    for value in (-1, True, 2.5):
        with pytest.raises(ValueError, match="change_filter_bands"):
            PDEFMConfig(datasets=spec, change_filter_bands=value)
    with pytest.raises(ValueError, match="band_loss_weight"):
        PDEFMConfig(datasets=spec, band_loss_weight=-0.1)


def test_each_dataset_learns_its_own_band_gains():
    model = PDEFMModel(tiny_config(change_filter_bands=4, band_loss_weight=0.05))
    head = model.dataset_heads["shear_flow"]
    assert head.change_log_gain.shape == (4, head.out_proj.weight.shape[0])
    assert torch.count_nonzero(head.change_log_gain) == 0
    with torch.no_grad():
        head.out_proj.weight.normal_(std=0.1)  # a head that predicts some change (a new one predicts none)
    model(**make_batch("shear_flow")).loss.backward()
    assert head.change_log_gain.grad.abs().sum() > 0
    others = [h.change_log_gain.grad for n, h in model.dataset_heads.items() if n != "shear_flow"]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in others)


def test_the_band_loss_enters_the_training_loss():
    batch = make_batch("shear_flow")
    torch.manual_seed(0)
    plain = PDEFMModel(tiny_config())
    with_band = PDEFMModel(tiny_config(band_loss_weight=0.5))
    with_band.load_state_dict(plain.state_dict())
    for model in (plain, with_band):
        with torch.no_grad():
            model.dataset_heads["shear_flow"].out_proj.weight.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
    out_plain, out_band = plain(**batch), with_band(**batch)
    assert torch.allclose(out_plain.prediction, out_band.prediction)
    assert out_band.loss > out_plain.loss
