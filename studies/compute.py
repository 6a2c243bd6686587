"""Training compute counted, not timed: the floating-point operations of one training step of each model on each
dataset, measured by running that step (forward, loss, backward) under torch's `FlopCounterMode`.

A wall-clock budget on a shared machine gives a model fewer steps whenever something else runs beside it; a count of
operations does not move. What is counted: matrix products and convolutions (torch's own formulas) and fast Fourier
transforms (`fft_flops`: 5 n log2 n per complex transform of n points, half for a real one), a complex product as
four real ones; elementwise operations
(activations, normalisation, the state-space scan's gates) are not counted, for any model.
"""

from __future__ import annotations

import math
import os

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _transform_points(shape, dim) -> tuple[int, int]:
    """(elements of the tensor, points of one transform over `dim`)."""
    elements = math.prod(shape)
    points = math.prod(shape[d] for d in dim)
    return elements, points


def fft_flops(elements: int, points: int, real: bool) -> int:
    """5 n log2 n per complex transform of n points (Cooley-Tukey's count), `elements / n` transforms; a real
    transform is counted as half a complex one."""
    if points <= 1:
        return 0
    flops = 5 * elements * math.log2(points)
    return int(flops / 2 if real else flops)


def _fft_r2c(input_shape, dim, normalization, onesided, out_shape=None, **kwargs) -> int:
    return fft_flops(*_transform_points(input_shape, dim), real=True)


def _fft_c2r(input_shape, dim, normalization, last_dim_size, out_shape=None, **kwargs) -> int:
    return fft_flops(*_transform_points(out_shape, dim), real=True)  # the real output has the full length


def _fft_c2c(input_shape, dim, normalization, forward, out_shape=None, **kwargs) -> int:
    return fft_flops(*_transform_points(input_shape, dim), real=False)


def _complex_aware(real_formula):
    """torch's count of a matrix product (from shapes alone), times 4 when its operands are complex: one complex
    multiply-add is four real multiplications and four additions (FNO's and the spectral tokens' mode weights)."""

    def count(*args, out_val=None, **kwargs):
        flops = real_formula(*args, out_val=out_val, **kwargs)  # torch's formulas take tensors, read their shapes
        return 4 * flops if any(isinstance(a, torch.Tensor) and a.is_complex() for a in args) else flops

    count._get_raw = True  # FlopCounterMode passes the tensors themselves, not only their shapes
    return count


FORMULAS = {aten._fft_r2c: _fft_r2c, aten._fft_c2r: _fft_c2r, aten._fft_c2c: _fft_c2c,
            aten.mm: _complex_aware(flop_counter.mm_flop), aten.bmm: _complex_aware(flop_counter.bmm_flop),
            aten.addmm: _complex_aware(flop_counter.addmm_flop),
            aten.baddbmm: _complex_aware(flop_counter.baddbmm_flop)}


def count_flops(step) -> int:
    """The operations `step()` performs (forward and backward alike), by the module docstring's rules."""
    with FlopCounterMode(display=False, custom_mapping=FORMULAS) as counter:
        step()
    return int(counter.get_total_flops())


def _first_batch(data_dir: str, name: str, batch_size: int, n_steps_input: int, n_steps_output: int,
                 use_normalization: bool) -> dict:
    from pdefm.data import load_well_dataset

    dataset = load_well_dataset(os.path.join(data_dir, name), split="train", n_steps_input=n_steps_input,
                                n_steps_output=n_steps_output, use_normalization=use_normalization)
    if len(dataset) < batch_size:
        raise ValueError(f"{os.path.join(data_dir, name)}: the train split has {len(dataset)} windows, fewer than one "
                         f"batch of {batch_size}")
    return dataset[list(range(batch_size))]


def pdefm_step_flops(model, data_dir: str, names: list[str], batch_size: int | dict[str, int], n_steps_input: int,
                     n_steps_output: int) -> dict[str, int]:
    """Operations of one PDE-FM training step (`model(..., labels=...)`, its loss backward) on a batch of each
    dataset (`batch_size` windows, or per dataset), as the training loop runs it; the model's gradients are cleared
    afterwards."""
    from pdefm.train.evaluation.forecasters import model_inputs

    was_training = model.training
    model.train()
    flops = {}
    for name in names:
        windows = batch_size[name] if isinstance(batch_size, dict) else batch_size
        batch = _first_batch(data_dir, name, windows, n_steps_input, n_steps_output, use_normalization=False)

        def step():
            out = model(**model_inputs(batch, "cpu"), labels=batch["output_fields"])
            out.loss.backward()

        flops[name] = count_flops(step)
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return flops


def baseline_step_flops(forecaster, data_dir: str, name: str, batch_size: int) -> int:
    """Operations of one training step of a baseline (`BaselineForecaster`) on one batch of its dataset, as
    `studies.baseline_training` runs it."""
    batch = _first_batch(data_dir, name, batch_size, forecaster.n_steps_input, 1, use_normalization=True)
    constants = batch.get("constant_fields") if forecaster.settings["n_constant_fields"] else None

    def step():
        prediction = forecaster(batch["input_fields"], constants)
        wanted = forecaster.training_target(batch["input_fields"], batch["output_fields"][:, :1])
        torch.nn.functional.mse_loss(prediction, wanted).backward()

    was_training = forecaster.training
    forecaster.train()
    flops = count_flops(step)
    forecaster.zero_grad(set_to_none=True)
    forecaster.train(was_training)
    return flops


def steps_for_flops(budget: float, flops_per_step: int) -> int:
    """Whole training steps that `budget` operations pay for (at least one)."""
    if flops_per_step <= 0:
        raise ValueError(f"a training step counted {flops_per_step} operations; expected > 0")
    return max(1, int(budget // flops_per_step))
