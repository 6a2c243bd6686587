"""Metrics against The Well's own implementations (the `the_well` package), and their meaning."""

import math

import pytest
import torch

from pdefm.train.evaluation.metrics import (
    SPECTRAL_BANDS,
    binned_spectral_error,
    nrmse,
    rmse,
    vrmse,
    wavenumber_band_edges,
)

spatial = pytest.importorskip("the_well.benchmark.metrics.spatial")
spectral = pytest.importorskip("the_well.benchmark.metrics.spectral")


class Meta:
    def __init__(self, n_spatial_dims):
        self.n_spatial_dims = n_spatial_dims


CASES = [((3, 2, 16, 12, 4), 2), ((2, 8, 6, 10, 3), 3), ((5, 32, 2), 1)]


@pytest.mark.parametrize("shape,d", CASES)
def test_vrmse_nrmse_rmse_equal_the_wells(shape, d):
    g = torch.Generator().manual_seed(d)
    scale = torch.tensor([1e-3, 1.0, 50.0, 7.0][: shape[-1]])
    target = torch.randn(*shape, generator=g) * scale + 3
    prediction = target + 0.1 * torch.randn(*shape, generator=g) * scale
    meta = Meta(d)
    assert torch.allclose(vrmse(prediction, target, d), spatial.VRMSE.eval(prediction, target, meta), rtol=1e-6, atol=1e-6)
    assert torch.allclose(nrmse(prediction, target, d), spatial.NRMSE.eval(prediction, target, meta), rtol=1e-6, atol=1e-6)
    assert torch.allclose(rmse(prediction, target, d), spatial.RMSE.eval(prediction, target, meta), rtol=1e-6, atol=1e-6)
    assert vrmse(prediction, target, d).shape == shape[:-(d + 1)] + shape[-1:]


def test_vrmse_of_predicting_the_mean_is_about_one():
    target = torch.randn(4, 64, 64, 2)
    prediction = target.mean(dim=(1, 2), keepdim=True).expand_as(target)
    assert torch.allclose(vrmse(prediction, target, 2), torch.ones(4, 2), atol=0.01)


@pytest.mark.parametrize("shape,d", CASES[:2])
def test_binned_spectral_error_equals_the_wells_normalised_bins(shape, d):
    g = torch.Generator().manual_seed(1)
    target = torch.randn(*shape, generator=g)
    prediction = target + 0.3 * torch.randn(*shape, generator=g)
    ours = binned_spectral_error(prediction, target, d)
    theirs = spectral.binned_spectral_mse.eval(prediction, target, Meta(d))
    for i, band in enumerate(SPECTRAL_BANDS):
        assert torch.allclose(ours[band], theirs[f"spectral_error_nmse_per_bin_{i}"], rtol=1e-4, atol=1e-6)


def test_spectral_bands_separate_scales():
    n = 64
    x = torch.arange(n) * 2 * math.pi / n
    smooth = torch.sin(x)[:, None] + torch.cos(x)[None, :]
    wiggle = torch.sin(28 * x)[:, None] * torch.ones(n)[None, :]
    target = (smooth + wiggle)[None, ..., None]
    missing_fine = smooth[None, ..., None]  # right large scales, no fine scales
    errors = binned_spectral_error(missing_fine, target, 2)
    assert errors["low"].item() < 1e-6 and errors["high"].item() > 0.99
    exact = binned_spectral_error(target, target, 2)
    assert all(v.abs().max() < 1e-9 for v in exact.values())
    edges = wavenumber_band_edges((n, n))
    assert edges[0] == 0 and torch.all(edges[1:] > edges[:-1]) and edges[-1] > math.pi * math.sqrt(2)


def test_shape_mismatch_is_named():
    with pytest.raises(ValueError, match="same shape"):
        vrmse(torch.zeros(2, 4, 4, 1), torch.zeros(2, 4, 5, 1), 2)
    with pytest.raises(ValueError, match="n_spatial_dims"):
        rmse(torch.zeros(2, 4, 1), torch.zeros(2, 4, 1), 4)


def test_energy_ratio_per_band_sees_a_forecast_that_loses_fine_scales():
    from pdefm.train.evaluation.metrics import binned_energy_ratio

    torch.manual_seed(0)
    target = torch.randn(3, 32, 32, 2)
    same = binned_energy_ratio(target, target, 2)
    for band in ("low", "mid", "high"):
        torch.testing.assert_close(same[band], torch.ones(3, 2), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(binned_energy_ratio(2 * target, target, 2)["mid"], torch.full((3, 2), 4.0), rtol=1e-5, atol=1e-5)
    # Keep only the modes below a quarter of the grid's wavenumbers: the high band's energy is gone, the low band's kept.
    spectrum = torch.fft.fftn(target, dim=(1, 2))
    k = torch.fft.fftfreq(32).abs()
    keep = ((k[:, None] < 0.1) & (k[None, :] < 0.1)).to(spectrum.dtype)[None, :, :, None]
    smooth = torch.fft.ifftn(spectrum * keep, dim=(1, 2)).real
    ratio = binned_energy_ratio(smooth, target, 2)
    assert ratio["high"].max() < 1e-6 and ratio["low"].min() > 0.99


def test_change_diagnostics_measure_how_much_and_which_way_a_field_moves():
    from pdefm.train.evaluation.metrics import change_diagnostics

    g = torch.Generator().manual_seed(0)
    last = torch.randn(3, 1, 8, 9, 2, generator=g)
    target = last + torch.randn(3, 1, 8, 9, 2, generator=g)
    ratio, correlation = change_diagnostics(target, target, last, 2)
    assert torch.allclose(ratio, torch.ones_like(ratio)) and torch.allclose(correlation, torch.ones_like(correlation))
    ratio, correlation = change_diagnostics(last + 0.5 * (target - last), target, last, 2)
    assert torch.allclose(ratio, torch.full_like(ratio, 0.5)) and torch.allclose(correlation, torch.ones_like(ratio))
    ratio, correlation = change_diagnostics(last - 2 * (target - last), target, last, 2)
    assert torch.allclose(ratio, torch.full_like(ratio, 2.0)) and torch.allclose(correlation, -torch.ones_like(ratio))
    ratio, correlation = change_diagnostics(last, target, last, 2)  # persistence: no change at all
    assert torch.all(ratio == 0) and torch.isnan(correlation).all()
    ratio, _ = change_diagnostics(target, last, last, 2)  # the truth stands still: no ratio to give
    assert torch.isnan(ratio).all()


def test_not_learned_flags_datasets_within_ten_percent_of_persistence():
    from pdefm.train.evaluation.metrics import not_learned

    one_step = {"a": {"vrmse": 0.95, "persistence_vrmse": 1.0}, "b": {"vrmse": 0.5, "persistence_vrmse": 1.0},
                "c": {"vrmse": 1.2, "persistence_vrmse": 1.0}, "d": {"vrmse": 0.0, "persistence_vrmse": 0.0}}
    assert not_learned(one_step) == ["a", "c"]
