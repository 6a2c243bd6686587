"""Training throughput on this CPU: samples per second and peak memory of one optimizer step (forward, backward,
AdamW) for PDE-FM's `tiny` and `small` presets, next to The Well's `UNetConvNext` (CNextU-Net) sized to about the
same parameter count, on the same batches (shear_flow-shaped: 4 input frames, 4 fields, batch 8; 64x64 for tiny,
128x128 for small). Both train with fused AdamW (what `pdefm pretrain` uses).

Rates are paired: one process builds both models and times their steps alternately (PDE-FM, U-Net, PDE-FM, ...),
so a burst of load on this shared machine slows both alike; each round is such a process, its ratio the ratio of
the two models' median step times, and the reported ratio the median over rounds. Before the timed steps each model
runs `1 + --warmup` untimed ones: a training run's rate is its steady state, and PDE-FM's first steps in a fresh
process are slower than its later ones while the U-Net's are not (docs/performance.md). `--protocol separate`
is the former protocol, kept to compare with: each model alone in its own process, timed from its second step.
Peak RSS and the first step (which pays `torch.compile` under `--compile`, building PDE-FM with
`compile_mamba=True`) come from each model alone in its own process. Every process takes the allocator settings of
the training commands (`pdefm/runtime/allocator.py`; `PDEFM_MALLOC=default` in the environment leaves glibc's).

Run: python bench/train_throughput.py [--presets tiny small] [--compile] [--rounds N] [--repeats N] [--warmup N]
     (needs `pip install --no-deps the-well`)
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
from pdefm.runtime.allocator import configure_allocator  # noqa: E402
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


def training_step(kind: str, preset: str, compile_mamba: bool = False):
    """A model of `kind` with its optimizer and batch: returns (one training step, parameter count)."""
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

    return step, sum(p.numel() for p in model.parameters())


def timed(step) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def run_alone(kind: str, preset: str, repeats: int, compile_mamba: bool = False) -> dict:
    """One model in this process: first step, peak RSS, and the rate of `repeats` steps after the first."""
    step, parameters = training_step(kind, preset, compile_mamba)
    first = timed(step)
    times = [timed(step) for _ in range(repeats)]
    return {"samples_per_s": BATCH / statistics.median(times), "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "parameters": parameters, "first_step_s": first}


def run_paired(preset: str, repeats: int, warmup: int, compile_mamba: bool = False) -> dict:
    """Both models in this process, stepped alternately: each one's median rate over `repeats` steps."""
    steps = {kind: training_step(kind, preset, compile_mamba)[0] for kind in ("pdefm", "unet")}
    for _ in range(1 + warmup):
        for step in steps.values():
            step()
    times = {kind: [] for kind in steps}
    for _ in range(repeats):
        for kind, step in steps.items():
            times[kind].append(timed(step))
    return {kind: BATCH / statistics.median(t) for kind, t in times.items()}


def child(argv: list[str]) -> dict:
    """Run one measurement in a fresh process and return its JSON line."""
    out = subprocess.run([sys.executable, __file__, *argv], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20, help="timed steps per model and round (median)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps after the first, before the timed ones")
    parser.add_argument("--rounds", type=int, default=3, help="processes per preset (the ratio is their median)")
    parser.add_argument("--presets", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--compile", action="store_true", help="PDE-FM with compile_mamba=True (torch.compile)")
    parser.add_argument("--protocol", choices=("paired", "separate"), default="paired",
                        help="paired: both models stepped alternately in one process after the warm-up (default); "
                             "separate: each model alone in its own process, timed from its second step (the former "
                             "protocol; --warmup is not used)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    parser.add_argument("--paired-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    allocator = configure_allocator()
    if args.child:
        print(json.dumps(run_alone(args.child[0], args.child[1], args.repeats, args.compile)))
        return
    if args.paired_child:
        print(json.dumps(run_paired(args.paired_child, args.repeats, args.warmup, args.compile)))
        return
    compile_flag = ["--compile"] if args.compile else []
    timing = (f"both models stepped alternately in one process, median of {args.repeats} steps each after "
              f"{1 + args.warmup} untimed" if args.protocol == "paired" else
              f"each model alone in its own process, median of {args.repeats} steps after the first")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; batch {BATCH}, {T_IN} input frames, {FIELDS} fields; "
          f"one fused AdamW step; {timing}; {args.rounds} rounds, ratio = median of the rounds' ratios; PDE-FM "
          f"{'with' if args.compile else 'without'} compile_mamba; allocator settings of the training commands "
          f"{'applied' if allocator else 'not applied'}; first step (not timed; compiles) and peak RSS from "
          "each model alone in its own process\n")
    print("| preset / grid | model | parameters | samples/s (median of rounds) | first step (s) | peak RSS (MB) | PDE-FM / U-Net |")
    print("|---|---|---|---|---|---|---|")
    spreads = []
    for preset in args.presets:
        size = CASES[preset]
        alone = {"pdefm": [], "unet": []}
        rates = {"pdefm": [], "unet": []}
        for _ in range(args.rounds):
            for kind in alone:
                alone[kind].append(child(["--child", kind, preset, "--repeats", str(args.repeats), *compile_flag]))
            if args.protocol == "paired":
                paired = child(["--paired-child", preset, "--repeats", str(args.repeats), "--warmup", str(args.warmup),
                                *compile_flag])
                for kind in rates:
                    rates[kind].append(paired[kind])
            else:
                for kind in rates:
                    rates[kind].append(alone[kind][-1]["samples_per_s"])
        round_ratios = [p / u for p, u in zip(rates["pdefm"], rates["unet"])]
        ratio = statistics.median(round_ratios)
        spreads.append(f"{preset}: {', '.join(f'{r:.2f}x' for r in round_ratios)}")
        for kind, label in (("pdefm", f"PDE-FM {preset}"), ("unet", "the_well UNetConvNext")):
            r = alone[kind]
            rss = max(x["peak_rss_mb"] for x in r)
            first = statistics.median(x["first_step_s"] for x in r)
            print(f"| {preset} / {size}x{size} | {label} | {r[0]['parameters'] / 1e6:.2f}M | {statistics.median(rates[kind]):.1f} | "
                  f"{first:.1f} | {rss:.0f} | {f'{ratio:.2f}x' if kind == 'pdefm' else ''} |")
    print(f"\nPDE-FM / U-Net in each round: {'; '.join(spreads)}")


if __name__ == "__main__":
    main()
