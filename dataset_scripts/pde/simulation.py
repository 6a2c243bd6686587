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


def check_finite(name: str, **arrays) -> None:
    """Solvers must never hand NaN to the writer: fail loudly with the system and field."""
    for key, value in arrays.items():
        if not np.isfinite(value).all():
            raise FloatingPointError(f"{name}: the solver produced non-finite values in '{key}' (time step too large?)")
