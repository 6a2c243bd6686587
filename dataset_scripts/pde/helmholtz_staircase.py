"""`helmholtz_staircase`: a time-harmonic acoustic wave scattered by a staircase-shaped sound-hard boundary.

The complex amplitude u(x) of the pressure p = Re[u e^{-i omega t}] solves the Helmholtz equation

    lap u + (omega / c)^2 u = -delta(x - x_s)   (c = 1),   du/dn = 0 on the staircase,   outgoing elsewhere,

for a point source at x_s above a staircase along the bottom of the box (a periodic run of steps rising to the
right, then dropping: step widths, heights and counts drawn per trajectory). The open sides (left, right, top) end
in perfectly matched layers (complex coordinate stretching s = 1 + i sigma / omega, sigma quadratic over 8 cells of
64) that absorb the outgoing wave. Discretisation: second-order finite volumes on the cell grid (the staircase's
faces carry no flux: sound-hard), solved directly by block-tridiagonal elimination along x (one dense solve per
column, batched over trajectories). The solution is normalised to unit rms over the air outside the layers and
stored as The Well stores it: pressure_re = Re[u e^{-i omega t}], pressure_im = Im[u e^{-i omega t}] over the saved
times, with the constant field `mask` (1 inside the staircase) and the constant scalar `omega`.

The system is linear and its time dependence a rotation at omega, so one step is exactly predictable from omega. The
frames are 0.12 apart, so omega dt spans 2.0-4.8 radians over the drawn frequencies (beyond pi the sampled wave
seems to turn backwards; below 2 pi no trajectory looks still). No spacing makes one step hard for a linear stencil:
every frame is an eigenfunction of the discrete Laplacian with eigenvalue -omega^2, so a 3x3 stencil reads omega^2 off
the Laplacian (docs/mini_well.md measures it). Wavelengths are 10-24 cells at 64 points per axis (`MIN_RESOLUTION`);
coarser grids lower omega by `resolution / 64` so a wavelength keeps its 10 cells.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..well_writer import WellField, WellScalar, axis_boundaries
from .simulation import Regime, Simulation, check_finite, horizon, resolution_scale, to_numpy

NAME = "helmholtz_staircase"
MIN_RESOLUTION = 64
WAVELENGTH_CELLS = (10.0, 24.0)  # at MIN_RESOLUTION points per unit length
PML_CELLS = 8  # of MIN_RESOLUTION
PML_REFLECTION = 1e-3  # of a normally incident plane wave, in the continuum
FRAME_SPACING = 0.12
N_STEPS = 60


def stretching(position: torch.Tensor, length: float, omega: torch.Tensor, low: bool, high: bool,
               width: float) -> torch.Tensor:
    """`s [B, len(position)]` = 1 + i sigma / omega at `position`s along an axis of `length`: sigma rises
    quadratically across a layer of `width` at the low and/or high end, to the value whose plane-wave reflection
    at normal incidence is `PML_REFLECTION` (sigma_max = 3 ln(1 / R) / (2 width))."""
    depth = torch.zeros_like(position)
    if low:
        depth = torch.maximum(depth, (width - position) / width)
    if high:
        depth = torch.maximum(depth, (position - (length - width)) / width)
    sigma = 3 * math.log(1 / PML_REFLECTION) / (2 * width) * depth.clamp_min(0) ** 2
    return 1 + 1j * sigma[None, :] / omega[:, None]


def solve_helmholtz(omega: torch.Tensor, solid: torch.Tensor, source: torch.Tensor, dx: float,
                    pml: tuple[bool, bool, bool, bool] = (True, True, False, True)) -> torch.Tensor:
    """Complex `u [B, nx, ny]` of lap u + omega^2 u = -source with sound-hard `solid [B, nx, ny]` cells (u = 0 there)
    and perfectly matched layers on the (left, right, bottom, top) sides flagged in `pml`; the box's outer edge is
    u = 0 behind the layers."""
    _, nx, ny = solid.shape
    cdt = torch.complex128
    omega = omega.to(torch.float64)
    width = layer_cells(max(nx, ny)) * dx
    faces = lambda n: torch.arange(n + 1, dtype=torch.float64, device=solid.device) * dx  # noqa: E731
    sx_c = stretching(faces(nx)[:-1] + dx / 2, nx * dx, omega, pml[0], pml[1], width)  # [B, nx] at cell centres
    sy_c = stretching(faces(ny)[:-1] + dx / 2, ny * dx, omega, pml[2], pml[3], width)
    sx_f = stretching(faces(nx), nx * dx, omega, pml[0], pml[1], width)  # [B, nx + 1] at the faces
    sy_f = stretching(faces(ny), ny * dx, omega, pml[2], pml[3], width)
    fluid = (~solid).to(torch.float64)
    padded = torch.nn.functional.pad(fluid, (1, 1, 1, 1), value=1.0)  # the outer edge: u = 0 ghosts, flux kept
    # Face coefficients: x faces [B, nx+1, ny], y faces [B, nx, ny+1]; zero where either side is solid.
    open_x = padded[:, :-1, 1:-1] * padded[:, 1:, 1:-1]
    open_y = padded[:, 1:-1, :-1] * padded[:, 1:-1, 1:]
    ax = open_x * sy_c[:, None, :] / sx_f[:, :, None] / dx**2
    ay = open_y * sx_c[:, :, None] / sy_f[:, None, :] / dx**2
    diagonal = -(ax[:, :-1] + ax[:, 1:] + ay[:, :, :-1] + ay[:, :, 1:]) + omega[:, None, None] ** 2 * sx_c[:, :, None] * sy_c[:, None, :]
    diagonal = torch.where(solid, torch.ones_like(diagonal), diagonal)
    rhs = (-source * sx_c[:, :, None] * sy_c[:, None, :]).to(cdt) * fluid
    # Column i: B_i u_i + ax[i] u_{i-1} + ax[i+1] u_{i+1} = rhs_i, B_i tridiagonal in y.
    carried_matrix, carried_rhs, factors = None, None, []
    for i in range(nx):
        block = torch.diag_embed(diagonal[:, i]) + torch.diag_embed(ay[:, i, 1:-1], 1) + torch.diag_embed(ay[:, i, 1:-1], -1)
        g = rhs[:, i].unsqueeze(-1)
        if i:
            lower = ax[:, i]  # coupling to column i-1, a diagonal
            block = block - lower.unsqueeze(-1) * carried_matrix
            g = g - lower.unsqueeze(-1) * carried_rhs
        upper = torch.diag_embed(ax[:, i + 1]) if i + 1 < nx else torch.zeros_like(block)
        solved = torch.linalg.solve(block, torch.cat([upper, g], dim=-1))
        carried_matrix, carried_rhs = solved[..., :ny], solved[..., ny:]
        factors.append((carried_matrix, carried_rhs))
    u = [None] * nx
    u[-1] = factors[-1][1]
    for i in range(nx - 2, -1, -1):
        u[i] = factors[i][1] - factors[i][0] @ u[i + 1]
    return torch.stack([v.squeeze(-1) for v in u], dim=1) * fluid


def layer_cells(n: int) -> int:
    """Cells of each absorbing layer on an `n`-point axis: `PML_CELLS` at 64 points, at least 2."""
    return max(2, round(PML_CELLS * n / MIN_RESOLUTION))


def staircase(n: int, rng: np.random.Generator) -> np.ndarray:
    """`[n, n]` bool, True inside the staircase: a base of 3 cells, then steps rising to the right over a period
    and dropping back, repeated along x."""
    scale = n / MIN_RESOLUTION
    width = max(1, round(rng.integers(3, 9) * scale))
    height = max(1, round(rng.integers(2, 5) * scale))
    count = int(rng.integers(3, 6))
    shift = int(rng.integers(0, width * count))
    base = max(1, round(3 * scale))
    x = (np.arange(n) + shift) % (width * count) // width
    top = base + height * x  # first air cell per column
    return np.arange(n)[None, :] < top[:, None]


def point_source(n: int, centre: tuple[float, float], dx: float) -> np.ndarray:
    """A unit point source spread as a Gaussian of one cell's width (integral 1)."""
    x = (np.arange(n) + 0.5) * dx
    g = np.exp(-((x[:, None] - centre[0]) ** 2 + (x[None, :] - centre[1]) ** 2) / (2 * dx**2))
    return g / (g.sum() * dx * dx)


def simulate(n_trajectories: int, resolution: int = 64, n_steps: int = N_STEPS, rng: np.random.Generator | None = None,
             device="cpu", t_end: float | None = None, on_frame=None) -> Simulation:
    rng = rng or np.random.default_rng(0)
    n = resolution
    dx = 1.0 / n
    scale = resolution_scale(n, MIN_RESOLUTION)
    wavelength = rng.uniform(*WAVELENGTH_CELLS, n_trajectories) / MIN_RESOLUTION / scale
    omega = 2 * math.pi / wavelength
    solid = np.stack([staircase(n, rng) for _ in range(n_trajectories)])
    margin = (PML_CELLS + 4) / MIN_RESOLUTION
    sources = np.stack([point_source(n, (rng.uniform(margin, 1 - margin), rng.uniform(0.45, 1 - margin)), dx)
                        for _ in range(n_trajectories)])
    u = solve_helmholtz(torch.tensor(omega, device=device), torch.tensor(solid, device=device),
                        torch.tensor(sources, device=device), dx)
    interior = torch.zeros(n, n, dtype=torch.bool, device=device)
    layer = layer_cells(n)
    interior[layer:-layer, : n - layer] = True
    air = interior & ~torch.tensor(solid, device=device)
    rms = ((u.abs() ** 2 * air).sum(dim=(1, 2)) / air.sum(dim=(1, 2))).sqrt()
    u = u / rms[:, None, None]
    t_end = FRAME_SPACING * (n_steps - 1) if t_end is None else t_end
    save_times = np.linspace(0.0, t_end, n_steps)
    frames = []
    for t in save_times:
        p = u * torch.exp(-1j * torch.tensor(omega, device=device) * t)[:, None, None]
        if on_frame is not None:  # progress within a file
            on_frame()
        frames.append({"pressure_re": to_numpy(p.real), "pressure_im": to_numpy(p.imag)})
        check_finite(NAME, {"omega": omega}, float(t), **frames[-1])
    data = {k: np.stack([f[k] for f in frames], axis=1) for k in frames[0]}
    x = (np.arange(n) + 0.5) * dx
    return Simulation(
        dataset_name=NAME, spatial_dims=("x", "y"), coordinates={"x": x, "y": x}, time=save_times.astype(np.float32),
        fields=[WellField("pressure_re", data["pressure_re"]), WellField("pressure_im", data["pressure_im"]),
                WellField("mask", solid.astype(np.float32), time_varying=False)],
        scalars=[WellScalar("omega", omega.astype(np.float32), sample_varying=True)],
        boundaries=axis_boundaries(("x", "y"), (n, n), {"x": "OPEN", "y": ("WALL", "OPEN")}),
        simulation_parameters=("omega",),
    )


def regime(resolution: int = MIN_RESOLUTION, n_steps: int = N_STEPS) -> Regime:
    scale = resolution_scale(resolution, MIN_RESOLUTION)
    low, high = (2 * math.pi * MIN_RESOLUTION * scale / w for w in WAVELENGTH_CELLS[::-1])
    return Regime(
        grid=f"{resolution}x{resolution}", box="1x1, open (absorbing layers) left, right and top, staircase below",
        parameters=f"omega {low:.3g}-{high:.3g} (wavelengths {WAVELENGTH_CELLS[0]:g}-{WAVELENGTH_CELLS[1]:g} cells), "
                   "staircases of 3-5 steps, point source",
        **horizon(FRAME_SPACING * (n_steps - 1), n_steps),
        below_minimum=f"below {MIN_RESOLUTION}: omega x n/{MIN_RESOLUTION}",
    )
