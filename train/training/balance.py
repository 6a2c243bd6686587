"""Per-dataset gradient balance for multi-dataset training.

Each step's batch comes from one dataset, and every dataset pulls the shared trunk with a gradient of its own size:
a dataset whose output adapter stays near its zero start (a new dataset predicts "no change") sends a far smaller
trunk gradient than the others. Adam divides by a second moment that all datasets share, so such a dataset's steps
barely move the trunk and it can stay at persistence for a whole run (rayleigh_benard on Mini-Well's 32-point grid
did, while it learns when trained alone). Dividing each step's trunk gradient by its dataset's running norm of it
gives every dataset an equal say in the shared weights. Measured effect: docs/decisions.md, "`gradient_balance`".
"""

from __future__ import annotations

import math

import torch


class GradientBalancer:
    """Running gradient norm per dataset (`ema` weight on the past) over `parameters` (the shared ones, see
    `shared_parameters`); `scale(name, norm)` is the factor for this step's gradients, `balance(name)` applies it to
    them. Its state is checkpointed with the run, so a resumed run scales exactly as an uninterrupted one."""

    def __init__(self, parameters=(), ema: float = 0.9):
        if not 0 <= ema < 1:
            raise ValueError(f"gradient balance ema must be in [0, 1), got {ema!r}")
        self.parameters = list(parameters)
        self.ema = ema
        self.norms: dict[str, float] = {}

    def balance(self, name: str) -> None:
        """Divide the gradients of `parameters` by `name`'s running norm of them, updated with this step's."""
        scale_gradients(self.parameters, self.scale(name, float(gradient_norm(self.parameters))))

    def scale(self, name: str, norm: float) -> float:
        """Update `name`'s running norm with this step's `norm` and return 1 / running norm (1.0 when the norm is
        zero or not finite: nothing to balance)."""
        if not math.isfinite(norm) or norm <= 0:
            return 1.0
        previous = self.norms.get(name)
        self.norms[name] = norm if previous is None else self.ema * previous + (1 - self.ema) * norm
        return 1.0 / self.norms[name]

    def state_dict(self) -> dict:
        return {"norms": dict(self.norms)}

    def load_state_dict(self, state: dict) -> None:
        self.norms = {name: float(value) for name, value in state.get("norms", {}).items()}


def shared_parameters(model) -> list:
    """Trainable parameters outside the per-dataset adapters (`adapters.<name>.*`, also under a PEFT wrapper's
    prefix): the ones every dataset's steps move, and so the only ones whose gradients need balancing (each adapter
    has Adam moments of its own)."""
    return [p for n, p in model.named_parameters() if p.requires_grad and ".adapters." not in f".{n}"]


def gradient_norm(parameters) -> torch.Tensor:
    """Euclidean norm of all gradients of `parameters` (those that have one)."""
    return torch.nn.utils.get_total_norm([p.grad.detach() for p in parameters if p.grad is not None])


def scale_gradients(parameters, factor: float) -> None:
    for p in parameters:
        if p.grad is not None:
            p.grad.mul_(factor)
