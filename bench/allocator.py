"""What the training commands' allocator settings (`pdefm/runtime/allocator.py`) do to a PDE-FM training step on
this CPU: median step time, peak RSS and page faults (minor, the ones a fresh `mmap` costs) with the C library's
own settings (`PDEFM_MALLOC=default`) and with the commands' (`reuse`). Each measurement is its own process (the
allocator's state is per process); the two settings alternate, `--rounds` times, and the reported time is the
median over rounds. Same step as `bench/train_throughput.py` (fused AdamW, shear_flow-shaped batch 8).

Run: python bench/allocator.py [--presets tiny small] [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pdefm.runtime.allocator import configure_allocator  # noqa: E402
from train_throughput import timed, training_step  # noqa: E402

MODES = ("default", "reuse")
STEPS = {"tiny": (11, 20), "small": (4, 6)}  # (untimed, timed) steps per measurement


def measure(preset: str) -> dict:
    applied = configure_allocator()
    step, _ = training_step("pdefm", preset)
    warmup, n_timed = STEPS[preset]
    for _ in range(warmup):
        step()
    times = [timed(step) for _ in range(n_timed)]
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"applied": applied, "step_s": statistics.median(times), "peak_rss_mb": usage.ru_maxrss / 1024,
            "minor_faults": usage.ru_minflt}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", nargs="+", default=list(STEPS), choices=list(STEPS))
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child)))
        return
    print("| preset | allocator | applied | step (ms, median of rounds) | peak RSS (MB) | minor page faults | time / default |")
    print("|---|---|---|---|---|---|---|")
    for preset in args.presets:
        results = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for mode in MODES:
                out = subprocess.run([sys.executable, __file__, "--child", preset], capture_output=True, text=True,
                                     check=True, env={**os.environ, "PDEFM_MALLOC": mode})
                results[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
        base = statistics.median(r["step_s"] for r in results["default"])
        for mode in MODES:
            r = results[mode]
            step = statistics.median(x["step_s"] for x in r)
            print(f"| {preset} | {mode} | {r[0]['applied']} | {step * 1e3:.1f} | {max(x['peak_rss_mb'] for x in r):.0f} | "
                  f"{statistics.median(x['minor_faults'] for x in r):.0f} | {step / base:.2f}x |")


if __name__ == "__main__":
    main()
