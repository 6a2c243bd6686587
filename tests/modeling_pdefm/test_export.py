"""`torch.export`: the model traces with its boundary conditions as inputs (no branch on tensor values), and the
exported program computes what the eager model computes, for boundary conditions other than those it was traced with."""

import pytest
import torch

from modeling_pdefm import PDEFMModel

from conftest import make_batch, tiny_config

WALL, PERIODIC = 0, 2


def _model(**overrides) -> PDEFMModel:
    torch.manual_seed(0)
    model = PDEFMModel(tiny_config(**overrides)).eval()
    with torch.no_grad():  # a fresh head predicts no change: let the decoder's padding reach the prediction
        model.dataset_heads["shear_flow"].out_proj.weight.normal_(std=0.1)
    return model


def _inputs(codes) -> dict:
    batch = make_batch("shear_flow")
    return {"input_fields": batch["input_fields"], "constant_scalars": batch["constant_scalars"],
            "boundary_conditions": torch.tensor(codes).expand(2, -1, -1).contiguous()}


def test_an_exported_model_equals_eager_for_any_boundary_conditions():
    model = _model()  # tiny: 3x3 decoder blocks that wrap periodic axes and zero-pad walls
    traced_with = _inputs([[PERIODIC, PERIODIC], [PERIODIC, PERIODIC]])
    program = torch.export.export(model, args=(), kwargs={**traced_with, "dataset_name": "shear_flow"})
    exported = program.module()
    for codes in ([[PERIODIC, PERIODIC], [PERIODIC, PERIODIC]], [[WALL, WALL], [PERIODIC, PERIODIC]],
                  [[PERIODIC, PERIODIC], [WALL, WALL]]):
        inputs = _inputs(codes)
        with torch.no_grad():
            eager = model(**inputs, dataset_name="shear_flow").prediction
            traced = exported(**inputs, dataset_name="shear_flow").prediction
        torch.testing.assert_close(traced, eager, rtol=1e-5, atol=1e-5)
    with torch.no_grad():  # the boundaries do change the forecast: the trace did not freeze them
        walls = exported(**_inputs([[WALL, WALL], [PERIODIC, PERIODIC]]), dataset_name="shear_flow").prediction
        periodic = exported(**_inputs([[PERIODIC, PERIODIC], [PERIODIC, PERIODIC]]), dataset_name="shear_flow").prediction
    assert not torch.allclose(walls, periodic)


def test_a_model_whose_shapes_depend_on_the_boundaries_is_refused_under_export_by_name():
    model = _model(decoder_type="fno")  # pads walled axes: the shapes would follow the boundary values
    with pytest.raises(Exception, match="wall_padding"):
        torch.export.export(model, args=(), kwargs={**_inputs([[WALL, WALL], [PERIODIC, PERIODIC]]),
                                                    "dataset_name": "shear_flow"})


def test_a_model_with_band_gains_is_refused_under_export_by_name():
    model = _model(change_filter_bands=4)  # mirrors walled axes before its FFT: a branch on the boundary values
    with pytest.raises(Exception, match="change_filter_bands"):
        torch.export.export(model, args=(), kwargs={**_inputs([[WALL, WALL], [PERIODIC, PERIODIC]]),
                                                    "dataset_name": "shear_flow"})


def test_an_exported_model_with_a_linear_path_equals_eager():
    model = _model(linear_stencil=True)
    with torch.no_grad():
        model.dataset_heads["shear_flow"].stencil_weight.normal_(std=0.1)
    program = torch.export.export(model, args=(), kwargs={**_inputs([[PERIODIC, PERIODIC], [PERIODIC, PERIODIC]]),
                                                          "dataset_name": "shear_flow"})
    inputs = _inputs([[WALL, WALL], [PERIODIC, PERIODIC]])
    with torch.no_grad():
        torch.testing.assert_close(program.module()(**inputs, dataset_name="shear_flow").prediction,
                                   model(**inputs, dataset_name="shear_flow").prediction, rtol=1e-5, atol=1e-5)
