"""Thread defaults on a busy machine: the package's (`pdefm/runtime/threads.py`) against torch's own.

Two workloads, each in a fresh process, alone and next to one busy process: a torch job with torch's default
threads (as a second training run or test suite would be), or a single-threaded Python loop:

- generation: `python -m pdefm.data.generate --dataset shear_flow --resolution 16 --n-trajectories 3
  --n-steps 4 --seed 1` (wall time of the command);
- training: 20 AdamW steps of the `tiny` preset on shear_flow-shaped batches (batch 8, 4 input frames, 64x64, 4
  fields), timed after one warm-up step.

Prints seconds per case and the ratio torch default / package default (above 1: the package is faster). A case
that runs past `--cap` seconds is stopped and reported as at least the cap.

Run: python bench/threads.py [--cap 240]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NEIGHBOURS = {
    "alone": None,
    "next to a busy torch job (torch's default threads)": ("import torch\n"
                                                          "a = torch.randn(256, 256)\n"
                                                          "while True:\n"
                                                          "    a = torch.tanh(a @ a / 16)\n"),
    "next to a busy single-threaded Python process": "while True:\n    pass\n",
}


def train_child(steps: int, package_defaults: bool) -> None:
    import torch

    sys.path.insert(0, ROOT)
    from modeling_pdefm import PDEFMConfig, PDEFMModel
    from modeling_pdefm.losses import vrmse_training_loss as vrmse_loss
    from pdefm.runtime.threads import configure_threads

    if package_defaults:
        configure_threads("train")
    torch.manual_seed(0)
    model = PDEFMModel(PDEFMConfig.from_preset("tiny", datasets={"shear_flow": {"n_fields": 4, "n_spatial_dims": 2}}))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x, y = torch.randn(8, 4, 64, 64, 4), torch.randn(8, 1, 64, 64, 4)

    def step():
        optimizer.zero_grad(set_to_none=True)
        vrmse_loss(model(input_fields=x, dataset_name="shear_flow").prediction, y, 2).backward()
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    print(json.dumps({"seconds": time.perf_counter() - start, "threads": torch.get_num_threads()}))


def run_case(workload: str, package_defaults: bool, cap: float, steps: int) -> tuple[float, bool, int]:
    """(seconds, finished, intra-op threads) of one case in a fresh process."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "PDEFM_NUM_THREADS", "MKL_NUM_THREADS")}
    env["PYTHONPATH"] = ROOT
    if not package_defaults:
        env["PDEFM_NUM_THREADS"] = "torch"
    with tempfile.TemporaryDirectory() as out:
        if workload == "generate":
            command = [sys.executable, "-m", "pdefm.data.generate", "--dataset", "shear_flow", "--out", out,
                       "--resolution", "16", "--n-trajectories", "3", "--n-steps", "4", "--seed", "1"]
        else:
            command = [sys.executable, __file__, "--train-child", str(steps), "1" if package_defaults else "0"]
        start = time.perf_counter()
        try:
            result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=cap)
        except subprocess.TimeoutExpired:
            return cap, False, -1
        seconds = time.perf_counter() - start
        if result.returncode != 0:
            raise RuntimeError(f"{command}: {result.stderr[-2000:]}")
        threads = 1 if package_defaults else os.cpu_count()
        if workload == "train":
            child = json.loads(result.stdout.strip().splitlines()[-1])
            seconds, threads = child["seconds"], child["threads"]
        return seconds, True, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cap", type=float, default=240.0, help="seconds after which a case is stopped")
    parser.add_argument("--steps", type=int, default=20, help="training steps timed")
    parser.add_argument("--train-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_child:
        train_child(int(args.train_child[0]), args.train_child[1] == "1")
        return
    from pdefm.runtime.threads import available_cores, default_threads

    print(f"{available_cores()} cores; package defaults: generation {default_threads('generate')} thread(s), "
          f"training up to {default_threads('train')} (fewer when cores are busy); torch's default: one per core")
    rows = []
    for condition, code in NEIGHBOURS.items():
        busy = None
        if code is not None:
            busy = subprocess.Popen([sys.executable, "-c", code], env={k: v for k, v in os.environ.items()
                                                                        if k != "OMP_NUM_THREADS"})
            time.sleep(3)
        try:
            for workload in ("generate", "train"):
                package = run_case(workload, True, args.cap, args.steps)
                torch_default = run_case(workload, False, args.cap, args.steps)
                rows.append((workload, condition, package, torch_default))
        finally:
            if busy is not None:
                busy.kill()
                busy.wait()
    print()
    print("| workload | condition | threads (package / torch) | package defaults (s) | torch defaults (s) | torch / package |")
    print("|---|---|---|---|---|---|")
    for workload, condition, (p, p_done, p_threads), (t, t_done, t_threads) in rows:
        ratio = t / p
        label = {"generate": "generation (shear_flow 16x16, 3 traj, 4 steps)",
                 "train": f"training ({args.steps} steps, tiny, batch 8, 64x64)"}[workload]
        print(f"| {label} | {condition} | {p_threads} / {t_threads} | {'' if p_done else '>= '}{p:.1f} | {'' if t_done else '>= '}{t:.1f} | "
              f"{'>= ' if not t_done and p_done else ''}{ratio:.2f}x |")


if __name__ == "__main__":
    main()
