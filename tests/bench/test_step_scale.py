"""bench/step_scale.py: the window's step against the field's std and against the next change."""

import os
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import step_scale  # noqa: E402


def test_a_steady_drift_is_predicted_exactly_by_its_window_step():
    g = torch.Generator().manual_seed(0)
    windows = []
    for _ in range(3):
        base, drift = torch.randn(8, 8, 2, generator=g), torch.randn(8, 8, 2, generator=g) * torch.tensor([0.1, 1.0])
        frames = torch.stack([base + t * drift for t in range(5)])  # [5, 8, 8, 2]: 4 inputs and the next frame
        windows.append({"input_fields": frames[:4], "output_fields": frames[4:]})
    step, following = step_scale.step_ratios(windows)
    torch.testing.assert_close(following, torch.ones(2, dtype=torch.float64))
    assert step[0] < step[1]  # the slower field's step is the smaller part of its std
