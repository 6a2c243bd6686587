"""One prepared check for a machine with a GPU: the whole CUDA story of PDE-FM in one table.

1. Kernel parity on CUDA: mamba-ssm's fused SSD kernel against the chunked PyTorch scan (outputs, final state and
   input gradients), float32.
2. Training throughput and peak memory of the `small` and `base` presets (one AdamW step on shear_flow-shaped
   batches: 4 input frames, 4 fields, batch 8), with the chunked scan and with mamba-ssm, in float32 and under
   bf16 autocast.
3. A short pretraining (`--pretrain-minutes`, default 5) of `small` on a reduced Mini-Well suite (generated on the
   device when `--data` is not given): steps done, and validation VRMSE against persistence per dataset.

It also runs on a CPU (for the test suite, with `--presets tiny --grid 16`): rows that need CUDA or mamba-ssm say
"skipped" and why.

Run on a GPU machine:   python bench/gpu_check.py
Quick run anywhere:     python bench/gpu_check.py --presets tiny --grid 16 --repeats 1 --pretrain-minutes 0.1 --data DIR
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from modeling_pdefm import PDEFMConfig, PDEFMModel  # noqa: E402
from modeling_pdefm import ssd_scan as scan  # noqa: E402

BATCH, T_IN, FIELDS = 8, 4, 4


def kernel_parity(device: torch.device) -> dict:
    """Relative differences between mamba-ssm's kernel and the chunked scan on `device`, or why it was skipped."""
    if device.type != "cuda":
        return {"skipped": "needs a CUDA device"}
    if scan.mamba_chunk_scan_combined is None:
        return {"skipped": "mamba-ssm is not installed (pip install mamba-ssm causal-conv1d)"}
    g = torch.Generator(device=device).manual_seed(0)
    shapes = [(2, 300, 8, 64), (2, 300, 8), (8,), (2, 300, 1, 64), (2, 300, 1, 64), (2, 8, 64, 64)]
    inputs = [torch.randn(*s, generator=g, device=device) for s in shapes]
    inputs[1] = torch.nn.functional.softplus(inputs[1] - 1)
    inputs[2] = -inputs[2].abs() - 0.1
    results = []
    for use_kernel in (True, False):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        if use_kernel:
            y, final = scan.mamba_chunk_scan_combined(*leaves[:5], 64, initial_states=leaves[5], return_final_states=True)
        else:
            y, final = scan.ssd_scan_chunked(*leaves[:5], 64, initial_state=leaves[5], return_final_state=True)
        (y.float().square().sum() + final.float().square().sum()).backward()
        results.append((y.detach().float(), final.detach().float(), [t.grad.float() for t in leaves]))
    (ky, kf, kg), (ry, rf, rg) = results

    def relative(a, b):
        return float((a - b).norm() / b.norm().clamp_min(1e-12))

    return {"output": relative(ky, ry), "final_state": relative(kf, rf), "gradients": max(relative(a, b) for a, b in zip(kg, rg))}


def train_step_rate(preset: str, grid: int, device: torch.device, use_kernel: bool, bf16: bool, repeats: int) -> dict:
    """Samples/s and peak memory of one AdamW step, or why the row was skipped."""
    if use_kernel and not scan.mamba_kernels_available(torch.empty(0, device=device)):
        return {"skipped": "needs CUDA and mamba-ssm"}
    if bf16 and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return {"skipped": "this GPU has no bf16"}
    torch.manual_seed(0)
    model = PDEFMModel(PDEFMConfig.from_preset(preset, datasets={"shear_flow": {"n_fields": FIELDS, "n_spatial_dims": 2}}))
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(BATCH, T_IN, grid, grid, FIELDS, device=device)
    y = torch.randn(BATCH, 1, grid, grid, FIELDS, device=device)
    available = scan.mamba_kernels_available
    scan.mamba_kernels_available = (lambda t: available(t)) if use_kernel else (lambda t: False)

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            loss = model(input_fields=x, labels=y).loss
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    try:
        step()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
    finally:
        scan.mamba_kernels_available = available
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"samples_per_s": BATCH / statistics.median(times), "peak_memory_mb": peak,
            "parameters_m": model.num_parameters() / 1e6}


def short_pretraining(data: str | None, minutes: float, preset: str, device: torch.device, workdir: str) -> dict:
    """`pdefm.train.pretrain` for `minutes` on `data` (a reduced Mini-Well suite generated on `device` when None)."""
    # The installed package, run from the work folder: the checkout's `pdefm/` holds neither `data` nor `train` (they
    # install from `dataset_scripts/` and `train/`), so a checkout first on the path would hide an installed wheel's.
    if data is not None:
        data = os.path.abspath(data)  # the commands run in the work folder
    else:
        data = os.path.join(workdir, "mini_well_32")
        subprocess.run([sys.executable, "-m", "pdefm.data.generate", "--suite", "mini_well", "--out", data,
                        "--resolution", "32", "--n-trajectories", "8", "--n-steps", "30", "--device", str(device)],
                       check=True, cwd=workdir)
    out = os.path.join(workdir, "pretrain")
    command = [sys.executable, "-m", "pdefm.train.pretrain", "--data_dir", data, "--output_dir", out, "--model_preset", preset,
               "--time_budget_minutes", str(minutes), "--max_steps", "100000", "--log_with", "none",
               "--eval_every", "100000", "--checkpoint_every", "100000", "--report_split", "valid"]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=workdir)
    if done.returncode != 0:
        return {"failed": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    report = json.load(open(os.path.join(out, "report.json")))
    return {"steps": report["steps"], "seconds": time.perf_counter() - started,
            "datasets": {k: (v["vrmse"], v["persistence_vrmse"]) for k, v in report["datasets"].items()}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=["small", "base"], help="presets for the throughput rows")
    parser.add_argument("--grid", type=int, default=128, help="grid points per axis of the throughput batches")
    parser.add_argument("--repeats", type=int, default=5, help="timed steps per throughput row (median)")
    parser.add_argument("--pretrain-minutes", type=float, default=5.0, help="budget of the short pretraining (0: skip)")
    parser.add_argument("--pretrain-preset", default="small", help="preset of the short pretraining")
    parser.add_argument("--data", default=None, help="a Mini-Well-like folder (default: generate a reduced suite)")
    parser.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    args = parser.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    kernels = "installed" if scan.mamba_chunk_scan_combined is not None else "not installed"
    print(f"torch {torch.__version__} on {name}; mamba-ssm {kernels}\n")

    print("| check | setting | result |")
    print("|---|---|---|")
    parity = kernel_parity(device)
    text = f"skipped: {parity['skipped']}" if "skipped" in parity else ", ".join(f"{k} {v:.1e}" for k, v in parity.items())
    print(f"| kernel parity (relative difference) | mamba-ssm vs chunked scan, float32 | {text} |")
    for preset in args.presets:
        for use_kernel in (False, True):
            for bf16 in (False, True):
                setting = f"{preset}, {args.grid}x{args.grid}, {'mamba-ssm' if use_kernel else 'chunked scan'}, {'bf16' if bf16 else 'fp32'}"
                row = train_step_rate(preset, args.grid, device, use_kernel, bf16, args.repeats)
                if "skipped" in row:
                    text = f"skipped: {row['skipped']}"
                else:
                    memory = f", peak {row['peak_memory_mb']:.0f} MB" if row["peak_memory_mb"] is not None else ""
                    text = f"{row['samples_per_s']:.1f} samples/s{memory} ({row['parameters_m']:.1f}M parameters)"
                print(f"| training throughput | {setting} | {text} |")
    if args.pretrain_minutes > 0:
        with tempfile.TemporaryDirectory() as workdir:
            run = short_pretraining(args.data, args.pretrain_minutes, args.pretrain_preset, device, workdir)
        setting = f"{args.pretrain_preset}, {args.pretrain_minutes:g} min"
        if "failed" in run:
            print(f"| pretraining | {setting} | failed: {run['failed']} |")
        else:
            scores = "; ".join(f"{k} {v:.3f} (persistence {p:.3f})" for k, (v, p) in run["datasets"].items())
            print(f"| pretraining | {setting} | {run['steps']} steps in {run['seconds']:.0f} s; valid VRMSE {scores} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
