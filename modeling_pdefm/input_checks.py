"""Checks of what `PDEFMModel.forward` is given, each error naming the argument, the shape or value expected and
what came."""

from __future__ import annotations

from typing import Any

import torch

from .configuration_pdefm import PDEFMConfig

# Inputs beyond this magnitude are refused: squares (variances, energies) of them overflow float32.
MAX_INPUT_MAGNITUDE = 1e18


def tracing() -> bool:
    """Whether the forward is being traced (`torch.export`, `torch.compile`): checks that read tensor values, which a
    trace cannot branch on, are left to eager calls then."""
    return torch.compiler.is_compiling() or torch.compiler.is_exporting()


def available_memory_bytes() -> int | None:
    """Memory the system can still give (Linux `MemAvailable`), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def check_rollout_memory(input_fields: torch.Tensor, n_steps: int) -> None:
    """Refuse a rollout whose predicted frames alone would not fit in the free memory of the host (CPU tensors):
    `n_steps=10**6` would otherwise run for hours while memory grows."""
    if input_fields.device.type != "cpu" or n_steps < 2 or tracing():
        return
    needed = n_steps * input_fields[:, :1].numel() * 4 * 2  # float32 frames, kept in units and normalised
    available = available_memory_bytes()
    if available is not None and needed > available:
        raise ValueError(f"n_steps={n_steps}: the predicted frames alone would take {needed / 2**30:.1f} GiB, more "
                         f"than the {available / 2**30:.1f} GiB of free memory; roll out fewer steps at a time "
                         "(each call continues from the last frames of the one before)")


def check_inputs(config: PDEFMConfig, name: str, spec: dict[str, Any], input_fields, constant_fields, constant_scalars,
                 boundary_conditions, input_time_grid, output_time_grid, labels) -> None:
    """Raise a ValueError naming the argument, its expected shape and what it got, for inputs of dataset `name`."""
    d = spec["n_spatial_dims"]
    if not torch.is_tensor(input_fields) or input_fields.ndim != d + 3:
        shape = tuple(input_fields.shape) if torch.is_tensor(input_fields) else type(input_fields).__name__
        raise ValueError(
            f"input_fields for dataset {name!r} ({d} spatial dims) must be [batch, T_in, {', '.join('xyz'[:d])}, "
            f"channels] ({d + 3} dims); got shape {shape}"
        )
    batch, t_in, *space, channels = input_fields.shape
    if batch == 0 or t_in == 0:
        raise ValueError(f"input_fields must hold at least one sample and one input frame; got shape {tuple(input_fields.shape)}")
    if min(space) < 2:
        raise ValueError(f"input_fields must have at least 2 grid points along every spatial axis (a field's spatial "
                         f"variance is its VRMSE scale); got grid {tuple(space)}")
    for key, tensor in (("input_fields", input_fields), ("labels", labels), ("constant_fields", constant_fields),
                        ("constant_scalars", constant_scalars)):
        if tensor is not None and not tensor.is_floating_point():
            raise ValueError(f"{key} must be a floating-point tensor (it is cast to the model's dtype); got {tensor.dtype}")
    if labels is not None and labels.ndim >= 2 and labels.shape[1] == 0:
        raise ValueError(f"labels must hold at least one output frame; got shape {tuple(labels.shape)}")
    if channels != spec["n_fields"]:
        raise ValueError(f"input_fields has {channels} channels but dataset {name!r} has n_fields={spec['n_fields']}")
    if labels is not None and tuple(labels.shape[2:]) != tuple(input_fields.shape[2:]):
        raise ValueError(f"labels must be [batch, T_out, {', '.join(map(str, space))}, {channels}]; got {tuple(labels.shape)}")
    if labels is not None and labels.shape[0] != batch:
        raise ValueError(f"labels has batch size {labels.shape[0]}, input_fields has {batch}")
    n_const = spec["n_constant_fields"]
    if n_const:
        expected = (batch, *space, n_const)
        if constant_fields is None or tuple(constant_fields.shape) != expected:
            got = None if constant_fields is None else tuple(constant_fields.shape)
            raise ValueError(f"constant_fields for dataset {name!r} must have shape {expected}; got {got}")
    n_scalars = spec["n_constant_scalars"]
    if n_scalars:
        if constant_scalars is None or tuple(constant_scalars.shape) != (batch, n_scalars):
            got = None if constant_scalars is None else tuple(constant_scalars.shape)
            raise ValueError(f"constant_scalars for dataset {name!r} must have shape {(batch, n_scalars)}; got {got}")
    if boundary_conditions is not None:
        if tuple(boundary_conditions.shape) != (batch, d, 2):
            raise ValueError(
                f"boundary_conditions must have shape {(batch, d, 2)} (axis, low/high side); got {tuple(boundary_conditions.shape)}"
            )
        codes = boundary_conditions.double()
        invalid = (codes != 0) & (codes != 1) & (codes != 2)  # also catches 1.7, which used to read as OPEN
        if not tracing() and bool(invalid.any()):
            raise ValueError(f"boundary_conditions codes must be WALL=0, OPEN=1 or PERIODIC=2; got {codes[invalid][0].item()}")
    if input_time_grid is not None and tuple(input_time_grid.shape) != (batch, t_in):
        raise ValueError(f"input_time_grid must have shape {(batch, t_in)} (one time per input frame); got {tuple(input_time_grid.shape)}")
    if output_time_grid is not None:
        if output_time_grid.ndim != 2 or output_time_grid.shape[0] != batch:
            raise ValueError(f"output_time_grid must have shape [batch={batch}, T_out]; got {tuple(output_time_grid.shape)}")
        if labels is not None and output_time_grid.shape[1] != labels.shape[1]:
            raise ValueError(f"output_time_grid has {output_time_grid.shape[1]} steps but labels have {labels.shape[1]}")
    if config.check_finite_inputs and not tracing():
        for key, tensor in (("input_fields", input_fields), ("constant_fields", constant_fields),
                            ("constant_scalars", constant_scalars), ("labels", labels)):
            # One pass for the range: NaN and inf show in it, and so do values whose square overflows float32 (the
            # window's variance would be inf and the forecast all-inf without a word).
            if tensor is None or not tensor.is_floating_point() or tensor.numel() == 0:
                continue
            low, high = torch.aminmax(tensor.detach())
            if not (torch.isfinite(low) and torch.isfinite(high)):
                bad = (~torch.isfinite(tensor)).nonzero()
                raise ValueError(f"{key} holds {bad.shape[0]} non-finite values (first at index {tuple(bad[0].tolist())})")
            if max(-low.item(), high.item()) > MAX_INPUT_MAGNITUDE:
                raise ValueError(f"{key} holds values up to {max(-low.item(), high.item()):.3g} in magnitude, beyond "
                                 f"{MAX_INPUT_MAGNITUDE:g} (their squares overflow float32, so the forecast would be "
                                 "inf); rescale the data to physical units of moderate size")


def resolve_dataset(config: PDEFMConfig, dataset_name: Any) -> str:
    """The dataset a batch is for: `dataset_name` (one name, or one per sample that all agree), or the model's only
    dataset when it is None."""
    if isinstance(dataset_name, (list, tuple)):  # a collated batch carries one name per sample
        names = set(dataset_name)
        if len(names) != 1:
            raise ValueError(f"a batch must hold one dataset, got dataset_name values {sorted(names)}")
        dataset_name = names.pop()
    if dataset_name is None:
        if len(config.datasets) == 1:
            return next(iter(config.datasets))
        raise ValueError(f"dataset_name is required; known datasets: {sorted(config.datasets)}")
    if dataset_name not in config.datasets:
        raise ValueError(
            f"unknown dataset_name {dataset_name!r}; known datasets: {sorted(config.datasets)}. "
            "Use model.add_dataset(...) to add a new one."
        )
    return dataset_name


def resolve_n_steps(n_steps: Any, labels: torch.Tensor | None, output_time_grid: torch.Tensor | None) -> int:
    """Frames to predict: as many as `labels` hold, else `n_steps`, else as many as `output_time_grid` holds, else 1."""
    if n_steps is not None and (isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1):
        raise ValueError(f"n_steps must be a positive int (frames to predict), got {n_steps!r}")
    if labels is not None:
        return labels.shape[1]
    if n_steps is not None:  # asked for explicitly: a longer output_time_grid only gives the steps' times
        return n_steps
    if output_time_grid is not None:
        if output_time_grid.shape[1] == 0:
            raise ValueError("output_time_grid holds no output frame; give at least one time or use n_steps")
        return output_time_grid.shape[1]
    return 1
