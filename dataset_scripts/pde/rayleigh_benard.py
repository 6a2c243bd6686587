"""`rayleigh_benard`: 2D Boussinesq convection between no-slip walls (hot bottom, cold top), periodic sideways.

Free-fall units, vorticity-streamfunction form:

    w_t + u . grad w = nu lap w + b_x,     b_t + u . grad b = kappa lap b,     lap psi = -w,  (u, v) = (psi_y, -psi_x)
    nu = sqrt(Pr / Ra),  kappa = 1 / sqrt(Ra Pr);  b = 1 at y = 0, b = 0 at y = 1;  psi = psi_y = 0 at the walls

x is Fourier (periodic, length 2), y second-order finite differences on nodes that include the walls; the wall
vorticity follows Thom's condition, the streamfunction comes from one banded solve per Fourier mode (precomputed
inverses), time stepping is SSP-RK3 with an advective and diffusive step limit. Pressure solves
lap p = -div(u . grad u) + b_y with the wall condition p_y = nu v_yy + b. Fields as in The Well: buoyancy, pressure
(t0), velocity (t1); constant scalars Rayleigh, Prandtl.

Resolved from 64 points per axis (`MIN_RESOLUTION`); on coarser grids the Rayleigh numbers shrink by
`(resolution / 64)^3` (the thermal boundary layer thins as Ra^-1/3, so this keeps its points across), and the files
store the Rayleigh numbers actually used. Without that, a 16-point grid at Ra 1e6 let the stable step shrink for 20
minutes before the buoyancy went non-finite; a `StepGuard` now stops any such run when the step collapses.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..well_writer import WellField, WellScalar, axis_boundaries
from .simulation import Regime, Simulation, StepGuard, check_finite, horizon, resolution_scale, to_numpy
from .spectral import wavenumbers

NAME = "rayleigh_benard"
LENGTH_X = 2.0
MIN_RESOLUTION = 64
RAYLEIGH = (1e5, 1e6)  # log-uniform
PRANDTL = (0.5, 2.0)
T_START, T_END = 5.0, 50.0  # saved from T_START (after the conduction phase), times stored from 0


def second_difference(n: int, dz: float) -> torch.Tensor:
    return (torch.diag(torch.full((n - 1,), 1.0), -1) - 2 * torch.eye(n) + torch.diag(torch.full((n - 1,), 1.0), 1)).double() / dz**2


class RayleighBenardSolver:
    """Batched over trajectories: `rayleigh [B]`, `prandtl [B]`; grid `nx` (periodic) by `nz` (walls included)."""

    def __init__(self, nx: int, nz: int, rayleigh: torch.Tensor, prandtl: torch.Tensor, device="cpu"):
        self.nx, self.nz = nx, nz
        self.dz = 1.0 / (nz - 1)
        self.kx = wavenumbers(nx, LENGTH_X, device, real=True)[:, None]  # [nk, 1]
        self.nu = torch.sqrt(prandtl / rayleigh)[:, None, None]
        self.kappa = (1 / torch.sqrt(rayleigh * prandtl))[:, None, None]
        self.diffusive_dt = 0.2 * self.dz**2 / torch.maximum(self.nu, self.kappa).reshape(-1)  # [B]
        k2 = self.kx[:, 0] ** 2
        interior = second_difference(nz - 2, self.dz).to(device)
        self.psi_solve = torch.linalg.inv(interior[None] - k2[:, None, None] * torch.eye(nz - 2, device=device, dtype=torch.float64))
        # Pressure: Neumann rows from ghost nodes; the k = 0 problem is singular (pressure up to a constant): pinv.
        full = second_difference(nz, self.dz).to(device)
        full[0, 1] = full[-1, -2] = 2 / self.dz**2
        self.p_solve = torch.linalg.pinv(full[None] - k2[:, None, None] * torch.eye(nz, device=device, dtype=torch.float64))

    # ------------------------------------------------------------------ derivatives ([B, nx, nz] real arrays)
    def d_x(self, f: torch.Tensor, order: int = 1) -> torch.Tensor:
        return torch.fft.irfft((1j * self.kx) ** order * torch.fft.rfft(f, dim=1), n=self.nx, dim=1)

    def d_z(self, f: torch.Tensor) -> torch.Tensor:
        return torch.gradient(f, spacing=self.dz, dim=2, edge_order=2)[0]

    def d_zz(self, f: torch.Tensor) -> torch.Tensor:
        out = torch.zeros_like(f)
        out[..., 1:-1] = (f[..., 2:] - 2 * f[..., 1:-1] + f[..., :-2]) / self.dz**2
        return out

    def streamfunction(self, omega: torch.Tensor) -> torch.Tensor:
        w_hat = torch.fft.rfft(omega[..., 1:-1], dim=1)  # [B, nk, nz-2]
        solve = self.psi_solve.to(w_hat.real.dtype)
        psi_hat = torch.complex(torch.einsum("kij,bkj->bki", solve, -w_hat.real), torch.einsum("kij,bkj->bki", solve, -w_hat.imag))
        psi = torch.zeros_like(omega)
        psi[..., 1:-1] = torch.fft.irfft(psi_hat, n=self.nx, dim=1)
        return psi

    def with_wall_vorticity(self, omega: torch.Tensor, psi: torch.Tensor) -> torch.Tensor:
        omega = omega.clone()
        omega[..., 0] = -2 * psi[..., 1] / self.dz**2  # Thom: no slip at the walls
        omega[..., -1] = -2 * psi[..., -2] / self.dz**2
        return omega

    def velocity(self, psi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        u = self.d_z(psi)
        u[..., 0] = u[..., -1] = 0.0
        return u, -self.d_x(psi)

    def rhs(self, omega: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        psi = self.streamfunction(omega)
        omega = self.with_wall_vorticity(omega, psi)
        u, v = self.velocity(psi)

        def transport(f, diffusivity):
            return -(u * self.d_x(f) + v * self.d_z(f)) + diffusivity * (self.d_x(f, 2) + self.d_zz(f))

        d_omega = transport(omega, self.nu) + self.d_x(b)
        d_b = transport(b, self.kappa)
        d_omega[..., 0] = d_omega[..., -1] = 0.0
        d_b[..., 0] = d_b[..., -1] = 0.0  # fixed wall temperatures
        return d_omega, d_b

    def step(self, omega: torch.Tensor, b: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
        k1 = self.rhs(omega, b)
        o1, b1 = omega + dt * k1[0], b + dt * k1[1]
        k2 = self.rhs(o1, b1)
        o2, b2 = 0.75 * omega + 0.25 * (o1 + dt * k2[0]), 0.75 * b + 0.25 * (b1 + dt * k2[1])
        k3 = self.rhs(o2, b2)
        return omega / 3 + 2 / 3 * (o2 + dt * k3[0]), b / 3 + 2 / 3 * (b2 + dt * k3[1])

    def stable_dt(self, omega: torch.Tensor) -> torch.Tensor:
        """`[B]`: each trajectory's advective (CFL 0.4) and diffusive step limit."""
        u, v = self.velocity(self.streamfunction(omega))
        speed = torch.maximum(u.abs().amax(dim=(1, 2)), v.abs().amax(dim=(1, 2))) + 1e-6
        return torch.minimum(0.4 * min(LENGTH_X / self.nx, self.dz) / speed, self.diffusive_dt)

    def fields(self, omega: torch.Tensor, b: torch.Tensor) -> dict[str, torch.Tensor]:
        psi = self.streamfunction(omega)
        u, v = self.velocity(psi)
        ux, uz, vx, vz = self.d_x(u), self.d_z(u), self.d_x(v), self.d_z(v)
        source = -(ux * ux + 2 * uz * vx + vz * vz) + self.d_z(b)
        wall_gradient = self.nu * self.d_zz_wall(v) + b  # p_y at the walls
        source = source.clone()
        source[..., 0] += 2 * wall_gradient[..., 0] / self.dz
        source[..., -1] -= 2 * wall_gradient[..., -1] / self.dz
        s_hat = torch.fft.rfft(source, dim=1)
        solve = self.p_solve
        p_hat = torch.complex(torch.einsum("kij,bkj->bki", solve, s_hat.real), torch.einsum("kij,bkj->bki", solve, s_hat.imag))
        pressure = torch.fft.irfft(p_hat, n=self.nx, dim=1)
        return {"buoyancy": b, "pressure": pressure, "velocity": torch.stack([u, v], dim=-1)}

    def d_zz_wall(self, f: torch.Tensor) -> torch.Tensor:
        """Second z-derivative with one-sided second-order stencils on the walls."""
        out = self.d_zz(f)
        out[..., 0] = (2 * f[..., 0] - 5 * f[..., 1] + 4 * f[..., 2] - f[..., 3]) / self.dz**2
        out[..., -1] = (2 * f[..., -1] - 5 * f[..., -2] + 4 * f[..., -3] - f[..., -4]) / self.dz**2
        return out


def initial_state(nx: int, nz: int, rng: np.random.Generator, batch: int, amplitude: float = 1e-2):
    """Conduction profile b = 1 - y plus small random perturbations that vanish on the walls; fluid at rest."""
    z = torch.linspace(0, 1, nz, dtype=torch.float64)
    noise = torch.tensor(rng.standard_normal((batch, nx, nz))) * torch.sin(math.pi * z)
    b = (1 - z).expand(batch, nx, nz) + amplitude * noise
    return torch.zeros(batch, nx, nz, dtype=torch.float64), b


def simulate(n_trajectories: int, resolution: int = 64, n_steps: int = 60, rng: np.random.Generator | None = None,
             device="cpu", t_start: float = T_START, t_end: float = T_END, on_frame=None) -> Simulation:
    rng = rng or np.random.default_rng(0)
    nx = nz = resolution
    rayleigh = np.exp(rng.uniform(np.log(RAYLEIGH[0]), np.log(RAYLEIGH[1]), n_trajectories))
    rayleigh = rayleigh * resolution_scale(resolution, MIN_RESOLUTION) ** 3
    prandtl = rng.uniform(*PRANDTL, n_trajectories)
    parameters = {"Rayleigh": rayleigh, "Prandtl": prandtl}
    guard = StepGuard(NAME, parameters)
    solver = RayleighBenardSolver(nx, nz, torch.tensor(rayleigh, device=device), torch.tensor(prandtl, device=device), device)
    omega, b = (t.to(device) for t in initial_state(nx, nz, rng, n_trajectories))
    save_times = np.linspace(t_start, t_end, n_steps)
    frames, t = [], 0.0
    for target in save_times:
        while t < target - 1e-12:
            dt = min(guard.step(solver.stable_dt(omega), t), target - t)
            omega, b = solver.step(omega, b, dt)
            t += dt
        if on_frame is not None:  # progress within a file
            on_frame()
        frames.append({k: to_numpy(v) for k, v in solver.fields(omega, b).items()})
        check_finite(NAME, parameters, t, **frames[-1])
    data = {k: np.stack([f[k] for f in frames], axis=1) for k in frames[0]}
    x = np.arange(nx) / nx * LENGTH_X
    y = np.linspace(0.0, 1.0, nz)
    return Simulation(
        dataset_name=NAME, spatial_dims=("x", "y"), coordinates={"x": x, "y": y},
        time=(save_times - t_start).astype(np.float32),
        fields=[WellField("buoyancy", data["buoyancy"]), WellField("pressure", data["pressure"]),
                WellField("velocity", data["velocity"], order=1)],
        scalars=[WellScalar("Rayleigh", rayleigh.astype(np.float32), sample_varying=True),
                 WellScalar("Prandtl", prandtl.astype(np.float32), sample_varying=True)],
        boundaries=axis_boundaries(("x", "y"), (nx, nz), {"x": "PERIODIC", "y": "WALL"}),
        simulation_parameters=("Rayleigh", "Prandtl"),
    )


def regime(resolution: int = MIN_RESOLUTION, n_steps: int = 60) -> Regime:
    return Regime(
        grid=f"{resolution}x{resolution}", box=f"{LENGTH_X:g}x1, periodic x, walls y",
        parameters=f"Rayleigh {RAYLEIGH[0]:.0e}-{RAYLEIGH[1]:.0e}, Prandtl {PRANDTL[0]:g}-{PRANDTL[1]:g}",
        **horizon(T_END, n_steps, T_START),
        below_minimum=f"below {MIN_RESOLUTION}: Rayleigh x (n/{MIN_RESOLUTION})^3",
    )
