"""Thread defaults of the command-line tools (dataset_scripts/threads.py): never more busy threads than cores, and
the user's explicit choice always wins."""

import pytest
import torch

from pdefm.data import threads

MEASURE_IDLE_CORES = threads.idle_cores


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    for key in ("OMP_NUM_THREADS", "PDEFM_NUM_THREADS", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    monkeypatch.setattr(threads, "idle_cores", lambda: 4.0)
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
    with pytest.raises(ValueError, match="PDEFM_NUM_THREADS must be a positive whole number or 'torch', got '0'"):
        threads.chosen_threads("train")
    with pytest.raises(ValueError, match="workload must be one of"):
        threads.default_threads("render")
