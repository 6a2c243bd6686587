"""Next-step forecasters behind one interface, so PDE-FM and The Well's baselines are evaluated by the same code.

A forecaster maps a batch in The Well's layout (physical units, `input_fields [B, T_in, *space, C]`) to the next
frame `[B, 1, *space, C]` in physical units: `predict_next(batch)`. The baselines' forecasters live in
`pdefm.train.baselines.forecaster`, with `load_forecaster(path)`, which opens either kind of saved model.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

MODEL_INPUTS = ("input_fields", "constant_fields", "constant_scalars", "boundary_conditions", "input_time_grid",
                "output_time_grid", "dataset_name", "field_names")


def model_inputs(batch: dict[str, Any], device) -> dict[str, Any]:
    """The entries of a Well batch that `PDEFMModel.forward` takes, on `device`."""
    out = {}
    for key in MODEL_INPUTS:
        if key in batch:
            value = batch[key]
            out[key] = value.to(device) if torch.is_tensor(value) else value
    return out


class PDEFMForecaster:
    """PDE-FM (any dataset it knows; the batch names it)."""

    def __init__(self, model, label: str = "PDE-FM"):
        self.model = model.eval()
        self.label = label

    @property
    def device(self):
        return next(self.model.parameters()).device

    def knows(self, dataset: str) -> bool:
        return dataset in self.model.config.datasets

    @property
    def n_steps_input(self) -> int:
        """Input frames the model was trained with (recorded in its config)."""
        return self.model.config.n_steps_input

    @torch.no_grad()
    def predict_next(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.model(**model_inputs(batch, self.device), n_steps=1).prediction.float()

    def iter_rollout(self, batch: dict[str, Any], n_steps: int) -> Iterator[torch.Tensor]:
        """The model's own rollout (`PDEFMModel.iter_rollout`, the one that training and `forward(n_steps=k)` run):
        frames `[B, 1, *space, C]` on the CPU, one per step."""
        for frame in self.model.iter_rollout(n_steps, **model_inputs(batch, self.device)):
            yield frame.float().cpu()
