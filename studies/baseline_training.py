"""Train one of The Well's baselines on one dataset with The Well's recipe: 4 input steps, next-step MSE on z-score
normalised fields, AdamW with warm-up and cosine decay, here under a wall-clock or a step budget.

Every `valid_every` steps the run measures one-step VRMSE (physical units) on a fixed slice of the validation split
and records it against training seconds and samples seen: the learning curve. Its state (weights, optimizer,
schedule, data position, curve) is saved atomically to `<out_dir>/training_state.safetensors` every
`checkpoint_seconds` (tensors in safetensors, the rest as JSON in its metadata: nothing is unpickled on resume), so a
killed run continues where it stopped; a finished run is loaded, not retrained.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings

import torch
from pdefm.data import load_well_dataset, split_reader
from pdefm.train.baselines.forecaster import BaselineForecaster
from pdefm.train.evaluation.rollout import evaluate_one_step
from pdefm.train.training.batches import ShardBatches
from pdefm.train.training.checkpointing import optimizer_from_plain, optimizer_to_plain
from pdefm.train.training.schedule import WarmupCosine
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

STATE_FILE = "training_state.safetensors"
# Written by earlier versions as a pickle: never opened (a planted one would run code), a run beside one starts over.
OLD_STATE_FILE = "training_state.pt"
INFO_FILE = "train_info.json"
BASELINE_BATCH, BASELINE_INPUT_STEPS = 8, 4  # The Well's recipe as run here


def validation_vrmse(model: BaselineForecaster, dataset, n_spatial_dims: int, n_batches: int) -> tuple[float, float]:
    """Mean one-step VRMSE (physical units) of the model and of persistence over a fixed, evenly spread slice of
    `dataset`, the model in eval mode (U-Net's batch norm)."""
    was_training = model.training
    model.eval()
    result = evaluate_one_step(model, dataset, n_spatial_dims, n_batches=n_batches)
    model.train(was_training)
    return result["vrmse"], result["persistence_vrmse"]


def _save_state(path: str, model_state: dict, optimizer_state: dict, rng: torch.Tensor, rest: dict) -> None:
    """Tensors (`model.*`, `optimizer.*`, `rng`) in one safetensors file, everything else as JSON in its metadata;
    written to a temporary file and renamed, so a kill leaves the previous state whole."""
    opt_tensors, opt_plain = optimizer_to_plain(optimizer_state)
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model_state.items()}
    tensors.update({f"optimizer.{k}": v for k, v in opt_tensors.items()})
    tensors["rng"] = rng
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata={"state": json.dumps({**rest, "optimizer": opt_plain})})
    os.replace(tmp, path)


def _load_state(path: str) -> tuple[dict, dict, torch.Tensor, dict]:
    """(model state dict, optimizer state dict, torch RNG state, the JSON rest) of `_save_state`'s file."""
    try:
        tensors = load_file(path)
        with safe_open(path, "pt") as f:
            rest = json.loads(f.metadata()["state"])
    except (SafetensorError, OSError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a baseline training state written by this version ({error}); delete it to "
                         "train the baseline from the start") from None
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    optimizer = optimizer_from_plain({k[len("optimizer."):]: v for k, v in tensors.items() if k.startswith("optimizer.")},
                                     rest.pop("optimizer"))
    return model, optimizer, tensors["rng"], rest


def train_baseline(kind: str, data_dir: str, name: str, budget_seconds: float | None, seed: int = 0,
                   batch_size: int = BASELINE_BATCH, learning_rate: float = 1e-3, weight_decay: float = 0.01,
                   warmup_steps: int = 20, n_steps_input: int = BASELINE_INPUT_STEPS, max_steps: int = 10**9,
                   sizes: dict | None = None,
                   out_dir: str | None = None, valid_every: int = 100, valid_batches: int = 4,
                   checkpoint_seconds: float = 60.0, stop_after: int | None = None,
                   target: str = "next") -> tuple[BaselineForecaster, dict]:
    """Returns the trained forecaster (physical units in and out) and what the run did (steps, seconds, samples,
    parameters, learning curve), trained for `budget_seconds` of wall-clock or, with None, for `max_steps` steps (the
    schedule decays over whichever ends it); saved to `out_dir`, where an unfinished run is resumed and a finished one loaded.
    `stop_after` simulates an interruption after that step, its state saved (tests)."""
    if out_dir is not None and os.path.isfile(os.path.join(out_dir, INFO_FILE)):
        with open(os.path.join(out_dir, INFO_FILE)) as f:
            return BaselineForecaster.load(out_dir), json.load(f)
    torch.manual_seed(seed)
    path = os.path.join(data_dir, name)
    dataset = load_well_dataset(path, split="train", n_steps_input=n_steps_input, n_steps_output=1, use_normalization=True)
    valid = load_well_dataset(path, split="valid", n_steps_input=n_steps_input, n_steps_output=1)
    reader = split_reader(dataset)
    meta, normalizer = reader.meta, reader.normalizer
    spec = meta.model_spec()
    model = BaselineForecaster(kind, name, n_steps_input, spec["n_fields"], spec["n_constant_fields"],
                               meta.n_spatial_dims, tuple(meta.resolution), sizes, target)
    model.set_normalization(normalizer)
    batches = ShardBatches(name, dataset, batch_size, seed, rank=0)
    optimizer = torch.optim.AdamW(model.net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    schedule = WarmupCosine(warmup_steps, max_steps, 0.0, budget_seconds)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    state_path = os.path.join(out_dir, STATE_FILE) if out_dir is not None else None
    step, curve, persistence = 0, [], math.nan  # persistence: measured beside every curve point
    if out_dir is not None and os.path.exists(os.path.join(out_dir, OLD_STATE_FILE)):
        warnings.warn(f"{os.path.join(out_dir, OLD_STATE_FILE)}: a training state of an earlier version (a pickle) is "
                      "not read; this baseline is trained from the start")
    if state_path is not None and os.path.isfile(state_path):
        model_state, optimizer_state, rng, state = _load_state(state_path)
        model.load_state_dict(model_state)
        optimizer.load_state_dict(optimizer_state)
        scheduler.load_state_dict(state["scheduler"])
        step, curve, batches.draws = state["step"], state["curve"], state["draws"]
        schedule.elapsed = state["elapsed"]
        torch.set_rng_state(rng)
        persistence = state["persistence"]

    def record() -> None:
        nonlocal persistence
        value, persistence = validation_vrmse(model, valid, meta.n_spatial_dims, valid_batches)
        curve.append({"step": step, "samples": step * batches.batch_size, "seconds": schedule.elapsed,
                      "valid_vrmse": value})

    def save_state() -> None:
        if state_path is not None:
            os.makedirs(out_dir, exist_ok=True)
            _save_state(state_path, model.state_dict(), optimizer.state_dict(), torch.get_rng_state(),
                        {"scheduler": scheduler.state_dict(), "step": step, "curve": curve, "draws": batches.draws,
                         "elapsed": schedule.elapsed, "persistence": persistence})

    if not curve:
        record()
    model.train()
    started, elapsed_before, saved_at = time.perf_counter(), schedule.elapsed, time.perf_counter()
    loss = torch.tensor(float("nan"))
    while not schedule.done(step):
        batch = batches.next_batch()
        constants = batch.get("constant_fields") if spec["n_constant_fields"] else None
        prediction = model(batch["input_fields"], constants)
        wanted = model.training_target(batch["input_fields"], batch["output_fields"][:, :1])
        loss = torch.nn.functional.mse_loss(prediction, wanted)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.elapsed = elapsed_before + time.perf_counter() - started
        scheduler.step()
        step += 1
        if step % valid_every == 0:
            record()
        if time.perf_counter() - saved_at > checkpoint_seconds or step == stop_after:
            save_state()
            saved_at = time.perf_counter()
        if step == stop_after:
            raise KeyboardInterrupt(f"stopped at step {step} (simulated interruption)")
    if not curve or curve[-1]["step"] != step:
        record()
    model.eval()
    info = {"kind": kind, "dataset": name, "steps": step, "seconds": schedule.elapsed, "samples": step * batches.batch_size,
            "final_loss": float(loss.detach()), "parameters": sum(p.numel() for p in model.net.parameters()),
            "sizes": dict(sizes or {}), "target": target, "valid_persistence_vrmse": persistence, "curve": curve}
    if out_dir is not None:
        model.save(out_dir)
        with open(os.path.join(out_dir, INFO_FILE), "w") as f:
            json.dump(info, f, indent=2)
        if os.path.isfile(state_path):
            os.remove(state_path)  # finished: the saved model and its info replace the training state
    return model, info
