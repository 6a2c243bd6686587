"""`shear_flow`: 2D incompressible Navier-Stokes with a passive tracer in a periodic box.

Vorticity form, pseudo-spectral with 2/3 dealiasing, integrating-factor RK4 (diffusion exact, advection RK4):

    w_t + u . grad w = (1/Re) lap w,      s_t + u . grad s = 1/(Re Sc) lap s,      lap psi = -w,  u = (psi_y, -psi_x)

Two tanh shear layers (velocity -1 / +1) with a small sinusoidal perturbation roll up into Kelvin-Helmholtz
vortices; the tracer marks the middle band. Pressure solves lap p = -div(u . grad u) = 2 (u_x v_y - u_y v_x).
Fields as in The Well: tracer, pressure (t0), velocity (t1); constant scalars Reynolds, Schmidt.

Resolved from 64 points per axis (`MIN_RESOLUTION`: the thinnest initial layer spans two grid spacings). On coarser
grids the layers widen and the Reynolds numbers shrink by `resolution / 64`; the files store the Reynolds numbers
actually used. The horizon (t = 8) ends while the vortices still move, and Reynolds numbers start at 1000: with
t = 12 and Reynolds from 500, most trajectories had mixed their tracer to 1e-4 of its initial variance and nearly
stopped (`python -m pdefm.data.the_well info` shows it per quarter of the trajectory).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..well_writer import WellField, WellScalar, axis_boundaries
from .simulation import Regime, Simulation, check_finite, horizon, resolution_scale, to_numpy
from .spectral import dealias_mask, integrating_factor_rk4, spectral_grid

NAME = "shear_flow"
LENGTH = 1.0
MIN_RESOLUTION = 64
REYNOLDS = (1000.0, 3000.0)  # log-uniform
SCHMIDT = (0.5, 2.0)
LAYER_WIDTH = (0.035, 0.06)
MAX_LAYER_WIDTH = 0.125  # widened layers on coarse grids stay well apart (they sit 0.5 apart)
T_END = 12.0  # 45 frames 2x further apart than 0.2.0's 60 over t = 0-8; the flow is nearly still after t = 8


class ShearFlowSolver:
    """Batched solver: `nu [B]` viscosities and `kappa [B]` tracer diffusivities, on an `n x n` grid."""

    def __init__(self, n: int, nu: torch.Tensor, kappa: torch.Tensor, device="cpu"):
        self.n = n
        self.kx, self.ky = spectral_grid((n, n), (LENGTH, LENGTH), device)
        self.k2 = self.kx**2 + self.ky**2
        self.inv_k2 = torch.where(self.k2 > 0, 1.0 / self.k2.clamp_min(1e-30), torch.zeros_like(self.k2))
        self.dealias = dealias_mask((n, n), device)
        self.diffusion = torch.stack([nu, kappa], dim=1)[:, :, None, None] * self.k2  # [B, 2, n, n/2+1]

    def velocity(self, w_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        psi_hat = w_hat * self.inv_k2
        u = torch.fft.irfft2(1j * self.ky * psi_hat, s=(self.n, self.n))
        v = torch.fft.irfft2(-1j * self.kx * psi_hat, s=(self.n, self.n))
        return u, v

    def nonlinear(self, state: torch.Tensor) -> torch.Tensor:
        """-(u . grad) of vorticity and tracer, dealiased. `state [B, 2, n, n/2+1]` spectral (w, s)."""
        u, v = self.velocity(state[:, 0])
        grad_x = torch.fft.irfft2(1j * self.kx * state, s=(self.n, self.n))
        grad_y = torch.fft.irfft2(1j * self.ky * state, s=(self.n, self.n))
        advection = u[:, None] * grad_x + v[:, None] * grad_y
        return -torch.fft.rfft2(advection) * self.dealias

    def step(self, state: torch.Tensor, dt: float) -> torch.Tensor:
        return integrating_factor_rk4(state, dt, self.diffusion, self.nonlinear)

    def fields(self, state: torch.Tensor) -> dict[str, torch.Tensor]:
        """Physical fields: tracer, pressure, velocity [B, n, n, 2]."""
        u, v = self.velocity(state[:, 0])
        u_hat, v_hat = torch.fft.rfft2(u), torch.fft.rfft2(v)
        ux = torch.fft.irfft2(1j * self.kx * u_hat, s=(self.n, self.n))
        uy = torch.fft.irfft2(1j * self.ky * u_hat, s=(self.n, self.n))
        vx = torch.fft.irfft2(1j * self.kx * v_hat, s=(self.n, self.n))
        vy = torch.fft.irfft2(1j * self.ky * v_hat, s=(self.n, self.n))
        rhs = 2 * (ux * vy - uy * vx)
        pressure = torch.fft.irfft2(-torch.fft.rfft2(rhs) * self.inv_k2, s=(self.n, self.n))
        tracer = torch.fft.irfft2(state[:, 1], s=(self.n, self.n))
        return {"tracer": tracer, "pressure": pressure, "velocity": torch.stack([u, v], dim=-1)}


def initial_state(n: int, rng: np.random.Generator, batch: int, device="cpu", widen: float = 1.0) -> torch.Tensor:
    """Two shear layers at y = 1/4 and 3/4 with sinusoidal perturbations, layer widths times `widen` (coarse
    grids); spectral (w, s)."""
    coords = torch.arange(n, dtype=torch.float64, device=device) / n * LENGTH
    x, y = torch.meshgrid(coords, coords, indexing="ij")
    states = []
    for _ in range(batch):
        width = min(rng.uniform(*LAYER_WIDTH) * widen, MAX_LAYER_WIDTH)
        u = torch.tanh((y - 0.25) / width) - torch.tanh((y - 0.75) / width) - 1
        tracer = 0.5 * (torch.tanh((y - 0.25) / width) - torch.tanh((y - 0.75) / width))
        v = torch.zeros_like(u)
        for layer in (0.25, 0.75):
            for mode in rng.choice([1, 2, 3, 4], size=2, replace=False):
                v = v + rng.uniform(0.005, 0.03) * torch.sin(2 * math.pi * (mode * x + rng.uniform())) * torch.exp(
                    -((y - layer) ** 2) / (2 * (2 * width) ** 2)
                )
        # Vorticity w = v_x - u_y, taken spectrally so the velocity field is exactly divergence-free.
        kx, ky = spectral_grid((n, n), (LENGTH, LENGTH), device)
        w_hat = 1j * kx * torch.fft.rfft2(v) - 1j * ky * torch.fft.rfft2(u)
        states.append(torch.stack([w_hat, torch.fft.rfft2(tracer)]))
    return torch.stack(states)


def simulate(n_trajectories: int, resolution: int = 64, n_steps: int = 45, rng: np.random.Generator | None = None,
             device="cpu", t_end: float = T_END, on_frame=None) -> Simulation:
    rng = rng or np.random.default_rng(0)
    n = resolution
    scale = resolution_scale(n, MIN_RESOLUTION)
    reynolds = np.exp(rng.uniform(np.log(REYNOLDS[0]), np.log(REYNOLDS[1]), n_trajectories)) * scale
    schmidt = rng.uniform(*SCHMIDT, n_trajectories)
    parameters = {"Reynolds": reynolds, "Schmidt": schmidt}
    nu = torch.tensor(1 / reynolds, device=device)
    solver = ShearFlowSolver(n, nu, nu / torch.tensor(schmidt, device=device), device)
    state = initial_state(n, rng, n_trajectories, device, widen=1 / scale)
    save_times = np.linspace(0.0, t_end, n_steps)
    dt_max = 0.25 * (LENGTH / n) / 2.0  # CFL 0.25 for speeds up to 2
    frames = []
    t = 0.0
    for target in save_times:
        while t < target - 1e-12:
            dt = min(dt_max, target - t)
            state = solver.step(state, dt)
            t += dt
        if on_frame is not None:  # progress within a file
            on_frame()
        frames.append({k: to_numpy(v) for k, v in solver.fields(state).items()})
        check_finite(NAME, parameters, t, **frames[-1])
    data = {k: np.stack([f[k] for f in frames], axis=1) for k in frames[0]}
    coords = np.arange(n) / n * LENGTH
    return Simulation(
        dataset_name=NAME,
        spatial_dims=("x", "y"),
        coordinates={"x": coords, "y": coords},
        time=save_times.astype(np.float32),
        fields=[WellField("tracer", data["tracer"]), WellField("pressure", data["pressure"]),
                WellField("velocity", data["velocity"], order=1)],
        scalars=[WellScalar("Reynolds", reynolds.astype(np.float32), sample_varying=True),
                 WellScalar("Schmidt", schmidt.astype(np.float32), sample_varying=True)],
        boundaries=axis_boundaries(("x", "y"), (n, n), {"x": "PERIODIC", "y": "PERIODIC"}),
        simulation_parameters=("Reynolds", "Schmidt"),
    )


def regime(resolution: int = MIN_RESOLUTION, n_steps: int = 45) -> Regime:
    return Regime(
        grid=f"{resolution}x{resolution}", box=f"{LENGTH:g}x{LENGTH:g}, periodic",
        parameters=f"Reynolds {REYNOLDS[0]:g}-{REYNOLDS[1]:g}, Schmidt {SCHMIDT[0]:g}-{SCHMIDT[1]:g}",
        **horizon(T_END, n_steps),
        below_minimum=f"below {MIN_RESOLUTION}: Reynolds x n/{MIN_RESOLUTION}, layers widened",
    )
