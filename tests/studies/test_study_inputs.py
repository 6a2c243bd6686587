"""The studies (benchmark, transfer) under careless input: `--fresh` deletes only what a benchmark wrote, and
budgets must be finite numbers."""

import pytest

from pdefm.studies import benchmark, transfer
from pdefm.studies.benchmark import SETTINGS_FILE, clear_benchmark_folder

from well_files import write_dataset


def test_fresh_deletes_only_a_benchmarks_own_folder(tmp_path, capsys):
    data = tmp_path / "data"
    write_dataset(str(data), "toy", n_steps=6, files_per_split=(1, 1, 1))
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    code = benchmark.main(["--budget-minutes", "1", "--data", str(data), "--out", str(mine), "--fresh"])
    assert code == 2 and "not a benchmark's folder" in capsys.readouterr().err
    assert (mine / "thesis.tex").read_text() == "years of work"
    # A benchmark's folder with something else in it is refused as a whole, too.
    (mine / SETTINGS_FILE).write_text("{}")
    (mine / "seed0").mkdir()
    with pytest.raises(ValueError, match="thesis.tex"):
        clear_benchmark_folder(str(mine))
    assert (mine / "seed0").is_dir()
    (mine / "thesis.tex").unlink()
    clear_benchmark_folder(str(mine))
    assert list(mine.iterdir()) == []


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_budgets_must_be_finite_and_positive(tmp_path, value, capsys):
    with pytest.raises(SystemExit):
        benchmark.main(["--budget-minutes", value, "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "--budget-minutes must be a finite number" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        transfer.main(["--held-out", "x", "--base-minutes", value, "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert "finite numbers of minutes" in capsys.readouterr().err


@pytest.mark.parametrize("repo_id", ["bad id", "a/b/c", "x..y", "x" * 200])
def test_a_bad_hub_id_is_named_not_a_traceback(tmp_path, repo_id, capsys):
    from pdefm.train.push import main as push_main

    (tmp_path / "config.json").write_text("{}")
    assert push_main([str(tmp_path), repo_id]) == 2
    err = capsys.readouterr().err
    assert "is not a Hub id" in err and "Traceback" not in err


def test_a_bad_target_regex_is_named(tmp_path, capsys):
    from pdefm.train.finetune import main as finetune_main

    assert finetune_main(["--base", str(tmp_path), "--data", str(tmp_path), "--adapter-name", "a",
                          "--target-regex", "([unclosed"]) == 2
    assert "--target-regex '([unclosed' is not a regular expression" in capsys.readouterr().err


def test_a_stats_scale_that_overflows_float32_is_refused(tmp_path):
    import yaml

    from pdefm.data.normalization import StatsError
    from pdefm.train.training.batches import model_specs

    folder = write_dataset(str(tmp_path), "toy", n_steps=6, files_per_split=(1, 1, 1))
    from pdefm.data.the_well import compute_stats

    path = compute_stats(folder)
    stats = yaml.safe_load(open(path))
    stats["std"]["a"] = 1e30
    yaml.safe_dump(stats, open(path, "w"))
    with pytest.raises(StatsError, match="'std' of field 'a' is .*beyond 1e\\+18"):
        model_specs(str(tmp_path), ["toy"])


def test_output_and_data_folders_are_checked_before_work(tmp_path):
    from pdefm.train.training.config import PretrainConfig

    folder = write_dataset(str(tmp_path), "toy", n_steps=6, files_per_split=(1, 1, 1))
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    for bad, message in ((str(a_file), "is a file, not a folder"), ("", "is empty"),
                         (str(a_file / "below"), "is a file, so no folder")):
        with pytest.raises(ValueError, match=f"output_dir.*{message}"):
            PretrainConfig(data_dir=str(tmp_path), output_dir=bad).validate()
    with pytest.raises(ValueError, match="one dataset's folder.*--datasets toy"):
        PretrainConfig(data_dir=folder, output_dir=str(tmp_path / "o"), generate_if_missing=True).validate()
    from pdefm.data.generate import complete_suite

    with pytest.raises(ValueError, match="one dataset's folder"):
        complete_suite(folder)


@pytest.mark.parametrize("flag", ["--batch-size", "--rollout-steps", "--n-steps-input"])
def test_evaluate_refuses_non_positive_sizes(tmp_path, flag, capsys):
    from pdefm.train.evaluate import main as evaluate_main

    with pytest.raises(SystemExit):
        evaluate_main(["--model", str(tmp_path), "--data", str(tmp_path), flag, "0"])
    assert f"{flag} must be >= 1" in capsys.readouterr().err


def test_stats_on_a_full_disk_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    import errno

    import yaml

    from pdefm.data.the_well import main as well_main

    folder = write_dataset(str(tmp_path), "toy", n_steps=6, files_per_split=(1, 1, 1))

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(yaml, "safe_dump", full)
    assert well_main(["stats", folder]) == 1
    assert "No space left on device" in capsys.readouterr().err
    import os

    assert not [n for n in os.listdir(folder) if ".partial" in n]


def test_model_overrides_cannot_hold_a_training_key_that_the_run_would_overwrite(tmp_path):
    from pdefm.train.training.config import PretrainConfig

    with pytest.raises(ValueError, match=r"\['spectral_loss_weight'\] are training keys.*--spectral_loss_weight"):
        PretrainConfig(data_dir=str(tmp_path), output_dir=str(tmp_path / "o"),
                       model_overrides={"spectral_loss_weight": 0.5}).validate()


def test_study_output_folders_that_are_files_are_refused(tmp_path, capsys):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    with pytest.raises(SystemExit):
        benchmark.main(["--budget-minutes", "1", "--data", str(tmp_path), "--out", str(a_file)])
    assert "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        transfer.main(["--held-out", "x", "--data", str(tmp_path), "--out", str(a_file)])
    assert "is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("study, argv", [(benchmark, ["--data", "x", "--budget-minutes", "1"]),
                                         (transfer, ["--held-out", "shear_flow", "--report-only"])])
def test_a_users_own_document_at_the_default_path_is_never_replaced(tmp_path, monkeypatch, study, argv, capsys):
    monkeypatch.chdir(tmp_path)
    doc = tmp_path / "docs" / ("benchmark.md" if study is benchmark else "transfer.md")
    doc.parent.mkdir()
    doc.write_text("# My own notes\n\nnot written by pdefm\n")
    with pytest.raises(SystemExit):
        study.main([*argv, "--out", str(tmp_path / "runs")])
    assert "is not a document this study wrote" in capsys.readouterr().err
    assert doc.read_text() == "# My own notes\n\nnot written by pdefm\n"
