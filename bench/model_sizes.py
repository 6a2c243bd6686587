"""Parameter counts of the size presets, with one 2D dataset and with a 2D plus a 3D dataset.

Run: python bench/model_sizes.py
"""

import argparse

from modeling_pdefm import PRESETS, PDEFMConfig, PDEFMModel

TWO_D = {"shear_flow": {"n_fields": 4, "n_spatial_dims": 2, "n_constant_scalars": 2}}
WITH_3D = {**TWO_D, "MHD_64": {"n_fields": 7, "n_spatial_dims": 3}}


def main() -> None:
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    print("| preset | parameters, 2D only | parameters, 2D + 3D |")
    print("|---|---|---|")
    for preset in PRESETS:
        counts = [PDEFMModel(PDEFMConfig.from_preset(preset, datasets=d)).num_parameters() for d in (TWO_D, WITH_3D)]
        print(f"| {preset} | {counts[0] / 1e6:.2f}M | {counts[1] / 1e6:.2f}M |")


if __name__ == "__main__":
    main()
