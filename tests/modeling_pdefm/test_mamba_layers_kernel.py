"""The CUDA fast path proven on a CPU: mamba-ssm's Triton SSD kernel under Triton's interpreter against the chunked
scan (outputs and every gradient of a tiny PDE-FM). Needs mamba-ssm built without CUDA, and triton (README:
"GPU path"); skipped without them."""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
needs_kernels = pytest.mark.skipif(
    importlib.util.find_spec("mamba_ssm") is None or importlib.util.find_spec("triton") is None,
    reason="mamba-ssm (built with MAMBA_SKIP_CUDA_BUILD=TRUE) and triton are not installed",
)


@needs_kernels
def test_mamba_ssm_kernel_equals_the_chunked_scan_through_the_models_fast_path():
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, os.path.join(HERE, "mamba_kernel_parity.py")], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["kernel_calls"] == 2  # one layer: its forward and backward mixers went through the kernel
    assert result["scan_output"] < 1e-5 and result["scan_final_state"] < 1e-5 and result["scan_gradients"] < 1e-5
    assert result["prediction"] < 1e-5 and result["loss"] < 1e-5
    assert not result["gradients_missing"] and result["max_gradient"] < 1e-4
