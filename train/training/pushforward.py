"""Training windows moved into the model's own rollout: the pushforward trick (Brandstetter, Worrall and Welling,
arXiv 2202.03376, section 2.3).

A model trained only on true input windows never sees the inputs its rollout gives it from step 3 on. Pushforward
first rolls the model `k` steps from the true window without a gradient, then computes the usual loss from the
window that rollout ends in (its last `n_steps_input` frames, the true ones it still holds and the `k` predicted),
against the true frames that follow. The loss's gradient is that of an ordinary training step, so memory does not
grow with `k`; the `k` steps cost forward passes only. `k` is drawn per optimizer step from 0..`most`, so the
model keeps learning from true windows too (k = 0), and is a function of the run's seed and step, so a resumed run
draws what the uninterrupted one would have. `most` grows with training: a model's early rollouts are noise, and
training on them from the start left the main job's one-step validation error 13-77% higher at step 2000 of 6400
(docs/decisions.md, "Pushforward").
"""

from __future__ import annotations

import random
from typing import Any

import torch

from ..evaluation.forecasters import model_inputs


def pushforward_most(progress: float, most: int) -> int:
    """The most steps a window may be rolled forward at `progress` (0 to 1) of training: 0 in the first
    1/(`most` + 1) of it, then one more in each further part, `most` in the last."""
    return min(most, int((most + 1) * progress))


def pushforward_steps_at(seed: int, step: int, most: int) -> int:
    """The steps the window of optimizer step `step` is rolled forward: uniform on 0..`most`, fixed by `seed` and
    `step`."""
    if most <= 0:
        return 0
    return random.Random(seed * 1_000_003 + step).randint(0, most)


def pushforward_batch(model, batch: dict[str, Any], steps: int, n_steps_output: int, device) -> dict[str, Any]:
    """`batch` (a training window whose `output_fields [b, steps + n_steps_output (or more), *space, C]`) with its
    input window replaced by the model's `steps`-step rollout from it (no gradient) and its targets by the
    `n_steps_output` true frames after that rollout; time grids move with the window. `steps = 0` only trims the
    targets."""
    outputs = batch["output_fields"]
    if outputs.shape[1] < steps + n_steps_output:
        raise ValueError(f"pushforward of {steps} steps needs windows of {steps + n_steps_output} output frames, "
                         f"got {outputs.shape[1]}")
    moved = {**batch, "output_fields": outputs[:, steps:steps + n_steps_output]}
    times = (batch.get("input_time_grid"), batch.get("output_time_grid"))
    if times[1] is not None:
        moved["output_time_grid"] = times[1][:, steps:steps + n_steps_output]
    if steps == 0:
        return moved
    inputs = batch["input_fields"]
    n_in = inputs.shape[1]
    with torch.no_grad():
        frames = model(**model_inputs(batch, device), n_steps=steps, return_dict=True).prediction
    window = torch.cat([inputs.to(device), frames.to(inputs.dtype)], dim=1)
    moved["input_fields"] = window[:, -n_in:]
    if times[0] is not None and times[1] is not None:
        moved["input_time_grid"] = torch.cat([times[0], times[1]], dim=1)[:, steps:steps + n_in]
    return moved
