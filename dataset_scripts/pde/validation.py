"""Measurements of the four systems of other physics against known results: the tests assert on them
(`tests/data/test_pde.py`) and `python bench/solver_validation.py` prints them for docs/mini_well.md.

Each returns the measured quantity, not a verdict: the tolerance lives with the test that states it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from . import compressible, helmholtz_staircase, supernova, viscoelastic


def cooling_against_power_law(rho: float = 1.0, metallicity: float = 0.3, t_end: float = 0.1, dt: float = 1e-3) -> dict:
    """Still uniform gas under the supernova's cooling, stepped by the solver: dT/dt = -(gamma-1) LAMBDA0 Z rho T^-0.7
    has T^1.7 falling linearly in time. Returns the temperature reached, the exact one, and the temperature after
    far longer (held at the floor 0.01)."""
    floor = 0.01
    solver = compressible.CompressibleSolver((4, 4), 0.25, torch.tensor([supernova.GAMMA], dtype=torch.float64),
                                             (True, True), cooling=supernova.cooling_rate(torch.tensor([metallicity])),
                                             t_floor=torch.tensor([floor], dtype=torch.float64))
    uniform = lambda value: torch.full((1, 4, 4), value, dtype=torch.float64)  # noqa: E731
    U = compressible.conserved(uniform(rho), torch.zeros(1, 2, 4, 4, dtype=torch.float64), uniform(rho), solver.gamma)
    for _ in range(round(t_end / dt)):
        U = solver.step(U, dt)
    rho_now, velocity, p = compressible.primitives(U, solver.gamma)
    reached = float((p / rho_now).mean())
    exact = (1.0 - 1.7 * (supernova.GAMMA - 1) * supernova.LAMBDA0 * metallicity * rho * t_end) ** (1 / 1.7)
    mass_kept = bool(torch.allclose(rho_now, uniform(rho))) and float(velocity.abs().max()) == 0.0
    for _ in range(2000):
        U = solver.step(U, dt)
    rho_now, _, p = compressible.primitives(U, solver.gamma)
    return {"temperature": reached, "exact": exact, "relative_error": abs(reached / exact - 1),
            "mass_and_momentum_kept": mass_kept, "late_temperature": float((p / rho_now).max()), "floor": floor}


def sedov_taylor(n: int = 32, times=(0.02, 0.04, 0.06), rho0: float = 1.0) -> dict:
    """A blast in a uniform medium without cooling: the measured shock radius at `times` over Sedov-Taylor's
    1.15 (E t^2 / rho0)^(1/5), and the fitted growth exponent (0.4)."""
    rho, velocity, p = supernova.initial_state(n, np.random.default_rng(0), np.array([rho0]), np.array([1e-3]),
                                               np.array([0.0]), fluctuation=0.0, centre=np.array([0.5, 0.5, 0.5]))
    solver = compressible.CompressibleSolver((n, n, n), 1 / n, torch.tensor([supernova.GAMMA], dtype=torch.float64),
                                             (False, False, False))
    U, t, radii = compressible.conserved(rho, velocity, p, solver.gamma), 0.0, []
    for target in times:
        while t < target - 1e-12:
            dt = min(0.4 * solver.dx / float(solver.max_speed(U).max()), target - t)
            U, t = solver.step(U, dt), t + dt
        radii.append(supernova.shock_radius(compressible.primitives(U, solver.gamma)[0][0], (0.5, 0.5, 0.5), rho0))
    sedov = [supernova.SEDOV_XI * (supernova.ENERGY * time_**2 / rho0) ** 0.2 for time_ in times]
    return {"radius_over_sedov": [r / s for r, s in zip(radii, sedov)],
            "exponent": float(np.polyfit(np.log(times), np.log(radii), 1)[0])}


def oldroyd_b_laminar_error(wi: float, n: int = 32, t_end: float = 40.0) -> float:
    """From rest and C = I, the forced Oldroyd-B flow's largest deviation from its closed-form laminar state at
    `t_end`, per field over the field's largest value (the worst field)."""
    solver = viscoelastic.ViscoelasticSolver(n, [1.0], [wi], [0.8], [2e-3], lmax=None)
    fields = torch.zeros(1, 5, n, n, dtype=torch.float64)
    fields[:, [1, 3, 4]] = 1
    state, t = solver.spectral(fields), 0.0
    while t < t_end:
        dt = float(solver.stable_dt(state).min())
        state, t = solver.step(state, dt), t + dt
    laminar = viscoelastic.laminar_state(n, [wi], [2e-3])
    return float(((solver.real(state) - laminar).abs().amax(dim=(0, 2, 3)) / laminar.abs().amax(dim=(0, 2, 3))).max())


def departure_from_laminar(wi: float, re: float = 3.0, beta: float = 0.85, n: int = 32,
                           times=(5.0, 45.0)) -> list[float]:
    """The rms of the vorticity's x-dependent part (zero on the laminar state) at `times`, from the FENE-P laminar
    state plus 1% noise: growing where the laminar flow is unstable."""
    solver = viscoelastic.ViscoelasticSolver(n, [re], [wi], [beta], [2e-3], [70.0])
    fields = viscoelastic.laminar_state(n, [wi], [2e-3])
    fields[:, 0] += 0.01 * torch.randn(1, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    state, t, out = solver.spectral(fields) * solver.dealias, 0.0, []
    for target in times:
        while t < target:
            dt = min(float(solver.stable_dt(state).min()), target - t)
            state, t = solver.step(state, dt), t + dt
        omega = solver.real(state)[0, 0]
        out.append(float((omega - omega.mean(0, keepdim=True)).pow(2).mean().sqrt()))
    return out


def hankel_source(k: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """(i/4) H0^(1)(k r): the outgoing solution of lap u + k^2 u = -delta."""
    return 0.25j * (torch.special.bessel_j0(k * r) + 1j * torch.special.bessel_y0(k * r))


def helmholtz_errors(n: int, wavelength: float = 0.25) -> dict:
    """Relative L2 errors of the Helmholtz solver on a ring 0.1-0.33 around a point source at the box's centre:
    in free space (layers on all sides) against the Hankel function, and above a sound-hard floor at y = 0.25 against
    the source plus its image."""
    dx, omega = 1 / n, torch.tensor([2 * math.pi / wavelength], dtype=torch.float64)
    centre = (0.5, 0.5)
    source = torch.tensor(helmholtz_staircase.point_source(n, centre, dx))[None]
    x = (torch.arange(n, dtype=torch.float64) + 0.5) * dx
    r = torch.sqrt((x[:, None] - centre[0]) ** 2 + (x[None, :] - centre[1]) ** 2)
    free = helmholtz_staircase.solve_helmholtz(omega, torch.zeros(1, n, n, dtype=torch.bool), source, dx,
                                               pml=(True, True, True, True))[0]
    wall = torch.zeros(1, n, n, dtype=torch.bool)
    wall[0, :, : n // 4] = True
    hard = helmholtz_staircase.solve_helmholtz(omega, wall, source, dx)[0]
    image = torch.sqrt((x[:, None] - centre[0]) ** 2 + x[None, :] ** 2)
    ring = (r > 0.1) & (r < 0.33)

    def relative(u, exact, where):
        return float((u - exact)[where].abs().norm() / exact[where].abs().norm())

    return {"free": relative(free, hankel_source(omega, r), ring),
            "wall": relative(hard, hankel_source(omega, r) + hankel_source(omega, image), ring & ~wall[0])}
