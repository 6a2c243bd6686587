import math

import pytest
import torch

from modeling_pdefm import PDEFMConfig, PDEFMModel
from pdefm.train.training.balance import GradientBalancer, gradient_norm, scale_gradients, shared_parameters


def test_each_dataset_is_scaled_by_its_own_running_norm():
    balancer = GradientBalancer(ema=0.5)
    assert balancer.scale("big", 10.0) == pytest.approx(0.1)
    assert balancer.scale("small", 0.01) == pytest.approx(100.0)  # a weak dataset's gradient is raised, not lost
    assert balancer.scale("big", 30.0) == pytest.approx(1 / 20.0)  # 0.5 * 10 + 0.5 * 30
    assert balancer.norms == pytest.approx({"big": 20.0, "small": 0.01})


@pytest.mark.parametrize("norm", [0.0, math.inf, math.nan])
def test_a_zero_or_non_finite_norm_is_left_alone(norm):
    balancer = GradientBalancer()
    balancer.scale("a", 2.0)
    assert balancer.scale("a", norm) == 1.0
    assert balancer.norms == {"a": 2.0}


def test_state_round_trip_and_bad_ema():
    balancer = GradientBalancer()
    balancer.scale("a", 3.0)
    restored = GradientBalancer()
    restored.load_state_dict(balancer.state_dict())
    assert restored.scale("a", 1.0) == balancer.scale("a", 1.0)
    with pytest.raises(ValueError, match="ema must be in"):
        GradientBalancer(ema=1.0)


def test_shared_parameters_leave_out_every_adapter_also_under_a_wrapper():
    spec = {"n_spatial_dims": 2, "n_fields": 2, "n_constant_fields": 0, "n_constant_scalars": 0}
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets={"a": spec, "b": spec}))
    adapter_ids = {id(p) for p in model.adapters.parameters()}
    shared = shared_parameters(model)
    assert shared and not any(id(p) in adapter_ids for p in shared)
    assert len(shared) + len(adapter_ids) == len(list(model.parameters()))
    wrapped = torch.nn.ModuleDict({"module": model})  # names become module.adapters.<name>..., as under DDP or PEFT
    assert [id(p) for p in shared_parameters(wrapped)] == [id(p) for p in shared]


def test_scaling_reaches_every_gradient_and_the_norm_counts_them_all():
    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(1))
    a.grad, b.grad = torch.tensor([3.0, 0.0]), torch.tensor([4.0])
    c = torch.nn.Parameter(torch.zeros(1))  # no gradient: skipped
    assert float(gradient_norm([a, b, c])) == pytest.approx(5.0)
    scale_gradients([a, b, c], 0.2)
    assert float(gradient_norm([a, b])) == pytest.approx(1.0) and c.grad is None
