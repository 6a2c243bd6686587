"""How datasets share the full-resolution decoder: one per dimensionality (the default), each its own
(`decoder_per_dataset`), or one modulated by the step's context (`decoder_film`)."""
import pytest
import torch

from modeling_pdefm import PDEFMModel

from conftest import make_batch, tiny_config


def test_own_decoders_are_trained_only_by_their_dataset():
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(decoder_per_dataset=True))
    assert sorted(model.decoders) == ["MHD_64", "acoustic_scattering", "shear_flow"]
    # A fresh head predicts no change, which leaves the decoder without gradient: give it an output first.
    torch.nn.init.normal_(model.dataset_heads["shear_flow"].out_proj.weight)
    model(**make_batch("shear_flow")).loss.backward()
    assert model.decoders["shear_flow"].lift.weight.grad.abs().sum() > 0
    assert model.decoders["acoustic_scattering"].lift.weight.grad is None


def test_a_new_dataset_starts_from_the_mean_of_its_dimensionalitys_decoders():
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(decoder_per_dataset=True))
    model.add_dataset("gray_scott", n_fields=2, n_spatial_dims=2)
    new, peers = model.decoders["gray_scott"], [model.decoders["shear_flow"], model.decoders["acoustic_scattering"]]
    for key, value in new.state_dict().items():
        assert torch.allclose(value, (peers[0].state_dict()[key] + peers[1].state_dict()[key]) / 2), key
    model.add_dataset("fresh", n_fields=2, n_spatial_dims=2, head_init="random")
    assert not torch.allclose(model.decoders["fresh"].lift.weight, new.lift.weight)


def test_own_decoders_survive_save_and_load(tmp_path):
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(decoder_per_dataset=True)).eval()
    torch.nn.init.normal_(model.dataset_heads["acoustic_scattering"].out_proj.weight)
    batch = make_batch("acoustic_scattering")
    model.save_pretrained(tmp_path)
    loaded = PDEFMModel.from_pretrained(tmp_path).eval()
    assert torch.equal(model(**batch).prediction, loaded(**batch).prediction)


def test_decoder_film_starts_as_the_shared_decoder_and_then_tells_datasets_apart():
    torch.manual_seed(0)
    plain = PDEFMModel(tiny_config()).eval()
    filmed = PDEFMModel(tiny_config(decoder_film=True)).eval()
    missing, unexpected = filmed.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(".films." in key for key in missing)
    for model in (plain, filmed):
        torch.nn.init.normal_(model.dataset_heads["shear_flow"].out_proj.weight, generator=torch.Generator().manual_seed(1))
    batch = make_batch("shear_flow")
    assert torch.allclose(plain(**batch).prediction, filmed(**batch).prediction, atol=1e-6)
    filmed.train()
    filmed(**batch).loss.backward()
    film = filmed.decoders["2d"].films[0].proj
    assert film.weight.grad.abs().sum() > 0
    with torch.no_grad():
        film.bias.normal_()
    assert not torch.allclose(plain.eval()(**batch).prediction, filmed.eval()(**batch).prediction, atol=1e-4)


def test_decoder_film_needs_the_context_that_film_builds():
    with pytest.raises(ValueError, match="decoder_film.*use_film"):
        tiny_config(decoder_film=True, use_film=False)
    with pytest.raises(ValueError, match="decoder_per_dataset must be true or false"):
        tiny_config(decoder_per_dataset="true")


@pytest.mark.parametrize("options", [{}, {"decoder_film": True}, {"decoder_per_dataset": True},
                                     {"decoder_per_dataset": True, "decoder_unpatch": "interpolate"}])
def test_the_parameter_estimate_follows_the_decoders(options):
    config = tiny_config(**options)
    actual = PDEFMModel(config).num_parameters()
    assert abs(config.estimated_num_parameters() - actual) < 0.15 * actual
