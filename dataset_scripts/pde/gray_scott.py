"""`gray_scott_reaction_diffusion`: the Gray-Scott reaction-diffusion system in a periodic box.

    A_t = D_A lap A - A B^2 + F (1 - A),        B_t = D_B lap B + A B^2 - (F + k) B

Pseudo-spectral, integrating-factor RK4 (diffusion exact, step 2: against step 1 the fields differ by 3e-3 of their
spread at 64^2, at half the cost). D_A = 2e-5, D_B = 1e-5 as in The Well, on a box of side 0.5 (The Well's is 2 at
128^2; the smaller box keeps the patterns resolved from 32^2 on, `MIN_RESOLUTION`; coarser grids get a box shrunk by
`resolution / 32`, so a pattern keeps its points per wavelength). (F, k) pairs are drawn around regimes whose patterns
keep moving (mitosis, spirals, two chaotic ones); maze, coral, fingerprint, holes, worms and spots were dropped: they
freeze within the first half of the horizon, leaving most windows with nothing to predict. The moving regimes sit
near the edge of the trivial state, and from some seeds a pattern dies out (B uniform): such a trajectory is drawn
again (`simulate`). Initial state A = 1, B = 0 with random seeded patches. Fields A, B (t0);
constant scalars F, k.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..well_writer import WellField, WellScalar, axis_boundaries
from .simulation import Regime, Simulation, check_finite, describe_trajectory, horizon, resolution_scale, to_numpy
from .spectral import integrating_factor_rk4, spectral_grid

logger = logging.getLogger(__name__)

NAME = "gray_scott_reaction_diffusion"
LENGTH = 0.5
DIFFUSIVITY = (2e-5, 1e-5)
MIN_RESOLUTION = 32  # about four grid points per pattern wavelength in the 0.5 box
T_END = 3000.0
TIME_STEP = 2.0
DEAD_STD = 1e-3  # spatial std of B below which a pattern has died out
MAX_REDRAWS = 5
# (F, k) of pattern-forming regimes (Pearson 1993; Munafo's map). The Well's gliders (0.014, 0.054), bubbles
# (0.098, 0.057) and spirals (0.018, 0.051) decay to the trivial state A = 1, B = 0 from these initial conditions
# at this resolution, so nearby persistent regimes stand in for them.
REGIMES = {"mitosis": (0.0367, 0.0649), "spirals": (0.022, 0.051), "chaos": (0.026, 0.051), "pulsing": (0.03, 0.055)}


class GrayScottSolver:
    """Batched: `feed [B]`, `kill [B]`; state is the spectral (A, B) pair `[B, 2, n, n/2+1]`."""

    def __init__(self, n: int, feed: torch.Tensor, kill: torch.Tensor, device="cpu", diffusivity=DIFFUSIVITY,
                 length: float = LENGTH):
        self.n = n
        kx, ky = spectral_grid((n, n), (length, length), device)
        k2 = kx**2 + ky**2
        self.decay = torch.tensor(diffusivity, dtype=torch.float64, device=device)[None, :, None, None] * k2
        self.feed, self.kill = feed[:, None, None], kill[:, None, None]

    def nonlinear(self, state: torch.Tensor) -> torch.Tensor:
        a, b = torch.fft.irfft2(state, s=(self.n, self.n)).unbind(1)
        reaction = a * b * b
        da = -reaction + self.feed * (1 - a)
        db = reaction - (self.feed + self.kill) * b
        return torch.fft.rfft2(torch.stack([da, db], dim=1))

    def step(self, state: torch.Tensor, dt: float) -> torch.Tensor:
        return integrating_factor_rk4(state, dt, self.decay, self.nonlinear)

    def fields(self, state: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft2(state, s=(self.n, self.n))


def initial_fields(n: int, rng: np.random.Generator, batch: int) -> np.ndarray:
    """A = 1, B = 0, with 8-20 square patches of A = 0.5, B = 0.25 (periodic) and a little positive noise on B."""
    fields = np.zeros((batch, 2, n, n))
    fields[:, 0] = 1.0
    x = np.arange(n)
    for b in range(batch):
        for _ in range(rng.integers(8, 21)):
            cx, cy, r = rng.integers(0, n), rng.integers(0, n), rng.integers(max(2, n // 20), max(3, n // 8))
            dx = np.minimum(np.abs(x - cx), n - np.abs(x - cx))[:, None]
            dy = np.minimum(np.abs(x - cy), n - np.abs(x - cy))[None, :]
            patch = (dx <= r) & (dy <= r)
            fields[b, 0][patch] = 0.5
            fields[b, 1][patch] = 0.25
        fields[b, 1] += 0.02 * rng.random((n, n))
    return fields


def _integrate(solver: GrayScottSolver, fields: np.ndarray, save_times: np.ndarray, dt: float, device,
               parameters: dict, on_frame=None) -> np.ndarray:
    """Solve from `fields [B, 2, n, n]`, saving at `save_times`: `[B, T, 2, n, n]`."""
    state = torch.fft.rfft2(torch.tensor(fields, device=device))
    frames, t = [], 0.0
    for target in save_times:
        while t < target - 1e-9:
            step = min(dt, target - t)
            state = solver.step(state, step)
            t += step
        if on_frame is not None:  # progress within a file
            on_frame()
        frames.append(to_numpy(solver.fields(state)))
        check_finite(NAME, parameters, t, A=frames[-1][:, 0], B=frames[-1][:, 1])
    return np.stack(frames, axis=1)


def _draw_parameters(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """(F, k) of `count` trajectories: a regime each, jittered by 3% (F) and 1% (k)."""
    names = list(REGIMES)
    chosen = [REGIMES[names[i]] for i in rng.integers(0, len(names), count)]
    feed = np.array([f for f, _ in chosen]) * rng.uniform(0.97, 1.03, count)
    kill = np.array([k for _, k in chosen]) * rng.uniform(0.99, 1.01, count)
    return feed, kill


def simulate(n_trajectories: int, resolution: int = 64, n_steps: int = 60, rng: np.random.Generator | None = None,
             device="cpu", t_end: float = T_END, dt: float = TIME_STEP, on_frame=None) -> Simulation:
    """A trajectory whose pattern dies out (B uniform, spatial std below `DEAD_STD`: nothing left to predict, and a
    VRMSE with a zero denominator) is drawn again, parameters and patches, up to `MAX_REDRAWS` times; the files
    store the parameters of the trajectories kept. One still dead after that is kept with a warning that names it
    (on grids below `MIN_RESOLUTION`, whose boxes hold few pattern wavelengths, this happens)."""
    rng = rng or np.random.default_rng(0)
    n = resolution
    length = LENGTH * resolution_scale(n, MIN_RESOLUTION)
    save_times = np.linspace(0.0, t_end, n_steps)

    def solve(feed, kill, progress=None):
        solver = GrayScottSolver(n, torch.tensor(feed, device=device), torch.tensor(kill, device=device), device,
                                 length=length)
        return _integrate(solver, initial_fields(n, rng, len(feed)), save_times, dt, device,
                          {"F": feed, "k": kill}, progress)

    feed, kill = _draw_parameters(rng, n_trajectories)
    data = solve(feed, kill, on_frame)
    for attempt in range(MAX_REDRAWS + 1):
        dead = np.flatnonzero(data[:, :, 1].std(axis=(2, 3)).min(axis=1) < DEAD_STD)
        if not len(dead):
            break
        if attempt == MAX_REDRAWS:
            kept = "; ".join(describe_trajectory({"F": feed, "k": kill}, int(i)) for i in dead)
            logger.warning("%s: %d pattern(s) died out (B uniform) in %d draws on a %d-point grid and are kept: %s",
                           NAME, len(dead), MAX_REDRAWS + 1, n, kept)
            break
        feed[dead], kill[dead] = _draw_parameters(rng, len(dead))
        data[dead] = solve(feed[dead], kill[dead])
    coords = np.arange(n) / n * length
    return Simulation(
        dataset_name=NAME, spatial_dims=("x", "y"), coordinates={"x": coords, "y": coords},
        time=save_times.astype(np.float32),
        fields=[WellField("A", data[:, :, 0]), WellField("B", data[:, :, 1])],
        scalars=[WellScalar("F", feed.astype(np.float32), sample_varying=True),
                 WellScalar("k", kill.astype(np.float32), sample_varying=True)],
        boundaries=axis_boundaries(("x", "y"), (n, n), {"x": "PERIODIC", "y": "PERIODIC"}),
        simulation_parameters=("F", "k"),
    )


def regime(resolution: int = MIN_RESOLUTION, n_steps: int = 60) -> Regime:
    feeds = [f for f, _ in REGIMES.values()]
    kills = [k for _, k in REGIMES.values()]
    return Regime(
        grid=f"{resolution}x{resolution}", box=f"{LENGTH:g}x{LENGTH:g}, periodic",
        parameters=f"F {min(feeds):g}-{max(feeds):g}, k {min(kills):g}-{max(kills):g} ({len(REGIMES)} regimes)",
        **horizon(T_END, n_steps),
        below_minimum=f"below {MIN_RESOLUTION}: box x n/{MIN_RESOLUTION}",
    )
