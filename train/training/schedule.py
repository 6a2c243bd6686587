"""Learning-rate schedule: linear warm-up, then cosine decay over steps or over a wall-clock budget."""

from __future__ import annotations

import math


class WarmupCosine:
    """Factor for `torch.optim.lr_scheduler.LambdaLR`. With `budget_seconds`, progress is the larger of the step
    fraction and the elapsed fraction (`elapsed` is set by the training loop), and training is `done` at the budget;
    so equal-time comparisons end every model fully decayed."""

    def __init__(self, warmup_steps: int, max_steps: int, min_ratio: float, budget_seconds: float | None = None):
        self.warmup_steps, self.max_steps, self.min_ratio = warmup_steps, max_steps, min_ratio
        self.budget_seconds = budget_seconds
        self.elapsed = 0.0

    def progress(self, step: int) -> float:
        by_steps = (step - self.warmup_steps) / max(1, self.max_steps - self.warmup_steps)
        by_time = self.elapsed / self.budget_seconds if self.budget_seconds else 0.0
        return min(1.0, max(by_steps, by_time, 0.0))

    def done(self, step: int) -> bool:
        return step >= self.max_steps or (self.budget_seconds is not None and self.elapsed >= self.budget_seconds)

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        return self.min_ratio + (1 - self.min_ratio) * 0.5 * (1 + math.cos(math.pi * self.progress(step)))

    def state_dict(self) -> dict:
        return {"elapsed": self.elapsed}

    def load_state_dict(self, state: dict) -> None:
        self.elapsed = float(state.get("elapsed", 0.0))
