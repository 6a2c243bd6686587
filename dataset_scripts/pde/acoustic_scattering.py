"""`acoustic_scattering`: 2D linear acoustics in a heterogeneous medium with walls and open boundaries.

    p_t = -rho c^2 div(u),        u_t = -(1/rho) grad p

Staggered-grid finite differences (pressure at cell centres, velocity components on cell faces), leapfrog in
time, CFL 0.4. The x boundaries are open (characteristic impedance condition u = +-p/(rho c), which lets normally
incident waves out), the y boundaries are rigid walls (normal velocity 0). The medium is a background with random
circular inclusions of other density and sound speed, stored as constant fields as in The Well; initial state:
Gaussian pressure pulses at rest. Fields: pressure (t0), velocity (t1, averaged onto cell centres); constant fields
density, speed_of_sound.

Resolved from 64 points per axis (`MIN_RESOLUTION`: the narrowest pulse spans two cells); on coarser grids pulses and
the smallest inclusions widen by `64 / resolution` so that the grid still carries them.
"""

from __future__ import annotations

import numpy as np
import torch

from ..well_writer import WellField, axis_boundaries
from .simulation import Regime, Simulation, check_finite, horizon, resolution_scale, to_numpy

NAME = "acoustic_scattering"
LENGTH = 1.0
MIN_RESOLUTION = 64
BACKGROUND = (0.8, 1.2)  # density and sound speed of the medium, each uniform in this range
INCLUSION_DENSITY = (0.5, 3.0)
INCLUSION_SPEED = (0.5, 2.0)
INCLUSION_RADIUS = (0.04, 0.15)
PULSE_WIDTH = (0.03, 0.06)
T_END = 4.8  # frames 4x further apart than in pdefm 0.2.0 (docs/mini_well.md, frame spacing)


class AcousticSolver:
    """Batched staggered-grid solver; `rho`, `c`: `[B, n, n]` cell-centred media; spacing `dx`."""

    def __init__(self, rho: torch.Tensor, c: torch.Tensor, dx: float):
        self.dx = dx
        self.bulk = rho * c * c
        self.impedance = rho * c
        # Face densities: harmonic means, the right average across a material jump.
        self.rho_x = 2 / (1 / rho[:, 1:, :] + 1 / rho[:, :-1, :])  # interior x-faces [B, n-1, n]
        self.rho_y = 2 / (1 / rho[:, :, 1:] + 1 / rho[:, :, :-1])  # interior y-faces [B, n, n-1]

    def step(self, p: torch.Tensor, u: torch.Tensor, v: torch.Tensor, dt: float):
        """`p [B, n, n]`, `u [B, n+1, n]` (x-faces), `v [B, n, n+1]` (y-faces); leapfrog, velocities half a step
        ahead of pressure."""
        u = u.clone()
        v = v.clone()
        u[:, 1:-1] -= dt / self.rho_x * (p[:, 1:] - p[:, :-1]) / self.dx
        v[:, :, 1:-1] -= dt / self.rho_y * (p[:, :, 1:] - p[:, :, :-1]) / self.dx
        # Open x boundaries: outgoing characteristic only.
        u[:, 0] = -p[:, 0] / self.impedance[:, 0]
        u[:, -1] = p[:, -1] / self.impedance[:, -1]
        # Rigid y walls.
        v[:, :, 0] = 0
        v[:, :, -1] = 0
        div = (u[:, 1:] - u[:, :-1] + v[:, :, 1:] - v[:, :, :-1]) / self.dx
        return p - dt * self.bulk * div, u, v


def random_media(n: int, rng: np.random.Generator, batch: int, widen: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    centres = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(centres, centres, indexing="ij")
    rho, c = np.ones((batch, n, n)), np.ones((batch, n, n))
    for b in range(batch):
        rho[b] *= rng.uniform(*BACKGROUND)
        c[b] *= rng.uniform(*BACKGROUND)
        for _ in range(rng.integers(2, 7)):
            cx, cy = rng.uniform(0.15, 0.85), rng.uniform(0.15, 0.85)
            r = max(rng.uniform(*INCLUSION_RADIUS), INCLUSION_RADIUS[0] * widen)
            inside = (x - cx) ** 2 + (y - cy) ** 2 < r * r
            rho[b][inside] = rng.uniform(*INCLUSION_DENSITY)
            c[b][inside] = rng.uniform(*INCLUSION_SPEED)
    return rho, c


def simulate(n_trajectories: int, resolution: int = 64, n_steps: int = 60, rng: np.random.Generator | None = None,
             device="cpu", t_end: float = T_END, on_frame=None) -> Simulation:
    rng = rng or np.random.default_rng(0)
    n = resolution
    dx = LENGTH / n
    widen = 1 / resolution_scale(n, MIN_RESOLUTION)
    rho_np, c_np = random_media(n, rng, n_trajectories, widen)
    rho, c = torch.tensor(rho_np, device=device), torch.tensor(c_np, device=device)
    solver = AcousticSolver(rho, c, dx)
    centres = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(centres, centres, indexing="ij")
    p0 = np.zeros((n_trajectories, n, n))
    for b in range(n_trajectories):
        for _ in range(rng.integers(1, 4)):
            cx, cy, w = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(*PULSE_WIDTH) * widen
            p0[b] += rng.uniform(0.5, 1.5) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * w * w))
    p = torch.tensor(p0, device=device)
    u = torch.zeros(n_trajectories, n + 1, n, dtype=torch.float64, device=device)
    v = torch.zeros(n_trajectories, n, n + 1, dtype=torch.float64, device=device)
    dt_max = 0.4 * dx / float(c.max())
    save_times = np.linspace(0.0, t_end, n_steps)
    # Uniform steps landing on the save times: leapfrog needs a constant step.
    n_sub = int(np.ceil((save_times[1] - save_times[0]) / dt_max))
    dt = (save_times[1] - save_times[0]) / n_sub
    # Start the staggered velocity half a step back (first-order start from rest is exact: u(0) = 0).
    frames = []
    for index in range(n_steps):
        if index:
            for _ in range(n_sub):
                u_prev, v_prev = u, v
                p, u, v = solver.step(p, u, v, dt)
        else:
            u_prev, v_prev = u, v
        # Velocity at the pressure's time: mean of the half steps around it, then onto cell centres.
        uc = 0.25 * (u[:, 1:] + u[:, :-1] + u_prev[:, 1:] + u_prev[:, :-1])
        vc = 0.25 * (v[:, :, 1:] + v[:, :, :-1] + v_prev[:, :, 1:] + v_prev[:, :, :-1])
        if on_frame is not None:  # progress within a file
            on_frame()
        frames.append({"pressure": to_numpy(p), "velocity": to_numpy(torch.stack([uc, vc], dim=-1))})
        check_finite(NAME, None, float(save_times[index]), **frames[-1])
    data = {k: np.stack([f[k] for f in frames], axis=1) for k in frames[0]}
    return Simulation(
        dataset_name=NAME, spatial_dims=("x", "y"), coordinates={"x": centres, "y": centres},
        time=save_times.astype(np.float32),
        fields=[WellField("pressure", data["pressure"]), WellField("velocity", data["velocity"], order=1),
                WellField("density", rho_np.astype(np.float32), time_varying=False),
                WellField("speed_of_sound", c_np.astype(np.float32), time_varying=False)],
        scalars=[],
        boundaries=axis_boundaries(("x", "y"), (n, n), {"x": "OPEN", "y": "WALL"}),
    )


def regime(resolution: int = MIN_RESOLUTION, n_steps: int = 60) -> Regime:
    return Regime(
        grid=f"{resolution}x{resolution}", box=f"{LENGTH:g}x{LENGTH:g}, open x, walls y",
        parameters=f"background density and sound speed {BACKGROUND[0]:g}-{BACKGROUND[1]:g}; 2-6 circular inclusions "
                   f"(density {INCLUSION_DENSITY[0]:g}-{INCLUSION_DENSITY[1]:g}, sound speed "
                   f"{INCLUSION_SPEED[0]:g}-{INCLUSION_SPEED[1]:g})",
        **horizon(T_END, n_steps),
        below_minimum=f"below {MIN_RESOLUTION}: pulses and smallest inclusions widened",
    )
