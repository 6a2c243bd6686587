"""Which dataset the next batch comes from: temperature-scaled sizes times a difficulty weight.

    w_i = |D_i|^tau * (eps + L_i)^alpha,    p_i ∝ w_i / c_i

`L_i` is a running average of dataset i's validation loss; alpha = 0 turns difficulty off, tau = 0 weighs
datasets uniformly, tau = 1 proportionally to their size. `c_i` is the cost of one of dataset i's steps (its grid
points per frame times its windows per batch) when the weights are shares of compute, 1 when they are shares of
windows: a 32^3 window costs seven to ten 64^2 ones, so with shares of windows a 3D dataset takes most of a
mixture's wall-clock (docs/decisions.md, "Shares of compute"), and a dataset given smaller batches (`batch_sizes`)
is drawn more often for the same share.
"""

from __future__ import annotations

import numpy as np


def curriculum_probabilities(sizes: dict[str, int], losses: dict[str, float] | None, temperature: float,
                             alpha: float, eps: float, costs: dict[str, float] | None = None) -> dict[str, float]:
    """Probability of drawing each dataset's next batch; `costs` (per step, any unit) turn the weights into
    shares of compute."""
    names = sorted(sizes)
    weights = np.array([float(sizes[n]) ** temperature for n in names])
    if losses and alpha:
        weights = weights * np.array([(eps + losses.get(n, 1.0)) ** alpha for n in names])
    if costs:
        weights = weights / np.array([float(costs[n]) for n in names])
    weights = weights / weights.sum()
    return dict(zip(names, weights.tolist()))


class CurriculumSampler:
    """Draws dataset names; every process draws the same sequence (same seed), so a step's batch comes from one
    dataset everywhere. Its state (RNG and loss averages) is saved with each checkpoint."""

    def __init__(self, sizes: dict[str, int], temperature: float, alpha: float, eps: float, ema: float, seed: int,
                 costs: dict[str, float] | None = None):
        self.sizes = dict(sizes)
        self.costs = dict(costs) if costs else None
        self.temperature, self.alpha, self.eps, self.ema = temperature, alpha, eps, ema
        self.losses: dict[str, float] = {}
        self.rng = np.random.default_rng(seed)

    def probabilities(self) -> dict[str, float]:
        return curriculum_probabilities(self.sizes, self.losses, self.temperature, self.alpha, self.eps, self.costs)

    def draw(self) -> str:
        probs = self.probabilities()
        names = list(probs)
        return names[int(self.rng.choice(len(names), p=list(probs.values())))]

    def update_losses(self, losses: dict[str, float]) -> None:
        for name, value in losses.items():
            if np.isfinite(value):
                previous = self.losses.get(name)
                self.losses[name] = value if previous is None else self.ema * previous + (1 - self.ema) * value

    def state_dict(self) -> dict:
        return {"losses": dict(self.losses), "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict) -> None:
        self.losses = dict(state["losses"])
        self.rng.bit_generator.state = state["rng"]
