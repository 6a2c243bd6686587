"""Accuracy per CPU-minute of model shapes on the main job: each shape pretrains on the Mini-Well suite for the
same wall-clock budget (the main job's config, its `model_overrides` included, with the shape's keys over them), then
its one-step test VRMSE per dataset and the mean of VRMSE over persistence are read from its report. Answers which
width, depth and patch size a CPU budget pays for (issue: choose sizes at the budget you publish).

Runs are resumable: a shape whose report exists is not rerun. `--parallel 2 --threads 1` runs two shapes at a
time with one thread each (the budget is then per process, so the comparison stays fair). `--shapes` picks some.

Run: python bench/preset_study.py --minutes 6 [--out outputs/preset_study] [--parallel 2 --threads 1] [--shapes ...]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from modeling_pdefm import PDEFMModel  # noqa: E402

# Shapes over the main job's model (`tiny`: width 32, 2 backbone layers, 8-point 2D patches, i.e. 256 tokens for four
# 64x64 frames): wider tokens, a deeper backbone, finer patches (1024 tokens).
SHAPES = {
    "main job (width 32, 2 layers, patch 8)": {},
    "width 48": {"hidden_size": 48, "ssm_head_dim": 24},
    "4 layers": {"num_layers": 4},
    "patch 4": {"patch_size": 4},
}
MAIN_CONFIG = os.path.join(ROOT, "train", "configs", "mini_well.yaml")


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def command(out: str, overrides: dict, minutes: float, data: str) -> list[str]:
    # A command-line --model_overrides replaces the config's: the main job's own (patch jitter, ...) go in first.
    from pdefm.train.training.config import config_from_file

    merged = {**config_from_file(MAIN_CONFIG).config.model_overrides, **overrides}
    return [sys.executable, "-m", "pdefm.train.pretrain", "--config", MAIN_CONFIG,
            "--data_dir", data, "--output_dir", out, "--time_budget_minutes", str(minutes), "--max_steps", "1000000",
            "--model_overrides", json.dumps(merged), "--log_with", "none", "--checkpoint_every", "1000000"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget per shape")
    parser.add_argument("--out", default=os.path.join(ROOT, "outputs", "preset_study"))
    parser.add_argument("--data", default=os.path.join(ROOT, "data", "mini_well"), help="the Mini-Well suite")
    parser.add_argument("--parallel", type=int, default=1, help="shapes trained at the same time")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of each run (default: package's)")
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES), help="shapes to train")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    if args.threads:
        env["OMP_NUM_THREADS"] = env["PDEFM_NUM_THREADS"] = str(args.threads)
    pending = [(name, os.path.join(args.out, slug(name))) for name in args.shapes
               if not os.path.isfile(os.path.join(args.out, slug(name), "report.json"))]
    running: list[tuple[str, subprocess.Popen]] = []
    while pending or running:
        while pending and len(running) < args.parallel:
            name, out = pending.pop(0)
            os.makedirs(args.out, exist_ok=True)
            # The log beside the run's folder: a run refuses an output folder holding files it did not write.
            log = open(f"{out}.log", "w")
            running.append((name, subprocess.Popen(command(out, SHAPES[name], args.minutes, args.data), env=env,
                                                   cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)))
        time.sleep(2)
        for item in list(running):
            if item[1].poll() is not None:
                running.remove(item)
                if item[1].returncode != 0:
                    print(f"{item[0]}: exit {item[1].returncode}; see {os.path.join(args.out, slug(item[0]))}.log")
    print(f"One-step test VRMSE after {args.minutes:g} min of training per shape (main job's config, "
          f"{args.parallel} run(s) at a time{f', {args.threads} thread(s) each' if args.threads else ''}):\n")
    rows, names = [], None
    for name in args.shapes:
        path = os.path.join(args.out, slug(name), "report.json")
        if not os.path.isfile(path):
            continue
        report = json.load(open(path))
        names = names or list(report["datasets"])
        parameters = PDEFMModel.from_pretrained(os.path.join(args.out, slug(name))).num_parameters()
        values = [report["datasets"][n]["vrmse"] for n in names]
        relative = [report["datasets"][n]["vrmse"] / report["datasets"][n]["persistence_vrmse"] for n in names]
        rows.append(f"| {name} | {parameters / 1e6:.2f}M | {report['steps']} | "
                    + " | ".join(f"{v:.4f}" for v in values) + f" | {sum(relative) / len(relative):.3f} |")
    if names:
        persistence = json.load(open(os.path.join(args.out, slug(args.shapes[0]), "report.json")))["datasets"]
        print("| shape | parameters | steps | " + " | ".join(names) + " | mean VRMSE / persistence |")
        print("|---" * (len(names) + 4) + "|")
        print("\n".join(rows))
        values = [persistence[n]["persistence_vrmse"] for n in names]
        print("| persistence | | | " + " | ".join(f"{v:.4f}" for v in values) + " | 1 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
