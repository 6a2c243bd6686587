"""Fourier-space helpers for periodic boxes (pseudo-spectral solvers)."""

from __future__ import annotations

import math

import torch


def wavenumbers(n: int, length: float, device=None, real: bool = False) -> torch.Tensor:
    """Angular wavenumbers of an n-point periodic axis of the given length (`rfftfreq` layout when `real`)."""
    d = length / n
    freq = torch.fft.rfftfreq(n, d=d, device=device) if real else torch.fft.fftfreq(n, d=d, device=device)
    return 2 * math.pi * freq.double()


def spectral_grid(shape: tuple[int, ...], lengths: tuple[float, ...], device=None) -> list[torch.Tensor]:
    """Broadcastable wavenumber arrays for an `rfftn` over all axes (the last axis one-sided)."""
    ks = []
    for axis, (n, length) in enumerate(zip(shape, lengths)):
        k = wavenumbers(n, length, device, real=axis == len(shape) - 1)
        view = [1] * len(shape)
        view[axis] = -1
        ks.append(k.view(view))
    return ks


def dealias_mask(shape: tuple[int, ...], device=None) -> torch.Tensor:
    """Orszag's 2/3 rule: keep modes with |index| < n/3 on every axis."""
    mask = None
    for axis, n in enumerate(shape):
        index = torch.fft.rfftfreq(n, device=device) * n if axis == len(shape) - 1 else torch.fft.fftfreq(n, device=device) * n
        keep = index.abs() < n / 3
        view = [1] * len(shape)
        view[axis] = -1
        keep = keep.view(view)
        mask = keep if mask is None else mask & keep
    return mask


def integrating_factor_rk4(state: torch.Tensor, dt: float, decay: torch.Tensor, nonlinear) -> torch.Tensor:
    """One step of `d/dt state = -decay * state + nonlinear(state)` in Fourier space, the linear part exactly.

    RK4 on `exp(decay t) state`, multiplied out so that no growing exponential is ever formed (Kassam & Trefethen's
    integrating-factor RK4): stiff diffusion costs nothing, the time step is set by the nonlinear terms alone.
    """
    e = torch.exp(-decay * dt / 2)
    e2 = e * e
    a = nonlinear(state)
    b = nonlinear(e * (state + dt / 2 * a))
    c = nonlinear(e * state + dt / 2 * b)
    d = nonlinear(e2 * state + dt * e * c)
    return e2 * state + dt / 6 * (e2 * a + 2 * e * (b + c) + d)
