import os
import sys

import pytest
import torch

# Tests mirror the package (tests/modeling_pdefm, tests/data, tests/train); helpers shared by all of them
# (`well_files`, this file's `tiny_config` and `make_batch`) live here, one level up from the test files.
TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
for path in (ROOT, TESTS):
    if path not in sys.path:
        sys.path.insert(0, path)

from modeling_pdefm import PDEFMConfig, PDEFMModel  # noqa: E402

DATASETS = {
    "shear_flow": {"n_fields": 4, "n_spatial_dims": 2, "n_constant_scalars": 2},
    "acoustic_scattering": {"n_fields": 3, "n_constant_fields": 2, "n_spatial_dims": 2},
    "MHD_64": {"n_fields": 7, "n_spatial_dims": 3},
}


def tiny_config(**overrides) -> PDEFMConfig:
    """The `tiny` preset for the 2-frame windows of `make_batch`."""
    return PDEFMConfig.from_preset("tiny", datasets=DATASETS, **{"n_steps_input": 2, **overrides})


def make_batch(name: str, batch: int = 2, t_in: int = 2, t_out: int = 1, space=None, seed: int = 0) -> dict:
    spec = DATASETS[name]
    d = spec["n_spatial_dims"]
    space = space or ((12, 20) if d == 2 else (8, 8, 8))
    g = torch.Generator().manual_seed(seed)
    out = {
        "input_fields": torch.randn(batch, t_in, *space, spec["n_fields"], generator=g),
        "labels": torch.randn(batch, t_out, *space, spec["n_fields"], generator=g),
        "boundary_conditions": torch.randint(0, 3, (batch, d, 2), generator=g),
        "input_time_grid": torch.arange(t_in, dtype=torch.float32).expand(batch, t_in) * 0.1,
        "output_time_grid": (t_in + torch.arange(t_out, dtype=torch.float32)).expand(batch, t_out) * 0.1,
        "dataset_name": name,
    }
    if spec.get("n_constant_fields"):
        out["constant_fields"] = torch.randn(batch, *space, spec["n_constant_fields"], generator=g)
    if spec.get("n_constant_scalars"):
        out["constant_scalars"] = torch.rand(batch, spec["n_constant_scalars"], generator=g) * 1e4
    return out


@pytest.fixture
def tiny_model() -> PDEFMModel:
    torch.manual_seed(0)
    return PDEFMModel(tiny_config()).eval()


@pytest.fixture(autouse=True)
def no_thread_keeper_across_tests():
    """A command run in-process (`pretrain.main`) leaves the package's thread keeper on; the next test must not
    inherit it."""
    from pdefm.runtime import threads

    yield
    threads._keeper = None
