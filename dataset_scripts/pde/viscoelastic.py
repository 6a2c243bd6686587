"""`viscoelastic_instability`-shaped: 2D Kolmogorov flow of a FENE-P fluid, pseudo-spectral, doubly periodic.

Incompressible flow (vorticity form) coupled to the polymer conformation tensor C (its in-plane part C_xx, C_xy =
C_yx, C_yy and the out-of-plane c_zz), in units of the laminar speed and the box's length over 2 pi:

    omega_t + u . grad omega = (beta / Re) lap omega + (1 - beta) / (Re Wi) curl div T + curl F
    C_t + u . grad C = (grad u)^T C + C grad u - (f C - I) / Wi + epsilon lap C,     (c_zz: no stretching)
    T = f C - I,   f = 1 / (1 - (tr C - 3) / Lmax^2),   tr C = C_xx + C_yy + c_zz,   F = F0 sin(n y) x

with n = 2 forcing periods in the box [0, 2 pi)^2 and F0 set so that the laminar state has amplitude 1 for Oldroyd-B
(Lmax -> infinity), where it is known in closed form (`laminar_state`: u = sin(n y), C_xy = a cos(n y),
C_xx = 1 + Wi n a + b cos(2 n y), a = n Wi / (1 + epsilon n^2 Wi), b = n a Wi / (1 + 4 epsilon n^2 Wi)).

Why this configuration: The Well's dataset is 2D channel flow (walls in y) in elasto-inertial turbulence, which
needs its 512^2 grid; its periodic cousin here keeps every field, tensor order and constant scalar (Re, Wi, beta,
epsilon, Lmax) and keeps the physics that makes the dataset hard: at Re 2.5-3.5 the Newtonian Kolmogorov flow
returns to the laminar state (measured at Re 3 and 3.5; it departs from Re 4.5 on), but at Wi 8.5-11 the polymer
stress destabilises it (Boffetta et al. 2005, J. Fluid Mech. 523, 161; the elastic turbulence of Berti et al. 2008,
Phys. Rev. E 77, 055306): stretched polymer sheets and their breakdown (docs/decisions.md has the regimes tried).
Each trajectory starts from the laminar state plus a random large-scale vorticity perturbation (`PERTURBATION`),
runs a spin-up `T_SPINUP` that is not saved, then saves frames over `T_END` while the instability grows and
saturates.

Numerics: 2/3 dealiasing, integrating-factor RK4 (viscosity and polymer diffusion exact), time step from the flow's
and the elastic wave's speed (CFL 0.6: RK4 is stable to about 1.3 with 2/3 dealiasing) and the largest velocity
gradient; the step is watched by a `StepGuard`.
Resolved from 32 points per axis (`MIN_RESOLUTION`); coarser grids get epsilon raised by `(32 / resolution)^2`.
Fields as in The Well: pressure, c_zz (t0), velocity (t1), C (t2, symmetric: C_yx = C_xy).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..well_writer import WellField, WellScalar, axis_boundaries
from .simulation import Regime, Simulation, StepGuard, check_finite, horizon, resolution_scale, to_numpy
from .spectral import dealias_mask, integrating_factor_rk4, spectral_grid

NAME = "viscoelastic_instability"
LENGTH = 2 * math.pi
MIN_RESOLUTION = 32
FORCING_WAVENUMBER = 2
REYNOLDS = (2.5, 3.5)
WEISSENBERG = (8.5, 11.0)
BETA = (0.82, 0.9)
EPSILON = 2e-3
LMAX = (50.0, 100.0)
T_SPINUP = 80.0
PERTURBATION = 0.3  # rms of the initial vorticity perturbation (the laminar vorticity's rms is sqrt(2))
T_END = 118.0  # 60 frames 2 apart: at 1 apart the stencil scored 0.42 of persistence (docs/mini_well.md)


def forcing_amplitude(re, wi, beta, epsilon, n: int = FORCING_WAVENUMBER):
    """F0 that holds the Oldroyd-B laminar state u = sin(n y) (all arguments broadcast)."""
    a = n * wi / (1 + epsilon * n * n * wi)
    return beta / re * n * n + (1 - beta) / (re * wi) * a * n


class ViscoelasticSolver:
    """Batched: state `[B, 5, n, n/2+1]` spectral (omega, C_xx, C_xy, C_yy, c_zz); parameters `[B]` tensors.
    `lmax=None` is Oldroyd-B (f = 1)."""

    def __init__(self, n: int, re, wi, beta, epsilon, lmax=None, device="cpu"):
        self.n = n
        as_column = lambda v: torch.as_tensor(v, dtype=torch.float64, device=device).reshape(-1, 1, 1)  # noqa: E731
        self.re, self.wi, self.beta, self.epsilon = (as_column(v) for v in (re, wi, beta, epsilon))
        self.lmax2 = None if lmax is None else as_column(lmax) ** 2
        self.polymer = (1 - self.beta) / (self.re * self.wi)  # the polymer stress's weight in the momentum equation
        self.kx, self.ky = spectral_grid((n, n), (LENGTH, LENGTH), device)
        self.k2 = self.kx**2 + self.ky**2
        self.inv_k2 = torch.where(self.k2 > 0, 1 / self.k2.clamp_min(1e-30), torch.zeros_like(self.k2))
        self.dealias = dealias_mask((n, n), device)
        viscous = (self.beta / self.re).unsqueeze(1) * self.k2
        diffusive = self.epsilon.unsqueeze(1) * self.k2
        self.decay = torch.cat([viscous, diffusive.expand(-1, 4, -1, -1)], dim=1)
        y = torch.arange(n, dtype=torch.float64, device=device) / n * LENGTH
        curl_forcing = -forcing_amplitude(self.re, self.wi, self.beta, self.epsilon) * FORCING_WAVENUMBER * torch.cos(
            FORCING_WAVENUMBER * y)[None, None, :]  # curl of F0 sin(n y) x: -dF_x/dy
        self.curl_forcing_hat = self.spectral(curl_forcing.expand(-1, n, n))

    def real(self, f_hat: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(f_hat, s=(self.n, self.n))

    def spectral(self, f: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft2(f)

    def velocity_hat(self, omega_hat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        psi = omega_hat * self.inv_k2  # lap psi = -omega
        return 1j * self.ky * psi, -1j * self.kx * psi

    def peterlin(self, cxx, cyy, czz) -> torch.Tensor:
        if self.lmax2 is None:
            return torch.ones_like(cxx)
        return self.lmax2 / (self.lmax2 + 3 - (cxx + cyy + czz)).clamp_min(1e-6)  # The Well's FENE-P form

    def stress(self, cxx, cxy, cyy, czz) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """T = f C - I in-plane (T_xx, T_xy, T_yy) and the Peterlin function f, from real conformation components."""
        f = self.peterlin(cxx, cyy, czz)
        return f * cxx - 1, f * cxy, f * cyy - 1, f

    def nonlinear(self, state: torch.Tensor) -> torch.Tensor:
        omega_hat, c_hat = state[:, 0], state[:, 1:]
        u_hat, v_hat = self.velocity_hat(omega_hat)
        u, v = self.real(u_hat), self.real(v_hat)
        ux, uy = self.real(1j * self.kx * u_hat), self.real(1j * self.ky * u_hat)
        vx = self.real(1j * self.kx * v_hat)
        vy = -ux
        fields = self.real(torch.cat([omega_hat.unsqueeze(1), c_hat], dim=1))
        gx, gy = self.real(1j * self.kx * state), self.real(1j * self.ky * state)
        advection = u.unsqueeze(1) * gx + v.unsqueeze(1) * gy
        cxx, cxy, cyy, czz = fields[:, 1], fields[:, 2], fields[:, 3], fields[:, 4]
        txx, txy, tyy, f = self.stress(cxx, cxy, cyy, czz)
        stress = self.spectral(torch.stack([txx, txy, tyy], dim=1))
        curl_div = self.kx * self.ky * (stress[:, 0] - stress[:, 2]) + (self.ky**2 - self.kx**2) * stress[:, 1]
        d_omega = -self.spectral(advection[:, 0]) + self.polymer * curl_div + self.curl_forcing_hat
        relax = 1 / self.wi
        d_c = torch.stack([
            2 * (ux * cxx + uy * cxy) - relax * txx,
            uy * cyy + vx * cxx - relax * txy,
            2 * (vx * cxy + vy * cyy) - relax * tyy,
            -relax * (f * czz - 1),
        ], dim=1) - advection[:, 1:]
        return torch.cat([d_omega.unsqueeze(1), self.spectral(d_c)], dim=1) * self.dealias

    def step(self, state: torch.Tensor, dt: float) -> torch.Tensor:
        return integrating_factor_rk4(state, dt, self.decay, self.nonlinear)

    def stable_dt(self, state: torch.Tensor, cfl: float = 0.6) -> torch.Tensor:
        """`[B]`: CFL on flow plus elastic wave speed, and 0.2 over the largest velocity gradient."""
        u_hat, v_hat = self.velocity_hat(state[:, 0])
        u, v = self.real(u_hat), self.real(v_hat)
        fields = self.real(state[:, 1:])
        f = self.peterlin(fields[:, 0], fields[:, 2], fields[:, 3])
        elastic = torch.sqrt(self.polymer * (f * (fields[:, 0] + fields[:, 2])).clamp_min(0))
        speed = (u.abs() + v.abs() + elastic).amax(dim=(1, 2))
        gradient = torch.stack([self.real(1j * k * w) for k in (self.kx, self.ky) for w in (u_hat, v_hat)], 1).abs()
        return torch.minimum(cfl * (LENGTH / self.n) / speed, 0.2 / gradient.amax(dim=(1, 2, 3)))

    def pressure(self, state: torch.Tensor) -> torch.Tensor:
        """`[B, n, n]` from div of the momentum equation: lap p = -d_i d_j (u_i u_j) + (1-beta)/(Re Wi) d_i d_j T_ij."""
        u_hat, v_hat = self.velocity_hat(state[:, 0])
        u, v = self.real(u_hat), self.real(v_hat)
        fields = self.real(state[:, 1:])
        txx, txy, tyy, _ = self.stress(*fields.unbind(1))
        sxx, sxy, syy = (self.spectral(x) for x in (u * u - self.polymer * txx, u * v - self.polymer * txy,
                                                     v * v - self.polymer * tyy))
        # lap p = -d_i d_j S_ij  ->  -k^2 p = k_i k_j S_ij
        p_hat = -(self.kx**2 * sxx + 2 * self.kx * self.ky * sxy + self.ky**2 * syy) * self.inv_k2 * self.dealias
        return self.real(p_hat)


def laminar_state(n: int, wi, epsilon, device="cpu") -> torch.Tensor:
    """Real `[B, 5, n, n]` Oldroyd-B laminar fields (omega, C_xx, C_xy, C_yy, c_zz) for parameters `[B]`."""
    wi = torch.as_tensor(wi, dtype=torch.float64, device=device).reshape(-1, 1, 1)
    epsilon = torch.as_tensor(epsilon, dtype=torch.float64, device=device).reshape(-1, 1, 1)
    k = FORCING_WAVENUMBER
    y = (torch.arange(n, dtype=torch.float64, device=device) / n * LENGTH)[None, None, :].expand(-1, n, n)
    a = k * wi / (1 + epsilon * k * k * wi)
    b = k * a * wi / (1 + 4 * epsilon * k * k * wi)
    omega = -k * torch.cos(k * y)  # -du/dy of u = sin(k y)
    cxx = 1 + wi * a * k + b * torch.cos(2 * k * y)
    cxy = a * torch.cos(k * y)
    ones = torch.ones_like(cxx)
    return torch.stack([omega.expand_as(cxx), cxx, cxy, ones, ones], dim=1)


def simulate(n_trajectories: int, resolution: int = 64, n_steps: int = 60, rng: np.random.Generator | None = None,
             device="cpu", t_end: float = T_END, on_frame=None, t_spinup: float = T_SPINUP) -> Simulation:
    rng = rng or np.random.default_rng(0)
    n = resolution
    re = rng.uniform(*REYNOLDS, n_trajectories)
    wi = rng.uniform(*WEISSENBERG, n_trajectories)
    beta = rng.uniform(*BETA, n_trajectories)
    epsilon = np.full(n_trajectories, EPSILON / resolution_scale(n, MIN_RESOLUTION) ** 2)
    lmax = rng.uniform(*LMAX, n_trajectories)
    parameters = {"Re": re, "Wi": wi, "beta": beta, "epsilon": epsilon, "Lmax": lmax}
    guard = StepGuard(NAME, parameters)
    solver = ViscoelasticSolver(n, re, wi, beta, epsilon, lmax, device)
    fields = laminar_state(n, wi, epsilon, device)
    # Keep the laminar start inside FENE-P's bound (tr C < Lmax^2 + 3) should a regime's Oldroyd-B state exceed it.
    fields[:, 1:4] = fields[:, 1:4].clamp(max=torch.as_tensor(lmax**2 / 3, device=device).view(-1, 1, 1, 1))
    noise = torch.tensor(rng.standard_normal((n_trajectories, n, n)), device=device)
    low = (solver.k2 > 0) & (solver.k2 <= 16)
    perturbation = solver.real(solver.spectral(noise) * low)
    fields[:, 0] += PERTURBATION * perturbation / perturbation.std(dim=(1, 2), keepdim=True)
    state = solver.spectral(fields) * solver.dealias
    save_times = t_spinup + np.linspace(0.0, t_end, n_steps)
    frames, t = [], 0.0
    for target in save_times:
        while t < target - 1e-12:
            dt = min(guard.step(solver.stable_dt(state), t), target - t)
            state = solver.step(state, dt)
            t += dt
        u_hat, v_hat = solver.velocity_hat(state[:, 0])
        c = solver.real(state[:, 1:])
        tensor = torch.stack([torch.stack([c[:, 0], c[:, 1]], -1), torch.stack([c[:, 1], c[:, 2]], -1)], -2)
        if on_frame is not None:  # progress within a file
            on_frame()
        frames.append({"pressure": to_numpy(solver.pressure(state)), "c_zz": to_numpy(c[:, 3]),
                       "velocity": to_numpy(torch.stack([solver.real(u_hat), solver.real(v_hat)], -1)),
                       "C": to_numpy(tensor)})
        check_finite(NAME, parameters, t, **frames[-1])
    data = {k: np.stack([f[k] for f in frames], axis=1) for k in frames[0]}
    coords = np.arange(n) / n * LENGTH
    return Simulation(
        dataset_name=NAME, spatial_dims=("x", "y"), coordinates={"x": coords, "y": coords},
        time=(save_times - t_spinup).astype(np.float32),
        fields=[WellField("pressure", data["pressure"]), WellField("c_zz", data["c_zz"]),
                WellField("velocity", data["velocity"], order=1), WellField("C", data["C"], order=2, symmetric=True)],
        scalars=[WellScalar(name, value.astype(np.float32), sample_varying=True) for name, value in parameters.items()],
        boundaries=axis_boundaries(("x", "y"), (n, n), {"x": "PERIODIC", "y": "PERIODIC"}),
        simulation_parameters=tuple(parameters),
    )


def regime(resolution: int = 64, n_steps: int = 60) -> Regime:
    return Regime(
        grid=f"{resolution}x{resolution}", box="(2 pi)^2, periodic, Kolmogorov forcing sin(2y)",
        parameters=f"Re {REYNOLDS[0]:g}-{REYNOLDS[1]:g}, Wi {WEISSENBERG[0]:g}-{WEISSENBERG[1]:g}, beta "
                   f"{BETA[0]:g}-{BETA[1]:g}, epsilon {EPSILON:g}, Lmax {LMAX[0]:g}-{LMAX[1]:g} (FENE-P)",
        **horizon(T_END, n_steps),
        below_minimum=f"below {MIN_RESOLUTION}: epsilon x ({MIN_RESOLUTION}/n)^2",
    )
