"""How much a trajectory still moves: the one-step change of each field relative to its spread.

A forecasting dataset whose frames barely change carries little to learn (persistence is already near perfect),
and one whose change is all at the start spends most of its windows on a settled state. These pure functions
measure that; `python -m pdefm.data.the_well info` prints their summary.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A one-step change below this fraction of the field's spread counts as "static" for the summary.
STATIC_CHANGE = 0.05
SEGMENTS = 4  # the trajectory is summarised in quarters


def relative_step_change(values: np.ndarray) -> np.ndarray:
    """`values [T, *space, C]` of one trajectory -> `[T-1, C]`: RMS over space of the frame-to-frame change,
    divided by the channel's standard deviation over the whole trajectory (space and time). A channel that is
    constant over the trajectory has no spread to compare with: its change is reported as 0."""
    values = np.asarray(values, dtype=np.float64)
    if values.shape[0] < 2:
        raise ValueError(f"a trajectory needs at least 2 frames to measure change, got {values.shape[0]}")
    channels = values.shape[-1]
    flat = values.reshape(values.shape[0], -1, channels)
    change = np.sqrt(np.mean(np.diff(flat, axis=0) ** 2, axis=1))
    spread = flat.reshape(-1, channels).std(axis=0)
    return np.divide(change, spread, out=np.zeros_like(change), where=spread > 0)


@dataclass(frozen=True)
class ChannelDynamics:
    """Summary of one channel over a set of trajectories.

    `segment_means`: mean relative one-step change in each quarter of the trajectory, averaged over trajectories;
    `static_fraction`: share of all one-step changes below `STATIC_CHANGE`; `least_moving`: the smallest
    per-trajectory mean change, and `least_moving_trajectory` which trajectory (in reading order) it was."""

    name: str
    segment_means: tuple[float, ...]
    static_fraction: float
    least_moving: float
    least_moving_trajectory: int


def summarise_dynamics(changes: list[np.ndarray], channel_names: list[str]) -> list[ChannelDynamics]:
    """`changes`: one `relative_step_change` array `[T-1, C]` per trajectory -> one summary per channel."""
    if not changes:
        raise ValueError("no trajectories to summarise")
    stacked = np.stack(changes)  # [N, T-1, C]
    segments = np.array_split(np.arange(stacked.shape[1]), min(SEGMENTS, stacked.shape[1]))
    per_trajectory = stacked.mean(axis=1)  # [N, C]
    out = []
    for c, name in enumerate(channel_names):
        out.append(ChannelDynamics(
            name=name,
            segment_means=tuple(float(stacked[:, idx, c].mean()) for idx in segments),
            static_fraction=float((stacked[:, :, c] < STATIC_CHANGE).mean()),
            least_moving=float(per_trajectory[:, c].min()),
            least_moving_trajectory=int(per_trajectory[:, c].argmin()),
        ))
    return out


def format_dynamics(summary: list[ChannelDynamics], indent: str = "  ") -> list[str]:
    """Table lines for `info`."""
    quarters = " ".join(f"{f'q{i + 1}':>6}" for i in range(len(summary[0].segment_means)))
    lines = [f"{indent}one-step change / field std, mean per quarter of the trajectory "
             f"(static: share of steps below {STATIC_CHANGE}):",
             f"{indent}  {'channel':<22}{quarters}  static  least-moving trajectory"]
    for item in summary:
        means = " ".join(f"{m:6.3f}" for m in item.segment_means)
        lines.append(f"{indent}  {item.name:<22}{means}  {item.static_fraction:6.0%}  "
                     f"{item.least_moving:.3f} (#{item.least_moving_trajectory})")
    return lines
