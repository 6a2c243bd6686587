"""The conventions generic Hugging Face tools read: hidden states on request (argument or config), the arguments
wrappers pass (`output_attentions=False`, `use_cache=False`), `num_hidden_layers`, and tuples for `return_dict=False`."""

import pytest
import torch

from modeling_pdefm import PDEFMModel

from conftest import make_batch, tiny_config


def _inputs(name="shear_flow"):
    return {k: v for k, v in make_batch(name).items() if k != "labels"}


@pytest.mark.parametrize("name, grid", [("shear_flow", (2, 3)), ("MHD_64", (2, 2, 2))])
def test_hidden_states_are_the_backbone_input_and_every_layer_the_last_after_the_final_norm(tiny_model, name, grid):
    with torch.no_grad():
        out = tiny_model(**_inputs(name), output_hidden_states=True)
    states = out.hidden_states
    config = tiny_model.config
    assert len(states) == config.num_layers + 1 == config.num_hidden_layers + 1
    assert all(s.shape == (2, config.n_steps_input, *grid, config.hidden_size) for s in states)
    assert torch.equal(states[-1], out.last_hidden_state)
    assert not torch.allclose(states[0], states[1])  # each layer changes the tokens
    with torch.no_grad():
        plain = tiny_model(**_inputs(name))
    assert plain.hidden_states is None and torch.equal(plain.prediction, out.prediction)


def test_config_output_hidden_states_is_honoured_and_the_argument_wins():
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(output_hidden_states=True)).eval()
    with torch.no_grad():
        assert len(model(**_inputs()).hidden_states) == model.config.num_layers + 1
        assert model(**_inputs(), output_hidden_states=False).hidden_states is None


def test_wrappers_may_pass_false_and_a_value_the_model_cannot_honour_is_refused_by_name(tiny_model):
    with torch.no_grad():
        reference = tiny_model(**_inputs()).prediction
        same = tiny_model(**_inputs(), output_attentions=False, use_cache=False).prediction
    assert torch.equal(same, reference)
    with pytest.raises(ValueError, match="output_attentions=True"):
        tiny_model(**_inputs(), output_attentions=True)
    with pytest.raises(ValueError, match="use_cache=True"):
        tiny_model(**_inputs(), use_cache=True)


def test_num_hidden_layers_is_the_config_s_num_layers_and_sets_it():
    config = tiny_config(num_layers=3)
    assert config.num_hidden_layers == 3
    config.num_hidden_layers = 4
    assert config.num_layers == 4


def test_return_dict_false_gives_the_output_s_fields_in_order(tiny_model):
    batch = make_batch("shear_flow")
    with torch.no_grad():
        out = tiny_model(**batch, output_hidden_states=True)
        as_tuple = tiny_model(**batch, output_hidden_states=True, return_dict=False)
    expected = (out.loss, out.prediction, out.last_hidden_state, out.vrmse_loss, out.spectral_loss, out.hidden_states)
    assert len(as_tuple) == len(expected)
    for a, b in zip(as_tuple[:5], expected[:5]):
        assert torch.equal(a, b)
    assert all(torch.equal(a, b) for a, b in zip(as_tuple[5], out.hidden_states))


def test_the_decoder_kind_is_decoder_type_so_generic_code_finds_no_decoder_sub_config(tmp_path):
    """transformers reads a config attribute named `decoder` as a sub-config (`get_text_config()`); the decoder's
    kind is `decoder_type`, and a config saved under the old name is read as it."""
    import json

    from modeling_pdefm import PDEFMConfig

    config = tiny_config(decoder_type="fno")
    assert not hasattr(config, "decoder")
    assert config.get_text_config() is config
    config.save_pretrained(tmp_path)
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["decoder_type"] == "fno" and "decoder" not in saved
    saved["decoder"] = saved.pop("decoder_type")  # as pdefm 0.2.0 wrote it
    json.dump(saved, open(tmp_path / "config.json", "w"))
    assert PDEFMConfig.from_pretrained(tmp_path).decoder_type == "fno"
    assert PDEFMConfig.from_preset("tiny", datasets=config.datasets, decoder="fno").decoder_type == "fno"
