"""Training throughput on this CPU: samples per second and peak memory of one optimizer step (forward, backward,
AdamW) for PDE-FM's `tiny` and `small` presets, next to The Well's `UNetConvNext` (CNextU-Net) sized to about the
same parameter count, on the same batches (shear_flow-shaped: 4 input frames, 4 fields, batch 8; 64x64 for tiny,
128x128 for small). Each model runs in its own process so its peak RSS is its own. Both train with fused AdamW
(what `pdefm pretrain` uses). `--compile` builds PDE-FM with `compile_mamba=True`; the first step, which pays the
compile time, is reported apart and not timed.

Run: python bench/train_throughput.py [--compile]      (needs `pip install --no-deps the-well`)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from modeling_pdefm import PDEFMConfig, PDEFMModel  # noqa: E402
from modeling_pdefm.losses import vrmse_training_loss as vrmse_loss  # noqa: E402
from pdefm.train.baselines.forecaster import matched_sizes  # noqa: E402
from pdefm.train.baselines.models import WellBaseline, unet_convnext_class  # noqa: E402

CASES = {"tiny": 64, "small": 128}
BATCH, T_IN, FIELDS = 8, 4, 4


def build(kind: str, preset: str, compile_mamba: bool = False):
    if kind == "pdefm":
        return PDEFMModel(PDEFMConfig.from_preset(preset, datasets={"shear_flow": {"n_fields": FIELDS, "n_spatial_dims": 2}},
                                                  compile_mamba=compile_mamba))
    target = PDEFMModel(PDEFMConfig.from_preset(preset, datasets={"shear_flow": {"n_fields": FIELDS, "n_spatial_dims": 2}})).num_parameters()
    size = CASES[preset]
    sizes = matched_sizes("cnextunet", target, T_IN * FIELDS, FIELDS, 2, (size, size))
    return WellBaseline(unet_convnext_class()(dim_in=T_IN * FIELDS, dim_out=FIELDS, n_spatial_dims=2,
                                              spatial_resolution=(size, size), **sizes))


def run(kind: str, preset: str, repeats: int, compile_mamba: bool = False) -> dict:
    torch.manual_seed(0)
    size = CASES[preset]
    model = build(kind, preset, compile_mamba).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    x = torch.randn(BATCH, T_IN, size, size, FIELDS)
    y = torch.randn(BATCH, 1, size, size, FIELDS)

    def step():
        optimizer.zero_grad(set_to_none=True)
        if kind == "pdefm":
            loss = model(input_fields=x, dataset_name="shear_flow", labels=y).loss  # the objective it trains on
        else:
            loss = vrmse_loss(model(x), y, 2)
        loss.backward()
        optimizer.step()

    start = time.perf_counter()
    step()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"samples_per_s": BATCH / statistics.median(times), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "parameters": sum(p.numel() for p in model.parameters()), "first_step_s": first}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per measurement (median)")
    parser.add_argument("--rounds", type=int, default=3, help="measurements per model, alternating the models")
    parser.add_argument("--presets", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--compile", action="store_true", help="PDE-FM with compile_mamba=True (torch.compile)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run(args.child[0], args.child[1], args.repeats, args.compile)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {BATCH}, {T_IN} input frames, {FIELDS} fields; "
          f"one fused AdamW step, median of {args.repeats}; {args.rounds} rounds alternating the two models, ratio = "
          "median of the rounds' ratios (the two measurements of a round run back to back); PDE-FM "
          f"{'with' if args.compile else 'without'} compile_mamba; first step (not timed; compiles) beside\n")
    print("| preset / grid | model | parameters | samples/s (median of rounds) | first step (s) | peak RSS (MB) | PDE-FM / U-Net |")
    print("|---|---|---|---|---|---|---|")
    for preset in args.presets:
        size = CASES[preset]
        results = {"pdefm": [], "unet": []}
        for _ in range(args.rounds):
            for kind in results:
                out = subprocess.run([sys.executable, __file__, "--child", kind, preset, "--repeats", str(args.repeats),
                                      *(["--compile"] if args.compile else [])], capture_output=True, text=True, check=True)
                results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
        ratio = statistics.median(p["samples_per_s"] / u["samples_per_s"] for p, u in zip(results["pdefm"], results["unet"]))
        for kind, label in (("pdefm", f"PDE-FM {preset}"), ("unet", "the_well UNetConvNext")):
            r = results[kind]
            rate = statistics.median(x["samples_per_s"] for x in r)
            rss = max(x["peak_rss_mb"] for x in r)
            first = statistics.median(x["first_step_s"] for x in r)
            print(f"| {preset} / {size}x{size} | {label} | {r[0]['parameters'] / 1e6:.2f}M | {rate:.1f} | {first:.1f} | {rss:.0f} | "
                  f"{f'{ratio:.2f}x' if kind == 'pdefm' else ''} |")


if __name__ == "__main__":
    main()
