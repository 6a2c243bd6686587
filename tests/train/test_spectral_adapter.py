"""Frequency-band adapters on the Fourier layers: start as the base, train alone, merge into the same function."""

import pytest
import torch

from modeling_pdefm import PDEFMConfig, PDEFMModel
from modeling_pdefm.spectral_layers import SpectralConv
from pdefm.train.adapters.spectral import (
    SpectralBandAdapter,
    add_spectral_adapters,
    merge_spectral_adapters,
    mode_bands,
)

from conftest import DATASETS, make_batch


def test_bands_grow_with_the_wavenumber_on_both_signs():
    bands = mode_bands(modes=4, n_spatial_dims=2, n_bands=2)  # stored modes [0..3, -4..-1] x [0..3]
    assert bands.shape == (8, 4)
    assert bands[0, 0] == 0 and bands[1, 1] == 0  # |k| <= 1
    assert bands[2, 0] == 1 and bands[-1, 3] == 1 and bands[-3, 0] == 1  # |k| >= 2, negative side included
    assert bands[-1, 0] == 0  # k = -1 is low
    assert mode_bands(modes=2, n_spatial_dims=3, n_bands=3).max() <= 2


def test_each_band_update_has_at_most_its_rank_and_lower_bands_get_more():
    conv = SpectralConv(6, 5, modes=4, n_spatial_dims=2)
    adapter = SpectralBandAdapter(conv, rank=4, n_bands=3)
    assert adapter.ranks == [4, 2, 1]
    with torch.no_grad():
        for up in adapter.up:
            up.normal_()
        for gain in adapter.gain:
            gain[..., 1].zero_()
            gain[..., 0].fill_(1.0)  # equal gains: the band's update is one matrix of its rank at every mode
    delta = torch.view_as_complex(adapter.delta().contiguous())  # [in, out, 8, 4]
    bands = mode_bands(4, 2, 3)
    for band, rank in enumerate(adapter.ranks):
        mode = torch.nonzero(bands == band)[0]
        assert torch.linalg.matrix_rank(delta[:, :, mode[0], mode[1]]) == rank


def test_adapted_model_starts_equal_trains_only_adapters_and_merges_exactly():
    torch.manual_seed(0)
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=DATASETS, decoder_type="fno", n_steps_input=2)).eval()
    with torch.no_grad():
        model.dataset_heads["shear_flow"].out_proj.weight.normal_()  # a fresh one predicts no change, whatever the decoder
    batch = make_batch("shear_flow")
    with torch.no_grad():
        before = model(**batch).prediction
    for p in model.parameters():
        p.requires_grad_(False)
    adapted = add_spectral_adapters(model, ["decoders.2d"], rank=2, n_bands=2)
    assert adapted and all(name.startswith("decoders.2d") for name in adapted)
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).prediction, before)  # the update starts at zero
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".parametrizations.weight.0." in n for n in trainable)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    model(**batch).loss.backward()
    optimizer.step()
    with torch.no_grad():
        adapted_out = model(**batch).prediction
    assert (adapted_out - before).abs().max() > 1e-6
    assert merge_spectral_adapters(model) == len(adapted)
    assert not any("parametrizations" in n for n, _ in model.named_parameters())
    with torch.no_grad():
        torch.testing.assert_close(model(**batch).prediction, adapted_out)


def test_a_model_without_fourier_layers_is_refused():
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=DATASETS, decoder_type="conv"))
    with pytest.raises(ValueError, match="no spectral convolution under"):
        add_spectral_adapters(model, ["decoders.2d"])
    with pytest.raises(ValueError, match="rank and n_bands must be >= 1"):
        SpectralBandAdapter(SpectralConv(2, 2, 4, 2), rank=0)
