"""Training runs never lose a finished result, never write outside their folder, and take a stale lock once."""
# ruff: noqa: F811 - pytest fixtures imported from test_checkpointing are redefined as arguments

import json
import multiprocessing
import os
import time

import pytest
from accelerate.state import AcceleratorState

from modeling_pdefm import PDEFMConfig
from pdefm.train import pretrain
from pdefm.train.training.checkpointing import complete_checkpoints
from pdefm.train.training.run_lock import LOCK_FILE, RunLockError, acquire, release

from test_checkpointing import data_dir, fresh_accelerator_state  # noqa: F401 - shared fixtures
from test_pretrain import make_config
from well_files import write_dataset


def main(data_dir, out, *extra):
    AcceleratorState._reset_state(True)
    return pretrain.main(["--data_dir", data_dir, "--output_dir", str(out), "--max_steps", "4", "--batch_size", "2",
                          "--n_steps_input", "2", "--log_with", "none", "--checkpoint_every", "2", "--eval_every", "2",
                          "--eval_batches", "1", "--warmup_steps", "1", *extra])


def test_a_fresh_run_into_a_finished_runs_folder_is_refused_until_asked(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(data_dir, out) == 0
    model_before = (out / "model.safetensors").read_bytes()
    report_before = (out / "report.json").read_text()
    capsys.readouterr()
    assert main(data_dir, out, "--seed", "1") == 2
    err = capsys.readouterr().err
    assert "holds an earlier run" in err and "--resume" in err and "--overwrite_output_dir" in err
    assert (out / "model.safetensors").read_bytes() == model_before and (out / "report.json").read_text() == report_before
    # Asked explicitly: the old run's checkpoints go first, so a later --resume cannot pick the other run's step.
    (out / "checkpoints" / "step_00000099").mkdir()
    (out / "checkpoints" / "step_00000099" / "trainer_state.json").write_text("{}")
    assert main(data_dir, out, "--seed", "1", "--max_steps", "2", "--overwrite_output_dir") == 0
    steps = [os.path.basename(p) for p in complete_checkpoints(str(out))]
    assert steps == ["step_00000002"]
    assert json.loads((out / "pretrain_config.json").read_text())["seed"] == 1


def test_resume_and_overwrite_together_are_refused(data_dir, tmp_path, capsys):
    assert main(data_dir, tmp_path / "r", "--resume", "--overwrite_output_dir") == 2
    assert "pass one" in capsys.readouterr().err


def test_resume_with_every_checkpoint_damaged_changes_nothing(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(data_dir, out) == 0
    model_before = (out / "model.safetensors").read_bytes()
    for folder in complete_checkpoints(str(out)):
        with open(os.path.join(folder, "model.safetensors"), "wb") as f:
            f.write(b"broken")
    capsys.readouterr()
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        code = main(data_dir, out, "--resume")
    assert code == 2
    err = capsys.readouterr().err
    assert "reads completely" in err and "--overwrite_output_dir" in err
    assert (out / "model.safetensors").read_bytes() == model_before


def test_resume_of_a_result_without_checkpoints_is_refused(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(data_dir, out) == 0
    import shutil

    shutil.rmtree(out / "checkpoints")
    capsys.readouterr()
    assert main(data_dir, out, "--resume") == 2
    assert "no checkpoint to continue from" in capsys.readouterr().err


def test_a_resume_on_changed_data_names_the_dataset(data_dir, tmp_path, capsys):
    root = tmp_path / "data"
    write_dataset(str(root), "flow2d", n_dims=2, resolution=(16, 12), n_steps=8, files_per_split=(2, 1, 1))
    out = tmp_path / "run"
    assert main(str(root), out, "--max_steps", "2") == 0
    write_dataset(str(root), "flow2d", n_dims=2, resolution=(16, 12), n_steps=8, files_per_split=(2, 1, 1), seed=5)
    capsys.readouterr()
    assert main(str(root), out, "--max_steps", "4", "--resume") == 2
    assert "data_files.flow2d" in capsys.readouterr().err


@pytest.mark.parametrize("edit", ["stats", "middle"])
def test_a_resume_after_stats_or_a_files_middle_changed_names_the_dataset(tmp_path, capsys, edit):
    import h5py

    from pdefm.data.the_well import compute_stats

    root = tmp_path / "data"
    folder = write_dataset(str(root), "flow2d", n_dims=2, resolution=(16, 12), n_steps=8, files_per_split=(2, 1, 1))
    compute_stats(folder)
    out = tmp_path / "run"
    assert main(str(root), out, "--max_steps", "2") == 0
    if edit == "stats":
        stats = root / "flow2d" / "stats.yaml"
        stats.write_text(stats.read_text().replace("mean:", "mean:  ", 1))
    else:  # one value in the middle of a train file, size and both ends unchanged
        path = sorted((root / "flow2d" / "data" / "train").iterdir())[0]
        with h5py.File(path, "r+") as f:
            f["t0_fields/a"][0, 3, 2, 2] += 1.0
    capsys.readouterr()
    assert main(str(root), out, "--max_steps", "4", "--resume") == 2
    assert "data_version.flow2d" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["/tmp/elsewhere", "../up", "a/b", "dots.in.name", ""])
def test_adapter_and_dataset_names_are_names_not_paths(tmp_path, name, capsys):
    from pdefm.train.finetune import main as finetune_main

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "README.md").write_text("mine")
    code = finetune_main(["--base", str(tmp_path / "base"), "--data", str(tmp_path / "d"), "--adapter-name",
                          name or "", "--output_dir", str(tmp_path / "out")])
    assert code == 2 and "--adapter-name" in capsys.readouterr().err
    assert (victim / "README.md").read_text() == "mine"
    with pytest.raises(ValueError, match="dataset name .* is not a plain name"):
        PDEFMConfig.from_preset("tiny", datasets={name: {"n_fields": 1, "n_spatial_dims": 2}})


def test_a_config_dataset_list_with_a_path_is_refused(data_dir, tmp_path):
    with pytest.raises(ValueError, match="config key 'datasets'.*'../flow2d'"):
        make_config(data_dir, tmp_path / "x", datasets=["../flow2d"])


def _take(folder, start, results):
    while time.time() < start:
        time.sleep(0.001)
    try:
        import warnings

        warnings.simplefilter("ignore")
        acquire(folder)
        results.put("won")
        time.sleep(1.0)  # hold it while the others try
    except RunLockError:
        results.put("refused")


def test_many_concurrent_takers_of_a_stale_lock_get_it_once(tmp_path):
    context = multiprocessing.get_context("fork")
    for trial in range(8):
        folder = tmp_path / f"t{trial}"
        folder.mkdir()
        dead = context.Process(target=lambda: None)
        dead.start()
        dead.join()
        (folder / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename, "started": "then"}))
        results = context.Queue()
        start = time.time() + 0.3
        takers = [context.Process(target=_take, args=(str(folder), start, results)) for _ in range(6)]
        for p in takers:
            p.start()
        outcomes = [results.get(timeout=30) for _ in takers]
        for p in takers:
            p.join()
        assert outcomes.count("won") == 1, (trial, outcomes)


def test_the_lock_is_released_and_taken_again(tmp_path):
    path = acquire(str(tmp_path))
    with pytest.raises(RunLockError, match="in use by another run"):
        acquire(str(tmp_path))
    release(path)
    release(acquire(str(tmp_path)))
    assert not os.path.exists(path)




@pytest.mark.parametrize("kind", ["fifo", "link", "folder"])
def test_a_lock_that_is_not_a_regular_file_is_refused_not_waited_on(tmp_path, kind):
    import threading

    path = tmp_path / LOCK_FILE
    outside = tmp_path.parent / f"{tmp_path.name}_outside.json"
    outside.write_text('{"pid": 1, "host": "x"}')
    {"fifo": lambda: os.mkfifo(path), "link": lambda: path.symlink_to(outside), "folder": path.mkdir}[kind]()
    result = {}

    def take():
        try:
            acquire(str(tmp_path))
        except RunLockError as error:
            result["error"] = str(error)

    worker = threading.Thread(target=take, daemon=True)
    worker.start()
    worker.join(timeout=20)
    assert not worker.is_alive(), "acquire blocked on the lock"
    expected = {"fifo": "a FIFO", "link": "a symbolic link", "folder": "a folder"}[kind]
    assert f"{LOCK_FILE} is {expected}" in result["error"] and "remove it" in result["error"]
    assert outside.read_text() == '{"pid": 1, "host": "x"}'


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_a_run_folder_whose_checkpoints_are_a_link_is_refused_and_the_target_kept(tmp_path, flags):
    from pdefm.train.training.output_dir import prepare_output_dir

    other = tmp_path / "other_run" / "checkpoints" / "step_400"
    other.mkdir(parents=True)
    (other / "model.safetensors").write_text("the other run's weights")
    out = tmp_path / "out"
    out.mkdir()
    (out / "checkpoints").symlink_to(other.parent)
    with pytest.raises(ValueError, match="checkpoints is a symbolic link .*Nothing was changed"):
        prepare_output_dir(str(out), resume=flags.get("resume", False), overwrite=flags.get("overwrite", False))
    assert (other / "model.safetensors").read_text() == "the other run's weights"


def test_a_folder_of_the_users_files_is_refused_and_never_deleted_from(data_dir, tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    (out / "README.md").write_text("my project")
    (out / "config.json").write_text('{"mine": true}')
    (out / "notes.md").write_text("notes")
    (out / "evaluation").mkdir()
    (out / "evaluation" / "my_plot.png").write_text("a figure of mine")
    assert main(data_dir, out) == 2
    err = capsys.readouterr().err
    assert "holds files pdefm did not write (README.md, config.json, evaluation, notes.md)" in err
    assert (out / "README.md").read_text() == "my project" and (out / "config.json").read_text() == '{"mine": true}'
    # Asked: the run writes beside them; what pdefm did not write is not deleted (its own names are replaced).
    assert main(data_dir, out, "--overwrite_output_dir") == 0
    assert (out / "notes.md").read_text() == "notes"
    assert (out / "evaluation" / "my_plot.png").read_text() == "a figure of mine"
    assert (out / "model.safetensors").exists()
    manifest = json.loads((out / ".pdefm_outputs.json").read_text())
    assert "checkpoints" in manifest and "notes.md" not in manifest


def test_an_interrupted_replacement_leaves_no_old_model_beside_new_checkpoints(data_dir, tmp_path):
    out = tmp_path / "run"
    assert main(data_dir, out) == 0
    (out / "notes.md").write_text("kept")  # the user's, added after the run
    AcceleratorState._reset_state(True)
    config = make_config(data_dir, out, max_steps=4, checkpoint_every=2, seed=1)
    with pytest.raises(KeyboardInterrupt):
        pretrain.train(config, stop_after=2, overwrite_output_dir=True)
    assert complete_checkpoints(str(out)) and not (out / "model.safetensors").exists()
    assert not (out / "config.json").exists() and not (out / "report.json").exists()
    assert (out / "notes.md").read_text() == "kept"


@pytest.mark.parametrize("name", ["checkpoints", "evaluation", "finetune", "README.md"])
def test_an_adapter_name_that_is_one_of_the_runs_own_names_is_refused(tmp_path, name, capsys):
    from pdefm.train.finetune import main as finetune_main

    write_dataset(str(tmp_path / "d"), "waves", n_steps=8, files_per_split=(1, 1, 1))
    code = finetune_main(["--base", str(tmp_path / "base"), "--data", str(tmp_path / "d" / "waves"),
                          "--adapter-name", name, "--output_dir", str(tmp_path / "out"), "--max_steps", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert f"--adapter-name {name!r} is the name of a folder or file the run itself writes" in err or \
        "is not a plain name" in err
