"""`supernova_explosion_64`-shaped: a supernova blast wave in a cooling, inhomogeneous interstellar medium, in 3D.

Compressible Euler equations (gamma 5/3) with optically thin radiative cooling (`compressible.CompressibleSolver`):

    E_t + div((E + p) u) = -rho^2 Lambda(T),   Lambda(T) = LAMBDA0 Z T^-0.7 above the ambient temperature T0,

a power law like the interstellar cooling curve between 1e5 and 1e7 K, proportional to the metallicity Z; gas never
cools below T0 (the medium is in thermal balance at T0, its heating not modelled). Code units: box side 1, explosion
energy 1, temperature p / rho. The explosion deposits its energy as heat, with `Msun` units of ejecta mass, in a
sphere of radius 2.5 cells at a random point near the centre. The medium has mean density `rho0` with lognormal
fluctuations (0.3 in ln rho, wavenumbers 2-6) in pressure balance at mean temperature `T0`, so the shell is not
spherical. While cooling is slow the shock follows the Sedov-Taylor law R = 1.15 (E t^2 / rho0)^(1/5); when the
shell's cooling time falls below its age (earlier for high Z and rho0) it cools, thins and slows (the snowplow phase).

Open (zero-gradient outflow) boundaries on all faces; MUSCL-HLL finite volumes, SSP-RK2, CFL 0.4, cooling by exact
exponential decay over each step. Varied (as The Well's constant scalars): `rho0` 0.5-2, `Z` 0.1-2 (log-uniform),
`T0` 0.01-0.05, `Msun` 0.5e-3-5e-3 (ejecta mass). Fields as in The Well: density, pressure, temperature (t0),
velocity (t1). A shock-capturing scheme needs no minimum grid (`MIN_RESOLUTION` is the generator's floor); the step
is watched by a `StepGuard`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..well_writer import WellField, WellScalar, axis_boundaries
from .compressible import CompressibleSolver, conserved
from .simulation import Regime, Simulation, StepGuard, check_finite, horizon, to_numpy

NAME = "supernova_explosion_64"
GAMMA = 5.0 / 3.0
MIN_RESOLUTION = 8
ENERGY = 1.0
LAMBDA0 = 10.0
SEDOV_XI = 1.15  # R = xi (E t^2 / rho)^(1/5) for gamma = 5/3 (Sedov 1959; xi = 1.1517)
DENSITY = (0.5, 2.0)
METALLICITY = (0.1, 2.0)
AMBIENT_TEMPERATURE = (0.01, 0.05)
EJECTA_MASS = (0.5e-3, 5e-3)
FLUCTUATION = 0.3  # of ln(density) in the ambient medium
T_END = 0.06


def cooling_rate(metallicity: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`(rho, T) -> rate [B, *space]`: rho^2 Lambda(T) over the internal energy rho T / (gamma - 1)."""

    def rate(rho: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        z = metallicity.view(-1, *[1] * (rho.ndim - 1))
        t = temperature.clamp_min(1e-6)
        return (GAMMA - 1) * LAMBDA0 * z * rho * t.pow(-1.7)

    return rate


def ambient_density(n: int, rng: np.random.Generator, rho0: float, fluctuation: float = FLUCTUATION) -> np.ndarray:
    """Lognormal density `[n, n, n]` with mean `rho0`, its log a Gaussian field at wavenumbers 2-6."""
    if fluctuation == 0:
        return np.full((n, n, n), rho0)
    k = np.fft.fftfreq(n, 1.0 / n)
    K = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    spectrum = ((K >= 2) & (K <= 6)).astype(float)
    field = np.fft.ifftn(np.fft.fftn(rng.standard_normal((n, n, n))) * spectrum).real
    log_rho = fluctuation * field / field.std()
    rho = np.exp(log_rho)
    return rho0 * rho / rho.mean()


def initial_state(n: int, rng: np.random.Generator, rho0: np.ndarray, t0: np.ndarray, ejecta: np.ndarray,
                  fluctuation: float = FLUCTUATION, centre: np.ndarray | None = None):
    """Density `[B, n, n, n]`, velocity `[B, 3, n, n, n]`, pressure: the medium plus the explosion's hot sphere."""
    dx = 1.0 / n
    x = (np.arange(n) + 0.5) * dx
    X, Y, Z = np.meshgrid(x, x, x, indexing="ij")
    rows = []
    for b in range(len(rho0)):
        rho = ambient_density(n, rng, rho0[b], fluctuation)
        p = np.full_like(rho, rho0[b] * t0[b])
        c = rng.uniform(0.4, 0.6, 3) if centre is None else centre
        inside = (X - c[0]) ** 2 + (Y - c[1]) ** 2 + (Z - c[2]) ** 2 <= (2.5 * dx) ** 2
        volume = inside.sum() * dx**3
        rho = rho + inside * ejecta[b] / volume
        p = np.where(inside, (GAMMA - 1) * ENERGY / volume, p)
        rows.append((rho, np.zeros((3, n, n, n)), p))
    return tuple(torch.tensor(np.stack(part)) for part in zip(*rows))


def shock_radius(rho: torch.Tensor, centre, rho0: float) -> float:
    """Radius of the outermost shell whose mean density is above 1.2 `rho0` (the shock front), for `rho [n, n, n]`."""
    n = rho.shape[-1]
    x = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    r = torch.sqrt((x[:, None, None] - centre[0]) ** 2 + (x[None, :, None] - centre[1]) ** 2
                   + (x[None, None, :] - centre[2]) ** 2)
    edges = torch.arange(0, 0.5, 0.5 / n)
    bins = torch.bucketize(r.flatten(), edges)
    means = torch.zeros(len(edges) + 1, dtype=torch.float64).index_add_(0, bins, rho.flatten().double())
    counts = torch.zeros(len(edges) + 1, dtype=torch.float64).index_add_(0, bins, torch.ones_like(r.flatten()))
    profile = means[1:-1] / counts[1:-1].clamp_min(1)
    above = (profile > 1.2 * rho0).nonzero()
    return float(edges[int(above.max())] + 0.25 / n) if len(above) else 0.0


def simulate(n_trajectories: int, resolution: int = 32, n_steps: int = 36, rng: np.random.Generator | None = None,
             device="cpu", t_end: float = T_END, on_frame=None) -> Simulation:
    rng = rng or np.random.default_rng(0)
    n = resolution
    rho0 = np.exp(rng.uniform(*np.log(DENSITY), n_trajectories))
    metallicity = np.exp(rng.uniform(*np.log(METALLICITY), n_trajectories))
    t0 = rng.uniform(*AMBIENT_TEMPERATURE, n_trajectories)
    ejecta = rng.uniform(*EJECTA_MASS, n_trajectories)
    parameters = {"Msun": ejecta, "rho0": rho0, "Z": metallicity, "T0": t0}
    guard = StepGuard(NAME, parameters)
    solver = CompressibleSolver((n, n, n), 1.0 / n, torch.full((n_trajectories,), GAMMA, dtype=torch.float64, device=device),
                                periodic=(False, False, False), cooling=cooling_rate(torch.tensor(metallicity, device=device)),
                                t_floor=torch.tensor(t0, device=device))
    rho, velocity, p = (part.to(device) for part in initial_state(n, rng, rho0, t0, ejecta))
    U = conserved(rho, velocity, p, solver.gamma)
    save_times = np.linspace(0.0, t_end, n_steps)
    frames = []
    for t, rho, velocity, p in solver.frames(U, save_times, guard, on_frame=on_frame):
        frames.append({"density": to_numpy(rho), "pressure": to_numpy(p), "temperature": to_numpy(p / rho),
                       "velocity": to_numpy(velocity.movedim(1, -1))})
        check_finite(NAME, parameters, t, **frames[-1])
    data = {k: np.stack([f[k] for f in frames], axis=1) for k in frames[0]}
    x = (np.arange(n) + 0.5) / n
    return Simulation(
        dataset_name=NAME, spatial_dims=("x", "y", "z"), coordinates={a: x for a in "xyz"},
        time=save_times.astype(np.float32),
        fields=[WellField("density", data["density"]), WellField("pressure", data["pressure"]),
                WellField("temperature", data["temperature"]), WellField("velocity", data["velocity"], order=1)],
        scalars=[WellScalar(name, value.astype(np.float32), sample_varying=True) for name, value in parameters.items()],
        boundaries=axis_boundaries(("x", "y", "z"), (n, n, n), {a: "OPEN" for a in "xyz"}),
        simulation_parameters=tuple(parameters),
    )


def regime(resolution: int = 32, n_steps: int = 36) -> Regime:
    return Regime(
        grid=f"{resolution}^3", box="1^3, open",
        parameters=f"rho0 {DENSITY[0]:g}-{DENSITY[1]:g}, Z {METALLICITY[0]:g}-{METALLICITY[1]:g}, T0 "
                   f"{AMBIENT_TEMPERATURE[0]:g}-{AMBIENT_TEMPERATURE[1]:g}, ejecta {EJECTA_MASS[0]:g}-{EJECTA_MASS[1]:g} "
                   "(code units, energy 1)",
        **horizon(T_END, n_steps),
        below_minimum="none needed (shock capturing)",
    )
