"""`WellForecaster`: a PDE-FM model as The Well's tooling calls one (a tensor in, a tensor out), checked by
the_well's own `Interface.check_one_step`."""

import pytest
import torch

from modeling_pdefm import WellForecaster

from conftest import make_batch


def test_the_wrapper_returns_the_model_s_prediction_as_a_tensor(tiny_model):
    batch = make_batch("acoustic_scattering")
    bc = batch["boundary_conditions"][:1]
    forecaster = WellForecaster(tiny_model, "acoustic_scattering", n_steps=2, boundary_conditions=bc[0],
                                constant_fields=batch["constant_fields"][:1])
    with torch.no_grad():
        out = forecaster(batch["input_fields"])
        expected = tiny_model(input_fields=batch["input_fields"], dataset_name="acoustic_scattering", n_steps=2,
                              boundary_conditions=bc.expand(2, -1, -1),
                              constant_fields=batch["constant_fields"][:1].expand(2, -1, -1, -1)).prediction
    assert torch.is_tensor(out) and torch.equal(out, expected)


def test_an_input_the_model_cannot_take_is_a_runtime_error_naming_why(tiny_model):
    forecaster = WellForecaster(tiny_model, "shear_flow")
    with pytest.raises(RuntimeError, match="PDE-FM cannot take this input: input_fields has 3 channels"):
        forecaster(torch.rand(2, 2, 12, 20, 3))
    with pytest.raises(ValueError, match="no dataset 'nope'"):
        WellForecaster(tiny_model, "nope")


def test_the_well_s_interface_check_passes_and_fails_where_it_should(tiny_model):
    interface_module = pytest.importorskip("the_well.utils.interface")
    from the_well.data.datasets import WellMetadata

    metadata = WellMetadata(dataset_name="shear_flow", n_spatial_dims=2, spatial_resolution=(12, 20),
                            scalar_names=[], constant_scalar_names=["Reynolds", "Schmidt"],
                            field_names={0: ["tracer", "pressure"], 1: ["velocity_x", "velocity_y"], 2: []},
                            constant_field_names={0: [], 1: [], 2: []}, boundary_condition_types=["PERIODIC"],
                            n_files=1, n_trajectories_per_file=[1], n_steps_per_trajectory=[10],
                            grid_type="cartesian")
    interface = interface_module.Interface(metadata)
    forecaster = WellForecaster(tiny_model, "shear_flow", constant_scalars=torch.tensor([1e4, 1.0]))
    assert interface.check_one_step(forecaster, history=tiny_model.config.n_steps_input, horizon=1)
    # tiny decodes from its last n_steps_input frames: a shorter history is refused, as a RuntimeError
    assert not interface.check_one_step(forecaster, history=tiny_model.config.n_steps_input - 1, horizon=1)
