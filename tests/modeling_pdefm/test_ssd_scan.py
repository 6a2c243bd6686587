import pytest
import torch

from modeling_pdefm import ssd_scan as scan


def random_inputs(batch=2, length=37, heads=4, head_dim=8, groups=2, state=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, length, heads, head_dim, generator=g)
    dt = torch.nn.functional.softplus(torch.randn(batch, length, heads, generator=g) - 1)
    A = -torch.rand(heads, generator=g) * 2 - 0.1
    B = torch.randn(batch, length, groups, state, generator=g)
    C = torch.randn(batch, length, groups, state, generator=g)
    return x, dt, A, B, C


def relative_error(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("length,chunk", [(1, 8), (37, 8), (64, 16), (50, 64), (200, 32)])
def test_chunked_scan_matches_sequential_reference(length, chunk):
    x, dt, A, B, C = random_inputs(length=length)
    reference = scan.ssd_scan_sequential(x, dt, A, B, C)
    assert relative_error(scan.ssd_scan_chunked(x, dt, A, B, C, chunk), reference) < 1e-5


def test_chunked_scan_gradients_match_reference():
    inputs = [t.clone().requires_grad_(True) for t in random_inputs(length=29)]
    scan.ssd_scan_chunked(*inputs, 8).square().sum().backward()
    fast = [t.grad.clone() for t in inputs]
    for t in inputs:
        t.grad = None
    scan.ssd_scan_sequential(*inputs).square().sum().backward()
    for got, want in zip(fast, [t.grad for t in inputs]):
        assert relative_error(got, want) < 1e-5


def test_scan_is_causal():
    x, dt, A, B, C = random_inputs(length=40)
    y = scan.ssd_scan_chunked(x, dt, A, B, C, 16)
    x2 = x.clone()
    x2[:, 30:] += 5.0
    y2 = scan.ssd_scan_chunked(x2, dt, A, B, C, 16)
    assert torch.allclose(y[:, :30], y2[:, :30])
    assert not torch.allclose(y[:, 30:], y2[:, 30:])


def test_cpu_tensors_use_the_pytorch_scan(monkeypatch):
    x, dt, A, B, C = random_inputs(length=10)
    assert not scan.mamba_kernels_available(x)
    calls = []
    monkeypatch.setattr(scan, "ssd_scan_chunked", lambda *a, **k: calls.append(a) or torch.zeros(1))
    scan.ssd_scan(x, dt, A, B, C, 8)
    assert len(calls) == 1


def test_cuda_tensors_use_the_kernel_when_installed(monkeypatch):
    # The dispatch itself: with a (stand-in) kernel importable and a tensor that reports CUDA, the kernel is called.
    x, dt, A, B, C = random_inputs(length=10)
    calls = []
    monkeypatch.setattr(scan, "mamba_chunk_scan_combined", lambda *a, **k: calls.append(a) or "kernel")
    monkeypatch.setattr(scan, "mamba_kernels_available", lambda t: True)
    assert scan.ssd_scan(x, dt, A, B, C, 8) == "kernel"
    assert len(calls) == 1


def test_scan_continues_from_a_carried_state():
    x, dt, A, B, C = random_inputs(length=50)
    whole, whole_state = scan.ssd_scan_chunked(x, dt, A, B, C, 8, return_final_state=True)
    first, state = scan.ssd_scan_chunked(x[:, :21], dt[:, :21], A, B[:, :21], C[:, :21], 8, return_final_state=True)
    second, final = scan.ssd_scan_chunked(x[:, 21:], dt[:, 21:], A, B[:, 21:], C[:, 21:], 8, state, True)
    assert relative_error(torch.cat([first, second], 1), whole) < 1e-5
    assert relative_error(final, whole_state) < 1e-5
    _, reference_state = scan.ssd_scan_sequential(x, dt, A, B, C, return_final_state=True)
    assert relative_error(whole_state, reference_state) < 1e-5


@pytest.mark.parametrize("length,chunk", [(29, 8), (32, 8), (5, 16), (64, 4)])
def test_chunked_scan_gradients_with_carried_states_match_the_recurrence(length, chunk):
    """The written-out backward of the chunked scan against autograd through the sequential recurrence, in float64:
    every input's gradient, the initial state's included, from a loss on the outputs and on the final state."""
    g = torch.Generator().manual_seed(1)
    inputs = [t.double() for t in random_inputs(length=length)]
    initial = torch.randn(2, 4, 8, 16, generator=g, dtype=torch.float64)
    weights = torch.randn(2, length, 4, 8, generator=g, dtype=torch.float64)

    def gradients(run):
        leaves = [t.clone().requires_grad_(True) for t in (*inputs, initial)]
        y, final = run(*leaves)
        ((y * weights).sum() + final.square().sum()).backward()
        return [t.grad for t in leaves]

    fast = gradients(lambda x, dt, A, B, C, h0: scan.ssd_scan_chunked(x, dt, A, B, C, chunk, h0, True))
    reference = gradients(lambda x, dt, A, B, C, h0: scan.ssd_scan_sequential(x, dt, A, B, C, h0, True))
    for name, got, want in zip(("x", "dt", "A", "B", "C", "initial"), fast, reference):
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-9, msg=name)


def test_chunked_scan_runs_in_float32_under_bf16_autocast():
    """Under autocast the scan keeps float32 inside and gives results and gradients in its inputs' dtypes."""
    inputs = [t.bfloat16().requires_grad_(True) for t in random_inputs(length=20)]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, final = scan.ssd_scan_chunked(*inputs, 8, return_final_state=True)
    assert y.dtype == final.dtype == torch.bfloat16
    (y.float().square().sum() + final.float().sum()).backward()
    assert all(t.grad.dtype == torch.bfloat16 and torch.isfinite(t.grad).all() for t in inputs)
    reference = scan.ssd_scan_sequential(*[t.detach().float() for t in inputs])
    assert relative_error(y.float(), reference) < 1e-2
