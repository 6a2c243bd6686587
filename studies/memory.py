"""Peak memory of PDE-FM training steps, measured in a fresh process (a process's peak resident size only grows,
so measuring two models in one process would report the larger for both)."""

from __future__ import annotations

import multiprocessing
import resource


def _resident_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _measure(queue, config: dict, name: str, spec: dict, shape: tuple[int, ...], batch_size: int, steps: int) -> None:
    import torch

    from modeling_pdefm import PDEFMConfig, PDEFMModel

    torch.manual_seed(0)
    model = PDEFMModel(PDEFMConfig(**{**config, "datasets": {name: spec}})).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    t_in = config.get("n_steps_input") or 4
    inputs = torch.randn(batch_size, t_in, *shape, spec["n_fields"])
    labels = torch.randn(batch_size, 1, *shape, spec["n_fields"])
    extra = {}
    if spec.get("n_constant_scalars"):
        extra["constant_scalars"] = torch.ones(batch_size, spec["n_constant_scalars"])
    if spec.get("n_constant_fields"):
        extra["constant_fields"] = torch.randn(batch_size, *shape, spec["n_constant_fields"])
    before = _resident_mb()
    for _ in range(steps):
        optimizer.zero_grad(set_to_none=True)
        model(input_fields=inputs, dataset_name=name, labels=labels, **extra).loss.backward()
        optimizer.step()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
    queue.put({"peak_rss_mb": peak, "step_mb": peak - before})


def training_step_memory(config: dict, name: str, spec: dict, shape: tuple[int, ...], batch_size: int = 8,
                         steps: int = 2) -> dict[str, float]:
    """Peak resident memory (MB) of a process that builds the model from `config` (a `PDEFMConfig` dict) with one
    dataset and trains `steps` steps on random fields of `shape`; `step_mb` is the part above what it held before
    the first step (activations, gradients, optimizer state)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(queue, config, name, spec, tuple(shape), batch_size, steps))
    process.start()
    process.join()  # the result is a few numbers: the child's queue flushes them before it exits
    if process.exitcode != 0 or queue.empty():
        raise RuntimeError(f"the memory measurement of {config.get('backbone')!r} on {name!r} failed "
                           f"(exit code {process.exitcode})")
    return queue.get(timeout=10)
