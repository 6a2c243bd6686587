"""One-step evaluation: VRMSE of the model and of persistence (predicting the last input frame)."""

from __future__ import annotations

from typing import Any

import torch

from modeling_pdefm.losses import vrmse_per_field

from .data import evaluation_batches

MODEL_INPUTS = ("input_fields", "constant_fields", "constant_scalars", "boundary_conditions", "input_time_grid",
                "output_time_grid", "dataset_name")


def model_inputs(batch: dict[str, Any], device) -> dict[str, Any]:
    out = {}
    for key in MODEL_INPUTS:
        if key in batch:
            value = batch[key]
            out[key] = value.to(device) if torch.is_tensor(value) else value
    return out


@torch.no_grad()
def one_step_vrmse(model, dataset, n_spatial_dims: int, batch_size: int = 8, n_batches: int | None = None,
                   device=None) -> dict[str, Any]:
    """Mean one-step VRMSE over windows and fields, per field, and the same for persistence."""
    device = device or next(model.parameters()).device
    model_sum = persistence_sum = None
    count = 0
    for batch in evaluation_batches(dataset, batch_size, n_batches):
        target = batch["output_fields"][:, :1].to(device)
        prediction = model(**model_inputs(batch, device), n_steps=1).prediction.float()
        persistence = batch["input_fields"][:, -1:].to(device)
        m = vrmse_per_field(prediction, target, n_spatial_dims).sum(dim=(0, 1))
        p = vrmse_per_field(persistence, target, n_spatial_dims).sum(dim=(0, 1))
        model_sum = m if model_sum is None else model_sum + m
        persistence_sum = p if persistence_sum is None else persistence_sum + p
        count += target.shape[0]
    per_field_model = (model_sum / count).tolist()
    per_field_persistence = (persistence_sum / count).tolist()
    return {
        "windows": count,
        "vrmse": sum(per_field_model) / len(per_field_model),
        "persistence_vrmse": sum(per_field_persistence) / len(per_field_persistence),
        "vrmse_per_field": per_field_model,
        "persistence_vrmse_per_field": per_field_persistence,
    }
