"""`MHD_64`-shaped 3D magnetohydrodynamics: incompressible, periodic box, pseudo-spectral.

    u_t = P[u x curl u + curl B x B] + nu lap u,     B_t = curl(u x B) + eta lap B,     rho_t + u . grad rho = D lap rho

P projects onto divergence-free fields (it removes the pressure), so div u = 0 exactly and div B = 0 is kept by the
curl form. 2/3 dealiasing, integrating-factor RK4, CFL 0.3 on flow plus Alfven speed. Initial fields: random
solenoidal u and B perturbations peaked at wavenumbers 2-4, plus a mean field B0 along x with |B0| = 1/Ma (so Ma is
the Alfvenic Mach number of the unit-rms flow). `density` is a passively advected density perturbation around 1:
The Well's MHD_64 is compressible; this incompressible version keeps its fields (density t0, magnetic_field and
velocity t1) and its Ma scalar. Periodic box of side 2 pi; nu = eta = D = 1/Reynolds.

Resolved from 32 points per axis (`MIN_RESOLUTION`); coarser grids get Reynolds numbers shrunk by `resolution / 32`
(stored as used). The step is watched by a `StepGuard`.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..well_writer import WellField, WellScalar, axis_boundaries
from .simulation import Regime, Simulation, StepGuard, check_finite, horizon, resolution_scale, to_numpy
from .spectral import dealias_mask, integrating_factor_rk4, spectral_grid

NAME = "MHD_64"
LENGTH = 2 * math.pi
MIN_RESOLUTION = 32
ALFVEN_MACH = (0.5, 2.0)
REYNOLDS = (50.0, 150.0)
T_END = 28.0  # 36 frames 16x further apart than 0.2.0's 60 over t = 0-3 (docs/mini_well.md)


class MHDSolver:
    """Batched: state `[B, 7, n, n, n/2+1]` spectral (u_xyz, B_xyz, rho); `nu [B]` (eta = D = nu)."""

    def __init__(self, n: int, nu: torch.Tensor, device="cpu"):
        self.n = n
        self.k = spectral_grid((n, n, n), (LENGTH,) * 3, device)
        self.k2 = sum(k * k for k in self.k)
        self.inv_k2 = torch.where(self.k2 > 0, 1 / self.k2.clamp_min(1e-30), torch.zeros_like(self.k2))
        self.dealias = dealias_mask((n, n, n), device)
        self.decay = nu[:, None, None, None, None] * self.k2

    def real(self, f_hat: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfftn(f_hat, s=(self.n,) * 3, dim=(-3, -2, -1))

    def spectral(self, f: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfftn(f, dim=(-3, -2, -1))

    def curl(self, v_hat: torch.Tensor) -> torch.Tensor:
        kx, ky, kz = self.k
        x, y, z = v_hat.unbind(1)
        return 1j * torch.stack([ky * z - kz * y, kz * x - kx * z, kx * y - ky * x], dim=1)

    def project(self, v_hat: torch.Tensor) -> torch.Tensor:
        """Remove the gradient part: v - k (k . v) / k^2."""
        k_dot_v = sum(k * v_hat[:, i] for i, k in enumerate(self.k))
        return v_hat - torch.stack([k * k_dot_v * self.inv_k2 for k in self.k], dim=1)

    @staticmethod
    def cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.linalg.cross(a, b, dim=1)

    def nonlinear(self, state: torch.Tensor) -> torch.Tensor:
        u_hat, b_hat, rho_hat = state[:, 0:3], state[:, 3:6], state[:, 6:7]
        u, b = self.real(u_hat), self.real(b_hat)
        vorticity, current = self.real(self.curl(u_hat)), self.real(self.curl(b_hat))
        du = self.project(self.spectral(self.cross(u, vorticity) + self.cross(current, b)))
        db = self.curl(self.spectral(self.cross(u, b)))
        grad_rho = self.real(torch.cat([1j * k * rho_hat for k in self.k], dim=1))
        drho = -self.spectral((u * grad_rho).sum(dim=1, keepdim=True))
        return torch.cat([du, db, drho], dim=1) * self.dealias

    def step(self, state: torch.Tensor, dt: float) -> torch.Tensor:
        return integrating_factor_rk4(state, dt, self.decay, self.nonlinear)

    def max_speed(self, state: torch.Tensor) -> torch.Tensor:
        """`[B]`: each trajectory's largest flow speed plus largest Alfven speed."""
        fields = self.real(state[:, :6])
        return fields[:, :3].norm(dim=1).amax(dim=(1, 2, 3)) + fields[:, 3:6].norm(dim=1).amax(dim=(1, 2, 3))


def random_solenoidal(solver: MHDSolver, rng: np.random.Generator, batch: int, rms: np.ndarray) -> torch.Tensor:
    """Random divergence-free field with energy at |k| in [2, 4], scaled to the given rms per sample."""
    n = solver.n
    noise = torch.tensor(rng.standard_normal((batch, 3, n, n, n)))
    k_norm = torch.sqrt(solver.k2)
    shell = ((k_norm >= 2) & (k_norm <= 4)).to(torch.float64)
    field = solver.real(solver.project(solver.spectral(noise) * shell))
    field = field / field.pow(2).sum(1).mean(dim=(1, 2, 3)).sqrt()[:, None, None, None, None]
    return field * torch.tensor(rms)[:, None, None, None, None]


def simulate(n_trajectories: int, resolution: int = 32, n_steps: int = 36, rng: np.random.Generator | None = None,
             device="cpu", t_end: float = T_END, on_frame=None) -> Simulation:
    rng = rng or np.random.default_rng(0)
    n = resolution
    alfven_mach = rng.uniform(*ALFVEN_MACH, n_trajectories)
    reynolds = rng.uniform(*REYNOLDS, n_trajectories) * resolution_scale(n, MIN_RESOLUTION)
    parameters = {"Ma": alfven_mach, "Reynolds": reynolds}
    guard = StepGuard(NAME, parameters)
    solver = MHDSolver(n, torch.tensor(1 / reynolds, device=device), device)
    u = random_solenoidal(solver, rng, n_trajectories, np.ones(n_trajectories))
    b = random_solenoidal(solver, rng, n_trajectories, 0.5 * np.ones(n_trajectories))
    b[:, 0] += torch.tensor(1 / alfven_mach)[:, None, None, None]
    rho = 0.1 * random_solenoidal(solver, rng, n_trajectories, np.ones(n_trajectories))[:, :1]
    state = solver.spectral(torch.cat([u, b, rho], dim=1).to(device))
    save_times = np.linspace(0.0, t_end, n_steps)
    dx = LENGTH / n
    frames, t = [], 0.0
    for target in save_times:
        while t < target - 1e-12:
            dt = min(guard.step(0.3 * dx / solver.max_speed(state), t), target - t)
            state = solver.step(state, dt)
            t += dt
        fields = solver.real(state)
        if on_frame is not None:  # progress within a file
            on_frame()
        frames.append({"density": to_numpy(1.0 + fields[:, 6]), "magnetic_field": to_numpy(fields[:, 3:6].movedim(1, -1)),
                       "velocity": to_numpy(fields[:, 0:3].movedim(1, -1))})
        check_finite(NAME, parameters, t, **frames[-1])
    data = {k: np.stack([f[k] for f in frames], axis=1) for k in frames[0]}
    coords = np.arange(n) / n * LENGTH
    return Simulation(
        dataset_name=NAME, spatial_dims=("x", "y", "z"), coordinates={a: coords for a in "xyz"},
        time=save_times.astype(np.float32),
        fields=[WellField("density", data["density"]), WellField("magnetic_field", data["magnetic_field"], order=1),
                WellField("velocity", data["velocity"], order=1)],
        scalars=[WellScalar("Ma", alfven_mach.astype(np.float32), sample_varying=True),
                 WellScalar("Reynolds", reynolds.astype(np.float32), sample_varying=True)],
        boundaries=axis_boundaries(("x", "y", "z"), (n, n, n), {a: "PERIODIC" for a in "xyz"}),
        simulation_parameters=("Ma", "Reynolds"),
    )


def regime(resolution: int = MIN_RESOLUTION, n_steps: int = 36) -> Regime:
    return Regime(
        grid=f"{resolution}^3", box="(2 pi)^3, periodic",
        parameters=f"Alfven Mach {ALFVEN_MACH[0]:g}-{ALFVEN_MACH[1]:g}, Reynolds {REYNOLDS[0]:g}-{REYNOLDS[1]:g}, "
                   "incompressible",
        **horizon(T_END, n_steps),
        below_minimum=f"below {MIN_RESOLUTION}: Reynolds x n/{MIN_RESOLUTION}",
    )
