"""Each dataset's linear path (`linear_stencil`): a 3x3 (3x3x3) map of its last input frames added to the
network's change, starting at zero, for every dataset or those named in `linear_stencil_datasets`."""

import pytest
import torch

from modeling_pdefm import PDEFMConfig, PDEFMModel
from modeling_pdefm.decoder_layers import periodic_conv

from conftest import make_batch, tiny_config


def test_the_path_starts_at_zero_and_adds_its_stencil_to_the_change():
    torch.manual_seed(0)
    plain = PDEFMModel(tiny_config())
    with_path = PDEFMModel(tiny_config(linear_stencil=True))
    missing, unexpected = with_path.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all("stencil_weight" in k for k in missing) and missing
    batch = {**make_batch("shear_flow"), "boundary_conditions": torch.full((2, 2, 2), 2)}  # periodic
    plain.eval(), with_path.eval()
    assert torch.allclose(plain(**batch).prediction, with_path(**batch).prediction)
    head = with_path.dataset_heads["shear_flow"]
    with torch.no_grad():
        head.stencil_weight.normal_(std=0.1, generator=torch.Generator().manual_seed(1))
    added = with_path(**batch).prediction - plain(**batch).prediction  # [b, 1, *space, C], in physical units
    normalised = (batch["input_fields"] - batch["input_fields"].mean(dim=(1, 2, 3), keepdim=True)) \
        / batch["input_fields"].std(dim=(1, 2, 3), keepdim=True)
    frames = normalised.movedim(1, -2).flatten(-2)
    std = batch["input_fields"].std(dim=(1, 2, 3), keepdim=True)[:, 0]
    expected = periodic_conv(frames, head.stencil_weight, None, (True, True)) * std
    assert torch.allclose(added[:, 0], expected, atol=1e-4)


def test_only_the_named_datasets_get_a_path():
    model = PDEFMModel(tiny_config(linear_stencil=True, linear_stencil_datasets=["shear_flow"]))
    assert model.dataset_heads["shear_flow"].stencil_weight is not None
    assert model.dataset_heads["MHD_64"].stencil_weight is None
    assert model.dataset_heads["acoustic_scattering"].stencil_weight is None
    assert PDEFMModel(tiny_config(linear_stencil=False, linear_stencil_datasets=["shear_flow"])) \
        .dataset_heads["shear_flow"].stencil_weight is None


@pytest.mark.parametrize("value", ["shear_flow", [1, 2], {"shear_flow": 1}])
def test_linear_stencil_datasets_must_be_a_list_of_names(value):
    with pytest.raises(ValueError, match="linear_stencil_datasets"):
        PDEFMConfig(datasets={"a": {"n_fields": 2, "n_spatial_dims": 2}}, linear_stencil=True,
                    linear_stencil_datasets=value)
