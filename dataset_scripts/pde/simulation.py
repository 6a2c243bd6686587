"""What a solver returns: everything needed to write one file of The Well's format."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..well_writer import WellBoundary, WellField, WellScalar


@dataclass
class Simulation:
    """Trajectories of one system. Field data are `[n_traj, n_steps, *space(, d)*order]` float32 arrays."""

    dataset_name: str
    spatial_dims: tuple[str, ...]
    coordinates: dict[str, np.ndarray]
    time: np.ndarray
    fields: list[WellField]
    scalars: list[WellScalar]
    boundaries: list[WellBoundary]
    simulation_parameters: tuple[str, ...] = field(default_factory=tuple)

    @property
    def n_trajectories(self) -> int:
        return int(self.fields[0].data.shape[0])


def to_numpy(x) -> np.ndarray:
    return x.detach().to("cpu").numpy().astype(np.float32)


class SolverBreakdownError(FloatingPointError):
    """A solver's state went non-finite or its adaptive time step collapsed. The message names the system, the
    trajectory (its index in the batch being solved) and its parameters, so the run can be reproduced."""


def describe_trajectory(parameters: dict[str, np.ndarray] | None, index: int) -> str:
    if not parameters:
        return f"trajectory {index}"
    values = ", ".join(f"{name}={float(np.asarray(v)[index]):.6g}" for name, v in parameters.items())
    return f"trajectory {index} ({values})"


def check_finite(name: str, parameters: dict[str, np.ndarray] | None = None, t: float | None = None, **arrays) -> None:
    """Solvers must never hand NaN to the writer: fail loudly with the system, field, trajectory and parameters.
    Arrays are `[B, ...]` (one row per trajectory); called on every saved frame, so a blow-up stops the run at
    the frame where it happened."""
    for key, value in arrays.items():
        finite = np.isfinite(np.asarray(value).reshape(len(value), -1)).all(axis=1)
        if not finite.all():
            when = f" at t={t:.6g}" if t is not None else ""
            raise SolverBreakdownError(
                f"{name}: the solver produced non-finite values in '{key}'{when} for "
                f"{describe_trajectory(parameters, int(np.argmin(finite)))}; the grid is probably too coarse for these "
                f"parameters")


class StepGuard:
    """Watches an adaptive time step, per trajectory of a batch.

    An under-resolved flow does not blow up at once: its stable step shrinks step after step until the run crawls,
    which on a CPU means minutes or hours before the state finally goes non-finite. `step` raises
    `SolverBreakdownError` as soon as a trajectory's stable step falls below `collapse_ratio` of its first value
    (or is not finite), naming the trajectory and its parameters."""

    def __init__(self, name: str, parameters: dict[str, np.ndarray] | None = None, collapse_ratio: float = 1e-3):
        self.name, self.parameters, self.collapse_ratio = name, parameters, collapse_ratio
        self.initial: np.ndarray | None = None

    def step(self, stable, t: float) -> float:
        """`stable [B]` (tensor or array): each trajectory's stable step now -> the step the batch takes (their minimum)."""
        stable = np.asarray(stable.detach().cpu() if hasattr(stable, "detach") else stable, dtype=np.float64).reshape(-1)
        if self.initial is None:
            self.initial = stable.copy()
        bad = ~np.isfinite(stable) | (stable < self.collapse_ratio * self.initial)
        if bad.any():
            index = int(np.argmax(bad))
            what = ("is not finite" if not np.isfinite(stable[index]) else
                    f"collapsed to {stable[index]:.3g} from {self.initial[index]:.3g} (below {self.collapse_ratio:g} "
                    f"of its first value)")
            raise SolverBreakdownError(
                f"{self.name}: the adaptive time step of {describe_trajectory(self.parameters, index)} {what} at "
                f"t={t:.6g}; the flow is not resolved on this grid (use a finer --resolution or milder parameters)")
        return float(stable.min())


def resolution_scale(resolution: int, min_resolution: int) -> float:
    """How far below a system's smallest resolved grid a run is: 1 at or above it, `resolution / min_resolution`
    below. Solvers shrink what the grid cannot resolve (Reynolds/Rayleigh numbers, box size) by this factor."""
    return min(1.0, resolution / min_resolution)


@dataclass(frozen=True)
class Regime:
    """One dataset's regime, as the README's comparison table shows it (every entry a short text)."""

    grid: str
    box: str
    parameters: str
    frame_spacing: str
    trajectory: str
    below_minimum: str = ""  # what changes on grids below the system's smallest resolved one


def horizon(t_end: float, n_steps: int, t_start: float = 0.0) -> dict[str, str]:
    """The `frame_spacing` and `trajectory` entries of a `Regime` saved from `t_start` to `t_end` in `n_steps`."""
    return {"frame_spacing": f"{(t_end - t_start) / (n_steps - 1):.3g}",
            "trajectory": f"{n_steps} frames, t = {t_start:g}-{t_end:g}"}
