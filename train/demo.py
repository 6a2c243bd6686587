"""The main job on a fresh machine, at this stage of the package: build a tiny PDE-FM for a 2D and a 3D dataset,
run a forward pass on a batch in The Well's layout, save it, load it back (also through `AutoModel`) and check
that the reloaded model gives the same prediction.

Run: python -m train.demo --output_dir out/demo
"""

from __future__ import annotations

import argparse

import torch
from transformers import AutoModel

from modeling_pdefm import PDEFMConfig, PDEFMModel

DATASETS = {
    "shear_flow": {"n_fields": 4, "n_spatial_dims": 2, "n_constant_scalars": 2,
                   "field_names": ["tracer", "pressure", "velocity_x", "velocity_y"]},
    "MHD_64": {"n_fields": 7, "n_spatial_dims": 3},
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="out/demo")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets=DATASETS)).eval()
    print(f"PDE-FM tiny: {model.num_parameters():,} parameters, datasets {sorted(model.config.datasets)}")
    batch = {
        "input_fields": torch.randn(2, 4, 32, 48, 4),
        "labels": torch.randn(2, 1, 32, 48, 4),
        "constant_scalars": torch.tensor([[1e4, 1.0], [1e5, 2.0]]),
        "boundary_conditions": torch.full((2, 2, 2), 2),
        "input_time_grid": torch.arange(4.0).expand(2, 4),
        "output_time_grid": torch.full((2, 1), 4.0),
        "dataset_name": "shear_flow",
    }
    with torch.no_grad():
        out = model(**batch)
        rollout = model.rollout(batch, n_steps=3)
    print(f"prediction {tuple(out.prediction.shape)}, VRMSE against random targets {out.loss.item():.3f}, "
          f"rollout {tuple(rollout.shape)}")

    model.save_pretrained(args.output_dir)
    reloaded = AutoModel.from_pretrained(args.output_dir).eval()
    with torch.no_grad():
        same = torch.equal(reloaded(**batch).prediction, out.prediction)
    print(f"saved to {args.output_dir}; reloaded with AutoModel: identical prediction = {same}")
    if not same:
        raise SystemExit("reloaded model differs from the saved one")


if __name__ == "__main__":
    main()
