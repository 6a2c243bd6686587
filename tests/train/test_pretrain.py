import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from accelerate.state import AcceleratorState

import pdefm.train.pretrain as pretrain
from modeling_pdefm import PDEFMModel
from pdefm.data.the_well import compute_stats
from pdefm.train.evaluation.forecasters import PDEFMForecaster
from pdefm.train.training import fit
from pdefm.train.training.batches import model_specs
from pdefm.train.training.checkpointing import latest_checkpoint
from pdefm.train.training.config import BUNDLED_CONFIGS, PretrainConfig, load_config, resolve_config_path
from pdefm.train.training.curriculum import CurriculumSampler, curriculum_probabilities

from well_files import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain_data")
    write_dataset(str(root), "flow2d", n_dims=2, resolution=(16, 12), n_steps=8, files_per_split=(2, 1, 1))
    write_dataset(str(root), "cube3d", n_dims=3, resolution=(8, 8, 8), n_steps=8, files_per_split=(1, 1, 1),
                  tensor_fields=False, constant_fields=False)
    return str(root)


def make_config(data_dir, output_dir, **overrides) -> PretrainConfig:
    values = dict(data_dir=data_dir, output_dir=str(output_dir), model_preset="tiny", max_steps=6, batch_size=2,
                  n_steps_input=2, checkpoint_every=3, eval_every=3, eval_batches=1, log_every=1, log_with="none",
                  warmup_steps=2, learning_rate=3e-3)
    values.update(overrides)
    return PretrainConfig(**values).validate()


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


# ------------------------------------------------------------------------------------------- pieces
def test_curriculum_probabilities():
    sizes = {"big": 400, "small": 100}
    assert curriculum_probabilities(sizes, None, 1.0, 0.0, 0.1) == pytest.approx({"big": 0.8, "small": 0.2})
    assert curriculum_probabilities(sizes, None, 0.5, 0.0, 0.1) == pytest.approx({"big": 2 / 3, "small": 1 / 3})
    assert curriculum_probabilities(sizes, None, 0.0, 0.0, 0.1) == pytest.approx({"big": 0.5, "small": 0.5})
    hard_small = curriculum_probabilities(sizes, {"big": 0.1, "small": 0.9}, 0.5, 1.0, 0.1)
    assert hard_small["small"] > 1 / 3  # difficulty shifts weight to the dataset with the higher loss
    assert curriculum_probabilities(sizes, {"big": 0.1, "small": 0.9}, 0.5, 0.0, 0.1) == pytest.approx({"big": 2 / 3, "small": 1 / 3})


def test_compute_shares_divide_each_weight_by_the_cost_of_a_window():
    sizes = {"cube": 100, "plane": 100}
    costs = {"cube": 32 ** 3, "plane": 64 ** 2}  # one 32^3 window costs eight 64^2 ones
    p = curriculum_probabilities(sizes, None, 0.5, 0.0, 0.1, costs)
    assert p == pytest.approx({"cube": 1 / 9, "plane": 8 / 9})
    # Expected compute per step is then shared equally, as the weights ask.
    assert p["cube"] * costs["cube"] == pytest.approx(p["plane"] * costs["plane"])
    hard_cube = curriculum_probabilities(sizes, {"cube": 0.9, "plane": 0.1}, 0.5, 1.0, 0.1, costs)
    assert hard_cube["cube"] * costs["cube"] / (hard_cube["plane"] * costs["plane"]) == pytest.approx(1.0 / 0.2)


def test_a_run_with_compute_shares_weighs_datasets_by_grid_points(data_dir, tmp_path, monkeypatch):
    made = []
    original = fit.CurriculumSampler
    monkeypatch.setattr(fit, "CurriculumSampler", lambda *a, **k: made.append(original(*a, **k)) or made[-1])
    pretrain.train(make_config(data_dir, tmp_path / "compute", max_steps=1, curriculum_shares="compute",
                               difficulty_alpha=0.0))
    pretrain.train(make_config(data_dir, tmp_path / "windows", max_steps=1, curriculum_shares="windows"))
    compute, windows = made
    assert compute.costs == {"flow2d": 16 * 12 * 2, "cube3d": 8 * 8 * 8 * 2} and windows.costs is None  # batch 2
    sizes = compute.sizes
    expected = (sizes["flow2d"] / sizes["cube3d"]) ** 0.5 * (8 * 8 * 8) / (16 * 12)
    assert compute.probabilities()["flow2d"] / compute.probabilities()["cube3d"] == pytest.approx(expected)
    with pytest.raises(ValueError, match=r"config key 'curriculum_shares' must be one of \('windows', 'compute'\), got 'steps'"):
        make_config(data_dir, tmp_path / "bad", curriculum_shares="steps")
    with pytest.raises(ValueError, match=r"config key 'suite' is 'mini_well_ten'; Mini-Well's suites are "
                                         r"\['mini_well', 'mini_well_all'\]"):
        make_config(data_dir, tmp_path / "bad", suite="mini_well_ten")


def test_smaller_batches_of_one_dataset_buy_it_more_steps_for_the_same_share_of_compute(data_dir, tmp_path,
                                                                                         monkeypatch):
    made = []
    original = fit.CurriculumSampler
    monkeypatch.setattr(fit, "CurriculumSampler", lambda *a, **k: made.append(original(*a, **k)) or made[-1])
    pretrain.train(make_config(data_dir, tmp_path / "even", max_steps=1, difficulty_alpha=0.0, batch_size=4))
    report = pretrain.train(make_config(data_dir, tmp_path / "small_cube", max_steps=8, difficulty_alpha=0.0,
                                        batch_size=4, batch_sizes={"cube3d": 1}))
    even, small_cube = (m.probabilities() for m in made)
    odds = lambda p: p["cube3d"] / p["flow2d"]  # noqa: E731
    assert odds(small_cube) == pytest.approx(4 * odds(even))  # a quarter of the cost per step, four times the steps
    assert small_cube["cube3d"] * 512 * 1 / (small_cube["flow2d"] * 192 * 4) == pytest.approx(
        even["cube3d"] * 512 * 4 / (even["flow2d"] * 192 * 4))  # the same share of compute
    sizes = {"flow2d": 4, "cube3d": 1}
    assert sum(report[name]["train_samples"] // size for name, size in sizes.items()) == 8  # windows of each size


@pytest.mark.parametrize("value, message", [({"cube3d": 0}, "whole numbers >= 1"), ({"cube3d": True}, "whole numbers"),
                                            ([2], "must map dataset names")])
def test_bad_batch_sizes_are_named(data_dir, tmp_path, value, message):
    with pytest.raises(ValueError, match=f"config key 'batch_sizes'.*{message}"):
        make_config(data_dir, tmp_path / "bad", batch_sizes=value)


def test_batch_sizes_of_a_dataset_not_in_the_data_are_named(data_dir, tmp_path, recwarn):
    # a bundled config names its suite's datasets, so other data get a warning that names the entry, not a refusal
    with pytest.warns(UserWarning, match=r"config key 'batch_sizes' names \['cube_3d'\], which are not datasets in"):
        pretrain.train(make_config(data_dir, tmp_path / "typo", max_steps=1, batch_sizes={"cube_3d": 1}))
    # a dataset of the folder that this run leaves out is neither: one config serves runs on a subset
    pretrain.train(make_config(data_dir, tmp_path / "subset", max_steps=1, datasets=["flow2d"], batch_sizes={"cube3d": 1}))
    assert not [w for w in recwarn.list if "batch_sizes" in str(w.message)]


def test_sampler_state_round_trip():
    a = CurriculumSampler({"x": 10, "y": 30}, 0.5, 1.0, 0.05, 0.5, seed=3)
    a.update_losses({"x": 0.4, "y": 0.2})
    [a.draw() for _ in range(5)]
    b = CurriculumSampler({"x": 10, "y": 30}, 0.5, 1.0, 0.05, 0.5, seed=99)
    b.load_state_dict(a.state_dict())
    assert [a.draw() for _ in range(20)] == [b.draw() for _ in range(20)]


def test_command_line_overrides_and_bad_values(data_dir, tmp_path):
    config, args, explicit = load_config(["--data_dir", data_dir, "--max_steps", "200", "--datasets", "flow2d,cube3d",
                                          "--learning_rate", "1e-3", "--resume"])
    assert config.max_steps == 200 and config.datasets == ["flow2d", "cube3d"] and args.resume
    assert explicit == {"data_dir", "max_steps", "datasets", "learning_rate"}  # the rest are defaults
    assert isinstance(config.learning_rate, float)
    with pytest.raises(ValueError, match="config key 'max_steps' must be a positive integer, got -5"):
        load_config(["--data_dir", data_dir, "--max_steps", "-5"])
    with pytest.raises(ValueError, match="config key 'data_dir': folder '/no/such/folder' does not exist"):
        load_config(["--data_dir", "/no/such/folder"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("max_stepz: 3\n")
    with pytest.raises(ValueError, match=r"unknown config keys \['max_stepz'\]"):
        load_config(["--config", str(bad)])
    with pytest.raises(ValueError, match=r"--config: no file 'nosuch', and no bundled config of that name \(bundled: "
                                         r"mini_well, mini_well_all, the_well\)"):
        load_config(["--config", "nosuch"])
    with pytest.raises(ValueError, match=r"config key 'datasets': \['nope'\] not found"):
        pretrain.train(make_config(data_dir, tmp_path / "o", datasets=["nope"]))


def test_shipped_configs_load_by_name_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert load_config(["--config", "mini_well", "--data_dir", str(tmp_path)]).config.model_preset == "tiny"
    assert resolve_config_path("the_well.yaml") == os.path.join(BUNDLED_CONFIGS, "the_well.yaml")
    for path in glob.glob(os.path.join(BUNDLED_CONFIGS, "*.yaml")):
        with open(path) as f:
            import yaml

            keys = set(yaml.safe_load(f))
        assert keys <= {f.name for f in PretrainConfig.__dataclass_fields__.values()}, path


# ------------------------------------------------------------------------------------------- runs
def test_training_writes_a_loadable_model_report_and_logs(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    report = pretrain.train(make_config(data_dir, out, log_with="tensorboard"))
    printed = capsys.readouterr().out
    assert f"report:      {out / 'report.md'}" in printed and f"logs:        {out / 'pretrain'}" in printed
    assert set(report) == {"flow2d", "cube3d"}
    model = PDEFMModel.from_pretrained(out)
    assert set(model.config.datasets) == {"flow2d", "cube3d"}
    assert (out / "README.md").read_text().startswith("---\nlibrary_name: transformers")
    saved = json.loads((out / "report.json").read_text())
    assert saved["steps"] == 6 and "persistence_vrmse" in saved["datasets"]["flow2d"]
    ratios = [r["vrmse"] / r["persistence_vrmse"] for r in saved["datasets"].values()]
    assert saved["mean_vrmse_over_persistence"] == pytest.approx(sum(ratios) / 2)
    assert f"persistence VRMSE: {sum(ratios) / 2:.3f} (1 is no" in (out / "report.md").read_text()
    assert glob.glob(str(out / "pretrain" / "events.out.tfevents.*"))
    assert sorted(os.listdir(out / "checkpoints")) == ["step_00000003", "step_00000006"]
    # The model records how it was trained; evaluation and prediction default to its input window.
    assert (model.config.n_steps_input, model.config.n_steps_output, model.config.spectral_loss_weight) == (2, 1, 0.1)
    assert PDEFMForecaster(model).n_steps_input == 2


def test_field_scales_come_from_stats_yaml(tmp_path):
    write_dataset(str(tmp_path), "flow2d", n_dims=2, resolution=(16, 12), n_steps=8, files_per_split=(1, 1, 1))
    assert "field_scales" not in model_specs(str(tmp_path), ["flow2d"])["flow2d"]  # no stats.yaml: no scales
    compute_stats(str(tmp_path / "flow2d"))
    stats = yaml.safe_load((tmp_path / "flow2d" / "stats.yaml").read_text())["std"]
    spec = model_specs(str(tmp_path), ["flow2d"])["flow2d"]
    expected = [float(v) for name in ("a", "v", "C") for v in np.ravel(stats[name])]
    assert len(spec["field_scales"]) == spec["n_fields"] and spec["field_scales"] == pytest.approx(expected, rel=1e-6)
    assert model_specs(str(tmp_path), ["flow2d"], use_normalization=True)["flow2d"]["field_scales"] == [1.0] * spec["n_fields"]


def test_a_time_budget_stops_the_run_and_few_shot_reads_only_the_first_trajectories(data_dir, tmp_path, monkeypatch):
    seen = []
    monkeypatch.setattr(fit.CurriculumSampler, "update_losses", lambda self, losses: seen.append(dict(losses)))
    # Validation VRMSE 0.3 against persistence's 0.6: the curriculum sees 0.5 for every dataset.
    monkeypatch.setattr(fit, "validate", lambda *a, persistence=False, **k: {n: 0.6 if persistence else 0.3
                                                                                   for n in ("flow2d", "cube3d")})
    out = tmp_path / "budget"
    pretrain.train(make_config(data_dir, out, max_steps=100000, time_budget_minutes=0.001, train_trajectories=1,
                               eval_every=1))
    saved = json.loads((out / "report.json").read_text())
    assert 1 <= saved["steps"] < 100000 and saved["train_seconds"] >= 0.06
    shard = json.loads((out / "run_info" / "rank0.json").read_text())["shard_windows"]
    # One trajectory of 8 steps gives 8 - (2 + 1) + 1 = 6 windows of 2 input and 1 output frames.
    assert shard == {"flow2d": 6, "cube3d": 6}
    assert seen and all(losses == {"flow2d": 0.5, "cube3d": 0.5} for losses in seen)
    with pytest.raises(ValueError, match="train_trajectories"):
        make_config(data_dir, out, train_trajectories=0)
    with pytest.raises(ValueError, match="difficulty_measure"):
        make_config(data_dir, out, difficulty_measure="other")


def final_weights(folder):
    return {k: v.clone() for k, v in PDEFMModel.from_pretrained(folder).state_dict().items()}


@pytest.mark.parametrize("shares", ["windows", "compute"])
def test_interrupted_then_resumed_run_ends_with_the_same_weights(data_dir, tmp_path, shares):
    pretrain.train(make_config(data_dir, tmp_path / "straight", curriculum_shares=shares))
    expected = final_weights(tmp_path / "straight")
    AcceleratorState._reset_state(True)
    with pytest.raises(KeyboardInterrupt):
        pretrain.train(make_config(data_dir, tmp_path / "broken", curriculum_shares=shares), stop_after=4)
    checkpoint = latest_checkpoint(str(tmp_path / "broken"))
    assert checkpoint.endswith("step_00000003")
    AcceleratorState._reset_state(True)
    pretrain.train(make_config(data_dir, tmp_path / "broken", curriculum_shares=shares), resume=True)
    got = final_weights(tmp_path / "broken")
    for key, value in expected.items():
        assert torch.equal(got[key], value), key


def test_a_kill_while_saving_keeps_the_previous_checkpoint(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = fit.save_checkpoint

    def save_then_die(accelerator, output_dir, step, **parts):
        if step == 6:
            tmp = os.path.join(output_dir, "checkpoints", f".tmp_step_{step:08d}")
            os.makedirs(tmp)
            open(os.path.join(tmp, "model.safetensors"), "wb").write(b"half a file")
            raise KeyboardInterrupt("killed while saving")
        return original(accelerator, output_dir, step, **parts)

    monkeypatch.setattr(fit, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain.train(make_config(data_dir, out))
    assert latest_checkpoint(str(out)).endswith("step_00000003")
    monkeypatch.setattr(fit, "save_checkpoint", original)
    AcceleratorState._reset_state(True)
    pretrain.train(make_config(data_dir, out), resume=True)
    assert latest_checkpoint(str(out)).endswith("step_00000006")


def test_non_finite_losses_are_skipped_then_stop_the_run(data_dir, tmp_path, monkeypatch):
    import modeling_pdefm.modeling_pdefm as modeling

    original = modeling.pdefm_objective
    calls = {"n": 0}

    def sometimes_nan(prediction, *args, **kwargs):
        calls["n"] += 1
        loss, *parts = original(prediction, *args, **kwargs)
        return (loss * float("nan"), *parts) if calls["n"] in (2, 3) else (loss, *parts)

    monkeypatch.setattr(modeling, "pdefm_objective", sometimes_nan)
    pretrain.train(make_config(data_dir, tmp_path / "a"))
    state = json.load(open(os.path.join(latest_checkpoint(str(tmp_path / "a")), "trainer_state.json")))
    assert state["nonfinite_total"] == 2 and state["step"] == 6

    monkeypatch.setattr(modeling, "pdefm_objective", lambda p, *a, **k: (original(p, *a, **k)[0] * float("nan"), *original(p, *a, **k)[1:]))
    AcceleratorState._reset_state(True)
    with pytest.raises(fit.NonFiniteLossError, match=r"4 non-finite losses in a row \(last on dataset '(flow2d|cube3d)' at step 0\)"):
        pretrain.train(make_config(data_dir, tmp_path / "b", max_nonfinite_in_a_row=3))


def test_two_cpu_processes_split_the_data(data_dir, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "pdefm.train.pretrain",
               "--data_dir", data_dir, "--output_dir", str(out), "--model_preset", "tiny", "--max_steps", "2",
               "--batch_size", "2", "--n_steps_input", "2", "--checkpoint_every", "2", "--eval_every", "2",
               "--eval_batches", "1", "--log_with", "none"]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    ranks = [json.load(open(out / "run_info" / f"rank{r}.json")) for r in range(2)]
    assert [r["rank"] for r in ranks] == [0, 1] and all(r["world_size"] == 2 for r in ranks)
    for name, total in ranks[0]["total_windows"].items():
        shards = [r["shard_windows"][name] for r in ranks]
        assert sum(shards) == total and abs(shards[0] - shards[1]) <= 1
    assert PDEFMModel.from_pretrained(out).config.datasets


def test_the_report_gives_a_verdict_per_field():
    from pdefm.train.model_files.model_card import metrics_table

    report = {"gray_scott": {"vrmse": 0.0455, "persistence_vrmse": 0.0548, "windows": 4, "field_names": ["A", "B"],
                             "vrmse_per_field": [0.0447, 0.0463], "persistence_vrmse_per_field": [0.0661, 0.0435]}}
    assert "| gray_scott | 0.0455 | 0.0548 | 1 of 2 (not B) | 4 |" in metrics_table(report)


def test_the_shipped_one_process_accelerate_config_launches_without_default_warnings():
    config = os.path.join(ROOT, "train", "accelerate_configs", "one_process.yaml")
    result = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", config, "-m",
                             "pdefm.train.pretrain", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: pdefm pretrain" in result.stdout
    assert "were not passed to `accelerate launch`" not in result.stdout + result.stderr


def test_the_report_shows_what_the_model_learned_with_rollouts_and_figures(data_dir, tmp_path):
    out = tmp_path / "run"
    pretrain.train(make_config(data_dir, out, max_steps=2, report_rollout_steps=3))
    text = (out / "report.md").read_text()
    assert "**not learned**" in text  # two steps learn nothing: the report says so
    assert "change std ratio" in text and "## Rollouts" in text
    # beside the linear yardsticks, with a verdict per dataset from rollouts that start several times per trajectory
    assert "| dataset | PDE-FM | persistence | linear extrapolation | linear stencil |" in text
    assert "Learned: beats persistence and the least-squares linear stencil one step ahead" in text
    assert "![VRMSE against rollout step](evaluation/figures/vrmse_per_step.png)" in text
    assert (out / "evaluation" / "figures" / "vrmse_per_step.png").is_file()
    report = json.loads((out / "report.json").read_text())["datasets"]
    some = next(iter(report.values()))
    assert len(some["rollout"]["vrmse_per_step"]) == 3 and len(some["change_ratio_per_field"]) == len(some["vrmse_per_field"])
    assert set(some["yardsticks"]) == {"linear extrapolation", "linear stencil"} and some["verdict"]["learned"] is False


def test_input_noise_scales_with_each_fields_spread():
    import torch

    from pdefm.train.training.fit import noisy_inputs

    torch.manual_seed(0)
    fields = torch.randn(4, 3, 32, 32, 2) * torch.tensor([1.0, 100.0]) + 5.0
    noise = noisy_inputs(fields, 0.05) - fields
    spread = noise.std(dim=(0, 1, 2, 3)) / fields.std(dim=(0, 1, 2, 3))
    torch.testing.assert_close(spread, torch.tensor([0.05, 0.05]), rtol=0.05, atol=0)
    assert noise.mean(dim=(0, 1, 2, 3)).abs().max() < 0.01 * 100
    with pytest.raises(ValueError, match="config key 'input_noise' must be a finite number >= 0"):
        PretrainConfig(data_dir="x", input_noise=float("inf")).validate()


def test_a_finished_folder_is_refused_before_any_data_is_generated(tmp_path):
    from pdefm.train.pretrain import train

    out = tmp_path / "out"
    out.mkdir()
    (out / "model.safetensors").write_text("an earlier run's weights")
    data = tmp_path / "data"
    config = make_config(str(data), out, generate_if_missing=True)
    with pytest.raises(ValueError, match="holds an earlier run"):
        train(config)
    assert not data.exists() and (out / "model.safetensors").read_text() == "an earlier run's weights"


def test_the_model_card_names_the_command_once(monkeypatch):
    from pdefm.train.pretrain import command_arguments

    monkeypatch.setattr(sys, "argv", ["pdefm", "pretrain", "--config", "mini_well"])
    assert command_arguments() == ["--config", "mini_well"]
    monkeypatch.setattr(sys, "argv", ["pretrain.py", "--config", "mini_well"])
    assert command_arguments() == ["--config", "mini_well"]


@pytest.mark.parametrize("value, message", [
    (",", "config key 'datasets' lists no dataset"),
    ("[]", "config key 'datasets' lists no dataset"),
    ("[a, b", r"--datasets '\[a, b' is not a value pdefm reads"),
])
def test_a_dataset_list_that_names_nothing_or_does_not_parse_is_named(tmp_path, value, message):
    with pytest.raises(ValueError, match=message):
        load_config(["--data_dir", str(tmp_path), "--datasets", value])
    assert load_config(["--data_dir", str(tmp_path), "--datasets", "a, b"]).config.datasets == ["a", "b"]


def test_the_yardstick_difficulty_is_measured_against_the_better_of_persistence_and_the_stencil(data_dir, tmp_path):
    curves = {}
    for measure in ("relative", "yardstick"):
        AcceleratorState._reset_state(True)
        out = tmp_path / measure
        pretrain.train(make_config(data_dir, out, max_steps=2, difficulty_measure=measure))
        curves[measure] = json.loads((out / "validation_curve.json").read_text())["persistence"]
    assert curves["yardstick"].keys() == curves["relative"].keys()
    for name, persistence in curves["relative"].items():
        assert curves["yardstick"][name] <= persistence + 1e-9
    assert any(curves["yardstick"][n] < curves["relative"][n] for n in curves["relative"])  # the stencil is better
    with pytest.raises(ValueError, match="difficulty_measure: yardstick' fits the linear stencil"):
        make_config(data_dir, tmp_path / "x", difficulty_measure="yardstick", use_normalization=True)
