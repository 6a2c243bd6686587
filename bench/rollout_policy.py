"""The rollout's normalisation policy, measured: each saved model rolled out under each `rollout_normalization`
(`every_window`: statistics of each step's own window; `first_window`: the first window's for every step), per
dataset, from the first frames of every test trajectory. Prints a markdown table of VRMSE at rollout steps 1, 6 and
12 and the mean over steps 6-12, persistence beside it. Nothing is trained here.

Run: python bench/rollout_policy.py [--data data/mini_well] [--steps 12] LABEL=MODEL_DIR [LABEL=MODEL_DIR ...]
"""

from __future__ import annotations

import argparse
import os

from modeling_pdefm import PDEFMModel
from modeling_pdefm.configuration_pdefm import ROLLOUT_NORMALIZATIONS
from pdefm.runtime.process import setup_process
from pdefm.train.evaluation.forecasters import PDEFMForecaster
from pdefm.train.evaluation.rollout import evaluate_rollout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", help="LABEL=MODEL_DIR")
    parser.add_argument("--data", default="data/mini_well")
    parser.add_argument("--steps", type=int, default=12)
    args = parser.parse_args()
    setup_process("train")
    rows = []
    for item in args.models:
        label, folder = item.split("=", 1)
        model = PDEFMModel.from_pretrained(folder).eval()
        trained_with = model.config.rollout_normalization
        for name in sorted(model.config.datasets):
            spec = model.config.datasets[name]
            cells = {}
            for policy in ROLLOUT_NORMALIZATIONS:
                model.config.rollout_normalization = policy
                result = evaluate_rollout(PDEFMForecaster(model), os.path.join(args.data, name), "test",
                                          spec["n_spatial_dims"], model.config.n_steps_input, args.steps,
                                          keep_example=False)
                cells[policy] = result
            model.config.rollout_normalization = trained_with
            persistence = cells[ROLLOUT_NORMALIZATIONS[0]]["persistence_vrmse_per_step"]
            for policy, result in cells.items():
                per_step = result["vrmse_per_step"]
                rows.append([label, trained_with, name, policy, f"{per_step[0]:.4f}", f"{per_step[5]:.4f}",
                             f"{per_step[11]:.4f}", f"{sum(per_step[5:12]) / 7:.4f}",
                             f"{sum(persistence[5:12]) / 7:.4f}"])
    head = ["model", "trained with", "dataset", "rolled out with", "step 1", "step 6", "step 12", "mean 6-12",
            "persistence 6-12"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
