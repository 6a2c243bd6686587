"""Compressible Euler equations in 2 or 3 dimensions with optically thin radiative cooling: the finite-volume solver
shared by `turbulent_radiative_layer_2D` and `supernova_explosion_64`.

    rho_t + div(rho u) = 0,   (rho u)_t + div(rho u u + p I) = 0,   E_t + div((E + p) u) = -L(rho, T),

with E = p / (gamma - 1) + rho |u|^2 / 2 and temperature T = p / rho (code units). Conserved variables on a uniform
grid: MUSCL reconstruction of the primitive variables with minmod limiting, HLL fluxes, SSP-RK2 in time (CFL given
by the caller). Each axis is periodic or open (zero-gradient outflow) on its own. The cooling term is applied after
each hydrodynamic step by operator splitting, integrated exactly for the cooling rate frozen over the step
(`e -> e exp(-dt rate)`), so that any cooling time, however short next to the sound crossing time, is stable; the
temperature never falls below the floor `t_floor` (the cold phase's or the ambient medium's temperature).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F

TINY = 1e-12


def primitives(U: torch.Tensor, gamma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Conserved `U [B, d+2, *space]` -> density `[B, *space]`, velocity `[B, d, *space]`, pressure `[B, *space]`."""
    rho = U[:, 0]
    velocity = U[:, 1:-1] / rho.unsqueeze(1)
    p = (gamma - 1) * (U[:, -1] - 0.5 * rho * velocity.pow(2).sum(1))
    return rho, velocity, p


def conserved(rho: torch.Tensor, velocity: torch.Tensor, p: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    momentum = rho.unsqueeze(1) * velocity
    energy = p / (gamma - 1) + 0.5 * rho * velocity.pow(2).sum(1)
    return torch.cat([rho.unsqueeze(1), momentum, energy.unsqueeze(1)], dim=1)


def minmod(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.where(a * b > 0, torch.sign(a) * torch.minimum(a.abs(), b.abs()), torch.zeros_like(a))


class CompressibleSolver:
    """Batched solver on a grid of `shape` cells of side `dx`; `gamma [B]`; `periodic[axis]` per axis.

    `cooling(rho, T) -> rate [B, *space]` (1/time: the internal energy's logarithmic decay rate) or None;
    `t_floor [B]` is the temperature cooling stops at."""

    def __init__(self, shape: Sequence[int], dx: float, gamma: torch.Tensor, periodic: Sequence[bool],
                 cooling: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 t_floor: torch.Tensor | None = None):
        self.shape, self.dx, self.dims = tuple(shape), dx, len(shape)
        self.periodic = tuple(periodic)
        view = (-1,) + (1,) * self.dims
        self.gamma = gamma.view(view)
        self.cooling = cooling
        self.t_floor = None if t_floor is None else t_floor.view(view)

    def _pad(self, w: torch.Tensor, axis: int) -> torch.Tensor:
        """Two ghost cells on both sides of spatial `axis` of `w [B, C, *space]`."""
        moved = w.movedim(2 + axis, -1)
        flat = moved.reshape(-1, 1, moved.shape[-1])
        padded = F.pad(flat, (2, 2), mode="circular" if self.periodic[axis] else "replicate")
        return padded.reshape(*moved.shape[:-1], moved.shape[-1] + 4).movedim(-1, 2 + axis)

    def _flux_divergence(self, w: torch.Tensor, axis: int) -> torch.Tensor:
        """d/dx_axis of the HLL flux of primitives `w [B, d+2, *space]` (rho, u_1..u_d, p) -> `[B, d+2, *space]`."""
        padded = self._pad(w, axis).movedim(2 + axis, -1)  # the flux axis last
        slope = minmod(padded[..., 1:-1] - padded[..., :-2], padded[..., 2:] - padded[..., 1:-1])
        left = (padded[..., 1:-1] + 0.5 * slope)[..., :-1]  # right edge of cells 1..n+1
        right = (padded[..., 1:-1] - 0.5 * slope)[..., 1:]  # left edge of cells 2..n+2

        def state_and_flux(side):
            rho, p = side[:, 0], side[:, -1]
            velocity = side[:, 1:-1]
            normal = velocity[:, axis]
            energy = p / (self.gamma - 1) + 0.5 * rho * velocity.pow(2).sum(1)
            momentum = rho.unsqueeze(1) * velocity
            state = torch.cat([rho.unsqueeze(1), momentum, energy.unsqueeze(1)], dim=1)
            momentum_flux = momentum * normal.unsqueeze(1)
            momentum_flux[:, axis] += p
            flux = torch.cat([(rho * normal).unsqueeze(1), momentum_flux, ((energy + p) * normal).unsqueeze(1)], dim=1)
            sound = torch.sqrt(self.gamma * p.clamp_min(TINY) / rho.clamp_min(TINY))  # [B, 1, ...] under the axis move
            return state, flux, normal, sound

        u_left, f_left, n_left, c_left = state_and_flux(left)
        u_right, f_right, n_right, c_right = state_and_flux(right)
        s_left = torch.minimum(n_left - c_left, n_right - c_right).unsqueeze(1)
        s_right = torch.maximum(n_left + c_left, n_right + c_right).unsqueeze(1)
        middle = (s_right * f_left - s_left * f_right + s_left * s_right * (u_right - u_left)) / (s_right - s_left)
        flux = torch.where(s_left >= 0, f_left, torch.where(s_right <= 0, f_right, middle))
        return ((flux[..., 1:] - flux[..., :-1]) / self.dx).movedim(-1, 2 + axis)

    def rhs(self, U: torch.Tensor) -> torch.Tensor:
        rho, velocity, p = primitives(U, self.gamma)
        w = torch.cat([rho.unsqueeze(1), velocity, p.unsqueeze(1)], dim=1)
        return -sum(self._flux_divergence(w, axis) for axis in range(self.dims))

    def max_speed(self, U: torch.Tensor) -> torch.Tensor:
        """`[B]`: each trajectory's largest signal speed, max over axes of |u_axis| + c."""
        rho, velocity, p = primitives(U, self.gamma)
        c = torch.sqrt(self.gamma * p.clamp_min(TINY) / rho.clamp_min(TINY))
        return (velocity.abs().amax(1) + c).flatten(1).amax(1)

    def cool(self, U: torch.Tensor, dt: float) -> torch.Tensor:
        """The cooling source over `dt`, exact for the rate frozen at the start of the step; kinetic energy, mass and
        momentum untouched; never below the floor temperature."""
        if self.cooling is None:
            return U
        rho, velocity, p = primitives(U, self.gamma)
        temperature = p / rho
        cooled = temperature * torch.exp(-dt * self.cooling(rho, temperature))
        if self.t_floor is not None:
            cooled = torch.maximum(cooled, torch.minimum(temperature, self.t_floor))  # only ever cools
        return conserved(rho, velocity, rho * cooled, self.gamma)

    def step(self, U: torch.Tensor, dt: float) -> torch.Tensor:
        stage = U + dt * self.rhs(U)
        return self.cool(0.5 * (U + stage + dt * self.rhs(stage)), dt)

    def frames(self, U: torch.Tensor, save_times, guard, cfl: float = 0.4, on_frame=None):
        """Step `U` through `save_times`, yielding `(t, rho, velocity, p)` at each; the step is `cfl` cells over the
        fastest signal, as `guard` (a `StepGuard`) allows, and lands on every save time."""
        t = 0.0
        for target in save_times:
            while t < target - 1e-12:
                dt = min(guard.step(cfl * self.dx / self.max_speed(U), t), target - t)
                U = self.step(U, dt)
                t += dt
            if on_frame is not None:  # progress within a file
                on_frame()
            yield (t, *primitives(U, self.gamma))
