"""FSDP on CPU ranks: the model trains sharded exactly as in one process (tests/train/fsdp_cpu_check.py)."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def test_fsdp2_on_two_cpu_ranks_trains_like_one_process(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           os.path.join(HERE, "fsdp_cpu_check.py")], env=env, capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["world_size"] == 2 and result["sharded_parameters"] > 0
    assert result["sharded"] == pytest.approx(result["single"], rel=1e-4)
    assert result["single"][2] < result["single"][0]  # it learns
