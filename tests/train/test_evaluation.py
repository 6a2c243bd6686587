"""Evaluation (one-step and rollout metrics, files written), The Well's baselines, and the benchmark's report."""

import importlib.util
import json
import os

import numpy as np
import pytest
import torch

from modeling_pdefm import PDEFMConfig, PDEFMModel
from pdefm.data import load_well_dataset
from pdefm.data.the_well import compute_stats
from pdefm.train.baselines.forecaster import load_forecaster
from pdefm.studies.baseline_training import train_baseline
from pdefm.train.evaluate import main as evaluate_main
from pdefm.train.evaluation.rollout import evaluate_one_step, evaluate_rollout, rollout
from pdefm.train.training.batches import model_specs
from pdefm.train.training.schedule import WarmupCosine

from well_files import write_dataset, write_two_system_suite

pytest.importorskip("the_well")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval_data")
    write_dataset(str(root), "flow2d", n_dims=2, resolution=(16, 16), n_steps=16, files_per_split=(1, 1, 1),
                  time_scalars=False)
    write_dataset(str(root), "cube3d", n_dims=3, resolution=(8, 8, 8), n_steps=10, files_per_split=(1, 1, 1),
                  tensor_fields=False, constant_fields=False, time_scalars=False)
    for name in ("flow2d", "cube3d"):
        compute_stats(os.path.join(str(root), name))
    return str(root)


@pytest.fixture(scope="module")
def saved_model(data_dir, tmp_path_factory):
    torch.manual_seed(0)
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(data_dir, ["flow2d", "cube3d"])))
    folder = str(tmp_path_factory.mktemp("model"))
    model.save_pretrained(folder)
    return folder


class Persistence:
    """Predicts the last input frame."""

    def __init__(self):
        self.calls = 0

    def knows(self, name):
        return True

    def predict_next(self, batch):
        self.calls += 1
        return batch["input_fields"][:, -1:].float()


def test_persistence_rollout_equals_the_first_frame_repeated(data_dir):
    from pdefm.train.evaluation.rollout import trajectory_starts

    dataset, rows, steps = trajectory_starts(os.path.join(data_dir, "flow2d"), "test", 4, 30)
    assert steps == 12 and len(rows) == 2  # 16 steps - 4 inputs; 2 trajectories in the test file
    batch = dataset[rows]
    predicted = rollout(Persistence(), batch, steps)
    assert torch.equal(predicted, batch["input_fields"][:, -1:].expand_as(predicted).float())


def test_rollout_metrics_per_step_and_windows(data_dir):
    result = evaluate_rollout(Persistence(), os.path.join(data_dir, "flow2d"), "test", 2, n_steps_input=4, max_steps=30)
    per_step = np.array(result["vrmse_per_step"])
    assert per_step.shape == (12,) and np.all(per_step > 0)
    assert set(result["vrmse_windows"]) == {"1:1", "2:5", "6:12"}  # 13:30 lies beyond 12 steps
    assert result["vrmse_windows"]["2:5"] == pytest.approx(per_step[1:5].mean())
    assert result["vrmse_windows"]["1:1"] == pytest.approx(per_step[0])
    # Persistence is measured beside every rollout; for the persistence forecaster the two coincide.
    assert result["persistence_vrmse_per_step"] == pytest.approx(result["vrmse_per_step"])
    assert result["persistence_vrmse_windows"] == pytest.approx(result["vrmse_windows"])


def test_one_step_of_persistence_matches_its_own_reference(data_dir):
    dataset = load_well_dataset(os.path.join(data_dir, "flow2d"), split="test", n_steps_input=4, n_steps_output=1)
    result = evaluate_one_step(Persistence(), dataset, 2, batch_size=5)
    assert result["windows"] == len(dataset)
    assert result["vrmse"] == pytest.approx(result["persistence_vrmse"], rel=1e-6)
    assert set(result) >= {"nrmse", "rmse", "spectral_low", "spectral_mid", "spectral_high", "vrmse_per_field"}


def test_evaluate_command_writes_json_markdown_and_figures(saved_model, data_dir, tmp_path):
    out = tmp_path / "eval"
    assert evaluate_main(["--model", saved_model, "--data", data_dir, "--out", str(out), "--rollout-steps", "6"]) == 0
    document = json.loads((out / "evaluation.json").read_text())
    assert set(document["datasets"]) == {"flow2d", "cube3d"}
    for result in document["datasets"].values():
        assert len(result["rollout"]["vrmse_per_step"]) == 6
        assert np.isfinite(result["one_step"]["vrmse"])
    text = (out / "evaluation.md").read_text()
    assert "rollout 6:12 (persistence)" in text and "| beats persistence |" in text
    # The linear yardsticks are scored beside the model, one step and over the rollout, with a verdict per dataset.
    for name, result in document["datasets"].items():
        assert set(result["yardsticks"]) == {"linear extrapolation", "linear stencil"}
        assert len(result["yardsticks"]["linear stencil"]["vrmse_per_step"]) == 6
        assert f"- {name}: " in text
    # flow2d's 16-frame trajectories leave room for several starts of a 6-step rollout; cube3d's 10 for one
    assert document["datasets"]["flow2d"]["rollout"]["starts"] == 5 * document["datasets"]["flow2d"]["rollout"]["trajectories"]
    assert document["datasets"]["cube3d"]["rollout"]["starts"] == document["datasets"]["cube3d"]["rollout"]["trajectories"]
    assert "| one-step linear stencil |" in text and "## Rollouts against the linear yardsticks" in text
    pngs = sorted(p.name for p in (out / "figures").iterdir())
    assert pngs == ["cube3d_rollout.png", "flow2d_rollout.png", "vrmse_per_step.png"]
    assert all((out / "figures" / p).read_bytes()[:4] == b"\x89PNG" for p in pngs)
    # Every field is drawn by default (three rows each), or only the chosen ones.
    chosen = tmp_path / "chosen"
    assert evaluate_main(["--model", saved_model, "--data", data_dir, "--out", str(chosen), "--rollout-steps", "6",
                          "--datasets", "flow2d", "--figure-fields", "a"]) == 0
    from PIL import Image

    every = Image.open(out / "figures" / "flow2d_rollout.png").size[1]
    one = Image.open(chosen / "figures" / "flow2d_rollout.png").size[1]
    n_fields = len(document["datasets"]["flow2d"]["field_names"])
    assert n_fields > 1 and every > (n_fields - 0.5) * one


def test_evaluate_command_errors_name_the_problem(saved_model, data_dir, tmp_path, capsys):
    assert evaluate_main(["--model", saved_model, "--data", str(tmp_path / "nothing")]) == 2
    assert "no dataset" in capsys.readouterr().err
    assert evaluate_main(["--model", str(tmp_path / "no_model"), "--data", data_dir]) == 2
    assert "no_model" in capsys.readouterr().err
    other = tmp_path / "other"
    write_dataset(str(other), "unknown_system", n_steps=8, files_per_split=(1, 1, 1))
    assert evaluate_main(["--model", saved_model, "--data", str(other / "unknown_system")]) == 2
    assert "unknown_system" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        evaluate_main(["--model", saved_model, "--data", data_dir, "--starts-per-trajectory", "0"])
    assert "--starts-per-trajectory must be >= 1, got 0" in capsys.readouterr().err
    out = tmp_path / "figures_asked"
    assert evaluate_main(["--model", saved_model, "--data", data_dir, "--out", str(out), "--figure-fields",
                          "nosuchfield", "a"]) == 2
    assert "--figure-fields ['nosuchfield']: no dataset of" in capsys.readouterr().err and not out.exists()
    from pdefm.train.evaluation.rollout import trajectory_starts

    with pytest.raises(ValueError, match="starts_per_trajectory must be >= 1, got 0"):
        trajectory_starts(os.path.join(data_dir, "flow2d"), "test", 4, 6, starts_per_trajectory=0)


def test_a_folder_with_more_datasets_than_the_model_knows_evaluates_those_it_knows(data_dir, tmp_path, capsys):
    # Mini-Well's ten systems in one folder beside a model of the main job's six: the six are evaluated, the others
    # named as left out; asking for one it does not know by name is still refused.
    torch.manual_seed(0)
    folder = str(tmp_path / "flow_only")
    PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=model_specs(data_dir, ["flow2d"]))).save_pretrained(folder)
    out = tmp_path / "evaluated"
    assert evaluate_main(["--model", folder, "--data", data_dir, "--out", str(out), "--rollout-steps", "4",
                          "--no-figures", "--no-yardsticks"]) == 0
    assert "left out (no adapter): cube3d" in capsys.readouterr().out
    assert set(json.load(open(out / "evaluation.json"))["datasets"]) == {"flow2d"}
    assert evaluate_main(["--model", folder, "--data", data_dir, "--out", str(tmp_path / "named"), "--datasets",
                          "cube3d"]) == 2
    assert "no adapter for dataset(s) ['cube3d']" in capsys.readouterr().err


def saved_baseline_predicts_as_trained(model, data_dir, folder):
    """The baseline saved under `folder` loads and forecasts like `model`; returns two flow2d test windows, physical and
    z-scored."""
    path = os.path.join(data_dir, "flow2d")
    batch = load_well_dataset(path, split="test", n_steps_input=4, n_steps_output=1)[[0, 1]]
    assert torch.allclose(load_forecaster(str(folder)).predict_next(batch), model.predict_next(batch), atol=1e-6)
    normalized = load_well_dataset(path, split="test", n_steps_input=4, n_steps_output=1, use_normalization=True)[[0, 1]]
    return batch, normalized


@pytest.mark.parametrize("kind,sizes", [("cnextunet", {"init_features": 4, "stages": 2}),
                                        ("unet_classic", {"init_features": 4}),
                                        ("fno", {"modes": 4, "hidden_channels": 8})])
def test_baselines_train_save_load_and_predict_in_physical_units(kind, sizes, data_dir, tmp_path):
    if kind == "fno" and importlib.util.find_spec("neuralop") is None:
        pytest.skip("neuraloperator is not installed (pip install 'pdefm[benchmark]')")
    model, info = train_baseline(kind, data_dir, "flow2d", budget_seconds=60, max_steps=3, sizes=sizes,
                                 out_dir=str(tmp_path / "flow2d"))
    assert info["steps"] == 3 and np.isfinite(info["final_loss"])
    batch, normalized = saved_baseline_predicts_as_trained(model, data_dir, tmp_path)
    # Trained on z-scored fields, it takes and returns physical ones: scale and shift come from stats.yaml.
    assert torch.allclose((batch["input_fields"] - model.field_shift) / model.field_scale, normalized["input_fields"], atol=1e-5)
    with torch.no_grad():
        expected = model(normalized["input_fields"], normalized.get("constant_fields")) * model.field_scale + model.field_shift
    assert torch.allclose(model.predict_next(batch), expected, atol=1e-4)
    # A baseline saved before the delta target existed (no delta buffers in its file) still loads.
    from safetensors.torch import load_file, save_file

    weights_file = tmp_path / "flow2d" / "baseline.safetensors"
    save_file({k: v for k, v in load_file(weights_file).items() if not k.startswith("delta_")}, weights_file)
    assert torch.allclose(load_forecaster(str(tmp_path)).predict_next(batch), model.predict_next(batch), atol=1e-6)


def test_a_delta_baseline_learns_the_change_and_adds_it_to_the_last_frame(data_dir, tmp_path):
    from pdefm.data import split_reader

    model, info = train_baseline("unet_classic", data_dir, "flow2d", budget_seconds=60, max_steps=2,
                                 sizes={"init_features": 4}, out_dir=str(tmp_path / "flow2d"), target="delta")
    assert info["target"] == "delta"
    normalizer = split_reader(load_well_dataset(os.path.join(data_dir, "flow2d"), split="train", n_steps_input=4,
                                                n_steps_output=1, use_normalization=True)).normalizer
    assert torch.allclose(model.delta_scale, torch.as_tensor(normalizer.delta_scale))
    assert not torch.allclose(model.delta_scale, model.field_scale)  # the change's spread, not the field's
    batch, normalized = saved_baseline_predicts_as_trained(model, data_dir, tmp_path)
    # A network that returns exactly its training target forecasts the true next frame in physical units.
    target = model.training_target(normalized["input_fields"], normalized["output_fields"][:, :1])
    model.forward = lambda *args: target
    torch.testing.assert_close(model.predict_next(batch), batch["output_fields"][:, :1].float(), atol=1e-4, rtol=1e-4)
    # Without the change's statistics in stats.yaml the delta target is refused, naming the file and the keys.
    normalizer.delta_scale = None
    with pytest.raises(ValueError, match="stats.yaml.*mean_delta"):
        model.set_normalization(normalizer)


def test_an_interrupted_baseline_resumes_exactly_and_a_finished_one_is_loaded(data_dir, tmp_path):
    settings = dict(budget_seconds=1e9, max_steps=6, sizes={"init_features": 4, "stages": 2}, valid_every=2,
                    valid_batches=1)
    whole, whole_info = train_baseline("cnextunet", data_dir, "flow2d", out_dir=str(tmp_path / "whole"), **settings)
    with pytest.raises(KeyboardInterrupt):
        train_baseline("cnextunet", data_dir, "flow2d", out_dir=str(tmp_path / "cut"), stop_after=3, **settings)
    assert os.path.isfile(tmp_path / "cut" / "training_state.safetensors")
    resumed, info = train_baseline("cnextunet", data_dir, "flow2d", out_dir=str(tmp_path / "cut"), **settings)
    assert not os.path.exists(tmp_path / "cut" / "training_state.safetensors")
    assert [p["step"] for p in info["curve"]] == [0, 2, 4, 6] and info["steps"] == 6
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert [p["valid_vrmse"] for p in info["curve"]] == pytest.approx([p["valid_vrmse"] for p in whole_info["curve"]])
    _, again = train_baseline("cnextunet", data_dir, "flow2d", out_dir=str(tmp_path / "cut"), **settings)
    assert again == info  # loaded, not retrained


class _Planted:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_baseline_resume_never_unpickles_a_planted_state(data_dir, tmp_path):
    import pickle

    settings = dict(budget_seconds=1e9, max_steps=2, sizes={"init_features": 4, "stages": 2}, valid_every=2,
                    valid_batches=1)
    out = tmp_path / "run"
    out.mkdir()
    marker = tmp_path / "ran"
    with open(out / "training_state.pt", "wb") as f:  # the name earlier versions loaded with weights_only=False
        pickle.dump({"model": _Planted(str(marker))}, f)
    with pytest.warns(UserWarning, match="training_state.pt.*not read"):
        _, info = train_baseline("cnextunet", data_dir, "flow2d", out_dir=str(out), **settings)
    assert not marker.exists() and info["steps"] == 2
    # A damaged state of this version is refused by name, not half-read.
    cut = tmp_path / "cut"
    cut.mkdir()
    (cut / "training_state.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="training_state.safetensors.*delete it"):
        train_baseline("cnextunet", data_dir, "flow2d", out_dir=str(cut), **settings)


def test_no_module_of_the_package_unpickles():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    found = []
    for folder in ("modeling_pdefm", "dataset_scripts", "train", "pdefm"):
        for base, _, files in os.walk(os.path.join(root, folder)):
            for name in files:
                if name.endswith(".py"):
                    text = open(os.path.join(base, name)).read()
                    for needle in ("weights_only=False", "import pickle", "pickle.load", "torch.load("):
                        if needle in text:
                            found.append(f"{os.path.join(base, name)}: {needle}")
    assert not found, found


def test_matched_sizes_come_closest_to_the_target_parameter_count():
    from pdefm.train.baselines.forecaster import build_baseline_network, matched_sizes

    sizes = matched_sizes("unet_classic", 50_000, 16, 4, 2, (32, 32))
    count = lambda width: sum(p.numel() for p in build_baseline_network("unet_classic", 16, 4, 2, (32, 32),
                                                                       init_features=width).parameters())
    width = sizes["init_features"]
    assert abs(count(width) - 50_000) <= min(abs(count(width - 2) - 50_000), abs(count(width + 2) - 50_000))


def test_budget_schedule_decays_over_time_and_stops():
    schedule = WarmupCosine(warmup_steps=2, max_steps=10**9, min_ratio=0.0, budget_seconds=10.0)
    assert schedule(0) == pytest.approx(0.5) and not schedule.done(5)
    schedule.elapsed = 5.0
    assert schedule(5) == pytest.approx(0.5, abs=1e-6)
    schedule.elapsed = 10.0
    assert schedule(6) == pytest.approx(0.0, abs=1e-9) and schedule.done(6)


def test_benchmark_report_reads_every_number_from_the_runs(tmp_path):
    from pdefm.studies.benchmark_report import write_benchmark_doc

    out = tmp_path / "bench"
    names = ["a", "b"]
    (out).mkdir()
    (out / "benchmark_settings.json").write_text(json.dumps({
        "datasets": names, "cpu_count": 2, "torch_threads": 1, "torch": "x", "device": "cpu", "budget_minutes": 1.0,
        "suite": "mini_well", "eval_batches": 8, "rollout_steps": 30, "finetune_steps": 5, "few_shot_trajectories": 2,
        "lora_r": 2}))
    values = {"pdefm": (0.1, 0.2), "cnextunet": (0.05, 0.1), "fno": (0.4, 0.5)}
    for seed in (0, 1):
        for run, (va, vb) in values.items():
            folder = out / f"seed{seed}" / run
            folder.mkdir(parents=True)
            datasets = {n: {"one_step": {"vrmse": v + 0.01 * seed, "persistence_vrmse": 1.0},
                            "rollout": {"vrmse_windows": {"6:12": 2 * v}, "vrmse_per_step": [v, 2 * v]}}
                        for n, v in zip(names, (va, vb))}
            reach = 24 if run == "cnextunet" else 8  # FNO's budget ends before 16 samples
            curve = [{"samples": k, "seconds": k, "valid_vrmse": 2.0 / (1 + k)} for k in range(0, reach + 1, 8)]
            doc = {"datasets": datasets, "train_seconds": 60.0, "train_steps": 10,
                   "runs": {n: {"steps": 7, "curve": curve} for n in names},
                   "curve": {"persistence": {"a": 0.25, "b": 0.5},
                             "points": [{"step": 3, "seconds": 5, "samples": {"a": 16, "b": 8}, "valid_vrmse": {"a": 0.3, "b": 0.4}}]}}
            (folder / "evaluation.json").write_text(json.dumps(doc))
    path = write_benchmark_doc(str(out), str(tmp_path / "docs" / "benchmark.md"), "python -m pdefm.studies.benchmark --x")
    text = open(path).read()
    assert "| a | 0.1050 ± 0.0071 | 0.0550 ± 0.0071 | 0.4050 ± 0.0071 | 1.0000 |" in text
    # mean of PDE-FM (0.155) against FNO (0.455): 65.9% lower; lower on both datasets.
    assert "is 65.9% lower than FNO's" in text and "lower on 2 of 2 datasets" in text
    # against CNextU-Net (0.0800): 93.8% higher, lower on neither dataset.
    assert "is 93.8% higher than CNextU-Net's" in text and "lower on 0 of 2 datasets" in text
    assert (tmp_path / "docs" / "benchmark_rollout.png").exists()
    assert (tmp_path / "docs" / "benchmark_runs" / "seed1" / "fno" / "evaluation.json").exists()
    # A second document beside it draws its own figures and leaves the first's as they were.
    published = {f: (tmp_path / "docs" / f).read_bytes() for f in os.listdir(tmp_path / "docs") if f.endswith(".png")}
    other = write_benchmark_doc(str(out), str(tmp_path / "docs" / "benchmark_alone.md"), "python -m x")
    assert "(benchmark_alone_rollout.png)" in open(other).read() and "(benchmark_alone_curves_a.png)" in open(other).read()
    assert (tmp_path / "docs" / "benchmark_alone_rollout.png").exists()
    assert all((tmp_path / "docs" / f).read_bytes() == data for f, data in published.items())
    # At equal samples: each baseline read where it had seen PDE-FM's 16 (a) and 8 (b) samples: 2/17 and 2/9; FNO's
    # curve stopped at 8 samples, so it has no value for a.
    assert "each baseline 0.5 minutes per dataset, 1 in all (the same total compute)" in text
    assert "| a | 16 | 0.3000 | 0.1176 | - | 0.2500 |" in text and "| b | 8 | 0.4000 | 0.2222 | 0.2222 | 0.5000 |" in text


def test_benchmark_command_runs_every_part_and_resumes(tmp_path):
    from pdefm.studies.benchmark import ABLATIONS, main as benchmark_main

    data_dir = write_two_system_suite(str(tmp_path / "data"))
    out, doc = tmp_path / "bench", tmp_path / "docs" / "benchmark.md"
    argv = ["--budget-minutes", "0.003", "--seeds", "0", "--data", data_dir, "--out", str(out), "--doc", str(doc),
            "--baselines", "cnextunet", "--eval-batches", "1", "--rollout-steps", "2", "--backbone-dataset", "waves"]
    assert benchmark_main(argv) == 0
    runs = sorted(os.listdir(out / "seed0"))
    assert runs == sorted(["pdefm", "cnextunet", "cnextunet_matched", "backbone_mamba", "backbone_attention",
                           "linear_extrapolation", "linear_stencil", *[f"ablation_{a}" for a in ABLATIONS]])
    text = doc.read_text()
    for heading in ("## One-step VRMSE", "## Rollout VRMSE, steps 1:1", "## Rollout VRMSE, steps 2:5", "## Ablations",
                    "## Targets", "## Learning curves", "**beats persistence on**", "CNextU-Net (PDE-FM's size)",
                    "## Fine scales over a rollout", "## Mamba against attention on `waves`", "linear stencil",
                    "none (closed form)"):
        assert heading in text, heading
    assert (tmp_path / "docs" / "benchmark_curves_waves.png").exists()
    matched = json.load(open(out / "seed0" / "cnextunet_matched" / "evaluation.json"))
    default = json.load(open(out / "seed0" / "cnextunet" / "evaluation.json"))
    assert matched["runs"]["waves"]["sizes"] and not default["runs"]["waves"]["sizes"]
    assert matched["runs"]["waves"]["curve"][0]["step"] == 0 and "valid_persistence_vrmse" in matched["runs"]["waves"]
    backbone = json.load(open(out / "seed0" / "backbone_attention" / "evaluation.json"))
    assert list(backbone["datasets"]) == ["waves"] and backbone["memory"]["peak_rss_mb"] > backbone["memory"]["step_mb"] > 0
    stamp = os.path.getmtime(out / "seed0" / "pdefm" / "evaluation.json")
    assert benchmark_main(argv) == 0  # finished runs are kept, not redone
    assert os.path.getmtime(out / "seed0" / "pdefm" / "evaluation.json") == stamp


def test_benchmark_parts_split_over_two_invocations_fill_one_benchmark(tmp_path):
    from pdefm.studies.benchmark import main as benchmark_main

    data_dir = write_two_system_suite(str(tmp_path / "data"))
    out, doc = tmp_path / "bench", tmp_path / "docs" / "benchmark.md"
    common = ["--budget-minutes", "0.003", "--seeds", "0", "--data", data_dir, "--out", str(out), "--doc", str(doc),
              "--baselines", "fno", "--baseline-sizes", "matched", "--baseline-target", "delta", "--eval-batches", "1",
              "--rollout-steps", "2"]
    assert benchmark_main([*common, "--parts", "baselines"]) == 0
    # the baselines' share: the baselines and the linear yardsticks, no PDE-FM run
    assert sorted(os.listdir(out / "seed0")) == ["fno_matched", "linear_extrapolation", "linear_stencil"]
    assert benchmark_main([*common, "--parts", "pdefm"]) == 0
    assert sorted(os.listdir(out / "seed0")) == ["fno_matched", "linear_extrapolation", "linear_stencil", "pdefm"]
    text = doc.read_text()
    assert "FNO (PDE-FM's size)" in text and "## One-step VRMSE" in text and "`DeltaWellDataset` target" in text
    assert "waves 16x16" in text  # the grids of the data it ran on
    assert json.load(open(out / "seed0" / "fno_matched" / "evaluation.json"))["target"] == "delta"
    assert benchmark_main([*common, "--parts", "ablations", "--ablations", "no_film"]) == 0
    assert sorted(os.listdir(out / "seed0")) == ["ablation_no_film", "fno_matched", "linear_extrapolation",
                                                 "linear_stencil", "pdefm"]  # only the one asked for


def test_ablation_and_backbone_sentences_come_from_the_runs():
    from pdefm.studies.benchmark_report import ablation_verdicts, backbone_verdict

    def doc(one, roll, **extra):
        return {"datasets": {"a": {"one_step": {"vrmse": one, "persistence_vrmse": 1.0},
                                   "rollout": {"vrmse_windows": {"6:12": roll}}}}, **extra}

    runs = {"pdefm": {0: doc(0.10, 0.50), 1: doc(0.12, 0.50)},
            "ablation_no_film": {0: doc(0.20, 0.40), 1: doc(0.22, 0.40)},
            "ablation_no_x": {0: doc(0.105, 0.5)}}
    film, x = ablation_verdicts(runs, ["a"])
    # 0.21 against 0.11: 90.9% higher; rollout 0.40 against 0.50: 20.0% lower; the gap (0.1) exceeds sd 0.0141.
    assert film.startswith("- no film: mean one-step VRMSE 0.2100, 90.9% higher than the full model's 0.1100")
    assert "(20.0% lower); seeds 0, 1: the difference is larger than the seed spread (largest sample sd 0.0141)." in film
    assert x.endswith("seed 0: one seed, so no spread to weigh the difference against.") and "5.0% higher" in x

    memory = {"peak_rss_mb": 600, "step_mb": 100}
    runs = {"backbone_mamba": {0: doc(0.08, 0.4, seconds_per_step=0.1, memory=memory)},
            "backbone_attention": {0: doc(0.06, 0.5, seconds_per_step=0.05, memory={**memory, "step_mb": 120})}}
    assert backbone_verdict(runs) == ("- On `a` attention's one-step VRMSE (0.0600) is 25.0% lower than Mamba's "
                                      "(0.0800), at 0.50x Mamba's seconds per training step and 1.20x its step memory "
                                      "(seed 0).")
    assert backbone_verdict({"backbone_mamba": runs["backbone_mamba"]}) is None


def test_an_ablation_trained_under_older_defaults_is_flagged(tmp_path):
    from pdefm.studies.benchmark_report import ablation_setting_notes

    spec = {"a": {"n_fields": 1, "n_spatial_dims": 2}}
    for run, overrides in (("pdefm", {"decoder_type": "fno"}), ("ablation_no_film", {"decoder_type": "fno", "use_film": False}),
                           ("ablation_old", {"use_film": False})):
        os.makedirs(tmp_path / "seed0" / run)
        PDEFMConfig.from_preset("tiny", datasets=spec, **overrides).to_json_file(str(tmp_path / "seed0" / run / "config.json"))
    runs = {"pdefm": {0: {}}, "ablation_no_film": {0: {"overrides": {"use_film": False}}},
            "ablation_old": {0: {"overrides": {"use_film": False}}}}
    notes = ablation_setting_notes(str(tmp_path), runs)
    # Only the run whose other settings differ is flagged, with the key and both values.
    assert len(notes) == 1 and notes[0].startswith("- old (seed 0) was trained before the full model's settings changed")
    assert "`decoder_type` ('conv' against the full model's 'fno')" in notes[0]
    # Settings that change nothing in a model are no difference: the FNO decoder has no 3x3 blocks to pad, and a
    # wrapping 3x3 decoder skips the wall padding the FNO decoder uses.
    for run, overrides in (("pdefm", {"decoder_type": "conv", "decoder_conv_padding": "boundary"}),
                           ("ablation_fno_decoder", {"decoder_type": "fno", "decoder_conv_padding": "zeros"})):
        os.makedirs(tmp_path / "seed1" / run)
        PDEFMConfig.from_preset("tiny", datasets=spec, **overrides).to_json_file(str(tmp_path / "seed1" / run / "config.json"))
    runs = {"pdefm": {1: {}}, "ablation_fno_decoder": {1: {"overrides": {"decoder": "fno"}}}}  # as 0.2.0 recorded it
    assert ablation_setting_notes(str(tmp_path), runs) == []
    fno = PDEFMConfig.from_preset("tiny", datasets=spec, decoder_type="fno")
    assert fno.inactive_keys() == {"decoder_conv_padding"}
    assert PDEFMConfig.from_preset("tiny", datasets=spec).inactive_keys() == {"wall_padding"}
    assert PDEFMConfig.from_preset("tiny", datasets=spec, decoder_conv_padding="zeros").inactive_keys() == set()


def test_benchmark_alone_part_compares_each_dataset_alone_with_the_mixture(tmp_path):
    from pdefm.studies.benchmark import main as benchmark_main

    data_dir = write_two_system_suite(str(tmp_path / "data"))
    out, doc = tmp_path / "bench", tmp_path / "docs" / "benchmark.md"
    common = ["--budget-minutes", "0.004", "--seeds", "0", "--data", data_dir, "--out", str(out), "--doc", str(doc),
              "--eval-batches", "1", "--rollout-steps", "2"]
    assert benchmark_main([*common, "--parts", "pdefm", "alone"]) == 0
    names = sorted(d for d in os.listdir(data_dir) if os.path.isdir(os.path.join(data_dir, d)))
    assert sorted(os.listdir(out / "seed0")) == sorted(["pdefm", *[f"alone_{n}" for n in names]])
    mixed = json.load(open(out / "seed0" / "pdefm" / "evaluation.json"))
    assert set(mixed["time_spent"]["datasets"]) == set(names) and mixed["time_spent"]["validation"] > 0
    alone = json.load(open(out / "seed0" / f"alone_{names[0]}" / "evaluation.json"))
    assert list(alone["datasets"]) == [names[0]] and alone["train_seconds"] < mixed["train_seconds"]
    text = doc.read_text()
    assert "## Alone against in the mixture" in text
    assert all(f"- {n}: in the mixture" in text for n in names)


def test_an_earlier_evaluation_is_replaced_only_when_asked_and_leaves_no_old_figure(saved_model, data_dir, tmp_path,
                                                                                     capsys):
    """Without --out the evaluation goes into the model folder's evaluation/, where the main job's report has its
    own: a second evaluation there is refused unless --overwrite_output_dir, which removes the old figures first."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(saved_model, model)
    argv = ["--model", str(model), "--data", data_dir, "--rollout-steps", "2", "--no-yardsticks"]
    assert evaluate_main(argv) == 0
    first = (model / "evaluation" / "evaluation.json").read_text()
    assert sorted(p.name for p in (model / "evaluation" / "figures").iterdir()) == [
        "cube3d_rollout.png", "flow2d_rollout.png", "vrmse_per_step.png"]
    assert evaluate_main([*argv, "--datasets", "flow2d"]) == 2
    assert "holds an earlier evaluation" in capsys.readouterr().err
    assert (model / "evaluation" / "evaluation.json").read_text() == first
    (model / "evaluation" / "notes.txt").write_text("mine")
    assert evaluate_main([*argv, "--datasets", "flow2d", "--overwrite_output_dir"]) == 0
    assert sorted(p.name for p in (model / "evaluation" / "figures").iterdir()) == [
        "flow2d_rollout.png", "vrmse_per_step.png"]  # cube3d's old figure is gone
    assert (model / "evaluation" / "notes.txt").read_text() == "mine"  # what the evaluation did not write stays


def test_a_second_evaluation_into_a_folder_being_written_is_refused(saved_model, data_dir, tmp_path, capsys):
    from pdefm.train.training.run_lock import output_dir_lock

    out = tmp_path / "busy"
    with output_dir_lock(str(out)):  # another evaluation holds the folder
        assert evaluate_main(["--model", saved_model, "--data", data_dir, "--out", str(out), "--rollout-steps",
                              "2"]) == 2
    assert "is in use by another run" in capsys.readouterr().err
    assert not (out / "evaluation.json").exists()


def test_an_evaluation_that_fails_on_a_full_disk_loses_the_earlier_one(saved_model, data_dir, tmp_path, monkeypatch,
                                                                       capsys):
    import errno
    import shutil

    import pdefm.runtime.files as files_module

    model = tmp_path / "model"
    shutil.copytree(saved_model, model)
    argv = ["--model", str(model), "--data", data_dir, "--rollout-steps", "2", "--no-yardsticks", "--no-figures"]
    assert evaluate_main(argv) == 0
    first = (model / "evaluation" / "evaluation.json").read_text()
    (model / "evaluation" / "figures").mkdir()
    (model / "evaluation" / "figures" / "old.png").write_bytes(b"an earlier figure")

    def full_disk(path, mode="r", *args, **kwargs):
        if "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(files_module, "open", full_disk, raising=False)  # where the evaluation's files are written
    assert evaluate_main([*argv, "--overwrite_output_dir"]) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert (model / "evaluation" / "evaluation.json").read_text() == first
    assert (model / "evaluation" / "figures" / "old.png").exists()
    assert not [p for p in (model / "evaluation").iterdir() if ".tmp" in p.name]
