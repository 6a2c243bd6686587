"""`turbulent_radiative_layer_2D`: a shear layer between hot dilute and cold dense gas with radiative cooling.

Compressible Euler equations with an optically thin cooling term (`compressible.CompressibleSolver`, gamma 5/3):

    E_t + div((E + p) u) = -e rate(rho, T),   rate = (1 / tcool) (rho / rho_mix) (T_mix / T) exp(-ln(T / T_mix)^2 / (2 s^2))

i.e. an energy loss rho^2 Lambda(T) with a lognormal cooling curve Lambda peaked at the mixed temperature
T_mix = sqrt(T_hot T_cold), as in the setups of Fielding et al. (2020, ApJL 894 L24) that The Well's dataset comes
from; `tcool` is the cooling time of mixed gas (T_mix, pressure equilibrium), The Well's varied parameter, drawn
log-uniformly over its range 0.03-3.16. The hot (T = 1) and cold (T = 1/100) phases barely cool (the curve is
`s = 0.6` wide in ln T and the cold phase is held at its floor T_cold), so the layer's intermediate gas radiates:
turbulent mixing by the Kelvin-Helmholtz instability feeds cooling, which condenses hot gas onto the cold layer.

Box 1 x 1, x periodic (along the flow), y open (zero-gradient outflow); cold gas (density 100) below y = 0 moving
at -v/2, hot gas (density 1) above moving at +v/2, pressure 1 throughout, shear speed v = 0.5-0.9 of the hot sound
speed; the interface is a tanh of width 1.5 cells, seeded with random vertical velocity modes 1-4 and noise (peak
`SEED_AMPLITUDE` = 5% of v). MUSCL-HLL finite volumes, SSP-RK2, CFL 0.4, cooling by exact exponential decay over each step.

Fields as in The Well: density, pressure (t0), velocity (t1); constant scalar tcool. A shock-capturing scheme needs no
minimum grid (`MIN_RESOLUTION` is the generator's floor); the step is watched by a `StepGuard`.
"""

from __future__ import annotations

from typing import Callable

import math

import numpy as np
import torch

from ..well_writer import WellField, WellScalar, axis_boundaries
from .compressible import CompressibleSolver, conserved
from .simulation import Regime, Simulation, StepGuard, check_finite, horizon, to_numpy

NAME = "turbulent_radiative_layer_2D"
GAMMA = 5.0 / 3.0
MIN_RESOLUTION = 8
CONTRAST = 100.0  # cold over hot density (The Well's chi = 100)
T_HOT, PRESSURE = 1.0, 1.0
T_COLD = T_HOT / CONTRAST
T_MIX = math.sqrt(T_HOT * T_COLD)
CURVE_WIDTH = 0.6  # of the lognormal cooling curve, in ln T
TCOOL = (0.03, 3.16)
SHEAR_MACH = (0.5, 0.9)  # shear speed over the hot gas's sound speed
T_END = 15.0
SEED_AMPLITUDE = 0.05  # of the vertical velocity seed, over the shear speed


def cooling_rate(tcool: torch.Tensor) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """`(rho, T) -> rate [B, *space]` for cooling times `tcool [B]`."""
    rho_mix = PRESSURE / T_MIX

    def rate(rho: torch.Tensor, temperature: torch.Tensor) -> torch.Tensor:
        t = temperature.clamp_min(1e-6)
        shape = torch.exp(-torch.log(t / T_MIX) ** 2 / (2 * CURVE_WIDTH**2))
        return (rho / rho_mix) * (T_MIX / t) * shape / tcool.view(-1, *[1] * (rho.ndim - 1))

    return rate


def initial_state(n: int, rng: np.random.Generator, shear: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Density `[B, n, n]`, velocity `[B, 2, n, n]`, pressure `[B, n, n]` of the seeded layer; x first axis."""
    dx = 1.0 / n
    x = (np.arange(n) + 0.5) * dx
    y = (np.arange(n) + 0.5) * dx - 0.5
    X, Y = np.meshgrid(x, y, indexing="ij")
    profile = 0.5 * (1 + np.tanh(Y / (1.5 * dx)))  # 0 in the cold gas, 1 in the hot
    rho = CONTRAST + (1.0 - CONTRAST) * profile
    rows = []
    for v in shear:
        u = v * (profile - 0.5)
        seed = np.zeros_like(X)
        for mode in range(1, 5):
            seed += rng.normal() * np.sin(2 * math.pi * mode * X + rng.uniform(0, 2 * math.pi))
        seed += 0.5 * rng.standard_normal(X.shape)
        w = SEED_AMPLITUDE * v * seed / np.abs(seed).max() * np.exp(-(Y / (4 * dx)) ** 2)
        rows.append((rho, np.stack([u, w]), np.full_like(X, PRESSURE)))
    return tuple(torch.tensor(np.stack(part)) for part in zip(*rows))


def simulate(n_trajectories: int, resolution: int = 64, n_steps: int = 60, rng: np.random.Generator | None = None,
             device="cpu", t_end: float = T_END, on_frame=None, tcool: np.ndarray | None = None) -> Simulation:
    rng = rng or np.random.default_rng(0)
    n = resolution
    tcool = np.exp(rng.uniform(np.log(TCOOL[0]), np.log(TCOOL[1]), n_trajectories)) if tcool is None else tcool
    shear = rng.uniform(*SHEAR_MACH, n_trajectories) * math.sqrt(GAMMA * PRESSURE)  # hot density is 1
    parameters = {"tcool": tcool, "shear": shear}
    guard = StepGuard(NAME, parameters)
    gamma = torch.full((n_trajectories,), GAMMA, dtype=torch.float64, device=device)
    solver = CompressibleSolver((n, n), 1.0 / n, gamma, periodic=(True, False),
                                cooling=cooling_rate(torch.tensor(tcool, device=device)),
                                t_floor=torch.full((n_trajectories,), T_COLD, dtype=torch.float64, device=device))
    rho, velocity, p = (part.to(device) for part in initial_state(n, rng, shear))
    U = conserved(rho, velocity, p, solver.gamma)
    save_times = np.linspace(0.0, t_end, n_steps)
    frames = []
    for t, rho, velocity, p in solver.frames(U, save_times, guard, on_frame=on_frame):
        frames.append({"density": to_numpy(rho), "pressure": to_numpy(p), "velocity": to_numpy(velocity.movedim(1, -1))})
        check_finite(NAME, parameters, t, **frames[-1])
    data = {k: np.stack([f[k] for f in frames], axis=1) for k in frames[0]}
    x = (np.arange(n) + 0.5) / n
    return Simulation(
        dataset_name=NAME, spatial_dims=("x", "y"), coordinates={"x": x, "y": x - 0.5},
        time=save_times.astype(np.float32),
        fields=[WellField("density", data["density"]), WellField("pressure", data["pressure"]),
                WellField("velocity", data["velocity"], order=1)],
        scalars=[WellScalar("tcool", tcool.astype(np.float32), sample_varying=True)],
        boundaries=axis_boundaries(("x", "y"), (n, n), {"x": "PERIODIC", "y": "OPEN"}),
        simulation_parameters=("tcool",),
    )


def regime(resolution: int = 64, n_steps: int = 60) -> Regime:
    return Regime(
        grid=f"{resolution}x{resolution}", box="1x1, periodic x, open y",
        parameters=f"tcool {TCOOL[0]:g}-{TCOOL[1]:g} (log-uniform), density contrast {CONTRAST:g}, shear Mach "
                   f"{SHEAR_MACH[0]:g}-{SHEAR_MACH[1]:g}",
        **horizon(T_END, n_steps),
        below_minimum="none needed (shock capturing)",
    )
