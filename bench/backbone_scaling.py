"""Backbone scaling on this CPU: forward+backward time of one backbone layer (width 256, the `small` preset's)
for 1k, 4k and 16k tokens, Mamba-2 path against attention; the chunked scan against the sequential reference;
peak memory; and one training step of the whole `small` model (batch 8, 4 input frames of 128x128, 4 fields).

Run: python bench/backbone_scaling.py            (prints Markdown tables; about 5 minutes on 2 cores)
Each measurement runs in its own subprocess so that its peak memory (max RSS) is its own.
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
from modeling_pdefm.backbone_layers import BackboneLayer  # noqa: E402
from modeling_pdefm.ssd_scan import ssd_scan_chunked, ssd_scan_sequential  # noqa: E402

TOKENS = (1024, 4096, 16384)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_layer(backbone: str, tokens: int, repeats: int) -> dict:
    torch.manual_seed(0)
    config = PDEFMConfig.from_preset("small", backbone=backbone)
    layer = BackboneLayer(config, axis_shift=0)
    # A token grid of one frame, 16 patches wide: [batch, T, rows, cols, hidden].
    x = torch.randn(1, 1, tokens // 16, 16, config.hidden_size, requires_grad=True)

    def step():
        layer.zero_grad(set_to_none=True)
        layer(x).square().mean().backward()

    return {"seconds": timed(step, repeats), "peak_rss_mb": peak_rss_mb()}


def run_scan(kind: str, tokens: int, repeats: int) -> dict:
    torch.manual_seed(0)
    heads, head_dim, state = 8, 64, 64  # the small preset's mixer
    x = torch.randn(1, tokens, heads, head_dim, requires_grad=True)
    dt = torch.nn.functional.softplus(torch.randn(1, tokens, heads) - 3).requires_grad_(True)
    A = (-torch.rand(heads) - 0.1).requires_grad_(True)
    B = torch.randn(1, tokens, 1, state, requires_grad=True)
    C = torch.randn(1, tokens, 1, state, requires_grad=True)

    def step():
        y = ssd_scan_chunked(x, dt, A, B, C, 64) if kind == "chunked" else ssd_scan_sequential(x, dt, A, B, C)
        y.square().mean().backward()

    return {"seconds": timed(step, repeats), "peak_rss_mb": peak_rss_mb()}


def run_small_model(repeats: int) -> dict:
    torch.manual_seed(0)
    config = PDEFMConfig.from_preset("small", datasets={"shear_flow": {"n_fields": 4, "n_spatial_dims": 2}})
    model = PDEFMModel(config).train()
    batch = {
        "input_fields": torch.randn(8, 4, 128, 128, 4),
        "labels": torch.randn(8, 1, 128, 128, 4),
        "dataset_name": "shear_flow",
    }

    def step():
        model.zero_grad(set_to_none=True)
        model(**batch).loss.backward()

    return {"seconds": timed(step, repeats), "peak_rss_mb": peak_rss_mb(), "parameters": model.num_parameters()}


def child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.child:
        what, *rest = args.child
        if what == "layer":
            result = run_layer(rest[0], int(rest[1]), int(rest[2]))
        elif what == "scan":
            result = run_scan(rest[0], int(rest[1]), int(rest[2]))
        else:
            result = run_small_model(int(rest[0]))
        print(json.dumps(result))
        return

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs")
    print("\nOne backbone layer, width 256, batch 1, forward+backward (median of repeats):\n")
    print("| tokens | Mamba-2 (s) | attention (s) | attention / Mamba | Mamba peak RSS (MB) | attention peak RSS (MB) |")
    print("|---|---|---|---|---|---|")
    results = {}
    for tokens in TOKENS:
        repeats = args.repeats if tokens < 16384 else 1
        mamba = child(["layer", "mamba", str(tokens), str(repeats)])
        attention = child(["layer", "attention", str(tokens), str(repeats)])
        results[tokens] = (mamba, attention)
        print(f"| {tokens} | {mamba['seconds']:.3f} | {attention['seconds']:.3f} | "
              f"{attention['seconds'] / mamba['seconds']:.1f}x | {mamba['peak_rss_mb']:.0f} | {attention['peak_rss_mb']:.0f} |")
    base = results[TOKENS[0]][0]["seconds"]
    for tokens in TOKENS[1:]:
        ratio = results[tokens][0]["seconds"] / (base * tokens / TOKENS[0])
        print(f"\nMamba-2 time at {tokens} tokens / (linear extrapolation from {TOKENS[0]}): {ratio:.2f}")

    chunked = child(["scan", "chunked", "4096", str(args.repeats)])
    sequential = child(["scan", "sequential", "4096", "1"])
    print("\nSelective scan alone, 4096 tokens, 8 heads x 64, state 64, forward+backward:\n")
    print("| path | seconds |\n|---|---|")
    print(f"| chunked (PyTorch, CPU) | {chunked['seconds']:.3f} |")
    print(f"| sequential reference | {sequential['seconds']:.3f} |")
    print(f"\nchunked speed-up over the sequential reference: {sequential['seconds'] / chunked['seconds']:.0f}x")

    small = child(["model", "1"])
    print(f"\n`small` preset ({small['parameters'] / 1e6:.2f}M parameters), one training step, batch 8, "
          f"4 frames of 128x128 with 4 fields: {small['seconds']:.2f} s, peak RSS {small['peak_rss_mb']:.0f} MB")


if __name__ == "__main__":
    main()
