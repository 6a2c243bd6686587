"""LoRA domain adapters: finetuning command, several adapters on one base, merging, predict, and bad input."""

import json
import os

import h5py
import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState

from modeling_pdefm import PDEFMConfig, PDEFMModel
from pdefm.data import WellSplitReader, load_well_dataset
from pdefm.train.model_files.loading import load_pdefm
from pdefm.train.adapters.lora import (
    AdapterMismatchError,
    check_target_modules,
    load_domain_adapters,
    trainable_parameters,
    wrap_with_lora,
)
from pdefm.train.evaluation.forecasters import model_inputs
from pdefm.train.finetune import main as finetune_main
from pdefm.train.predict import main as predict_main
from pdefm.train.training.batches import model_specs

from well_files import write_base_and_new_system, write_dataset


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A base model pretrained (briefly) on `flow2d`, and two new systems it has never seen."""
    root = str(tmp_path_factory.mktemp("ft_data"))
    write_base_and_new_system(root)
    write_dataset(root, "cube3d", n_dims=3, resolution=(8, 8, 8), n_steps=8, files_per_split=(1, 1, 1), seed=4,
                  tensor_fields=False, constant_fields=False, time_scalars=False)
    torch.manual_seed(0)
    # The paper's FNO decoder: the spectral adapters need its Fourier layers (`tiny` has 3x3 blocks).
    base = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(root, ["flow2d"]), decoder_type="fno",
                                              n_steps_input=2))
    base_dir = str(tmp_path_factory.mktemp("base"))
    base.save_pretrained(base_dir)
    return root, base_dir


def run_finetune(root, base_dir, out, name, adapter, *extra):
    argv = ["--base", base_dir, "--data", os.path.join(root, name), "--adapter-name", adapter, "--output_dir", str(out),
            "--max_steps", "4", "--batch_size", "2", "--n_steps_input", "2", "--eval_every", "2", "--eval_batches", "1",
            "--checkpoint_every", "2", "--log_with", "none", "--warmup_steps", "1", "--learning_rate", "0.01", *extra]
    assert finetune_main(argv) == 0
    return os.path.join(str(out), adapter)


def test_lora_finetune_saves_an_adapter_with_its_card(setup, tmp_path):
    root, base_dir = setup
    folder = run_finetune(root, base_dir, tmp_path / "ft", "waves", "waves_lora", "--lora-r", "2")
    files = set(os.listdir(folder))
    assert {"adapter_config.json", "adapter_model.safetensors", "pdefm_adapter.json", "README.md"} <= files
    info = json.load(open(os.path.join(folder, "pdefm_adapter.json")))
    assert info["dataset_name"] == "waves" and info["dataset_spec"]["n_fields"] == 3
    card = open(os.path.join(folder, "README.md")).read()
    assert "library_name: peft" in card and "one-step VRMSE" in card
    # The base is a local folder: the card says so instead of recording a path as a Hub id.
    assert "base_model:" not in card and "a local base model" in card
    details = json.load(open(tmp_path / "ft" / "finetune.json"))
    assert details["mode"] == "lora" and details["trainable_parameters"]["fraction"] < 0.05
    assert os.path.isdir(tmp_path / "ft" / "checkpoints")
    assert (tmp_path / "ft" / "report.md").read_text().startswith("# Finetuning report (lora, waves)")


def test_the_base_hub_id_is_recorded_when_there_is_one(tmp_path):
    from pdefm.train.finetune import base_hub_id

    assert base_hub_id("org/pdefm-small") == "org/pdefm-small"
    cached = tmp_path / "hub" / "models--org--pdefm-small" / "snapshots" / "abc123"
    cached.mkdir(parents=True)
    assert base_hub_id(str(cached)) == "org/pdefm-small"
    assert base_hub_id(str(tmp_path)) is None


def test_lora_is_under_five_percent_of_the_small_model():
    model = PDEFMModel(PDEFMConfig.from_preset("small", datasets={"a": {"n_fields": 4, "n_spatial_dims": 2}}))
    from pdefm.train.adapters.lora import default_target_modules

    model.add_dataset("b", n_fields=3, n_spatial_dims=2)
    peft_model = wrap_with_lora(model, "b_lora", ["dataset_heads.b"], r=8, target_modules=default_target_modules(model, 2))
    counts = trainable_parameters(peft_model)
    assert 0 < counts["fraction"] < 0.05


@pytest.mark.parametrize("backbone", ["mamba", "attention"])
def test_default_lora_targets_follow_the_configured_backbone(backbone):
    """The default targets must reach the backbone that is there: with `backbone="attention"` they once named
    `nn.TransformerEncoderLayer`'s layers and matched nothing of ours."""
    from pdefm.train.adapters.lora import default_target_modules

    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets={"a": {"n_fields": 2, "n_spatial_dims": 2}},
                                               backbone=backbone))
    targets = default_target_modules(model, 2)
    in_backbone = [t for t in targets if t.startswith("backbone.layers.")]
    assert len({t.split(".")[2] for t in in_backbone}) == len(model.backbone.layers)  # every layer
    peft_model = wrap_with_lora(model, "a_lora", [], r=2)  # default targets: LoRA in the backbone too
    lora_layers = {n.split(".lora_A")[0] for n, _ in peft_model.named_parameters() if ".lora_A." in n}
    assert any(".backbone.layers." in n for n in lora_layers)


def test_default_lora_targets_name_the_backbones_they_know():
    from pdefm.train.adapters.lora import default_target_pattern

    with pytest.raises(ValueError, match=r"no default LoRA targets for backbone 'rnn'; known: \['attention', 'mamba'\]"):
        default_target_pattern("rnn")


def test_heads_mode_trains_only_the_new_dataset_head(setup, tmp_path):
    root, base_dir = setup
    run_finetune(root, base_dir, tmp_path / "ad", "waves", "waves_heads", "--mode", "heads")
    tuned = PDEFMModel.from_pretrained(str(tmp_path / "ad" / "waves_heads"))
    base = PDEFMModel.from_pretrained(base_dir)
    assert torch.equal(tuned.backbone.layers[0].mixer.forward_mixer.in_proj.weight,
                       base.backbone.layers[0].mixer.forward_mixer.in_proj.weight)
    assert "waves" in tuned.config.datasets


def test_two_adapters_on_one_base_switch_and_merge(setup, tmp_path):
    root, base_dir = setup
    waves = run_finetune(root, base_dir, tmp_path / "w", "waves", "waves_lora", "--lora-r", "2")
    cube = run_finetune(root, base_dir, tmp_path / "c", "cube3d", "cube_lora", "--lora-r", "2")
    model = load_domain_adapters(PDEFMModel.from_pretrained(base_dir), [waves, cube]).eval()
    assert set(model.peft_config) == {"waves_lora", "cube_lora"}
    batch = load_well_dataset(os.path.join(root, "waves"), split="test", n_steps_input=2, n_steps_output=1)[[0, 1]]
    inputs = model_inputs(batch, "cpu")
    with torch.no_grad():
        with_waves = model(**inputs).prediction
        model.set_adapter("cube_lora")
        without = model(**inputs).prediction  # the waves LoRA is off, its dataset adapter still used
        model.set_adapter("waves_lora")
        # LoRA weights moved away from their zero start, so switching changes the output.
        assert not torch.allclose(with_waves, without)
        merged = model.merge_and_unload().eval()
        assert (merged(**inputs).prediction - with_waves).abs().max() < 1e-5
    assert isinstance(merged, PDEFMModel)
    cube_batch = load_well_dataset(os.path.join(root, "cube3d"), split="test", n_steps_input=2, n_steps_output=1)[[0]]
    single = load_pdefm(base_dir, adapter=cube)
    with torch.no_grad():
        assert torch.isfinite(single(**model_inputs(cube_batch, "cpu")).prediction).all()


@pytest.mark.parametrize("boundary", ["periodic", "walls"])
def test_every_default_lora_target_of_tiny_acts_in_the_forward(boundary):
    """A LoRA model equals its merge, with every adapter weight moved off zero: no target is bypassed. `tiny`'s 3x3
    decoder blocks wrap periodic axes through a functional convolution, which once read the base weight and skipped
    the LoRA part around it."""
    torch.manual_seed(0)
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets={"flow": {"n_fields": 2, "n_spatial_dims": 2}})).eval()
    with torch.no_grad():
        model.dataset_heads["flow"].out_proj.weight.normal_()  # zero at init: the decoder would not reach the output
    inputs = {"input_fields": torch.randn(2, 4, 16, 16, 2), "dataset_name": "flow",
              "boundary_conditions": torch.full((2, 2, 2), 2 if boundary == "periodic" else 0)}
    peft_model = wrap_with_lora(model, "tuned", [], r=2)
    assert any(".kernel." in name for name, _ in peft_model.named_parameters() if "lora_B" in name)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.3)
        adapted = peft_model(**inputs).prediction
        merged = peft_model.merge_and_unload().eval()(**inputs).prediction
    torch.testing.assert_close(adapted, merged, atol=1e-4, rtol=1e-4)


def test_interrupted_finetune_resumes(setup, tmp_path):
    root, base_dir = setup
    from pdefm.train.finetune import finetune, finetune_arguments
    from pdefm.train.training.config import load_config

    argv = ["--base", base_dir, "--data", os.path.join(root, "waves"), "--adapter-name", "w", "--output_dir",
            str(tmp_path / "r"), "--max_steps", "4", "--batch_size", "2", "--n_steps_input", "2", "--eval_every", "2",
            "--eval_batches", "1", "--checkpoint_every", "2", "--log_with", "none", "--lora-r", "2",
            "--data_dir", root, "--datasets", "waves"]
    args, rest = finetune_arguments(argv)
    config = load_config(rest).config
    with pytest.raises(KeyboardInterrupt):
        finetune(args, config, stop_after=2)
    # Another LoRA rank would not fit the checkpoint's run: refused, naming the finetuning settings.
    other_argv = list(argv)
    other_argv[other_argv.index("--lora-r") + 1] = "4"
    other, _ = finetune_arguments(other_argv)
    AcceleratorState._reset_state(True)
    from pdefm.train.training.fit import ResumeConfigError

    with pytest.raises(ResumeConfigError, match=r"finetune: .*'lora_r': 2.* in the checkpoint, .*'lora_r': 4.* now"):
        finetune(other, config, resume=True)
    AcceleratorState._reset_state(True)
    result = finetune(args, config, resume=True)
    assert os.path.isfile(tmp_path / "r" / "w" / "adapter_model.safetensors")
    assert json.load(open(tmp_path / "r" / "finetune.json"))["steps"] == 4 and result["report"]


def test_bad_finetune_input_is_named(setup, tmp_path, capsys):
    root, base_dir = setup
    base = PDEFMModel.from_pretrained(base_dir)
    with pytest.raises(ValueError, match="'no_such_layer' matches no Linear/Conv layer"):
        check_target_modules(base, ["in_proj", "no_such_layer"])
    with pytest.raises(ValueError, match="also the name of a dataset"):
        wrap_with_lora(base, "flow2d", [], r=2)
    code = finetune_main(["--base", base_dir, "--data", os.path.join(root, "waves"), "--adapter-name", "x",
                          "--target-modules", "nothing_like_this", "--output_dir", str(tmp_path / "bad"), "--log_with", "none"])
    assert code == 2 and "nothing_like_this" in capsys.readouterr().err
    assert finetune_main(["--base", base_dir, "--data", str(tmp_path / "missing"), "--adapter-name", "x"]) == 2
    assert "missing" in capsys.readouterr().err
    from pdefm.train.finetune import new_dataset_modules

    with pytest.raises(ValueError, match="has no dataset 'unseen' and no field description"):
        new_dataset_modules(base, "unseen", None, base_dir)
    with pytest.raises(ValueError, match="knows it with n_fields=7, the data has n_fields=3"):
        new_dataset_modules(base, "flow2d", {**base.config.datasets["flow2d"], "n_fields": 3}, base_dir)


def test_adapter_for_another_base_is_refused(setup, tmp_path):
    root, base_dir = setup
    folder = run_finetune(root, base_dir, tmp_path / "w", "waves", "waves_lora", "--lora-r", "2")
    torch.manual_seed(1)
    other = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(root, ["flow2d"]), n_steps_input=2))
    with pytest.raises(AdapterMismatchError, match="not on this base model"):
        load_domain_adapters(other, [folder])
    with pytest.raises(AdapterMismatchError, match="not a PDE-FM domain adapter"):
        load_domain_adapters(PDEFMModel.from_pretrained(base_dir), [base_dir])


@pytest.fixture(scope="module")
def saved_adapter(setup, tmp_path_factory):
    root, base_dir = setup
    return run_finetune(root, base_dir, tmp_path_factory.mktemp("adapter"), "waves", "waves_lora", "--lora-r", "2")


def edited_copy(folder, tmp_path, file, edit):
    import shutil

    copy = tmp_path / "edited"
    shutil.copytree(folder, copy)
    path = copy / file
    edited = edit(json.loads(path.read_text()))
    path.write_text(edited if isinstance(edited, str) else json.dumps(edited))
    return str(copy)


@pytest.mark.parametrize("file, edit, message", [
    ("adapter_config.json", lambda c: {**c, "target_modules": "(.|.)*Z"}, r"target_modules: the pattern '\(\.\|\.\)\*Z' is refused"),
    ("adapter_config.json", lambda c: {**c, "rank_pattern": {"(a+)+$": 4}}, "rank_pattern: the pattern .* is refused"),
    ("adapter_config.json", lambda c: {**c, "target_modules": 7}, "target_modules: expected a module name"),
    ("adapter_config.json", lambda c: "{not json", "adapter_config.json: not valid JSON"),
    ("adapter_config.json", lambda c: [1, 2], "adapter_config.json: expected a JSON object, got list"),
    ("pdefm_adapter.json", lambda c: {k: v for k, v in c.items() if k != "base_fingerprint"},
     "pdefm_adapter.json: key 'base_fingerprint' missing or not a str"),
    ("pdefm_adapter.json", lambda c: {**c, "dataset_spec": "waves"}, "key 'dataset_spec' missing or not a dict"),
    ("adapter_config.json", lambda c: {**c, "r": 3}, "do not fit the shapes .*size mismatch"),
])
def test_an_untrusted_adapter_folder_is_checked_before_peft_reads_it(setup, saved_adapter, tmp_path, file, edit,
                                                                     message):
    _, base_dir = setup
    folder = edited_copy(saved_adapter, tmp_path, file, edit)
    with pytest.raises(AdapterMismatchError, match=message):
        load_domain_adapters(PDEFMModel.from_pretrained(base_dir), [folder])


def test_a_saved_adapter_names_its_layers_not_a_pattern(setup, saved_adapter):
    config = json.loads(open(os.path.join(saved_adapter, "adapter_config.json")).read())
    assert isinstance(config["target_modules"], list) and all("." in name for name in config["target_modules"])
    _, base_dir = setup
    load_domain_adapters(PDEFMModel.from_pretrained(base_dir), [saved_adapter])


def test_predict_writes_a_rollout_in_the_wells_format(setup, tmp_path):
    root, base_dir = setup
    folder = run_finetune(root, base_dir, tmp_path / "w", "waves", "waves_lora", "--lora-r", "2")
    source = os.path.join(root, "waves", "data", "test", "waves_00.hdf5")
    before = open(source, "rb").read()
    out = str(tmp_path / "rollout.hdf5")
    assert predict_main(["--model", base_dir, "--adapter", folder, "--input", source, "--steps", "5", "--out", out,
                         "--n-steps-input", "2"]) == 0
    assert open(source, "rb").read() == before  # the input is only read
    from pdefm.data.the_well import check

    assert check([out]) == 0
    reader = WellSplitReader([out], n_steps_input=2, n_steps_output=5)
    assert reader.meta.n_steps == 7 and reader.meta.field_names == WellSplitReader([source], n_steps_input=2, n_steps_output=1).meta.field_names
    window = reader[0]
    truth = WellSplitReader([source], n_steps_input=2, n_steps_output=1)[0]
    assert torch.allclose(window["input_fields"], truth["input_fields"])  # the given frames are kept
    with h5py.File(out) as f:
        assert f.attrs["pdefm_predicted_steps"] == 5
        time = f["dimensions/time"][()]
        assert np.allclose(np.diff(time), np.diff(time)[0], atol=1e-6)
    assert predict_main(["--model", base_dir, "--input", source, "--steps", "2", "--out", str(tmp_path / "x.hdf5")]) == 2


def test_predict_matches_a_files_fields_by_name_not_position(tmp_path):
    import shutil

    folder = write_dataset(str(tmp_path), "two", resolution=(16, 12), n_steps=8, files_per_split=(1, 1, 1),
                           tensor_fields=False, time_scalars=False, second_scalar=True)
    torch.manual_seed(0)
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(str(tmp_path), ["two"]), n_steps_input=2))
    with torch.no_grad():  # an untrained head predicts no change, whatever the field order: give it some
        for p in model.dataset_heads["two"].out_proj.parameters():
            p.normal_(std=0.3)
    base_dir = str(tmp_path / "model")
    model.save_pretrained(base_dir)
    source = os.path.join(folder, "data", "test", "two_00.hdf5")
    reordered = str(tmp_path / "reordered.hdf5")
    shutil.copyfile(source, reordered)
    with h5py.File(reordered, "r+") as f:
        names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["t0_fields"].attrs["field_names"]]
        assert names[:2] == ["a", "p"]
        f["t0_fields"].attrs["field_names"] = names[::-1]  # the same fields, listed in another order
    outputs = {}
    for label, path in (("source", source), ("reordered", reordered)):
        out = str(tmp_path / f"{label}_out.hdf5")
        assert predict_main(["--model", base_dir, "--input", path, "--steps", "3", "--out", out]) == 0
        with h5py.File(out) as f:
            outputs[label] = {name: f[f"{g}/{name}"][()] for g in ("t0_fields", "t1_fields") for name in f[g]}
    assert outputs["source"].keys() == outputs["reordered"].keys()
    for name, values in outputs["source"].items():
        np.testing.assert_allclose(outputs["reordered"][name], values, rtol=1e-5, atol=1e-5, err_msg=name)
    with h5py.File(reordered, "r+") as f:
        f["t0_fields"].attrs["field_names"] = [n if n != "p" else "salinity" for n in names]
        f["t0_fields"].move("p", "salinity")
    assert predict_main(["--model", base_dir, "--input", reordered, "--steps", "3", "--out",
                         str(tmp_path / "other.hdf5")]) == 2
    assert not os.path.exists(tmp_path / "other.hdf5")


def test_finetuning_keeps_the_bases_input_window_and_objective_unless_told(setup, tmp_path):
    root, _ = setup
    torch.manual_seed(0)
    # Decoding from the last frame only, so a shorter window can be told; a base that decodes from all three frames
    # refuses one (below).
    base = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(root, ["flow2d"]), n_steps_input=3,
                                               spectral_loss_weight=0.2, decoder_skip_frames=1))
    base_dir = str(tmp_path / "base3")
    base.save_pretrained(base_dir)
    common = ["--base", base_dir, "--data", os.path.join(root, "waves"), "--mode", "full", "--max_steps", "1",
              "--batch_size", "2", "--eval_batches", "1", "--log_with", "none", "--warmup_steps", "0"]
    assert finetune_main([*common, "--adapter-name", "inherit", "--output_dir", str(tmp_path / "a")]) == 0
    config = PDEFMModel.from_pretrained(str(tmp_path / "a" / "inherit")).config
    assert (config.n_steps_input, config.spectral_loss_weight) == (3, 0.2)
    assert json.load(open(tmp_path / "a" / "pretrain_config.json"))["n_steps_input"] == 3
    assert finetune_main([*common, "--adapter-name", "told", "--output_dir", str(tmp_path / "b"),
                          "--n_steps_input", "2"]) == 0
    assert PDEFMModel.from_pretrained(str(tmp_path / "b" / "told")).config.n_steps_input == 2
    every_frame = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(root, ["flow2d"]), n_steps_input=3))
    every_frame.save_pretrained(tmp_path / "base3_skip3")
    common[1] = str(tmp_path / "base3_skip3")
    assert finetune_main([*common, "--adapter-name", "short", "--output_dir", str(tmp_path / "c"),
                          "--n_steps_input", "2"]) == 2
    assert not (tmp_path / "c" / "short").exists()


def test_a_new_dataset_head_starts_from_the_base_fields_unless_asked_otherwise(setup, tmp_path, capsys):
    root, base_dir = setup
    run_finetune(root, base_dir, tmp_path / "fields", "waves", "w", "--mode", "heads")
    assert "dataset 'waves': its head starts from the base's fields a <- flow2d/a; v_x <- flow2d/v_x" in capsys.readouterr().out
    run_finetune(root, base_dir, tmp_path / "random", "waves", "w", "--mode", "heads", "--head-init", "random")
    assert "head starts from the base's fields" not in capsys.readouterr().out
    curve = json.load(open(tmp_path / "random" / "validation_curve.json"))
    assert [p["step"] for p in curve["points"]] == [0, 2, 4] and set(curve["persistence"]) == {"waves"}
    assert [p["samples"] for p in curve["points"]] == [{"waves": 0}, {"waves": 4}, {"waves": 8}]  # batch 2
    # A fresh head predicts no change: its first validation point is persistence's.
    assert curve["points"][0]["valid_vrmse"]["waves"] == pytest.approx(curve["persistence"]["waves"], rel=1e-5)


def test_the_0_2_0_names_of_the_head_options_still_work_and_warn(setup, tmp_path, capsys):
    """`--mode adapters` and `--adapter-init` (0.2.0, when the dataset heads were called adapters) run as `--mode
    heads` and `--head-init`, with a warning that names the new option."""
    from pdefm.train.finetune import finetune_arguments

    with pytest.warns(FutureWarning, match="use 'heads'"):
        options, _ = finetune_arguments(["--base", "b", "--data", "d", "--adapter-name", "x", "--mode", "adapters"])
    assert options.mode == "heads"
    with pytest.warns(FutureWarning, match="use --head-init"):
        options, _ = finetune_arguments(["--base", "b", "--data", "d", "--adapter-name", "x", "--adapter-init", "random"])
    assert options.head_init == "random"
    from pdefm.train.finetune import FinetuneConfig

    with pytest.raises(ValueError, match=r"finetune mode must be one of \('lora'.*got 'lora2'"):
        FinetuneConfig(base="b", data="d", adapter_name="x", mode="lora2")
    with pytest.raises(ValueError, match="head_init must be 'fields' or 'random', got 'copy'"):
        FinetuneConfig(base="b", data="d", adapter_name="x", head_init="copy")


def test_spectral_lora_finetune_saves_a_merged_model(setup, tmp_path):
    root, base_dir = setup
    folder = run_finetune(root, base_dir, tmp_path / "ft", "waves", "waves_spectral", "--mode", "spectral_lora",
                          "--lora-r", "2", "--spectral-rank", "2")
    details = json.load(open(tmp_path / "ft" / "finetune.json"))
    assert details["mode"] == "spectral_lora" and 0 < details["trainable_parameters"]["fraction"] < 0.2
    model = load_pdefm(folder)
    assert "waves" in model.config.datasets
    assert not any("lora_" in n or "parametrizations" in n for n, _ in model.named_parameters())


def test_a_malformed_field_alias_is_refused(setup, tmp_path, capsys):
    root, base_dir = setup
    argv = ["--base", base_dir, "--data", os.path.join(root, "waves"), "--adapter-name", "w", "--output_dir",
            str(tmp_path), "--field-alias", "momentum", "--max_steps", "1"]
    assert finetune_main(argv) == 2
    assert "--field-alias 'momentum': expected QUANTITY=QUANTITY" in capsys.readouterr().err


@pytest.mark.parametrize("reentrant", [True, False])
def test_lora_on_the_backbone_trains_under_gradient_checkpointing_in_both_modes(reentrant):
    """PEFT marks the input embeddings' output as requiring grad (`get_input_embeddings`, the patch embeddings), so
    reentrant checkpointing of the backbone layers still reaches LoRA's weights when every base weight is frozen;
    the gradients equal those without checkpointing."""
    from peft import LoraConfig, get_peft_model

    from conftest import make_batch, tiny_config

    grads = {}
    for checkpointing in (False, True):
        torch.manual_seed(0)
        model = PDEFMModel(tiny_config())
        with torch.no_grad():  # a fresh head predicts no change, which no backbone weight would move
            model.dataset_heads["shear_flow"].out_proj.weight.normal_(std=0.1)
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": reentrant})
        peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=r"backbone\.layers\.\d+\.mixer\..*_mixer\.out_proj",
                                                       init_lora_weights=False))
        peft_model.train()
        loss = peft_model(**make_batch("shear_flow")).loss
        loss.backward()
        grads[checkpointing] = {n: p.grad.clone() for n, p in peft_model.named_parameters() if p.requires_grad}
    assert grads[True] and all(g.abs().sum() > 0 for g in grads[True].values())
    assert grads[True].keys() == grads[False].keys()
    for name, grad in grads[True].items():
        torch.testing.assert_close(grad, grads[False][name], rtol=1e-4, atol=1e-6)


def test_finetune_help_shows_its_own_output_folder_and_every_key_explained(capsys):
    assert finetune_main(["--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert "(default: 'outputs/finetune/<adapter-name>')" in shown and "(default: 'outputs/pretrain')" not in shown
    assert "--curriculum_shares STR What the curriculum's weights share out" in shown


def test_a_second_predict_into_a_file_being_written_is_refused(setup, tmp_path, capsys):
    from pdefm.train.training.run_lock import output_file_lock

    root, base_dir = setup
    source = os.path.join(root, "flow2d", "data", "test", os.listdir(os.path.join(root, "flow2d", "data", "test"))[0])
    out = str(tmp_path / "forecast.hdf5")
    with output_file_lock(out):  # another predict is writing it
        assert predict_main(["--model", base_dir, "--input", source, "--steps", "2", "--out", out]) == 2
    assert "is being written by another pdefm command right now" in capsys.readouterr().err
    assert not os.path.exists(out)
    assert predict_main(["--model", base_dir, "--input", source, "--steps", "2", "--out", out]) == 0
    assert not os.path.exists(out + ".pdefm-lock")


def test_predict_into_a_folder_it_cannot_write_names_the_permission(setup, tmp_path, capsys, monkeypatch):
    root, base_dir = setup
    source = os.path.join(root, "flow2d", "data", "test", os.listdir(os.path.join(root, "flow2d", "data", "test"))[0])
    target = tmp_path / "readonly"
    target.mkdir()
    real_access = os.access
    # A read-only file system (or a folder without write permission, which root ignores), as os.access reports it.
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path) == str(target) else real_access(path, mode))
    assert predict_main(["--model", base_dir, "--input", source, "--steps", "2", "--out", str(target / "f.hdf5")]) == 2
    assert "is not writable (permissions or a read-only file system)" in capsys.readouterr().err


@pytest.fixture(scope="module")
def own_decoder_base(setup, tmp_path_factory):
    """A base whose datasets each have their own decoder (`decoder_per_dataset`, the main job's model)."""
    root, _ = setup
    torch.manual_seed(0)
    base = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(root, ["flow2d"]), n_steps_input=2,
                                              decoder_per_dataset=True))
    base_dir = str(tmp_path_factory.mktemp("own_decoder_base"))
    base.save_pretrained(base_dir)
    return root, base_dir


def test_a_new_dataset_of_a_base_with_own_decoders_trains_its_own_and_leaves_the_bases(own_decoder_base, tmp_path):
    root, base_dir = own_decoder_base
    run_finetune(root, base_dir, tmp_path / "heads", "waves", "waves_heads", "--mode", "heads")
    tuned, base = PDEFMModel.from_pretrained(str(tmp_path / "heads" / "waves_heads")), PDEFMModel.from_pretrained(base_dir)
    assert sorted(tuned.decoders) == ["flow2d", "waves"]
    assert torch.equal(tuned.decoders["flow2d"].lift.weight, base.decoders["flow2d"].lift.weight)
    # The new decoder started as the mean of the base's (one here) and was trained with the head.
    assert not torch.equal(tuned.decoders["waves"].lift.weight, base.decoders["flow2d"].lift.weight)
    details = json.load(open(tmp_path / "heads" / "finetune.json"))
    assert "decoders.waves" in details["trained_modules"]


def test_lora_on_a_base_with_own_decoders_adapts_only_the_new_datasets_decoder(own_decoder_base, tmp_path):
    root, base_dir = own_decoder_base
    folder = run_finetune(root, base_dir, tmp_path / "lora", "waves", "waves_lora", "--lora-r", "2")
    targets = json.load(open(os.path.join(folder, "adapter_config.json")))["target_modules"]
    assert not any(t.startswith("decoders.flow2d") for t in targets)  # never called on waves: it would train nothing
    assert any(t.startswith("decoders.waves.") for t in targets)
    model = load_domain_adapters(PDEFMModel.from_pretrained(base_dir), [folder]).eval()
    batch = load_well_dataset(os.path.join(root, "waves"), split="test", n_steps_input=2, n_steps_output=1)[[0, 1]]
    with torch.no_grad():
        assert torch.isfinite(model(**model_inputs(batch, "cpu")).prediction).all()
