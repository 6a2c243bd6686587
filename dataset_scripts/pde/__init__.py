"""Numerical solvers of the Mini-Well systems: real PDE solutions in The Well's field layout.

Each module exposes `simulate(n_trajectories, resolution, n_steps, rng, device) -> Simulation` for one system,
vectorised over trajectories with torch (runs on a GPU when given `device="cuda"`).
"""
