import math

import pytest
import torch

from modeling_pdefm import PDEFMConfig, PDEFMModel
from modeling_pdefm.mamba_layers import Mamba2Mixer

from conftest import DATASETS, make_batch, tiny_config


def test_2d_and_3d_datasets_in_one_model(tiny_model):
    for name in DATASETS:
        batch = make_batch(name, t_out=2)
        out = tiny_model(**batch)
        assert out.prediction.shape == batch["labels"].shape
        assert out.loss.ndim == 0 and torch.isfinite(out.loss)


@pytest.mark.parametrize("space", [(16, 48), (13, 30), (7, 9)])
def test_non_square_and_non_divisible_grids(tiny_model, space):
    batch = make_batch("shear_flow", space=space)
    assert tiny_model(**batch).prediction.shape == batch["labels"].shape


def test_non_divisible_3d_grid(tiny_model):
    batch = make_batch("MHD_64", space=(6, 9, 5))
    assert tiny_model(**batch).prediction.shape == batch["labels"].shape


ABLATIONS = [
    dict(use_spectral_tokens=False),
    dict(use_film=False),
    dict(use_cross_attention=False),
    dict(backbone="attention"),
    dict(decoder_type="conv"),
    dict(predict_increment=False),
    dict(normalize_inputs=False),
    dict(alternate_scan_axes=False),
    dict(decoder_skip_frames=2),
]


@pytest.mark.parametrize("switch", ABLATIONS, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()))
def test_every_ablation_switch_trains(switch):
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(**switch))
    for name in ("shear_flow", "MHD_64"):
        out = model(**make_batch(name))
        out.loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)


def test_ablations_remove_their_modules():
    assert PDEFMModel(tiny_config(use_spectral_tokens=False)).spectral_tokenizer is None
    assert PDEFMModel(tiny_config(use_film=False)).film is None
    assert type(PDEFMModel(tiny_config(use_cross_attention=False)).fusion).__name__ == "SpectralSummaryFusion"
    attention = PDEFMModel(tiny_config(backbone="attention"))
    assert not any(isinstance(m, Mamba2Mixer) for m in attention.modules())
    conv = PDEFMModel(tiny_config(decoder_type="conv"))
    assert not any(type(m).__name__ == "SpectralConv" for m in conv.modules())
    fno = PDEFMModel(tiny_config(decoder_type="fno"))
    for block in fno.decoders["2d"].blocks:  # either kind keeps the state-dict name `kernel`
        assert type(block.kernel).__name__ == "SpectralConv"


@pytest.mark.parametrize("backbone", ["mamba", "attention"])
def test_receptive_field_spans_the_whole_grid_and_all_frames(backbone):
    # Only the backbone links far-apart patches here: conv decoder, no spectral tokens, no global normalisation.
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(backbone=backbone, decoder_type="conv", use_spectral_tokens=False, normalize_inputs=False))
    torch.nn.init.normal_(model.dataset_heads["shear_flow"].out_proj.weight)
    batch = make_batch("shear_flow", batch=1, t_in=3, space=(16, 16))
    batch["input_fields"].requires_grad_(True)
    model(**batch).prediction[0, 0, 0, 0].sum().backward()
    grad = batch["input_fields"].grad[0]
    assert grad[0, -1, -1].abs().sum() > 0  # first input frame, opposite corner
    assert grad[-1, -1, -1].abs().sum() > 0  # last input frame, opposite corner: later in any scan order


def test_fresh_model_keeps_mamba_initialisation(tiny_model):
    mixers = [m for m in tiny_model.modules() if isinstance(m, Mamba2Mixer)]
    assert mixers
    for mixer in mixers:
        heads = mixer.num_heads
        assert torch.allclose(mixer.A_log, torch.log(torch.arange(1, heads + 1, dtype=torch.float32)))
        assert torch.equal(mixer.D, torch.ones(heads))
        dt = torch.nn.functional.softplus(mixer.dt_bias)
        assert (dt >= mixer.dt_floor * 0.999).all() and (dt <= mixer.dt_max * 1.001).all()
        assert dt.std() > 0  # drawn, not a constant fill


def test_fresh_model_has_the_documented_initialisation():
    # transformers initialises only modules that own parameters: an init written for a container never runs.
    model = PDEFMModel(tiny_config())
    films = [m for m in model.modules() if type(m).__name__ == "FiLM"]
    assert len(films) == 1  # the tokens entering the backbone
    for film in films:  # identity modulation at the start
        assert not film.proj.weight.any() and not film.proj.bias.any()
    for decoder in model.decoders.values():  # fan-in init, not transformers' std of 0.02
        weight = decoder.unpatch.proj.weight
        assert weight.std().item() == pytest.approx(weight.shape[1] ** -0.5, rel=0.2)


@pytest.mark.parametrize("skip_frames", [1, 2])
def test_decoder_sees_the_last_skip_frames_at_full_resolution(skip_frames):
    # With the un-patched tokens silenced and no window statistics, the input frames reach the decoder only
    # through its skip: exactly the last `decoder_skip_frames` of them may move the prediction.
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(decoder_skip_frames=skip_frames, normalize_inputs=False, n_steps_input=3))
    torch.nn.init.normal_(model.dataset_heads["shear_flow"].out_proj.weight)
    torch.nn.init.zeros_(model.decoders["2d"].unpatch.proj.weight)
    batch = make_batch("shear_flow", t_in=3)
    base = model(**batch).prediction
    moved = []
    for frame in range(3):
        changed = batch["input_fields"].clone()
        changed[:, frame] += torch.randn_like(changed[:, frame])
        moved.append(not torch.allclose(model(**{**batch, "input_fields": changed}).prediction, base))
    assert moved == [False] * (3 - skip_frames) + [True] * skip_frames


def test_decoder_skip_frames_are_capped_by_the_input_window():
    config = tiny_config(decoder_skip_frames=4, n_steps_input=2)
    assert config.skip_frames() == 2
    assert PDEFMModel(config).decoders["2d"].lift.weight.shape[1] == (1 + 2) * config.latent_channels
    model = PDEFMModel(tiny_config(decoder_skip_frames=3, n_steps_input=3))
    with pytest.raises(ValueError, match=r"decoder joins the last 3 input frames .*; input_fields has 2"):
        model(**make_batch("shear_flow", t_in=2))
    # The skip is architecture: a later change of the window (a finetuning run's) does not change it.
    model.config.n_steps_input = 2
    assert model.config.skip_frames() == 3


def test_removed_options_load_at_the_value_models_behave_as_and_are_refused_otherwise():
    from modeling_pdefm.configuration_pdefm import REMOVED_KEYS

    spec = {"shear_flow": {"n_fields": 4, "n_spatial_dims": 2}}
    for key, (kept, version) in REMOVED_KEYS.items():
        saved = PDEFMConfig(datasets=spec, **{key: kept})  # a config written before the removal
        assert not hasattr(saved, key) and key not in saved.to_dict()
        other = {bool: True, str: "step"}[type(kept)]
        with pytest.raises(ValueError, match=rf"PDEFMConfig key '{key}' was removed .* pdefm {version} was the last"):
            PDEFMConfig(datasets=spec, **{key: other})
        with pytest.raises(ValueError, match=rf"PDEFMConfig key '{key}' was removed"):
            PDEFMConfig.from_preset("tiny", datasets=spec, **{key: other})
    with pytest.raises(ValueError, match=r"PDEFMConfig key 'decoder_type': 'fno_conv' was removed .* pdefm 0.1.0"):
        PDEFMConfig.from_preset("tiny", datasets=spec, decoder_type="fno_conv")


def test_new_dataset_adapter_starts_from_persistence(tiny_model):
    batch = make_batch("shear_flow")
    out = tiny_model(**batch)
    assert torch.allclose(out.prediction[:, 0], batch["input_fields"][:, -1], atol=1e-5)


def test_add_dataset_gives_a_new_domain(tiny_model):
    before = tiny_model.num_parameters()
    tiny_model.add_dataset("gray_scott_reaction_diffusion", n_fields=2, n_spatial_dims=2, n_constant_scalars=2)
    assert tiny_model.num_parameters() > before
    assert "gray_scott_reaction_diffusion" in tiny_model.config.datasets
    x = torch.randn(1, 2, 16, 16, 2)
    out = tiny_model(input_fields=x, dataset_name="gray_scott_reaction_diffusion", constant_scalars=torch.rand(1, 2))
    assert out.prediction.shape == (1, 1, 16, 16, 2)
    with pytest.raises(ValueError, match="already known"):
        tiny_model.add_dataset("shear_flow", n_fields=4, n_spatial_dims=2)


def test_add_3d_dataset_to_a_2d_model():
    model = PDEFMModel(tiny_config().__class__.from_preset("tiny", datasets={"a": {"n_fields": 2, "n_spatial_dims": 2}},
                                                           n_steps_input=2))
    assert "3d" not in model.decoders
    model.add_dataset("cube", n_fields=3, n_spatial_dims=3)
    assert model(input_fields=torch.randn(1, 2, 8, 8, 8, 3), dataset_name="cube").prediction.shape == (1, 1, 8, 8, 8, 3)


def test_rollout_matches_step_by_step_prediction(tiny_model):
    batch = make_batch("shear_flow", batch=1, t_in=2)
    rolled = tiny_model.rollout(batch, n_steps=3)
    assert rolled.shape == (1, 3, 12, 20, 4)
    torch.nn.init.normal_(tiny_model.dataset_heads["shear_flow"].out_proj.weight, std=0.1)
    rolled = tiny_model.rollout(batch, n_steps=3)
    first = tiny_model(**{k: v for k, v in batch.items() if k != "labels"}, n_steps=1).prediction
    assert torch.allclose(rolled[:, :1], first, atol=1e-5)
    assert not torch.allclose(rolled[:, 1], rolled[:, 0])


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config())
    batch = make_batch("shear_flow")
    model(**batch).loss.backward()
    plain = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    model.activation_checkpointing_enable()
    model.train()
    assert all(layer.gradient_checkpointing for layer in model.backbone.layers)
    model(**batch).loss.backward()
    for n, p in model.named_parameters():
        if n in plain:
            assert torch.allclose(p.grad, plain[n], atol=1e-6), n


def test_vrmse_part_of_the_loss_is_the_wells_vrmse():
    model = PDEFMModel(tiny_config(normalize_inputs=False))
    batch = make_batch("shear_flow", t_out=2)
    out = model(**batch)
    pred, target = out.prediction, batch["labels"]
    mse = (pred - target).pow(2).mean(dim=(2, 3))
    var = target.var(dim=(2, 3), unbiased=True)
    assert torch.allclose(out.vrmse_loss, torch.sqrt(mse / (var + 1e-7)).mean(), rtol=1e-5)


def test_tuple_output_without_return_dict(tiny_model):
    loss, prediction, _, vrmse, spectral = tiny_model(**make_batch("shear_flow"), return_dict=False)
    assert loss.ndim == 0 and prediction.ndim == 5 and vrmse.ndim == 0 and spectral.ndim == 0


# ------------------------------------------------------------------------------------------- bad input
def test_unknown_dataset_lists_the_known_ones(tiny_model):
    with pytest.raises(ValueError, match=r"unknown dataset_name 'nope'.*MHD_64.*shear_flow"):
        tiny_model(**{**make_batch("shear_flow"), "dataset_name": "nope"})


def test_missing_dataset_name_with_several_datasets(tiny_model):
    batch = make_batch("shear_flow")
    batch.pop("dataset_name")
    with pytest.raises(ValueError, match="dataset_name is required"):
        tiny_model(**batch)


def test_wrong_channel_count(tiny_model):
    batch = make_batch("shear_flow")
    batch["input_fields"] = batch["input_fields"][..., :3]
    with pytest.raises(ValueError, match="3 channels but dataset 'shear_flow' has n_fields=4"):
        tiny_model(**batch)


def test_wrong_number_of_spatial_dims(tiny_model):
    batch = make_batch("MHD_64")
    batch["input_fields"] = batch["input_fields"][:, :, 0]
    with pytest.raises(ValueError, match=r"'MHD_64' \(3 spatial dims\) must be \[batch, T_in, x, y, z, channels\]"):
        tiny_model(**batch)


def test_time_grid_of_wrong_length(tiny_model):
    batch = make_batch("shear_flow", t_in=2)
    batch["input_time_grid"] = torch.zeros(2, 3)
    with pytest.raises(ValueError, match=r"input_time_grid must have shape \(2, 2\)"):
        tiny_model(**batch)
    batch = make_batch("shear_flow", t_out=2)
    batch["output_time_grid"] = torch.zeros(2, 1)
    with pytest.raises(ValueError, match="output_time_grid has 1 steps but labels have 2"):
        tiny_model(**batch)


def test_wrong_boundary_conditions(tiny_model):
    batch = make_batch("shear_flow")
    batch["boundary_conditions"] = torch.full((2, 2, 2), 5)
    with pytest.raises(ValueError, match="WALL=0, OPEN=1 or PERIODIC=2"):
        tiny_model(**batch)
    batch["boundary_conditions"] = torch.zeros(2, 3, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"boundary_conditions must have shape \(2, 2, 2\)"):
        tiny_model(**batch)


def test_missing_constant_fields_and_scalars(tiny_model):
    batch = make_batch("acoustic_scattering")
    batch.pop("constant_fields")
    with pytest.raises(ValueError, match=r"constant_fields for dataset 'acoustic_scattering' must have shape \(2, 12, 20, 2\)"):
        tiny_model(**batch)
    batch = make_batch("shear_flow")
    batch["constant_scalars"] = torch.zeros(2, 5)
    with pytest.raises(ValueError, match=r"constant_scalars for dataset 'shear_flow' must have shape \(2, 2\)"):
        tiny_model(**batch)


def test_non_finite_inputs_are_reported(tiny_model):
    batch = make_batch("shear_flow")
    batch["input_fields"][1, 0, 3, 4, 2] = math.nan
    with pytest.raises(ValueError, match=r"input_fields holds 1 non-finite values \(first at index \(1, 0, 3, 4, 2\)\)"):
        tiny_model(**batch)


def test_the_finiteness_check_finds_an_inf_and_names_values_too_large_to_square(tiny_model):
    """An inf in the labels is found and placed; finite values of 3e38 (whose sum and squares overflow float32) are
    refused by their magnitude, not mistaken for non-finite ones."""
    batch = make_batch("shear_flow")
    batch["labels"][0, 0, 1, 2, 3] = -math.inf
    with pytest.raises(ValueError, match=r"labels holds 1 non-finite values \(first at index \(0, 0, 1, 2, 3\)\)"):
        tiny_model(**batch)
    batch = make_batch("shear_flow")
    batch["input_fields"][0, 0, 0, 0, 0] = batch["input_fields"][0, 0, 0, 1, 0] = 3e38
    with pytest.raises(ValueError, match=r"input_fields holds values up to 3e\+38 in magnitude"):
        tiny_model(**batch)


def test_unexpected_keyword_is_refused(tiny_model):
    with pytest.raises(TypeError, match="unexpected arguments \\['input_feilds'\\]"):
        tiny_model(**make_batch("shear_flow"), input_feilds=1)


def test_batch_of_mixed_datasets_is_refused(tiny_model):
    with pytest.raises(ValueError, match="one dataset"):
        tiny_model(**{**make_batch("shear_flow"), "dataset_name": ["shear_flow", "MHD_64"]})


def test_bad_config_values():
    with pytest.raises(ValueError, match="backbone must be one of"):
        tiny_config(backbone="lstm")
    with pytest.raises(ValueError, match=r"datasets\['x'\]\['n_spatial_dims'\] must be one of \(2, 3\)"):
        tiny_config().__class__(datasets={"x": {"n_fields": 1, "n_spatial_dims": 4}})
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        tiny_config().__class__.from_preset("huge")


@pytest.mark.parametrize("change, message", [
    (lambda b: {**b, "input_fields": b["input_fields"][:0], "labels": b["labels"][:0]}, "at least one sample"),
    (lambda b: {**b, "input_fields": b["input_fields"][:, :0], "input_time_grid": None}, "one input frame"),
    (lambda b: {**b, "input_fields": b["input_fields"][:, :, :1, :1], "labels": b["labels"][:, :, :1, :1]},
     r"at least 2 grid points .* got grid \(1, 1\)"),
    (lambda b: {**b, "labels": b["labels"][:, :0], "output_time_grid": None}, "at least one output frame"),
    (lambda b: {**b, "boundary_conditions": torch.full((2, 2, 2), 1.7)}, r"PERIODIC=2; got 1.7"),
    (lambda b: {**b, "input_fields": b["input_fields"].long()}, "input_fields must be a floating-point tensor"),
])
def test_degenerate_inputs_get_a_named_error(tiny_model, change, message):
    batch = change(make_batch("shear_flow"))
    with pytest.raises(ValueError, match=message):
        tiny_model(**batch)


def test_n_steps_must_be_positive(tiny_model):
    batch = {k: v for k, v in make_batch("shear_flow").items() if k not in ("labels", "output_time_grid")}
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="n_steps must be a positive int"):
            tiny_model(**batch, n_steps=bad)
        with pytest.raises(ValueError, match="n_steps must be a positive int"):
            tiny_model.rollout(batch, n_steps=bad)
    assert tiny_model(**batch, n_steps=3).prediction.shape[1] == 3


def test_floating_inputs_of_any_precision_are_cast_to_the_models_dtype(tiny_model):
    batch = make_batch("shear_flow")
    expected = tiny_model(**batch).prediction
    for dtype in (torch.float64, torch.float16, torch.bfloat16):
        cast = {**batch, "input_fields": batch["input_fields"].to(dtype), "labels": batch["labels"].to(dtype),
                "constant_scalars": batch["constant_scalars"].to(dtype)}
        out = tiny_model(**cast)
        assert out.prediction.dtype == torch.float32 and torch.isfinite(out.loss)
        if dtype == torch.float64:
            torch.testing.assert_close(out.prediction, expected)
    # Integral codes stored as floats (as the reader gives them) are fine.
    tiny_model(**{**batch, "boundary_conditions": batch["boundary_conditions"].float()})


def test_gradient_checkpointing_state_is_read_without_a_deprecation_warning(tiny_model):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)  # PEFT reads this name on every adapter load
        assert not tiny_model.is_gradient_checkpointing
        tiny_model.activation_checkpointing_enable()
        assert tiny_model.is_gradient_checkpointing


def test_compiled_mamba_gives_the_eager_result_with_one_graph_for_every_mixer():
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    torch.manual_seed(0)
    eager = PDEFMModel(tiny_config(num_layers=2))
    compiled = PDEFMModel(tiny_config(num_layers=2, compile_mamba=True))
    compiled.load_state_dict(eager.state_dict())
    batch = make_batch("shear_flow", space=(16, 16))
    losses = []
    for model in (eager, compiled):
        out = model(**batch)
        out.loss.backward()
        losses.append(out)
    torch.testing.assert_close(losses[1].prediction, losses[0].prediction, atol=1e-5, rtol=1e-4)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters()):
        if a.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, atol=1e-5, rtol=1e-3, msg=name)
    mixers = sum(isinstance(m, Mamba2Mixer) for m in compiled.modules())
    assert mixers == 4 and counters["stats"]["unique_graphs"] == 1  # four mixers, one compiled graph
    assert not eager.config.compile_mamba and compiled.config.compile_mamba


def test_n_steps_wins_over_a_longer_output_time_grid(tiny_model):
    batch = make_batch("shear_flow", t_out=3)
    batch.pop("labels")
    with torch.no_grad():
        one = tiny_model(**batch, n_steps=1).prediction
        three = tiny_model(**batch).prediction
    assert one.shape[1] == 1 and three.shape[1] == 3
    torch.testing.assert_close(one[:, 0], three[:, 0])


@pytest.mark.parametrize("name", ["training", "forward", "to", "keys"])
def test_a_dataset_named_like_a_module_attribute_is_refused_by_name(name):
    with pytest.raises(ValueError, match=rf"dataset name '{name}' is the name of an attribute of torch's modules"):
        PDEFMConfig(datasets={name: {"n_fields": 1, "n_spatial_dims": 2}})


@pytest.mark.parametrize("value", ["inf", "nan", "0", "-5", "lots"])
def test_a_parameter_limit_that_is_not_a_finite_count_is_refused(monkeypatch, value):
    monkeypatch.setenv("PDEFM_MAX_PARAMETERS", value)
    with pytest.raises(ValueError, match=rf"PDEFM_MAX_PARAMETERS='{value}': expected a finite number"):
        PDEFMConfig()


def test_inputs_whose_squares_overflow_are_refused_not_forecast_as_inf():
    model = PDEFMModel(PDEFMConfig(datasets={"a": {"n_fields": 1, "n_spatial_dims": 2}}))
    with pytest.raises(ValueError, match=r"input_fields holds values up to 1e\+20 in magnitude, beyond 1e\+18"):
        model(input_fields=torch.full((1, 4, 16, 16, 1), 1e20))
    assert torch.isfinite(model(input_fields=torch.randn(1, 4, 16, 16, 1) * 1e10).prediction).all()
