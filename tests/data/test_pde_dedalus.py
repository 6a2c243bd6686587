"""Mini-Well's shear_flow solver against Dedalus, the spectral framework The Well made shear_flow with.

Skipped unless Dedalus is installed. To install it (Debian or Ubuntu; see the README):

    apt-get install libfftw3-dev libfftw3-mpi-dev libopenmpi-dev
    pip install numpy cython mpi4py
    CC=mpicc pip install --no-build-isolation dedalus

and run `python -m pytest tests/data/test_pde_dedalus.py`. Both solvers start from the same Mini-Well initial
state (two perturbed shear layers, Re 500, Sc 1, 64x64) and run to t = 2 with small fixed steps; velocity, tracer and
pressure must agree to the tolerances below. Measured with Dedalus 3.0.5 (built as above, torch 2.13 CPU): relative
L2 difference u 2.7e-8, v 6.1e-8, tracer 6.9e-7, pressure 4.3e-4; the test passed in 53 s.
"""

import numpy as np
import pytest
import torch

d3 = pytest.importorskip("dedalus.public", reason="Dedalus is not installed (see this file's docstring to install it)")

from pdefm.data.pde import shear_flow  # noqa: E402

N, REYNOLDS, SCHMIDT, T_END, DT = 64, 500.0, 1.0, 2.0, 1e-3


def ours(u0: np.ndarray, v0: np.ndarray, s0: np.ndarray) -> dict[str, np.ndarray]:
    nu = torch.tensor([1 / REYNOLDS], dtype=torch.float64)
    solver = shear_flow.ShearFlowSolver(N, nu, nu / SCHMIDT)
    kx, ky = solver.kx, solver.ky
    u, v, s = (torch.tensor(a)[None] for a in (u0, v0, s0))
    w_hat = 1j * kx * torch.fft.rfft2(v) - 1j * ky * torch.fft.rfft2(u)
    state = torch.stack([w_hat, torch.fft.rfft2(s)], dim=1)
    for _ in range(round(T_END / DT)):
        state = solver.step(state, DT)
    fields = solver.fields(state)
    return {"u": fields["velocity"][0, ..., 0].numpy(), "v": fields["velocity"][0, ..., 1].numpy(),
            "tracer": fields["tracer"][0].numpy(), "pressure": fields["pressure"][0].numpy()}


def dedalus(u0: np.ndarray, v0: np.ndarray, s0: np.ndarray) -> dict[str, np.ndarray]:
    coords = d3.CartesianCoordinates("x", "y")
    dist = d3.Distributor(coords, dtype=np.complex128)
    xbasis = d3.ComplexFourier(coords["x"], size=N, bounds=(0, 1), dealias=3 / 2)
    ybasis = d3.ComplexFourier(coords["y"], size=N, bounds=(0, 1), dealias=3 / 2)
    p = dist.Field(name="p", bases=(xbasis, ybasis))
    s = dist.Field(name="s", bases=(xbasis, ybasis))
    u = dist.VectorField(coords, name="u", bases=(xbasis, ybasis))
    tau_p = dist.Field(name="tau_p")
    nu, diffusivity = 1 / REYNOLDS, 1 / REYNOLDS / SCHMIDT  # noqa: F841 (used by the equations' namespace)

    def integ(a):
        return d3.Integrate(d3.Integrate(a, "x"), "y")

    problem = d3.IVP([u, s, p, tau_p], namespace={**locals(), "integ": integ})
    problem.add_equation("dt(u) + grad(p) - nu*lap(u) = - dot(u, grad(u))")
    problem.add_equation("dt(s) - diffusivity*lap(s) = - dot(u, grad(s))")
    problem.add_equation("div(u) + tau_p = 0")
    problem.add_equation("integ(p) = 0")
    solver = problem.build_solver(d3.RK443)
    u["g"][0], u["g"][1], s["g"] = u0, v0, s0
    for _ in range(round(T_END / DT)):
        solver.step(DT)
    for f in (u, s, p):
        f.change_scales(1)
    return {"u": u["g"][0].real.copy(), "v": u["g"][1].real.copy(), "tracer": s["g"].real.copy(),
            "pressure": p["g"].real.copy()}


def test_shear_flow_agrees_with_dedalus():
    state = shear_flow.initial_state(N, np.random.default_rng(0), 1)
    solver = shear_flow.ShearFlowSolver(N, torch.tensor([1.0]), torch.tensor([1.0]))
    start = solver.fields(state)
    u0, v0 = (start["velocity"][0, ..., i].numpy() for i in (0, 1))
    s0 = start["tracer"][0].numpy()
    a, b = ours(u0, v0, s0), dedalus(u0, v0, s0)
    for name, tolerance in (("u", 1e-6), ("v", 1e-6), ("tracer", 1e-5), ("pressure", 2e-3)):
        error = np.linalg.norm(a[name] - b[name]) / np.linalg.norm(b[name])
        assert error < tolerance, f"{name}: relative L2 difference {error:.2e}"
