"""mamba-ssm's fused SSD kernel (the CUDA fast path) against the chunked PyTorch scan, on a CPU.

Run by `tests/modeling_pdefm/test_mamba_layers_kernel.py` in its own process, with `TRITON_INTERPRET=1` set before Triton is imported:
Triton's interpreter runs the kernels on CPU tensors. What a CPU lacks is stood in for here, and only here:
mamba-ssm's compiled `selective_scan_cuda` extension (imported by its package, unused by the SSD kernel), the
host-side `torch.cuda.device(...)` context and device properties, and autotuning (one config per kernel: the
interpreter cannot time kernels).

A tiny PDE-FM runs forward and backward once through the project's own fast-path call (`ssd_scan` choosing
`mamba_chunk_scan_combined`) and once through the chunked scan, from the same weights and inputs. Prints one JSON
line: the relative differences of the scan's outputs and input gradients (with a carried state), and of the model's
prediction, loss and every parameter's gradient (the largest).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import types

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)


def install_cpu_stand_ins() -> None:
    import torch

    sys.modules.setdefault("selective_scan_cuda", types.ModuleType("selective_scan_cuda"))
    torch.cuda.device = lambda *args, **kwargs: contextlib.nullcontext()
    torch.cuda.get_device_properties = lambda *args, **kwargs: types.SimpleNamespace(multi_processor_count=4)


def pin_autotune_configs() -> int:
    """Keep each autotuned SSD kernel's first config; returns how many kernels were pinned."""
    from triton.runtime.autotuner import Autotuner

    pinned = 0
    for name, module in list(sys.modules.items()):
        if not name.startswith("mamba_ssm.ops.triton"):
            continue
        for value in vars(module).values():
            if isinstance(value, Autotuner) and len(value.configs) > 1:
                value.configs = value.configs[:1]
                pinned += 1
    return pinned


def main() -> None:
    if os.environ.get("TRITON_INTERPRET") != "1":
        raise SystemExit("set TRITON_INTERPRET=1 before running this script (Triton reads it at import)")
    install_cpu_stand_ins()
    import torch

    import modeling_pdefm.ssd_scan as scan
    from modeling_pdefm import PDEFMConfig, PDEFMModel

    if scan.mamba_chunk_scan_combined is None:
        raise SystemExit("mamba_ssm's mamba_chunk_scan_combined did not import")
    pinned = pin_autotune_configs()
    torch.manual_seed(0)
    config = PDEFMConfig.from_preset("tiny", datasets={"flow": {"n_fields": 2, "n_spatial_dims": 2}},
                                     num_layers=1, ssm_chunk_size=16, n_steps_input=2)
    model = PDEFMModel(config)
    with torch.no_grad():  # a fresh adapter predicts "no change": give the output map weights so gradients flow
        model.dataset_heads["flow"].out_proj.weight.normal_(std=0.1)
    g = torch.Generator().manual_seed(1)
    batch = {"input_fields": torch.randn(2, 2, 16, 16, 2, generator=g), "labels": torch.randn(2, 1, 16, 16, 2, generator=g)}

    def run(use_kernel: bool):
        scan.mamba_kernels_available = lambda x: use_kernel
        model.zero_grad(set_to_none=True)
        out = model(**batch)
        out.loss.backward()
        grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
        return out.prediction.detach(), out.loss.detach(), grads

    calls = []
    kernel = scan.mamba_chunk_scan_combined
    scan.mamba_chunk_scan_combined = lambda *a, **k: calls.append(1) or kernel(*a, **k)
    fast_prediction, fast_loss, fast_grads = run(True)
    kernel_calls = len(calls)
    reference_prediction, reference_loss, reference_grads = run(False)

    def relative(a, b, floor=1e-8):
        # The floor: some gradients are zero in exact arithmetic (a key bias under softmax) and 1e-13 in floats.
        return float((a - b).norm() / b.norm().clamp_min(floor))

    # The scan itself, outputs and gradients of all its inputs, with a carried-in state and a final state.
    inputs = [torch.randn(2, 45, 4, 8, generator=g), torch.nn.functional.softplus(torch.randn(2, 45, 4, generator=g) - 1),
              -torch.rand(4, generator=g) - 0.1, torch.randn(2, 45, 2, 16, generator=g), torch.randn(2, 45, 2, 16, generator=g),
              torch.randn(2, 4, 8, 16, generator=g)]
    scan_results = []
    for path in (kernel, scan.ssd_scan_chunked):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        y, final = path(*leaves[:5], 16, initial_states=leaves[5], return_final_states=True) if path is kernel else \
            path(*leaves[:5], 16, initial_state=leaves[5], return_final_state=True)
        (y.square().sum() + final.square().sum()).backward()
        scan_results.append((y.detach(), final.detach(), [t.grad for t in leaves]))
    (ky, kf, kg), (ry, rf, rg) = scan_results

    print(json.dumps({
        "kernel_calls": kernel_calls,
        "pinned_kernels": pinned,
        "scan_output": relative(ky, ry),
        "scan_final_state": relative(kf, rf),
        "scan_gradients": max(relative(a, b) for a, b in zip(kg, rg)),
        "prediction": relative(fast_prediction, reference_prediction),
        "loss": relative(fast_loss, reference_loss),
        "gradients": len(reference_grads),
        "gradients_missing": sorted(set(reference_grads) ^ set(fast_grads)),
        "max_gradient": max(relative(fast_grads[n], reference_grads[n]) for n in reference_grads if n in fast_grads),
    }))


if __name__ == "__main__":
    main()
