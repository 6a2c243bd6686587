"""Fixtures shared by the training tests (a module that defines its own `data_dir` overrides this one)."""

import pytest
from accelerate.state import AcceleratorState

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
