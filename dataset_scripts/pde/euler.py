"""`euler_multi_quadrants`: 2D compressible Euler equations from four-quadrant Riemann initial states.

Finite volumes on conserved variables (density, x/y momentum, total energy): MUSCL reconstruction of primitive
variables with minmod limiting, HLL fluxes, SSP-RK2 in time, CFL 0.4. Each file holds either periodic or open
(zero-gradient outflow) boundaries on both axes; trajectories draw gamma from The Well's values and random states
(density, velocity, pressure) in four quadrants around a random split point. Fields as in The Well: energy, density,
pressure (t0), momentum (t1); constant scalar gamma.

A shock-capturing scheme needs no minimum grid: on coarse grids the same Riemann problems are solved with
wider shocks (`MIN_RESOLUTION` is the generator's floor). The step is watched by a `StepGuard` all the same.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..well_writer import WellField, WellScalar, axis_boundaries
from .compressible import TINY, minmod
from .simulation import Regime, Simulation, StepGuard, check_finite, horizon, to_numpy

NAME = "euler_multi_quadrants"
GAMMAS = (1.13, 1.22, 1.3, 1.33, 1.365, 1.4, 1.404, 1.453, 1.597, 1.76)
MIN_RESOLUTION = 8
T_END = 1.5  # 45 frames 3.4x further apart than 0.2.0's 60 over t = 0-0.6 (The Well's horizon); open files settle later


def primitives(U: torch.Tensor, gamma: torch.Tensor):
    rho = U[:, 0]
    u, v = U[:, 1] / rho, U[:, 2] / rho
    p = (gamma - 1) * (U[:, 3] - 0.5 * rho * (u * u + v * v))
    return rho, u, v, p


def conserved(rho, u, v, p, gamma):
    return torch.stack([rho, rho * u, rho * v, p / (gamma - 1) + 0.5 * rho * (u * u + v * v)], dim=1)


def hll_flux_x(left: torch.Tensor, right: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """HLL flux across faces normal to the first spatial axis; `left`, `right` primitive states `[B, 4, ...]`."""

    def flux(w):
        rho, u, v, p = w.unbind(1)
        energy = p / (gamma - 1) + 0.5 * rho * (u * u + v * v)
        return torch.stack([rho * u, rho * u * u + p, rho * u * v, u * (energy + p)], dim=1), conserved(rho, u, v, p, gamma)

    f_left, u_left = flux(left)
    f_right, u_right = flux(right)
    c_left = torch.sqrt(gamma * left[:, 3].clamp_min(TINY) / left[:, 0].clamp_min(TINY))
    c_right = torch.sqrt(gamma * right[:, 3].clamp_min(TINY) / right[:, 0].clamp_min(TINY))
    s_left = torch.minimum(left[:, 1] - c_left, right[:, 1] - c_right).unsqueeze(1)
    s_right = torch.maximum(left[:, 1] + c_left, right[:, 1] + c_right).unsqueeze(1)
    middle = (s_right * f_left - s_left * f_right + s_left * s_right * (u_right - u_left)) / (s_right - s_left)
    return torch.where(s_left >= 0, f_left, torch.where(s_right <= 0, f_right, middle))


class EulerSolver:
    """Batched finite-volume solver on an `n x n` grid of spacing `dx`; `gamma [B]`; `periodic` per solver."""

    def __init__(self, n: int, gamma: torch.Tensor, periodic: bool, length: float = 1.0):
        self.n, self.dx, self.periodic = n, length / n, periodic
        self.gamma = gamma[:, None, None]

    def _pad(self, w: torch.Tensor) -> torch.Tensor:
        return F.pad(w, (2, 2, 2, 2), mode="circular" if self.periodic else "replicate")

    def _divergence_x(self, w: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
        """Flux difference along axis 2 of padded primitives `w [B, 4, n+4, m]` -> `[B, 4, n, m]`."""
        slope = minmod(w[:, :, 1:-1] - w[:, :, :-2], w[:, :, 2:] - w[:, :, 1:-1])  # cells 1..n+2
        left = (w[:, :, 1:-1] + 0.5 * slope)[:, :, :-1]  # right edge of cells 1..n+1
        right = (w[:, :, 1:-1] - 0.5 * slope)[:, :, 1:]  # left edge of cells 2..n+2
        flux = hll_flux_x(left, right, gamma)  # faces between cells (1,2) .. (n+1, n+2): n+1 faces
        return (flux[:, :, 1:] - flux[:, :, :-1]) / self.dx

    def rhs(self, U: torch.Tensor) -> torch.Tensor:
        w = torch.stack(primitives(U, self.gamma), dim=1)
        w = self._pad(w)
        dx_term = self._divergence_x(w[..., 2:-2], self.gamma)
        # y direction: swap the axes and the velocity components, reuse the x flux.
        wy = w[:, [0, 2, 1, 3]].transpose(2, 3)[..., 2:-2]
        dy_term = self._divergence_x(wy, self.gamma.transpose(1, 2))[:, [0, 2, 1, 3]].transpose(2, 3)
        return -(dx_term + dy_term)

    def max_speed(self, U: torch.Tensor) -> torch.Tensor:
        """`[B]`: each trajectory's largest signal speed."""
        rho, u, v, p = primitives(U, self.gamma)
        c = torch.sqrt(self.gamma * p.clamp_min(TINY) / rho.clamp_min(TINY))
        return torch.maximum(u.abs(), v.abs()).add(c).amax(dim=(1, 2))

    def step(self, U: torch.Tensor, dt: float) -> torch.Tensor:
        stage = U + dt * self.rhs(U)
        return 0.5 * (U + stage + dt * self.rhs(stage))


def quadrant_states(n: int, rng: np.random.Generator, batch: int, gamma: np.ndarray) -> torch.Tensor:
    coords = (np.arange(n) + 0.5) / n
    x, y = np.meshgrid(coords, coords, indexing="ij")
    states = []
    for b in range(batch):
        x0, y0 = rng.uniform(0.3, 0.7, 2)
        rho = np.empty((n, n))
        u, v, p = np.empty_like(rho), np.empty_like(rho), np.empty_like(rho)
        for qx in (False, True):
            for qy in (False, True):
                mask = ((x >= x0) == qx) & ((y >= y0) == qy)
                rho[mask] = rng.uniform(0.1, 2.0)
                p[mask] = rng.uniform(0.1, 2.0)
                u[mask], v[mask] = rng.uniform(-0.75, 0.75, 2)
        states.append(np.stack([rho, u, v, p]))
    w = torch.tensor(np.stack(states))
    return conserved(*w.unbind(1), torch.tensor(gamma)[:, None, None])


def simulate(n_trajectories: int, resolution: int = 64, n_steps: int = 45, rng: np.random.Generator | None = None,
             device="cpu", t_end: float = T_END, periodic: bool | None = None, on_frame=None) -> Simulation:
    rng = rng or np.random.default_rng(0)
    n = resolution
    periodic = bool(rng.integers(0, 2)) if periodic is None else periodic
    gamma = rng.choice(GAMMAS, n_trajectories)
    solver = EulerSolver(n, torch.tensor(gamma, device=device), periodic)
    U = quadrant_states(n, rng, n_trajectories, gamma).to(device)
    parameters = {"gamma": gamma}
    guard = StepGuard(NAME, parameters)
    save_times = np.linspace(0.0, t_end, n_steps)
    frames, t = [], 0.0
    for target in save_times:
        while t < target - 1e-12:
            dt = min(guard.step(0.4 * solver.dx / solver.max_speed(U), t), target - t)
            U = solver.step(U, dt)
            t += dt
        rho, u, v, p = primitives(U, solver.gamma)
        if on_frame is not None:  # progress within a file
            on_frame()
        frames.append({"energy": to_numpy(U[:, 3]), "density": to_numpy(rho), "pressure": to_numpy(p),
                       "momentum": to_numpy(U[:, 1:3].movedim(1, -1))})
        check_finite(NAME, parameters, t, **frames[-1])
    data = {k: np.stack([f[k] for f in frames], axis=1) for k in frames[0]}
    coords = (np.arange(n) + 0.5) / n
    bc = "PERIODIC" if periodic else "OPEN"
    return Simulation(
        dataset_name=NAME, spatial_dims=("x", "y"), coordinates={"x": coords, "y": coords},
        time=save_times.astype(np.float32),
        fields=[WellField("energy", data["energy"]), WellField("density", data["density"]),
                WellField("pressure", data["pressure"]), WellField("momentum", data["momentum"], order=1)],
        scalars=[WellScalar("gamma", gamma.astype(np.float32), sample_varying=True)],
        boundaries=axis_boundaries(("x", "y"), (n, n), {"x": bc, "y": bc}),
        simulation_parameters=("gamma",),
    )


def regime(resolution: int = 64, n_steps: int = 45) -> Regime:
    return Regime(
        grid=f"{resolution}x{resolution}", box="1x1, periodic or open per file",
        parameters=f"gamma {min(GAMMAS):g}-{max(GAMMAS):g} ({len(GAMMAS)} values)",
        **horizon(T_END, n_steps),
        below_minimum="none needed (shock capturing)",
    )
