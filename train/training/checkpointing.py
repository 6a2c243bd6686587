"""Training checkpoints with no pickle anywhere: tensors in safetensors, everything else in JSON.

A checkpoint is a folder `<output_dir>/checkpoints/step_XXXXXXXX/`:

- `model.safetensors`: the whole (unwrapped) model's state dict;
- `rank{r}.safetensors` and `rank{r}.json`: process r's optimizer state (tensors / the rest) and random states
  (torch, CUDA, NumPy, Python), and its training-state extras (data position);
- `trainer_state.json`, written last: step, counters, schedule, curriculum sampler and the run's settings.

It is written into a temporary folder and renamed when complete, so a kill while saving never leaves a broken
latest checkpoint; the last `keep` are kept. On resume only these files are opened, with `json` and safetensors:
a pickle planted in a checkpoint folder (Accelerate's `*.pkl`, `*.bin`) is never read. A checkpoint that fails to
read (truncated, corrupt) is skipped with a warning for the one before it.
"""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as load_safetensors_bytes
from safetensors.torch import save as save_safetensors_bytes

STATE_FILE = "trainer_state.json"
MODEL_FILE = "model.safetensors"
PATTERN = re.compile(r"^step_(\d{8})$")
FORMAT_VERSION = 2


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be written or read; the message names the folder or file and why."""


def checkpoint_root(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def complete_checkpoints(output_dir: str) -> list[str]:
    """Renamed (complete) checkpoint folders holding their state file, oldest first."""
    root = checkpoint_root(output_dir)
    if not os.path.isdir(root):
        return []
    names = sorted(d for d in os.listdir(root) if PATTERN.match(d) and os.path.exists(os.path.join(root, d, STATE_FILE)))
    return [os.path.join(root, d) for d in names]


def latest_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint, or None (it may still fail to read: `read_latest_checkpoint` falls back)."""
    found = complete_checkpoints(output_dir)
    return found[-1] if found else None


# --------------------------------------------------------------------------------------------- plain values
def _rank_files(rank: int) -> tuple[str, str]:
    return f"rank{rank}.safetensors", f"rank{rank}.json"


def optimizer_to_plain(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """Split `optimizer.state_dict()` into tensors (`state.<param id>.<key>`) and a JSON-able rest."""
    tensors, per_param = {}, {}
    for param_id, entry in state["state"].items():
        rest = {}
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"state.{param_id}.{key}"] = value.detach().cpu().contiguous()
            else:
                rest[key] = value
        per_param[str(param_id)] = rest
    return tensors, {"param_groups": state["param_groups"], "state": per_param}


def optimizer_from_plain(tensors: dict[str, torch.Tensor], plain: dict) -> dict:
    state: dict[int, dict[str, Any]] = {int(k): dict(v) for k, v in plain["state"].items()}
    for name, value in tensors.items():
        _, param_id, key = name.split(".", 2)
        state.setdefault(int(param_id), {})[key] = value
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in group.items()} for group in plain["param_groups"]]
    return {"state": state, "param_groups": groups}


def rng_to_plain() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for index, value in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{index}"] = value
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    return tensors, {"numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
                     "python": [version, list(internal), gauss]}


def rng_from_plain(tensors: dict[str, torch.Tensor], plain: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")), key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))


# --------------------------------------------------------------------------------------------- writing
def _write_bytes(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_json(path: str, value: Any) -> None:
    _write_bytes(path, json.dumps(value).encode())


def save_checkpoint(accelerator, output_dir: str, step: int, *, model, optimizer, trainer_state: dict,
                    rank_state: dict, keep: int) -> str:
    """Write checkpoint `step` atomically. `trainer_state` (JSON-able, same on every process) is written by the main
    process; `rank_state` (JSON-able) and the optimizer and random states by every process."""
    root = checkpoint_root(output_dir)
    final = os.path.join(root, f"step_{step:08d}")
    tmp = os.path.join(root, f".tmp_step_{step:08d}")
    if accelerator.is_main_process:
        os.makedirs(root, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
    accelerator.wait_for_everyone()
    model_state = accelerator.get_state_dict(model)  # collective under FSDP: every process takes part
    try:
        if accelerator.is_main_process:
            # clone: safetensors refuses tensors that share storage
            _write_bytes(os.path.join(tmp, MODEL_FILE),
                         save_safetensors_bytes({k: v.detach().cpu().clone().contiguous() for k, v in model_state.items()}))
        optimizer_tensors, optimizer_plain = optimizer_to_plain(optimizer.state_dict())
        rng_tensors, rng_plain = rng_to_plain()
        tensor_file, json_file = _rank_files(accelerator.process_index)
        _write_bytes(os.path.join(tmp, tensor_file), save_safetensors_bytes({
            **{f"optimizer.{k}": v for k, v in optimizer_tensors.items()}, **rng_tensors}))
        _write_json(os.path.join(tmp, json_file), {"optimizer": optimizer_plain, "rng": rng_plain, "state": rank_state})
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _write_json(os.path.join(tmp, STATE_FILE),
                        {**trainer_state, "step": step, "world_size": accelerator.num_processes,
                         "format_version": FORMAT_VERSION})
            if os.path.exists(final):
                shutil.rmtree(final)
            os.replace(tmp, final)
            for old in complete_checkpoints(output_dir)[:-keep]:
                shutil.rmtree(old, ignore_errors=True)
    except OSError as error:
        shutil.rmtree(tmp, ignore_errors=True)
        previous = latest_checkpoint(output_dir)
        kept = f"; the previous checkpoint {previous} is kept" if previous else ""
        if error.errno == errno.ENOSPC:
            raise CheckpointError(f"no space left on device while writing checkpoint {final}{kept}. Free space or "
                                  "lower keep_checkpoints, then continue with --resume") from None
        raise CheckpointError(f"could not write checkpoint {final}: {error}{kept}") from error
    accelerator.wait_for_everyone()
    return final


# --------------------------------------------------------------------------------------------- reading
@dataclass
class Checkpoint:
    """Everything one process needs from a checkpoint, read into memory before anything is applied."""

    path: str
    trainer_state: dict
    model_state: dict[str, torch.Tensor]
    optimizer_state: dict
    rng_tensors: dict[str, torch.Tensor]
    rng_plain: dict
    rank_state: dict = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.trainer_state["step"])


def _read_json(path: str) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None


def _read_safetensors(path: str) -> dict[str, torch.Tensor]:
    try:
        with open(path, "rb") as f:
            return load_safetensors_bytes(f.read())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except Exception as error:  # noqa: BLE001 - safetensors raises its own error types for damaged files
        raise CheckpointError(f"{path}: not a readable safetensors file (truncated or damaged: {error})") from None


def read_checkpoint(path: str, rank: int) -> Checkpoint:
    """Read checkpoint folder `path` for process `rank`; any missing or damaged part raises `CheckpointError`."""
    state = _read_json(os.path.join(path, STATE_FILE))
    if not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{os.path.join(path, STATE_FILE)}: expected a mapping with an integer 'step'")
    if state.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format {state.get('format_version')!r}, this code reads "
                              f"{FORMAT_VERSION} (checkpoints of older versions were pickles and are not read)")
    tensor_file, json_file = _rank_files(rank)
    tensors = _read_safetensors(os.path.join(path, tensor_file))
    plain = _read_json(os.path.join(path, json_file))
    try:
        optimizer = optimizer_from_plain({k[len("optimizer."):]: v for k, v in tensors.items() if k.startswith("optimizer.")},
                                         plain["optimizer"])
        rng_tensors = {k: v for k, v in tensors.items() if k.startswith("rng.")}
        rng_plain, rank_state = plain["rng"], plain.get("state", {})
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{os.path.join(path, json_file)}: malformed ({error!r})") from None
    return Checkpoint(path, state, _read_safetensors(os.path.join(path, MODEL_FILE)), optimizer, rng_tensors,
                      rng_plain, rank_state)


def read_latest_checkpoint(output_dir: str, rank: int) -> Checkpoint | None:
    """The newest checkpoint that reads completely; a damaged newer one is skipped with a warning naming it."""
    for path in reversed(complete_checkpoints(output_dir)):
        try:
            return read_checkpoint(path, rank)
        except CheckpointError as error:
            warnings.warn(f"skipping checkpoint {path}: {error}; trying the one before it", stacklevel=2)
    return None


def apply_checkpoint(checkpoint: Checkpoint, model, optimizer) -> None:
    """Load weights, optimizer and random states (the model is the unwrapped one)."""
    result = model.load_state_dict(checkpoint.model_state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{checkpoint.path}: the checkpoint's weights do not fit this model (missing {result.missing_keys[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}); was it written by a run with another model or datasets?")
    try:
        optimizer.load_state_dict(checkpoint.optimizer_state)
    except (ValueError, KeyError) as error:
        raise CheckpointError(f"{checkpoint.path}: the optimizer state does not fit this model ({error})") from None
    rng_from_plain(checkpoint.rng_tensors, checkpoint.rng_plain)
