"""bench/gpu_check.py, the prepared GPU check, runs on a CPU too: CUDA rows skipped with a reason, the rest
measured."""

import os
import sys

from well_files import write_dataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import gpu_check  # noqa: E402


def test_gpu_check_runs_on_a_cpu_and_says_what_it_skipped(tmp_path, capsys):
    write_dataset(str(tmp_path / "data"), "flow2d", n_dims=2, resolution=(16, 16), n_steps=8, files_per_split=(1, 1, 1))
    code = gpu_check.main(["--presets", "tiny", "--grid", "16", "--repeats", "1", "--pretrain-minutes", "0.05",
                           "--pretrain-preset", "tiny", "--data", str(tmp_path / "data"), "--device", "cpu"])
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert code == 0 and len(rows) == 6
    assert "skipped: needs a CUDA device" in rows[0]
    fp32, bf16, kernel_fp32, kernel_bf16 = rows[1:5]
    assert "chunked scan, fp32" in fp32 and "samples/s" in fp32
    assert "chunked scan, bf16" in bf16 and "samples/s" in bf16  # bf16 autocast runs on a CPU
    assert "skipped: needs CUDA and mamba-ssm" in kernel_fp32 and "skipped" in kernel_bf16
    assert rows[5].startswith("| pretraining | tiny") and " steps in " in rows[5] and "flow2d" in rows[5]
