"""The training loop shared by pretraining and finetuning, as steps a reader can follow:

    set up (`prepare_run`) -> resume (`resume_run`) -> repeat { one step (`train_step`), validation (`validate`),
    checkpoint (`save_run_checkpoint`) } -> report (`final_report`, then the caller's `finish`).

`fit` runs them under the output folder's lock. Everything a step needs lives in one `RunState`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType
from pdefm.data.fingerprint import dataset_fingerprint, dataset_version
from tqdm.auto import tqdm

from pdefm.runtime.threads import refresh_threads

from ..evaluation.forecasters import PDEFMForecaster, model_inputs
from ..evaluation.metrics import fields_beaten, vrmse
from ..evaluation.report import CHANGE_COLUMNS_NOTE, change_cells, learning_verdict, vrmse_cell
from ..evaluation.rollout import one_step_vrmse, rollout_windows
from ..evaluation.spectra import SPECTRA_NOTE, spectral_flags
from ..evaluation.suite import evaluate_model
from ..evaluation.verdicts import dataset_verdict, verdict_sentence
from ..evaluation.windows import evaluation_batches
from ..model_files.model_card import metrics_table
from .batches import MultiDatasetBatches, load_shard
from .checkpointing import (CheckpointError, apply_checkpoint, checkpoint_root, complete_checkpoints,
                            read_latest_checkpoint, save_checkpoint)
from .config import CHANGEABLE_ON_RESUME, DATA_FILES_KEY, DATA_VERSION_KEY, TRAINING_KEYS_IN_MODEL, PretrainConfig, resume_conflicts
from .curriculum import CurriculumSampler
from .output_dir import EVALUATION_FOLDER, prepare_output_dir
from .pushforward import pushforward_batch, pushforward_most, pushforward_steps_at
from .run_lock import output_dir_lock
from .schedule import WarmupCosine


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row."""


def reset_accelerate_state() -> None:
    """Forget Accelerate's process-wide singletons, so one process can run several trainings in a row (studies)."""
    from accelerate.state import AcceleratorState, GradientState, PartialState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def make_accelerator(config: PretrainConfig) -> Accelerator:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    # `accelerate launch --multi_gpu` on a machine without GPUs: run the ranks on the CPU over gloo instead of
    # starting unrelated single processes that would all write the same checkpoint.
    cpu = not torch.cuda.is_available()
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    accelerator = Accelerator(
        cpu=cpu,
        mixed_precision=precision,
        log_with=None if config.log_with == "none" else config.log_with,
        project_dir=config.output_dir,
        step_scheduler_with_optimizer=False,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],  # other datasets' adapters idle
    )
    if world > 1 and accelerator.num_processes != world:
        raise RuntimeError(
            f"WORLD_SIZE is {world} but Accelerate formed {accelerator.num_processes} process(es); on a machine "
            "without GPUs launch with ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N"
        )
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true" and accelerator.distributed_type != DistributedType.FSDP:
        accelerator.print(f"note: the launch config asks for FSDP, but Accelerate runs FSDP on GPUs only; these "
                          f"{accelerator.num_processes} process(es) train as {accelerator.distributed_type.value} "
                          "(every rank holds the whole model)")
    return accelerator


class ResumeConfigError(ValueError):
    """`--resume` with settings that change what the checkpointed run computes."""



@dataclass
class RunState:
    """What the loop carries from step to step (set up by `prepare_run`, restored by `resume_run`)."""

    model: Any
    optimizer: torch.optim.Optimizer
    scheduler: Any  # the prepared LR scheduler
    lr_schedule: torch.optim.lr_scheduler.LambdaLR
    schedule: WarmupCosine
    sampler: CurriculumSampler
    batches: MultiDatasetBatches
    valid_sets: dict
    trainable: list
    settings: dict  # the run's settings as a checkpoint records them
    budget: float | None  # seconds of training, or None for a step budget
    step: int = 0
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0
    reference: dict | None = None  # persistence's validation VRMSE, for the "relative" difficulty measure
    curve: list = field(default_factory=list)  # validation VRMSE against step and training seconds
    # Where the wall-clock went: training steps per dataset drawn, validation, checkpoints (seconds).
    time_spent: dict = field(default_factory=lambda: {"datasets": {}, "validation": 0.0, "checkpoints": 0.0})


@dataclass
class StepResult:
    """One optimizer step: the dataset it drew, the loss and its parts, or `skipped` when the loss was not finite."""

    name: str
    loss: torch.Tensor | None = None
    parts: dict = field(default_factory=dict)
    grad_norm: float = 0.0
    skipped: bool = False


def fit(accelerator: Accelerator, config: PretrainConfig, model, names: list[str], specs: dict, *, resume: bool = False,
        allow_config_change: bool = False, run_settings: dict | None = None, stop_after: int | None = None,
        finish: Callable | None = None, run_name: str = "pretrain", overwrite_output_dir: bool = False,
        output_names: tuple[str, ...] = ()) -> dict:
    """Train `model` on `names`: curriculum over the datasets, the model's own objective (VRMSE + spectral term) on
    the parameters that require gradients, atomic checkpoints, resume, a step or wall-clock budget. At the end the
    main process measures one-step VRMSE on `config.report_split` and calls `finish(model, report, seconds, steps)`.

    The output folder is locked for the run. `run_settings` (JSON-able) are compared with a checkpoint's on resume,
    with the config; a difference outside `CHANGEABLE_ON_RESUME` needs `allow_config_change`. Logs go to
    `output_dir/<run_name>`. A fresh run into a folder holding an earlier one is refused unless
    `overwrite_output_dir`, which deletes it first (`prepare_output_dir`); `output_names` are the names the caller
    writes at the top of the folder besides the run's own (an adapter's folder). `stop_after` simulates an interruption
    (tests)."""
    with output_dir_lock(config.output_dir, enabled=accelerator.is_main_process):
        prepare_output_dir(config.output_dir, resume, overwrite_output_dir, run_name, clear=accelerator.is_main_process,
                           extra_names=output_names)
        accelerator.wait_for_everyone()
        run = prepare_run(accelerator, config, model, names, run_settings or {})
        if resume:
            resume_run(accelerator, config, run, allow_config_change)
        if config.log_with != "none":
            accelerator.init_trackers(run_name, config={k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                                                          for k, v in config.to_dict().items()})
        accelerator.print(f"datasets {names}; sampling probabilities {_rounded(run.sampler.probabilities(), 3)}")
        if config.difficulty_measure in ("relative", "yardstick"):
            run.reference = validate(run.model, accelerator, config, run.valid_sets, specs, persistence=True)
        if config.difficulty_measure == "yardstick":  # the better of persistence and the stencil, per dataset
            from ..baselines.linear import LinearStencil, fit_yardsticks

            stencil = fit_yardsticks(config.data_dir, names, config.n_steps_input)[LinearStencil.label]
            fitted = validate(run.model, accelerator, config, run.valid_sets, specs, forecaster=stencil)
            run.reference = {k: min(v, fitted[k]) for k, v in run.reference.items()}
            accelerator.print(f"curriculum reference (best of persistence and the linear stencil): "
                              f"{_rounded(run.reference, 4)}")
        if run.step == 0:  # where the learning curve starts (a pretrained model's zero-shot point)
            record_validation(run, validate(run.model, accelerator, config, run.valid_sets, specs), accelerator.num_processes)
        train_loop(accelerator, config, run, specs, stop_after)
        accelerator.wait_for_everyone()
        report = {}
        if accelerator.is_main_process:
            unwrapped = accelerator.unwrap_model(run.model).eval()
            report = final_report(unwrapped, config, names, specs)
            processes = accelerator.num_processes
            for name in names:  # what the mixture gave each dataset (the "alone vs mixed" comparison needs it)
                stream = run.batches.streams[name]
                report[name]["train_seconds"] = run.time_spent["datasets"].get(name, 0.0)
                report[name]["train_samples"] = stream.draws * stream.batch_size * processes
            if finish is not None:
                finish(unwrapped, report, run.schedule.elapsed, run.step)
            with open(os.path.join(config.output_dir, "validation_curve.json"), "w") as f:
                json.dump({"persistence": run.reference, "points": run.curve, "time_spent": run.time_spent}, f,
                          indent=2)
            with open(os.path.join(config.output_dir, "pretrain_config.json"), "w") as f:
                json.dump(config.to_dict(), f, indent=2)
        accelerator.end_training()
        return report


def _rounded(values: dict[str, float], digits: int) -> str:
    return json.dumps({k: round(v, digits) for k, v in values.items()})


def prepare_run(accelerator: Accelerator, config: PretrainConfig, model, names: list[str], run_settings: dict) -> RunState:
    """Data streams, curriculum, optimizer and schedule, prepared by Accelerate; the model's config records the
    training keys; `run_info/rank<k>.json` says what this process reads."""
    batches = MultiDatasetBatches(config.data_dir, names, "train", config.batch_size, config.n_steps_input,
                                  config.n_steps_output + config.pushforward_steps, config.use_normalization, config.seed,
                                  accelerator.process_index, accelerator.num_processes, config.train_trajectories,
                                  config.batch_sizes)
    sampler = CurriculumSampler(batches.full_sizes, config.temperature, config.difficulty_alpha, config.difficulty_eps,
                                config.difficulty_ema, config.seed,
                                costs=batches.step_costs() if config.curriculum_shares == "compute" else None)
    valid_sets = {
        name: load_shard(config.data_dir, name, "valid", config.n_steps_input, config.n_steps_output,
                         config.use_normalization, accelerator.process_index, accelerator.num_processes)[0]
        for name in names
    }
    for key in TRAINING_KEYS_IN_MODEL:  # the saved model says how it was trained; evaluation and predict default to it
        setattr(model.config, key, getattr(config, key))
    trainable = [p for p in model.parameters() if p.requires_grad]
    # Fused AdamW updates every parameter in one kernel instead of a loop over the tensors (a preset has 85-200 small
    # ones); only on the devices that have it.
    fused = accelerator.device.type in ("cpu", "cuda") or None
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay, fused=fused)
    budget = config.time_budget_minutes * 60 if config.time_budget_minutes else None
    schedule = WarmupCosine(config.warmup_steps, config.max_steps, config.min_lr_ratio, budget)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, lr_schedule)
    # The data's fingerprint joins the settings a resume compares: files regenerated or replaced under a run are named.
    fingerprints = {f"{DATA_FILES_KEY}.{name}": dataset_fingerprint(f"{config.data_dir.rstrip('/')}/{name}")
                    for name in names}
    fingerprints |= {f"{DATA_VERSION_KEY}.{name}": dataset_version(f"{config.data_dir.rstrip('/')}/{name}")
                     for name in names}
    settings = json.loads(json.dumps({**config.to_dict(), **fingerprints, **run_settings}))

    run_info = os.path.join(config.output_dir, "run_info")
    os.makedirs(run_info, exist_ok=True)
    with open(os.path.join(run_info, f"rank{accelerator.process_index}.json"), "w") as f:
        json.dump({"rank": accelerator.process_index, "world_size": accelerator.num_processes,
                   "shard_windows": batches.shard_sizes(), "total_windows": batches.full_sizes,
                   "trainable_parameters": sum(p.numel() for p in trainable)}, f)
    return RunState(model, optimizer, scheduler, lr_schedule, schedule, sampler, batches, valid_sets, trainable,
                    settings, budget)


def resume_run(accelerator: Accelerator, config: PretrainConfig, run: RunState, allow_config_change: bool) -> None:
    """Continue from the latest checkpoint in `output_dir` (none: start from scratch, saying so)."""
    checkpoint = read_latest_checkpoint(config.output_dir, accelerator.process_index)
    if checkpoint is None and complete_checkpoints(config.output_dir):
        raise CheckpointError(f"--resume: no checkpoint in {checkpoint_root(config.output_dir)} reads completely (each "
                              "is named in the warnings above); nothing was changed. Pass --overwrite_output_dir "
                              "instead of --resume to start over there")
    if checkpoint is None:
        accelerator.print(f"--resume: no checkpoint in {config.output_dir}/checkpoints; starting from scratch")
        return
    check_resumable(accelerator, checkpoint, run.settings, allow_config_change)
    apply_checkpoint(checkpoint, accelerator.unwrap_model(run.model), run.optimizer)
    state = checkpoint.trainer_state
    run.step, run.nonfinite_total = checkpoint.step, state.get("nonfinite_total", 0)
    run.schedule.load_state_dict(state["schedule"])
    run.sampler.load_state_dict(state["sampler"])
    run.curve = list(state.get("curve", []))
    run.time_spent = state.get("time_spent") or run.time_spent
    run.batches.load_state_dict(checkpoint.rank_state["batches"])
    # The schedule follows this run's horizon and learning rate (the same numbers when they did not change).
    optimizer, lr_schedule = run.optimizer, run.lr_schedule
    lr_schedule.base_lrs = [config.learning_rate] * len(optimizer.param_groups)
    lr_schedule.last_epoch = run.step
    for group, base in zip(optimizer.param_groups, lr_schedule.base_lrs):
        group["initial_lr"], group["lr"], group["weight_decay"] = base, base * run.schedule(run.step), config.weight_decay
    lr_schedule._last_lr = [group["lr"] for group in optimizer.param_groups]
    accelerator.print(f"resumed from {checkpoint.path} at step {run.step}")


def train_loop(accelerator: Accelerator, config: PretrainConfig, run: RunState, specs: dict,
               stop_after: int | None) -> None:
    """Steps until the schedule's budget is spent: each one trained, logged, validated and checkpointed on its
    cadence (and at the end)."""
    run.model.train()
    # In a log file (no terminal) a bar line every 30 s, not one per step. Under a time budget the bar counts the
    # budget's seconds (the step count is in its postfix): max_steps is then only a cap, often unreachable.
    timed = run.budget is not None
    bar = tqdm(total=round(run.budget) if timed else config.max_steps,
               initial=min(round(run.schedule.elapsed), round(run.budget)) if timed else run.step,
               desc="train", unit="s" if timed else "it", disable=not accelerator.is_main_process,
               mininterval=0.5 if sys.stderr.isatty() else 30)
    started, elapsed_before = time.perf_counter(), run.schedule.elapsed
    while not run.schedule.done(run.step):
        if stop_after is not None and run.step >= stop_after:
            raise KeyboardInterrupt(f"stopped at step {run.step} (simulated interruption)")
        refresh_threads()  # a training command's thread choice follows the machine's load (pdefm.runtime.threads)
        step_started = time.perf_counter()
        result = train_step(accelerator, config, run)
        spent = run.time_spent["datasets"]
        spent[result.name] = spent.get(result.name, 0.0) + time.perf_counter() - step_started
        if result.skipped:
            continue
        elapsed = torch.tensor([elapsed_before + time.perf_counter() - started], device=accelerator.device)
        if run.budget is not None and accelerator.num_processes > 1:  # every rank must stop at the same step
            elapsed = accelerator.gather(elapsed).max().reshape(1)
        run.schedule.elapsed = float(elapsed.item())
        run.scheduler.step()
        run.step += 1
        bar.update(min(round(run.schedule.elapsed), bar.total) - bar.n if timed else 1)
        finished = run.schedule.done(run.step)
        if run.step % config.log_every == 0:
            log_step(accelerator, run, result)
            bar.set_postfix(**({"step": run.step} if timed else {}), loss=f"{result.loss.item():.3f}",
                            data=result.name[:12])
        if run.step % config.eval_every == 0 or finished:
            validation_started = time.perf_counter()
            validate_and_steer(accelerator, config, run, specs)
            run.time_spent["validation"] += time.perf_counter() - validation_started
        if run.step % config.checkpoint_every == 0 or finished:
            checkpoint_started = time.perf_counter()
            save_run_checkpoint(accelerator, config, run)
            run.time_spent["checkpoints"] += time.perf_counter() - checkpoint_started
    bar.close()


def noisy_inputs(fields: torch.Tensor, scale: float) -> torch.Tensor:
    """`fields [b, T, *space, C]` plus Gaussian noise of `scale` times each sample's and field's std over the window."""
    axes = tuple(range(1, fields.ndim - 1))
    return fields + scale * fields.float().std(axes, keepdim=True).to(fields.dtype) * torch.randn_like(fields)


def train_step(accelerator: Accelerator, config: PretrainConfig, run: RunState) -> StepResult:
    """One optimizer step over `gradient_accumulation_steps` batches, each from a dataset the curriculum draws. A
    non-finite loss (on any process) skips the step; too many in a row stop the run."""
    run.optimizer.zero_grad(set_to_none=True)
    result = StepResult(name="")
    for micro in range(config.gradient_accumulation_steps):
        result.name = run.sampler.draw()
        batch = run.batches.next_batch(result.name)
        if config.pushforward_steps:
            most = pushforward_most(run.schedule.progress(run.step), config.pushforward_steps)
            steps = pushforward_steps_at(config.seed, run.step * config.gradient_accumulation_steps + micro, most)
            with accelerator.autocast():
                batch = pushforward_batch(run.model, batch, steps, config.n_steps_output, accelerator.device)
        if config.input_noise:
            batch = {**batch, "input_fields": noisy_inputs(batch["input_fields"], config.input_noise)}
        target = batch["output_fields"].to(accelerator.device)
        sync = nullcontext() if micro == config.gradient_accumulation_steps - 1 else accelerator.no_sync(run.model)
        with sync:
            with accelerator.autocast():
                # The objective (VRMSE + spectral term) is the model's own: what `model(labels=...).loss` gives.
                out = run.model(**model_inputs(batch, accelerator.device), labels=target)
            result.loss = out.loss
            result.parts = {"vrmse": out.vrmse_loss.detach(), "spectral": out.spectral_loss.detach()}
            finite = torch.isfinite(out.loss).float().reshape(1)
            if accelerator.reduce(finite, reduction="sum").item() != accelerator.num_processes:
                result.skipped = True
                break
            accelerator.backward(out.loss / config.gradient_accumulation_steps)
    if result.skipped:
        run.optimizer.zero_grad(set_to_none=True)
        run.nonfinite_in_a_row += 1
        run.nonfinite_total += 1
        accelerator.print(f"step {run.step}: non-finite loss on dataset {result.name!r}; step skipped "
                          f"({run.nonfinite_in_a_row} in a row)")
        if run.nonfinite_in_a_row > config.max_nonfinite_in_a_row:
            raise NonFiniteLossError(
                f"{run.nonfinite_in_a_row} non-finite losses in a row (last on dataset {result.name!r} at step "
                f"{run.step}); more than max_nonfinite_in_a_row={config.max_nonfinite_in_a_row}. Lower learning_rate "
                "or check the data."
            )
        return result
    run.nonfinite_in_a_row = 0
    result.grad_norm = float(accelerator.clip_grad_norm_(run.trainable, config.grad_clip))
    run.optimizer.step()
    return result


def log_step(accelerator: Accelerator, run: RunState, result: StepResult) -> None:
    loss = result.loss.item()
    logs = {"loss": loss, "vrmse": result.parts["vrmse"].item(), "spectral": result.parts["spectral"].item(),
            "lr": run.scheduler.get_last_lr()[0], "grad_norm": result.grad_norm, f"loss/{result.name}": loss,
            "nonfinite_skipped": run.nonfinite_total}
    logs.update({f"p/{k}": v for k, v in run.sampler.probabilities().items()})
    accelerator.log(logs, step=run.step)


@torch.no_grad()
def validate(model, accelerator, config: PretrainConfig, valid_sets: dict, specs: dict,
             persistence: bool = False, forecaster=None) -> dict[str, float]:
    """Mean one-step VRMSE per dataset on a fixed slice of each validation split (this process's shard); with
    `persistence`, that of predicting the last input frame instead; with `forecaster`, that forecaster's."""
    model.eval()
    losses = {}
    for name, dataset in valid_sets.items():
        total = torch.zeros(2, device=accelerator.device)
        for batch in evaluation_batches(dataset, config.batch_size, config.eval_batches):
            target = batch["output_fields"][:, :1].to(accelerator.device)
            if persistence:
                prediction = batch["input_fields"][:, -1:].to(accelerator.device)
            elif forecaster is not None:
                prediction = forecaster.predict_next(batch).to(accelerator.device)
            else:
                prediction = model(**model_inputs(batch, accelerator.device), n_steps=1).prediction
            total += torch.stack([vrmse(prediction.float(), target.float(), specs[name]["n_spatial_dims"]).mean() * target.shape[0],
                                  torch.tensor(float(target.shape[0]), device=accelerator.device)])
        total = accelerator.reduce(total, reduction="sum")
        losses[name] = (total[0] / total[1].clamp_min(1)).item()
    model.train()
    return losses



def validate_and_steer(accelerator: Accelerator, config: PretrainConfig, run: RunState, specs: dict) -> None:
    """Validation VRMSE per dataset, logged, and fed to the curriculum (relative to persistence's when asked)."""
    losses = validate(run.model, accelerator, config, run.valid_sets, specs)
    record_validation(run, losses, accelerator.num_processes)
    reference = run.reference
    run.sampler.update_losses({k: v / max(reference[k], 1e-8) for k, v in losses.items()} if reference else losses)
    accelerator.log({f"valid_vrmse/{k}": v for k, v in losses.items()}, step=run.step)
    accelerator.print(f"step {run.step}: validation VRMSE {_rounded(losses, 4)}; "
                      f"sampling {_rounded(run.sampler.probabilities(), 3)}")


def record_validation(run: RunState, losses: dict[str, float], processes: int) -> None:
    """A learning-curve point: validation VRMSE per dataset against step, training seconds, and the training samples
    drawn so far from each dataset (over all processes: every rank draws a batch per step)."""
    samples = {name: stream.draws * stream.batch_size * processes for name, stream in run.batches.streams.items()}
    run.curve.append({"step": run.step, "seconds": run.schedule.elapsed, "samples": samples, "valid_vrmse": losses})


def save_run_checkpoint(accelerator: Accelerator, config: PretrainConfig, run: RunState) -> None:
    save_checkpoint(accelerator, config.output_dir, run.step, model=run.model, optimizer=run.optimizer,
                    trainer_state={"nonfinite_total": run.nonfinite_total, "schedule": run.schedule.state_dict(),
                                   "sampler": run.sampler.state_dict(), "settings": run.settings,
                                   "curve": run.curve, "time_spent": run.time_spent},
                    rank_state={"batches": run.batches.state_dict()}, keep=config.keep_checkpoints)


def final_report(model, config: PretrainConfig, names: list[str], specs: dict) -> dict:
    """One-step VRMSE per dataset on `config.report_split` (model and persistence, and how the predicted change
    compares with the true one), on the main process. With `report_rollout_steps`, the rollouts of every dataset
    are evaluated too and written with their figures to `output_dir/evaluation` (`write_report` shows them)."""
    report = {}
    print(f"final report: one-step VRMSE on the {config.report_split} split of {len(names)} datasets"
          + (f", then {config.report_rollout_steps}-step rollouts and the linear yardsticks"
             if config.report_rollout_steps else ""), flush=True)
    for name in tqdm(names, desc="one step", unit="dataset", mininterval=0.5 if sys.stderr.isatty() else 30):
        test, _ = load_shard(config.data_dir, name, config.report_split, config.n_steps_input, 1,
                             config.use_normalization, rank=0, world_size=1)
        report[name] = one_step_vrmse(model, test, specs[name]["n_spatial_dims"], config.batch_size)
        report[name]["field_names"] = specs[name].get("field_names")
    if config.report_rollout_steps and not config.use_normalization:  # rollouts are evaluated in physical units
        from ..baselines.linear import fit_yardsticks
        from ..evaluation.report import write_evaluation

        # The linear yardsticks (fitted on the train split in seconds) say how much of a step is linear.
        yardsticks = fit_yardsticks(config.data_dir, names, config.n_steps_input)
        results = evaluate_model(PDEFMForecaster(model), config.data_dir, names, config.report_split,
                                 config.report_rollout_steps, config.batch_size, config.n_steps_input,
                                 show_progress=True, yardsticks=yardsticks)
        write_evaluation(os.path.join(config.output_dir, EVALUATION_FOLDER), results,
                         {"model": config.output_dir, "data": config.data_dir, "split": config.report_split,
                          "rollout_steps": config.report_rollout_steps,
                          "command": f"pdefm evaluate --model {config.output_dir} --data {config.data_dir} "
                                     f"--rollout-steps {config.report_rollout_steps}"})
        for name, result in results.items():
            rolled = result["rollout"]
            report[name]["rollout"] = {key: rolled[key] for key in ("steps", "starts", "trajectories",
                                                                     "vrmse_per_step", "vrmse_per_step_sd",
                                                                     "persistence_vrmse_per_step")}
            report[name]["yardsticks"] = {label: {key: y[key] for key in ("vrmse", "vrmse_per_step", "diverged_at_step")}
                                          for label, y in result.get("yardsticks", {}).items()}
            report[name]["verdict"] = dataset_verdict(report[name], report[name]["rollout"],
                                                      report[name]["yardsticks"], report[name]["field_names"])
    return report


def check_resumable(accelerator: Accelerator, checkpoint, settings: dict, allow_config_change: bool) -> None:
    """Refuse a checkpoint whose run had other settings (unless allowed) or another number of processes, and one
    that the processes do not agree on."""
    steps = accelerator.gather(torch.tensor([checkpoint.step], device=accelerator.device))
    if not bool((steps == steps[0]).all()):
        raise CheckpointError(f"processes found different latest checkpoints (steps {steps.tolist()}) in "
                              f"{os.path.dirname(checkpoint.path)}; some are damaged for some ranks")
    world = checkpoint.trainer_state.get("world_size")
    if world != accelerator.num_processes:
        raise CheckpointError(f"{checkpoint.path} was written by {world} process(es), this run has "
                              f"{accelerator.num_processes}; each process resumes its own data shard, so launch "
                              f"{world} process(es)")
    conflicts = resume_conflicts(checkpoint.trainer_state.get("settings", {}), settings)
    if not conflicts:
        return
    listed = "; ".join(f"{key}: {old!r} in the checkpoint, {new!r} now" for key, (old, new) in conflicts.items())
    if not allow_config_change:
        raise ResumeConfigError(
            f"--resume: {checkpoint.path} was written with other settings ({listed}). Resume with the checkpoint's "
            f"values, or add --allow_config_change to continue with the new ones. Keys that may always change: "
            f"{', '.join(CHANGEABLE_ON_RESUME)} (the learning-rate schedule follows the new horizon)."
        )
    accelerator.print(f"--allow_config_change: continuing {checkpoint.path} with changed settings ({listed})")


def print_outputs(config: PretrainConfig, run_name: str, model_folder: str) -> None:
    """Say where everything went (the README's "Output folder" section describes the layout)."""
    out = config.output_dir
    lines = [f"model:       {model_folder} (load with from_pretrained; model card README.md)",
             f"report:      {os.path.join(out, 'report.md')} (and report.json)",
             f"checkpoints: {os.path.join(out, 'checkpoints')} (--resume continues from the latest)"]
    if config.log_with != "none":
        lines.append(f"logs:        {os.path.join(out, run_name)} ({config.log_with}; e.g. tensorboard --logdir {out})")
    print("\n".join(["", "outputs:", *["  " + line for line in lines]]))


def write_report(config: PretrainConfig, report: dict, seconds: float, steps: int, title: str = "Pretraining report") -> None:
    # One number per run that weighs every dataset alike (raw VRMSE means are dominated by the hardest dataset).
    ratios = [r["vrmse"] / r["persistence_vrmse"] for r in report.values() if r["persistence_vrmse"] > 0]
    ratio = sum(ratios) / len(ratios) if ratios else None  # None: no dataset changes over a step
    with open(os.path.join(config.output_dir, "report.json"), "w") as f:
        json.dump({"steps": steps, "train_seconds": seconds, "split": config.report_split,
                   "mean_vrmse_over_persistence": ratio, "datasets": report}, f, indent=2)
    beaten = sum(r["vrmse"] < r["persistence_vrmse"] for r in report.values())
    every_field = sum(not fields_beaten(r)[2] for r in report.values())
    text = [f"# {title}", "", f"{steps} steps in {seconds:.0f} s, preset `{config.model_preset}`, data `{config.data_dir}`.",
            "", f"One-step VRMSE on the {config.report_split} split (model against persistence, i.e. the last input frame):",
            "", metrics_table(report), "", f"The model beats persistence on {beaten} of {len(report)} datasets, and on every "
            f"field of {every_field} of them." + (f" Mean over the datasets of VRMSE / persistence VRMSE: {ratio:.3f} (1 "
            "is no better than persistence)." if ratio is not None else ""), ""]
    if all("verdict" in r for r in report.values()):
        text += ["Learned: beats persistence and the least-squares linear stencil one step ahead, and stays below "
                 "persistence at every rollout step (means over the rollout's starts).", "", yardstick_table(report), "",
                 *[verdict_sentence(name, r["verdict"]) for name, r in sorted(report.items())], ""]
    else:
        text += [learning_verdict(report), ""]
    text += [CHANGE_COLUMNS_NOTE, "", change_table(report), ""]
    if all("train_seconds" in r for r in report.values()):
        text += ["Training steps per dataset (wall-clock of the steps that drew it, and windows drawn): "
                 + "; ".join(f"{name} {r['train_seconds']:.0f} s, {r['train_samples']} windows"
                             for name, r in sorted(report.items())) + ".", ""]
    if any("rollout" in r for r in report.values()):
        text += rollout_section(report)
    with open(os.path.join(config.output_dir, "report.md"), "w") as f:
        f.write("\n".join(text))
    print("\n".join(text))


def change_table(report: dict) -> str:
    """Per dataset and field: one-step VRMSE against persistence, and the predicted change against the true one."""
    lines = ["| dataset | field | one-step VRMSE | persistence VRMSE | change std ratio | change correlation |",
             "|---|---|---|---|---|---|"]
    for name, r in sorted(report.items()):
        fields = r.get("field_names") or [f"channel {i}" for i in range(len(r["vrmse_per_field"]))]
        for i, field_name in enumerate(fields):
            lines.append(f"| {name} | {field_name} | {r['vrmse_per_field'][i]:.4f} | "
                         f"{r['persistence_vrmse_per_field'][i]:.4f} | {change_cells(r, i)} |")
    return "\n".join(lines)


def yardstick_table(report: dict) -> str:
    """Per dataset: one-step VRMSE of the model, persistence and the linear yardsticks, and the rollout's mean over
    its last steps (6-12 where it reaches them) for each (`inf`: the rollout blew up)."""
    labels = ("linear extrapolation", "linear stencil")
    lines = ["| dataset | PDE-FM | persistence | " + " | ".join(labels) + " | PDE-FM rollout 6:12 | persistence 6:12 | "
             + " | ".join(f"{label} 6:12" for label in labels) + " |", "|---" * (5 + 2 * len(labels)) + "|"]
    def late(values: list[float]) -> float:  # The Well's window 6:12, where the rollout reaches it
        return rollout_windows(np.asarray(values, dtype=float)[:, None]).get("6:12", float("nan")) if values else float("nan")
    for name, r in sorted(report.items()):
        yard, rolled = r.get("yardsticks", {}), r.get("rollout", {})
        cells = [f"{r['vrmse']:.4f}", f"{r['persistence_vrmse']:.4f}",
                 *[f"{yard[label]['vrmse']:.4f}" if label in yard else "-" for label in labels],
                 vrmse_cell(late(rolled.get("vrmse_per_step", []))),
                 vrmse_cell(late(rolled.get("persistence_vrmse_per_step", []))),
                 *[vrmse_cell(late(yard[label]["vrmse_per_step"])) if label in yard else "-" for label in labels]]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def rollout_section(report: dict) -> list[str]:
    """The rollout of every dataset against persistence, step by step, with the figures `final_report` drew."""
    starts = sorted({r["rollout"].get("starts", 0) for r in report.values() if "rollout" in r})
    lines = ["## Rollouts", "", "VRMSE at each rollout step, mean over starts spread over every test trajectory "
             f"({', '.join(map(str, starts))} per dataset), the model's next to persistence's (in parentheses); a model "
             "that learned a system stays below persistence at every step. The spread over starts (standard "
             f"deviation) and per-field numbers: `{EVALUATION_FOLDER}/evaluation.md`.", ""]
    below = []
    for name, r in sorted(report.items()):
        if "rollout" not in r:
            continue
        model, reference = r["rollout"]["vrmse_per_step"], r["rollout"]["persistence_vrmse_per_step"]
        steps = ", ".join(f"{m:.3f} ({p:.3f})" for m, p in zip(model, reference))
        lines.append(f"- {name}: {steps}")
        if all(m < p for m, p in zip(model, reference)):
            below.append(name)
    lines += ["", f"Below persistence at every step: {len(below)} of {len(report)} datasets"
              + (f" ({', '.join(below)})." if below else "."), ""]
    flagged = {name: spectral_flags(r["rollout"], r.get("field_names") or []) for name, r in sorted(report.items())
               if "rollout" in r}
    if any("band_energy" in r.get("rollout", {}) for r in report.values()):
        lines += ["Spectra (`evaluation/evaluation.md`, \"Spectra over the rollout\", has every band): "
                  + "; ".join(f"{name} {len(f)} band(s) flagged" for name, f in flagged.items())
                  + f". {SPECTRA_NOTE}", ""]
        lines += [f"- {name}: {flag}" for name, flags in flagged.items() for flag in flags[:6]]
        lines += [""]
    lines += [f"![VRMSE against rollout step]({EVALUATION_FOLDER}/figures/vrmse_per_step.png)", ""]
    lines += [f"![{name}]({EVALUATION_FOLDER}/figures/{name}_rollout.png)" for name in sorted(report)
              if "rollout" in report[name]]
    return lines + [""]


