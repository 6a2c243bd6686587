"""Checkpoints and resume under hostile or unlucky conditions: planted pickles, changed settings, two runs in one
folder, damaged checkpoints, a full disk."""

import errno
import json
import os
import pickle
import subprocess
import sys

import pytest
from accelerate.state import AcceleratorState

import pdefm.train.pretrain as pretrain
from pdefm.train.training import checkpointing, fit
from pdefm.train.training.checkpointing import CheckpointError, latest_checkpoint
from pdefm.train.training.config import load_config, resume_conflicts
from pdefm.train.training.run_lock import LOCK_FILE, RunLockError, acquire, release

from test_pretrain import make_config
from well_files import write_dataset


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume_data")
    write_dataset(str(root), "flow2d", n_dims=2, resolution=(16, 12), n_steps=8, files_per_split=(2, 1, 1))
    return str(root)


@pytest.fixture(autouse=True)
def fresh_accelerator_state():
    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def run(data_dir, out, resume=False, allow=False, **overrides):
    AcceleratorState._reset_state(True)
    return pretrain.train(make_config(data_dir, out, **overrides), resume=resume, allow_config_change=allow)


class Planted:
    """Unpickling this creates a marker file: proof that planted code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


OPENED: list[str] = []
WATCHING = {"on": False}


def _audit(event, args):
    if not WATCHING["on"]:
        return
    if event == "open" and args and isinstance(args[0], (str, bytes, os.PathLike)):
        OPENED.append(os.fsdecode(args[0]))
    if event == "pickle.find_class":
        OPENED.append(f"pickle:{args[0]}.{args[1]}")


sys.addaudithook(_audit)


def test_resume_never_unpickles_what_is_planted_in_a_checkpoint(data_dir, tmp_path):
    out = tmp_path / "run"
    run(data_dir, out, max_steps=3)
    latest = latest_checkpoint(str(out))
    marker = tmp_path / "pwned"
    # Accelerate's own names for what it used to unpickle, and a generic one.
    for name in ("custom_checkpoint_0.pkl", "custom_checkpoint_1.pkl", "random_states_0.pkl", "optimizer.bin",
                 "scheduler.bin", "pytorch_model.bin", "anything.pt"):
        with open(os.path.join(latest, name), "wb") as f:
            pickle.dump(Planted(str(marker)), f)
    assert not marker.exists()
    OPENED.clear()
    WATCHING["on"] = True
    try:
        run(data_dir, out, resume=True, max_steps=6, allow=False)
    finally:
        WATCHING["on"] = False
    assert not marker.exists(), "a planted pickle ran on --resume"
    assert not [p for p in OPENED if p.startswith("pickle:") and "numpy" not in p]
    read = [p for p in OPENED if p.startswith(str(latest))]
    assert read and all(p.endswith((".json", ".safetensors")) for p in read), read
    assert json.loads((out / "report.json").read_text())["steps"] == 6


def test_extending_max_steps_on_a_finished_run_continues_on_the_new_schedule(data_dir, tmp_path):
    out, straight = tmp_path / "extend", tmp_path / "straight"
    run(data_dir, out, max_steps=4, checkpoint_every=2)
    run(data_dir, out, resume=True, max_steps=8, checkpoint_every=2)
    assert json.loads((out / "report.json").read_text())["steps"] == 8
    run(data_dir, straight, max_steps=8, checkpoint_every=2)

    def lr_after(folder, step):
        rank0 = json.load(open(os.path.join(folder, "checkpoints", f"step_{step:08d}", "rank0.json")))
        return rank0["optimizer"]["param_groups"][0]["lr"]

    # After step 6 the 8-step cosine is above its floor (the finished 4-step schedule sat at the floor, 0.05 x 3e-3).
    assert lr_after(out, 6) == lr_after(straight, 6) > 0.05 * 3e-3 * 1.5


@pytest.mark.parametrize("change", [{"batch_size": 1}, {"seed": 1}, {"learning_rate": 1e-3}, {"model_preset": "small"},
                                    {"datasets": ["flow2d"]}, {"curriculum_shares": "windows"}])
def test_resume_refuses_settings_that_change_the_run(data_dir, tmp_path, change):
    out = tmp_path / "run"
    run(data_dir, out, max_steps=3)
    key = next(iter(change))
    with pytest.raises(fit.ResumeConfigError, match=rf"{key}: .* in the checkpoint, .* now.*--allow_config_change"):
        run(data_dir, out, resume=True, max_steps=6, **change)


def test_a_checkpoint_from_before_a_key_existed_reads_as_trained_without_it():
    # Checkpoints written before `curriculum_shares` existed shared out windows: resuming one with shares of compute
    # is a change of the run, resuming it with windows is not.
    saved = {"seed": 0}
    assert resume_conflicts(saved, {"seed": 0, "curriculum_shares": "compute"}) == {"curriculum_shares": ("windows", "compute")}
    assert resume_conflicts(saved, {"seed": 0, "curriculum_shares": "windows"}) == {}


def test_a_checkpoint_from_before_a_key_was_removed_resumes_when_it_ran_as_runs_do_now(tmp_path):
    from pdefm.train.training.config import load_config

    # gradient_balance was removed: a checkpoint that ran without it resumes, one that ran with it is a change.
    now = {"seed": 0, "curriculum_shares": "windows"}  # a run's settings: every key of today's config, none removed
    assert resume_conflicts({"seed": 0, "gradient_balance": False}, now) == {}
    assert resume_conflicts({"seed": 0, "gradient_balance": True}, now) == {"gradient_balance": (True, False)}
    old = tmp_path / "old.yaml"
    old.write_text("gradient_balance: false\nmax_steps: 3\n")
    assert load_config(["--config", str(old), "--data_dir", str(tmp_path)]).config.max_steps == 3
    old.write_text("gradient_balance: true\n")
    with pytest.raises(ValueError, match=r"old.yaml: config key 'gradient_balance' was removed .* pdefm 0.1.0"):
        load_config(["--config", str(old), "--data_dir", str(tmp_path)])


def test_allow_config_change_continues_with_the_new_settings(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    run(data_dir, out, max_steps=3)
    run(data_dir, out, resume=True, allow=True, max_steps=5, learning_rate=1e-3, batch_size=1)
    assert "--allow_config_change: continuing" in capsys.readouterr().out
    state = json.load(open(os.path.join(latest_checkpoint(str(out)), "trainer_state.json")))
    assert state["step"] == 5 and state["settings"]["batch_size"] == 1
    groups = json.load(open(os.path.join(latest_checkpoint(str(out)), "rank0.json")))["optimizer"]["param_groups"]
    assert groups[0]["initial_lr"] == pytest.approx(1e-3)


def test_the_command_line_names_the_conflict_and_exits_2(data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    run(data_dir, out, max_steps=3)
    AcceleratorState._reset_state(True)
    code = pretrain.main(["--data_dir", data_dir, "--output_dir", str(out), "--max_steps", "6", "--batch_size", "1",
                          "--n_steps_input", "2", "--log_with", "none", "--resume", "--checkpoint_every", "3",
                          "--eval_every", "3", "--eval_batches", "1", "--warmup_steps", "2", "--learning_rate", "3e-3",
                          "--log_every", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "batch_size: 2 in the checkpoint, 1 now" in err


def test_a_second_run_into_a_busy_output_dir_is_refused(data_dir, tmp_path):
    out = tmp_path / "busy"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        os.makedirs(out)
        (out / LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": os.uname().nodename, "started": "now"}))
        with pytest.raises(RunLockError, match=rf"in use by another run \(pid {holder.pid}"):
            run(data_dir, out, max_steps=2)
        assert not (out / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    # Its owner is gone now: the stale lock is taken over with a warning, and released at the end.
    with pytest.warns(UserWarning, match="stale lock"):
        run(data_dir, out, max_steps=2)
    assert not (out / LOCK_FILE).exists()


def test_a_lock_from_another_host_is_not_broken(tmp_path):
    (tmp_path / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "elsewhere", "started": "now"}))
    with pytest.raises(RunLockError, match="host 'elsewhere'.*delete"):
        acquire(str(tmp_path))
    (tmp_path / LOCK_FILE).unlink()
    path = acquire(str(tmp_path))
    release(path)
    assert not os.path.exists(path)


@pytest.mark.parametrize("damage", ["truncate_model", "corrupt_state", "truncate_rank"])
def test_a_damaged_latest_checkpoint_falls_back_to_the_previous_one(data_dir, tmp_path, damage):
    out = tmp_path / "run"
    run(data_dir, out, max_steps=6, checkpoint_every=3)
    latest = latest_checkpoint(str(out))
    assert latest.endswith("step_00000006")
    target = {"truncate_model": "model.safetensors", "corrupt_state": "trainer_state.json",
              "truncate_rank": "rank0.safetensors"}[damage]
    path = os.path.join(latest, target)
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2] if damage != "corrupt_state" else b'{"step": 6, "sched')
    with pytest.warns(UserWarning, match=rf"skipping checkpoint .*step_00000006.*{target}"):
        run(data_dir, out, resume=True, max_steps=6, checkpoint_every=3)
    assert json.loads((out / "report.json").read_text())["steps"] == 6
    # Resumed from step 3: the run redid steps 4-6 and wrote a sound step 6.
    assert checkpointing.read_checkpoint(latest_checkpoint(str(out)), 0).step == 6


def test_a_full_disk_names_the_problem_and_keeps_the_previous_checkpoint(data_dir, tmp_path, monkeypatch):
    out = tmp_path / "run"
    original = checkpointing._write_bytes

    def full_at_step_6(path, data):
        if "step_00000006" in path:
            raise OSError(errno.ENOSPC, "No space left on device", path)
        return original(path, data)

    monkeypatch.setattr(checkpointing, "_write_bytes", full_at_step_6)
    with pytest.raises(CheckpointError, match=r"no space left on device .*step_00000006.*previous checkpoint .*step_00000003 is kept"):
        run(data_dir, out, max_steps=6, checkpoint_every=3)
    assert sorted(os.listdir(out / "checkpoints")) == ["step_00000003"]
    monkeypatch.setattr(checkpointing, "_write_bytes", original)
    run(data_dir, out, resume=True, max_steps=6, checkpoint_every=3)
    assert latest_checkpoint(str(out)).endswith("step_00000006")


def test_resume_flags_parse():
    args = load_config(["--data_dir", ".", "--resume", "--allow_config_change"]).args
    assert args.resume and args.allow_config_change
