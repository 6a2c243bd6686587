"""The transfer study: bases without the held-out dataset, every strategy, resume, and the generated document."""

import json
import os

import pytest
from accelerate.state import AcceleratorState

from pdefm.studies.transfer_report import budget_series, equal_wallclock, value_at, verdicts
from pdefm.studies.transfer import main as transfer_main

from well_files import write_two_system_suite


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_the_study_runs_every_strategy_resumes_and_writes_its_document(tmp_path):
    data = write_two_system_suite(str(tmp_path / "data"), files_per_split=(2, 1, 1))
    out, doc = tmp_path / "study", tmp_path / "docs" / "transfer.md"
    argv = ["--held-out", "waves", "--base-minutes", "0.004", "--series-minutes", "0.002", "0.003",
            "--sizes", "1", "all", "--seeds", "0", "1", "--seeded-sizes", "1", "--finetune-steps", "2",
            "--eval-every", "1", "--warmup-steps", "1", "--eval-batches", "1", "--rollout-steps", "2",
            "--strategies", "zero_shot", "heads", "spectral_lora", "scratch",
            "--data", data, "--out", str(out), "--doc", str(doc)]
    assert transfer_main(argv) == 0
    assert sorted(os.listdir(out / "bases")) == ["without_waves_0.002min", "without_waves_0.003min", "without_waves_0.004min"]
    base_config = json.load(open(out / "bases" / "without_waves_0.004min" / "config.json"))
    assert set(base_config["datasets"]) == {"flow2d"}
    runs = out / "waves"
    for seed in (0, 1):
        for strategy in ("heads", "spectral_lora"):
            assert (runs / "base0.004min" / "n1" / f"seed{seed}" / strategy / "evaluation.json").exists()
        assert (runs / "no_base" / "n1" / f"seed{seed}" / "scratch" / "evaluation.json").exists()
        assert (runs / "base0.002min" / "n1" / f"seed{seed}" / "heads" / "evaluation.json").exists()
    assert not (runs / "base0.004min" / "nall" / "seed1").exists()  # one seed at sizes outside --seeded-sizes
    for size in ("1", "all"):  # the linear stencil fitted on the same trajectories, for every size
        stencil = json.load(open(runs / "no_base" / f"n{size}" / "seed0" / "linear_stencil" / "evaluation.json"))
        assert stencil["strategy"] == "linear_stencil" and stencil["size"] == size
    zero = json.load(open(runs / "base0.004min" / "zero_shot" / "evaluation.json"))
    assert zero["initialised_from"]["a"] == ["flow2d/a"] and zero["steps"] == 0
    curve = json.load(open(runs / "base0.004min" / "n1" / "seed0" / "heads" / "validation_curve.json"))
    assert [p["step"] for p in curve["points"]] == [0, 1, 2]

    text = doc.read_text()
    for part in ("## Held out: `waves`", "### Zero-shot", "### 1 training trajectory", "### all training trajectories",
                 "### Gap to scratch against the base's budget", "Least-squares fit over these budgets",
                 "### Verdicts", "## Trainable share on the `small` preset", "LoRA + frequency-band spectral adapters",
                 "least-squares linear stencil on the same trajectories (no network)",
                 "the linear stencil fitted on the same trajectories:"):
        assert part in text, part
    one_step = zero["datasets"]["waves"]["one_step"]
    assert f"| zero-shot | {one_step['vrmse']:.4f} |" in text
    assert (tmp_path / "docs" / "transfer_waves_curves.png").exists()
    assert (tmp_path / "docs" / "transfer_runs" / "waves" / "base0.004min" / "zero_shot" / "evaluation.json").exists()

    stamp = os.path.getmtime(runs / "no_base" / "n1" / "seed0" / "scratch" / "evaluation.json")
    assert transfer_main(argv) == 0  # a rerun skips what is finished
    assert os.path.getmtime(runs / "no_base" / "n1" / "seed0" / "scratch" / "evaluation.json") == stamp


def test_bad_study_arguments_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        transfer_main(["--sizes", "0", "--data", str(tmp_path)])
    assert "'0' is neither a positive number of trajectories nor 'all'" in capsys.readouterr().err


def test_equal_wallclock_reads_each_curve_at_the_fastest_runs_time():
    fast = {"strategy": "heads", "size": "1", "seed": 0, "curve": [(0, 0.0, 1.0), (10, 5.0, 0.5)]}
    slow = {"strategy": "full", "size": "1", "seed": 0, "curve": [(0, 0.0, 1.0), (5, 4.0, 0.6), (10, 9.0, 0.3)]}
    values, times = equal_wallclock([fast, slow])
    assert times == [5.0] and values == {"heads": [0.5], "full": [0.6]}
    assert value_at(slow["curve"], 3.9) == 1.0


def test_verdicts_and_budget_gap_come_from_the_numbers():
    means = {"1": {"lora": {"one_step": 0.08, "rollout": 0.5}, "scratch": {"one_step": 0.1, "rollout": 0.5}}}
    lines = verdicts("shear_flow", means, {"one_step": 0.2, "persistence": 0.25})
    assert "beats persistence (-20.0%)" in lines[0]
    assert "`lora` 0.0800 against scratch 0.1000, 20.0% below scratch (meets the floor of 10% below)" in lines[1]
    assert "0.0% below scratch (misses the floor" in lines[2]
    records = [{"strategy": "scratch", "size": "1", "base": None, "one_step": 0.1}]
    for minutes, value in ((10, 0.12), (20, 0.11), (40, 0.10)):
        records.append({"strategy": "lora", "size": "1", "base": minutes, "one_step": value})
    text, points = budget_series(records, "1")
    assert [round(g, 3) for _, g in points] == [0.2, 0.1, 0.0]
    assert "the gap does not shrink" not in text and "would reach -10% at about" in text
