"""Train one of The Well's baselines on one dataset with The Well's recipe: 4 input steps, next-step MSE on z-score
normalised fields, AdamW with warm-up and cosine decay, here under a wall-clock budget."""

from __future__ import annotations

import os
import time

import torch

from pdefm.data import load_well_dataset, split_reader

from ..training.batches import ShardBatches
from ..training.schedule import WarmupCosine
from .forecaster import BaselineForecaster


def train_baseline(kind: str, data_dir: str, name: str, budget_seconds: float, seed: int = 0, batch_size: int = 8,
                   learning_rate: float = 1e-3, weight_decay: float = 0.01, warmup_steps: int = 20,
                   n_steps_input: int = 4, max_steps: int = 10**9, sizes: dict | None = None,
                   out_dir: str | None = None) -> tuple[BaselineForecaster, dict]:
    """Returns the trained forecaster (physical units in and out) and what the run did; saved to `out_dir`."""
    torch.manual_seed(seed)
    path = os.path.join(data_dir, name)
    dataset = load_well_dataset(path, split="train", n_steps_input=n_steps_input, n_steps_output=1, use_normalization=True)
    reader = split_reader(dataset)
    meta, normalizer = reader.meta, reader.normalizer
    spec = meta.model_spec()
    model = BaselineForecaster(kind, name, n_steps_input, spec["n_fields"], spec["n_constant_fields"],
                               meta.n_spatial_dims, tuple(meta.resolution), sizes)
    model.set_normalization(normalizer)
    batches = ShardBatches(name, dataset, batch_size, seed, rank=0)
    optimizer = torch.optim.AdamW(model.net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    schedule = WarmupCosine(warmup_steps, max_steps, 0.0, budget_seconds)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model.train()
    step, started, loss = 0, time.perf_counter(), torch.tensor(float("nan"))
    while not schedule.done(step):
        batch = batches.next_batch()
        constants = batch.get("constant_fields") if spec["n_constant_fields"] else None
        prediction = model(batch["input_fields"], constants)
        loss = torch.nn.functional.mse_loss(prediction, batch["output_fields"][:, :1])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.elapsed = time.perf_counter() - started
        scheduler.step()
        step += 1
    model.eval()
    info = {"kind": kind, "dataset": name, "steps": step, "seconds": schedule.elapsed, "samples": step * batches.batch_size,
            "final_loss": float(loss.detach()), "parameters": sum(p.numel() for p in model.net.parameters())}
    if out_dir is not None:
        model.save(out_dir)
    return model, info
