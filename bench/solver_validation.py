"""The four systems of other physics against known results, measured (the tests assert tolerances on the same
functions, `pdefm.data.pde.validation`). Prints a markdown table for docs/mini_well.md.

Run: python bench/solver_validation.py
"""

from __future__ import annotations

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from pdefm.data.pde import validation  # noqa: E402


def main() -> int:
    torch.set_num_threads(1)
    rows = []
    cooling = validation.cooling_against_power_law()
    rows.append(("supernova_explosion_64", "still gas cooling to t = 0.1 vs the power-law solution",
                 f"T {cooling['temperature']:.5f} vs {cooling['exact']:.5f} ({cooling['relative_error']:.2%}); "
                 f"later held at the floor {cooling['late_temperature']:.4g}"))
    sedov = validation.sedov_taylor()
    rows.append(("supernova_explosion_64", "blast radius over Sedov-Taylor's at t = 0.02, 0.04, 0.06 (32^3)",
                 ", ".join(f"{r:.3f}" for r in sedov["radius_over_sedov"]) + f"; growth exponent {sedov['exponent']:.3f} "
                 "(0.4)"))
    for wi in (0.5, 2.0):
        rows.append(("viscoelastic_instability", f"Oldroyd-B laminar state from rest, Wi = {wi:g}, t = 40 (32^2)",
                     f"largest error {validation.oldroyd_b_laminar_error(wi):.2e} of the field's largest value"))
    newtonian, elastic = validation.departure_from_laminar(0.05), validation.departure_from_laminar(10.0)
    rows.append(("viscoelastic_instability", "x-dependent vorticity, t = 5 -> 45, Re = 3 (32^2)",
                 f"Newtonian (Wi 0.05) x {newtonian[1] / newtonian[0]:.3g}; Wi = 10 x {elastic[1] / elastic[0]:.3g}"))
    for n in (64, 128):
        errors = validation.helmholtz_errors(n)
        rows.append(("helmholtz_staircase", f"point source, wavelength {n // 4} cells (n = {n}): free space / "
                     "above a sound-hard floor", f"{errors['free']:.2%} / {errors['wall']:.2%} (relative L2)"))
    print("| system | check | measured |")
    print("|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
