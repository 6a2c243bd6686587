"""PDE-FM as The Well's tooling calls a model: one tensor in, one tensor out.

`the_well` (its `Interface.check_one_step`, its trainer's formatters) calls `model(input_fields)` with
`[batch, history, *space, C]` and expects the forecast `[batch, horizon, *space, C]` as a tensor, and catches a
`RuntimeError` for an input the model cannot take. `PDEFMModel` takes keyword arguments, returns a `PDEFMOutput` and
raises `ValueError` for bad input; `WellForecaster` adapts one to the other for one dataset of the model.

    >>> forecaster = WellForecaster(model, "shear_flow", n_steps=1)
    >>> forecaster(torch.rand(2, 4, 64, 64, 4)).shape
    torch.Size([2, 1, 64, 64, 4])
"""

from __future__ import annotations

import torch
from torch import nn


class WellForecaster(nn.Module):
    """`forward(input_fields [batch, T_in, *space, C]) -> prediction [batch, n_steps, *space, C]` for `dataset_name`.

    Args:
        model: a `PDEFMModel` that knows `dataset_name`.
        dataset_name: the dataset whose head reads and writes the fields.
        n_steps: frames to predict (default 1, what `PDEFMModel.forward` predicts without labels or `n_steps`).
        **fixed_inputs: the other inputs of every call, batch-first where they are per sample
            (`boundary_conditions [n_dims, 2]` or `[batch, n_dims, 2]`, `constant_scalars`, `constant_fields`); a
            leading batch axis of 1 or none is expanded to the call's batch.
    """

    def __init__(self, model: nn.Module, dataset_name: str, n_steps: int = 1, **fixed_inputs: torch.Tensor):
        super().__init__()
        if dataset_name not in model.config.datasets:
            raise ValueError(f"WellForecaster: the model has no dataset {dataset_name!r}; known: "
                             f"{sorted(model.config.datasets)}")
        self.model, self.dataset_name, self.n_steps = model, dataset_name, n_steps
        self.fixed_inputs = fixed_inputs

    def _expanded(self, batch: int) -> dict[str, torch.Tensor]:
        out = {}
        d = self.model.config.datasets[self.dataset_name]["n_spatial_dims"]
        sample_ndim = {"boundary_conditions": 2, "constant_scalars": 1, "constant_fields": d + 1}
        for key, value in self.fixed_inputs.items():
            if value.ndim == sample_ndim.get(key, value.ndim):
                value = value.unsqueeze(0)
            out[key] = value.expand(batch, *value.shape[1:]) if value.shape[0] == 1 else value
        return out

    def forward(self, input_fields: torch.Tensor) -> torch.Tensor:
        try:
            return self.model(input_fields=input_fields, dataset_name=self.dataset_name, n_steps=self.n_steps,
                              return_dict=True, **self._expanded(input_fields.shape[0])).prediction
        except ValueError as error:  # the_well's tooling tells an input a model cannot take by a RuntimeError
            raise RuntimeError(f"PDE-FM cannot take this input: {error}") from error
