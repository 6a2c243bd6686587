"""Mini-Well's regime beside The Well's, for docs/mini_well.md: `python -m pdefm.data.regimes` prints the table.

Mini-Well's side is read from the generators' constants (`pde/*.regime`), so the table cannot drift from the code.
The Well's side is quoted from each dataset's card in PolymathicAI/the_well (`datasets/<name>/README.md`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from .generate import SUITES, SYSTEMS


@dataclass(frozen=True)
class WellRegime:
    """The Well's published settings for one dataset, and why Mini-Well's differ (one line)."""

    grid: str
    box: str
    parameters: str
    frame_spacing: str
    trajectory: str
    why_different: str


THE_WELL = {
    "shear_flow": WellRegime(
        "128x256", "1x2, periodic", "Reynolds 1e4-5e5, Schmidt 0.1-10", "0.1", "200 frames, t = 0-20",
        "Reynolds numbers that a 64-point grid resolves; a model must extrapolate to The Well's far thinner layers"),
    "gray_scott_reaction_diffusion": WellRegime(
        "128x128", "2x2, periodic", "F 0.014-0.098, k 0.051-0.065 (6 regimes)", "10", "1001 frames, t = 0-10000",
        "a smaller box keeps the patterns resolved at 64^2; regimes that freeze early or die out here are replaced, "
        "and frames are further apart"),
    "rayleigh_benard": WellRegime(
        "512x128", "4x1, periodic x, walls y", "Rayleigh 1e6-1e10, Prandtl 0.1-10", "0.25", "200 frames, t = 0-50",
        "far lower Rayleigh numbers (The Well's thinner plumes need its grid); a square grid on a 2:1 box"),
    "acoustic_scattering": WellRegime(
        "256x256", "2x2, open y, walls x", "density 1-7 and ln(density) -1-10 in inclusions, bulk modulus 4",
        "0.0198", "101 frames, t = 0-2",
        "milder density contrasts (a 64-point grid and leapfrog stay accurate), circular inclusions only"),
    "euler_multi_quadrants": WellRegime(
        "512x512", "1x1, periodic or open", "gamma 1.13-1.76 (10 values)", "0.015", "101 frames, t = 0-1.5",
        "the same kind of Riemann problems on a coarser grid, over a shorter horizon"),
    "MHD_64": WellRegime(
        "64^3", "64^3 cells, periodic", "sonic Mach 0.5-7, Alfven Mach 0.7-2, compressible isothermal", "0.01",
        "100 frames, t = 0-1",
        "incompressible (no sonic Mach number): density is a passive scalar, so shocks and compressive modes are "
        "absent; models trained here have not seen them"),
    "turbulent_radiative_layer_2D": WellRegime(
        "128x384", "1x3, periodic x, zero-gradient y", "tcool 0.03-3.16 (9 values)", "1.6", "101 frames, t = 0-160",
        "a square 1x1 box at 64^2 and a faster shear (Mach 0.5-0.9 of the hot gas), so the layer mixes within the "
        "horizon; a lognormal cooling curve peaked at the mixed temperature stands for The Well's cooling with "
        "balanced heating of both phases"),
    "viscoelastic_instability": WellRegime(
        "512x512", "2 pi x 2, periodic x, walls y", "Re 1000, Wi 50, beta 0.9, epsilon 2e-6, Lmax 70", "about 1",
        "20-60 frames per state (laminar, arrowheads, elasto-inertial turbulence, edge states)",
        "elasto-inertial turbulence in a walled channel needs The Well's grid; here the elastic instability of "
        "periodic Kolmogorov flow at low Re (the Newtonian flow is stable there), which 64^2 resolves"),
    "helmholtz_staircase": WellRegime(
        "1024x256", "16x4, staircase below, open above", "omega 0.06-2.5 (16 values), 63 source positions", "2 pi / (50 omega)",
        "50 frames, one period",
        "frames a fixed 0.12 apart (omega dt 2.0-4.8 rad) instead of 1/50 of each period, where one step is the same "
        "small rotation for every trajectory; finite differences with absorbing layers instead of "
        "boundary integrals; a short stretch of staircase"),
    "supernova_explosion_64": WellRegime(
        "64^3", "60 pc, open", "T0 100 K, n0 44.5/cc, Z solar (one regime); Msun the particle mass (1 or 0.1)",
        "100-10,000 yr (varying)", "59 frames, t = 0-0.2 Myr",
        "a grid (finite volumes) instead of particles (SPH), 32^3, code units, a lognormal medium instead of a "
        "turbulent cloud, and varied rho0, Z, T0 (Msun holds the ejecta mass)"),
}

COLUMNS = ("grid", "box", "parameters", "frame_spacing", "trajectory")


def regime_table(suite: str = "mini_well_all") -> str:
    """Markdown: for each dataset, one row for Mini-Well (at its default grid and frames) and one for The Well."""
    lines = ["| dataset | data | grid | box | parameters | frame spacing | trajectory |",
             "|---|---|---|---|---|---|---|"]
    notes = []
    for name in SUITES[suite]:
        system = SYSTEMS[name]
        ours = system.regime(system.resolution, system.n_steps)
        theirs = THE_WELL[name]
        lines.append(f"| {name} | Mini-Well | " + " | ".join(getattr(ours, c) for c in COLUMNS) + " |")
        lines.append("| | The Well | " + " | ".join(getattr(theirs, c) for c in COLUMNS) + " |")
        notes.append(f"- `{name}`: {theirs.why_different}. Coarser grids: {ours.below_minimum}.")
    return "\n".join(lines + [""] + notes)


def main() -> int:
    print(regime_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
