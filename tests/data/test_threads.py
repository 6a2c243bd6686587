"""Thread defaults of the command-line tools (pdefm/runtime/threads.py): never more busy threads than cores, and
the user's explicit choice always wins."""

import pytest
import torch

from pdefm.runtime import threads

MEASURE_IDLE_CORES = threads.idle_cores


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for key in ("OMP_NUM_THREADS", "PDEFM_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "idle_cores", lambda: 4.0)
    monkeypatch.setattr(threads, "_keeper", None)  # a keeper left behind would change threads in later tests
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_training_shares_the_cores_among_the_local_processes(monkeypatch):
    assert threads.chosen_threads("train") == 4
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert threads.chosen_threads("train") == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "8")
    assert threads.chosen_threads("train") == 1


def test_training_takes_no_more_threads_than_idle_cores(monkeypatch):
    monkeypatch.setattr(threads, "idle_cores", lambda: 1.2)  # a busy neighbour holds most of the machine
    assert threads.chosen_threads("train") == 1
    monkeypatch.setattr(threads, "idle_cores", lambda: 2.6)
    assert threads.chosen_threads("train") == 3
    monkeypatch.setattr(threads, "idle_cores", lambda: None)  # unknown: the share alone decides
    assert threads.chosen_threads("train") == 4


def test_idle_cores_measures_this_machine():
    measured = MEASURE_IDLE_CORES(0.05)
    assert measured is None or 0.0 <= measured <= threads.os.cpu_count()


def test_generation_uses_one_thread():
    assert threads.chosen_threads("generate") == 1
    assert threads.configure_threads("generate") == 1 == torch.get_num_threads()


def test_the_users_choice_wins(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.chosen_threads("generate") is None
    torch.set_num_threads(3)
    assert threads.configure_threads("generate") == 3  # left alone
    monkeypatch.setenv("PDEFM_NUM_THREADS", "2")
    assert threads.chosen_threads("train") == 2
    monkeypatch.setenv("PDEFM_NUM_THREADS", "torch")
    assert threads.chosen_threads("train") is None


def test_bad_values_are_named(monkeypatch):
    monkeypatch.setenv("PDEFM_NUM_THREADS", "0")
    with pytest.raises(ValueError, match="PDEFM_NUM_THREADS must be a whole number from 1 to 1024 or 'torch', got '0'"):
        threads.chosen_threads("train")
    with pytest.raises(ValueError, match="workload must be one of"):
        threads.default_threads("render")


def test_cores_free_for_us_count_the_idle_ones_and_our_own():
    assert threads.cores_free_for_us(2, 0.0, 1.0) == 1.0  # a neighbour holds the other core
    assert threads.cores_free_for_us(2, 0.5, 1.0) == 2.0  # the neighbour left
    assert threads.cores_free_for_us(2, 0.6, 1.9) == 2.0  # never more than the cores there are


def test_training_threads_follow_the_load_during_a_run(monkeypatch):
    """The choice at start sees one instant; during a run it is re-made from what the machine did meanwhile."""
    monkeypatch.setattr(threads, "available_cores", lambda: 2)
    keeper = threads._ThreadKeeper(every=0.0)
    keeper.cpus = {0, 1}
    keeper.mark = (0.0, (0.0, 0.0), 0.0)
    # 10 s: no core idle, we used one: a neighbour holds the other -> 1 thread
    monkeypatch.setattr(keeper, "_sample", lambda: (10.0, (0.0, 2000.0), 10.0))
    assert keeper.update() == 1 and torch.get_num_threads() == 1
    # 10 s more: one core idle besides ours -> both
    monkeypatch.setattr(keeper, "_sample", lambda: (20.0, (1000.0, 4000.0), 20.0))
    assert keeper.update() == 2 and torch.get_num_threads() == 2
    keeper.every = 3600.0
    assert keeper.update() is None  # not yet time to look


def test_only_a_training_command_with_the_package_choice_keeps_it_current(monkeypatch):
    threads.configure_threads("train")
    assert threads._keeper is None and threads.refresh_threads() is None  # library use: nothing changes
    threads.configure_threads("train", keep_current=True)
    assert threads._keeper is not None
    monkeypatch.setenv("PDEFM_NUM_THREADS", "1")
    threads.configure_threads("train", keep_current=True)
    assert threads._keeper is None  # the user's number stands for the whole run
    monkeypatch.delenv("PDEFM_NUM_THREADS")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    threads.configure_threads("train", keep_current=True)
    assert threads._keeper is None
    threads.configure_threads("generate", keep_current=True)
    assert threads._keeper is None


@pytest.mark.parametrize("value", ["abc", "0", "100000"])
def test_a_bad_thread_count_ends_the_command_in_one_line(monkeypatch, value):
    from pdefm.runtime.process import setup_process

    monkeypatch.setenv("PDEFM_NUM_THREADS", value)
    with pytest.raises(SystemExit, match=rf"error: PDEFM_NUM_THREADS must be a whole number from 1 to 1024 or "
                                         rf"'torch', got '{value}'"):
        setup_process("train")


def test_sigterm_ends_a_command_through_its_cleanup(tmp_path):
    import subprocess
    import sys

    partial = tmp_path / "out.hdf5.partial-1"
    code = ("import os, signal, time\n"
            "from pdefm.runtime.process import setup_process\n"
            "setup_process('train')\n"
            f"open({str(partial)!r}, 'w').write('half a forecast')\n"
            "try:\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    time.sleep(30)\n"
            "finally:\n"
            f"    os.remove({str(partial)!r})\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 143, done.stderr
    assert not partial.exists()
