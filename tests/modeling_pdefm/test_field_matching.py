"""Field-aware dataset heads: a new dataset starts from the known datasets' heads for the quantities it shares."""

import pytest
import torch
from transformers.testing_utils import CaptureLogger

from modeling_pdefm import PDEFMConfig, PDEFMModel
from modeling_pdefm.field_matching import match_fields, split_component
from modeling_pdefm.modeling_pdefm import logger

from conftest import make_batch

FLOW = {"n_fields": 4, "n_spatial_dims": 2, "n_constant_scalars": 2,
        "field_names": ["tracer", "pressure", "velocity_x", "velocity_y"]}
GAS = {"n_fields": 4, "n_spatial_dims": 2, "field_names": ["density", "pressure", "momentum_x", "momentum_y"]}


def trained_looking_model(datasets=None) -> PDEFMModel:
    """A model whose heads are not at their initial values (out_proj starts at zero), as after training."""
    torch.manual_seed(0)
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=datasets or {"flow": FLOW, "gas": GAS}, n_steps_input=2))
    with torch.no_grad():
        for adapter in model.dataset_heads.values():
            for p in adapter.parameters():
                p.normal_(std=0.3)
    return model.eval()


def test_channel_names_split_into_quantity_and_component():
    assert split_component("velocity_x") == ("velocity", "x")
    assert split_component("pressure") == ("pressure", None)
    assert split_component("magnetic_field_z") == ("magnetic_field", "z")
    assert split_component("A") == ("A", None)


def test_matches_follow_quantity_component_and_aliases():
    known = {"flow": FLOW["field_names"], "gas": GAS["field_names"]}
    matches = match_fields(["velocity_y", "pressure", "dye", "velocity_x"], known)
    assert matches[0] == [("flow", 3), ("gas", 3)]  # momentum ~ velocity by default
    assert matches[1] == [("flow", 1), ("gas", 1)]
    assert 2 not in matches  # a quantity nobody knows
    assert matches[3] == [("flow", 2), ("gas", 2)]
    assert match_fields(["velocity_x"], known, aliases={})[0] == [("flow", 2)]  # aliases replaced: none


def test_an_alias_between_a_scalar_and_a_vector_is_refused_naming_both():
    with pytest.raises(ValueError, match=r"'tracer' ~ 'velocity'.*scalar.*vector"):
        match_fields(["tracer"], {"flow": FLOW["field_names"]}, aliases={"tracer": "velocity"})


def test_a_renamed_copy_of_a_known_dataset_forecasts_exactly_like_it():
    model = trained_looking_model({"gas": GAS})
    adapter = model.add_dataset("gas_copy", **GAS)
    assert adapter.initialised_from == {f: [f"gas/{f}"] for f in GAS["field_names"]}
    batch = make_batch("acoustic_scattering")  # shapes only: a 2D batch, re-cut to 4 fields below
    batch.pop("constant_fields")
    batch["input_fields"] = torch.randn(2, 2, 12, 20, 4)
    with torch.no_grad():
        known = model(**{**batch, "dataset_name": "gas", "labels": None}).prediction
        new = model(**{**batch, "dataset_name": "gas_copy", "labels": None}).prediction
    torch.testing.assert_close(new, known)


def test_shared_fields_take_the_mean_and_the_rest_starts_neutral():
    model = trained_looking_model()
    adapter = model.add_dataset("mix", n_fields=3, n_spatial_dims=2, n_constant_fields=1, n_constant_scalars=1,
                                field_names=["pressure", "dye", "velocity_x"])
    flow, gas = model.dataset_heads["flow"], model.dataset_heads["gas"]
    torch.testing.assert_close(adapter.in_proj.weight[:, 0], (flow.in_proj.weight[:, 1] + gas.in_proj.weight[:, 1]) / 2)
    torch.testing.assert_close(adapter.out_proj.weight[2], (flow.out_proj.weight[2] + gas.out_proj.weight[2]) / 2)
    # The unknown field and the constant field are ignored on input; the unknown field is predicted unchanged.
    assert adapter.in_proj.weight[:, 1].abs().max() == 0 and adapter.in_proj.weight[:, 3].abs().max() == 0
    assert adapter.out_proj.weight[1].abs().max() == 0 and adapter.out_proj.bias[1] == 0
    assert adapter.scalar_proj.weight.abs().max() == 0
    # Both sources lend two channels: the embedding is the plain mean of their contexts without scalars.
    expected = (flow.dataset_embedding + flow.scalar_proj.bias + gas.dataset_embedding) / 2
    torch.testing.assert_close(adapter.dataset_embedding, expected)


def test_no_shared_field_says_so_and_starts_fresh():
    model = trained_looking_model()
    with CaptureLogger(logger) as captured:
        adapter = model.add_dataset("chem", n_fields=2, n_spatial_dims=2, field_names=["A", "B"])
    assert "no field of ['A', 'B']" in captured.out and "head_init='random'" in captured.out
    assert adapter.initialised_from == {} and adapter.out_proj.weight.abs().max() == 0
    fresh = model.add_dataset("gas2", **GAS, head_init="random")
    assert fresh.initialised_from == {} and fresh.out_proj.weight.abs().max() == 0


def test_an_unknown_head_init_is_refused_and_the_0_2_0_keyword_warns():
    with pytest.raises(ValueError, match="head_init must be 'fields' or 'random'"):
        trained_looking_model().add_dataset("x", **GAS, head_init="copy")
    with pytest.warns(FutureWarning, match="use head_init"):
        head = trained_looking_model().add_dataset("x", **GAS, adapter_init="random")
    assert head.initialised_from == {}


def test_fields_given_in_another_order_are_matched_by_name():
    names = ["energy", "density", "pressure"]
    torch.manual_seed(0)
    model = PDEFMModel(PDEFMConfig(datasets={"euler": {"n_fields": 3, "n_spatial_dims": 2, "field_names": names}})).eval()
    x = torch.randn(2, 4, 16, 16, 3) + torch.tensor([3.0, 1.0, -2.0])
    y = torch.randn(2, 2, 16, 16, 3)
    expected = model(input_fields=x, labels=y, field_names=[names, names])
    order = [1, 0, 2]  # the file says density, energy, pressure
    swapped = model(input_fields=x[..., order], labels=y[..., order], field_names=[[names[i] for i in order]] * 2)
    torch.testing.assert_close(swapped.prediction, expected.prediction[..., order])
    torch.testing.assert_close(swapped.loss, expected.loss)
    rolled = torch.cat(list(model.iter_rollout(3, input_fields=x[..., order], field_names=[names[i] for i in order])), 1)
    torch.testing.assert_close(rolled, model(input_fields=x, n_steps=3).prediction[..., order])
    # The unnamed call takes the channels in the model's order, as before.
    torch.testing.assert_close(model(input_fields=x, labels=y).prediction, expected.prediction)


@pytest.mark.parametrize("given", [["salinity", "vorticity", "tracer"], ["energy", "density"],
                                   ["energy", "energy", "pressure"]])
def test_fields_the_model_was_not_trained_on_are_refused_naming_both_lists(given):
    names = ["energy", "density", "pressure"]
    model = PDEFMModel(PDEFMConfig(datasets={"euler": {"n_fields": 3, "n_spatial_dims": 2, "field_names": names}}))
    with pytest.raises(ValueError, match=r"dataset 'euler': the data's fields .* are not the fields the model was "
                                         r"trained on for it, \['energy', 'density', 'pressure'\]"):
        model(input_fields=torch.randn(1, 4, 16, 16, 3), field_names=given)
