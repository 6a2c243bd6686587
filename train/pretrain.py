"""Pretrain PDE-FM on many datasets at once with Hugging Face Accelerate.

    accelerate launch -m train.pretrain --config train/configs/mini_well.yaml [--max_steps 200 --output_dir out/]
    python -m train.pretrain --config train/configs/mini_well.yaml --resume

One dataset per batch, drawn by the curriculum sampler; each process reads its own shard. Loss: VRMSE plus a
wavenumber-weighted spectral loss. AdamW with warm-up and cosine decay, gradient clipping and accumulation, bf16
autocast where the hardware has it. Checkpoints (safetensors + JSON, atomic) every `checkpoint_every` steps;
`--resume` continues from the latest (`--allow_config_change` to change more than the horizon). One run per
`output_dir` (a lock file). The final model is saved with `save_pretrained` into `output_dir`, with a model card
and `report.json` / `report.md` (one-step VRMSE per dataset against persistence).
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext

import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed
from tqdm.auto import tqdm

from dataset_scripts.threads import configure_threads
from modeling_pdefm import PDEFMConfig, PDEFMModel

from .checkpointing import CheckpointError, apply_checkpoint, read_latest_checkpoint, save_checkpoint
from .config import CHANGEABLE_ON_RESUME, PretrainConfig, load_config, resume_conflicts
from .curriculum import CurriculumSampler
from .data import MultiDatasetBatches, evaluation_batches, find_datasets, load_shard, model_specs
from .evaluation import one_step_vrmse
from .forecasters import model_inputs
from .metrics import fields_beaten, vrmse
from .model_card import metrics_table, write_model_card
from .run_lock import RunLockError, output_dir_lock
from .schedule import WarmupCosine


# Training settings the model's config records (`PDEFMConfig`): the window it reads and the objective it learnt.
TRAINING_KEYS_IN_MODEL = ("n_steps_input", "n_steps_output", "spectral_loss_weight")


class NonFiniteLossError(RuntimeError):
    """Too many non-finite losses in a row."""


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


def maybe_generate(config: PretrainConfig, accelerator: Accelerator) -> None:
    """Generate Mini-Well into an empty `data_dir`, or finish a generation there that was interrupted."""
    if config.generate_if_missing:
        if accelerator.is_main_process:
            from dataset_scripts.generate import complete_suite

            def report(r: dict) -> None:
                if r["files_written"]:
                    print(f"Mini-Well {r['dataset']}: {r['files_written']} files written into {config.data_dir} "
                          f"in {r['seconds']:.1f} s")

            complete_suite(config.data_dir, seed=config.seed, on_dataset_done=report)
        accelerator.wait_for_everyone()


@torch.no_grad()
def validate(model, accelerator, config: PretrainConfig, valid_sets: dict, specs: dict,
             persistence: bool = False) -> dict[str, float]:
    """Mean one-step VRMSE per dataset on a fixed slice of each validation split (this process's shard); with
    `persistence`, that of predicting the last input frame instead."""
    model.eval()
    losses = {}
    for name, dataset in valid_sets.items():
        total = torch.zeros(2, device=accelerator.device)
        for batch in evaluation_batches(dataset, config.batch_size, config.eval_batches):
            target = batch["output_fields"][:, :1].to(accelerator.device)
            if persistence:
                prediction = batch["input_fields"][:, -1:].to(accelerator.device)
            else:
                prediction = model(**model_inputs(batch, accelerator.device), n_steps=1).prediction
            total += torch.stack([vrmse(prediction.float(), target.float(), specs[name]["n_spatial_dims"]).mean() * target.shape[0],
                                  torch.tensor(float(target.shape[0]), device=accelerator.device)])
        total = accelerator.reduce(total, reduction="sum")
        losses[name] = (total[0] / total[1].clamp_min(1)).item()
    model.train()
    return losses


def train(config: PretrainConfig, resume: bool = False, stop_after: int | None = None,
          allow_config_change: bool = False) -> dict:
    """Run (or continue) pretraining; returns the final report. `stop_after` simulates an interruption (tests)."""
    accelerator = make_accelerator(config)
    set_seed(config.seed)
    maybe_generate(config, accelerator)
    names = find_datasets(config.data_dir, config.datasets)
    specs = model_specs(config.data_dir, names, config.use_normalization)
    model = PDEFMModel(PDEFMConfig.from_preset(config.model_preset, datasets=specs, **config.model_overrides))
    if config.gradient_checkpointing:
        # transformers 5 renamed it (the old name warns); older 5.x releases only have the old one
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()

    def finish(unwrapped, report: dict, seconds: float, step: int) -> None:
        unwrapped.save_pretrained(config.output_dir)
        write_report(config, report, seconds, step)
        write_model_card(config.output_dir, title=f"PDE-FM ({config.model_preset}) pretrained on {len(names)} datasets",
                         datasets=names, report=report, command=" ".join(["python -m train.pretrain", *sys.argv[1:]]),
                         description=f"PDE-FM `{config.model_preset}` preset ({unwrapped.num_parameters():,} parameters), "
                                     f"pretrained for {step} steps with `train.pretrain` (config in `pretrain_config.json`).")
        print_outputs(config, "pretrain", model_folder=config.output_dir)

    return fit(accelerator, config, model, names, specs, resume=resume, allow_config_change=allow_config_change,
               stop_after=stop_after, finish=finish)


class ResumeConfigError(ValueError):
    """`--resume` with settings that change what the checkpointed run computes."""


def fit(accelerator: Accelerator, config: PretrainConfig, model, names: list[str], specs: dict, *, resume: bool = False,
        allow_config_change: bool = False, run_settings: dict | None = None, stop_after: int | None = None,
        finish=None, run_name: str = "pretrain") -> dict:
    """The training loop shared by pretraining and finetuning: curriculum over `names`, VRMSE + spectral loss on the
    parameters that require gradients, atomic checkpoints, resume, a step or wall-clock budget. At the end the main
    process measures one-step VRMSE on `config.report_split` and calls `finish(model, report, seconds, steps)`.

    The output folder is locked for the run. `run_settings` (JSON-able) are compared with a checkpoint's on resume,
    with the config; a difference outside `CHANGEABLE_ON_RESUME` needs `allow_config_change`. Logs go to `output_dir/<run_name>`."""
    with output_dir_lock(config.output_dir, enabled=accelerator.is_main_process):
        return _fit(accelerator, config, model, names, specs, resume, allow_config_change, run_settings or {},
                    stop_after, finish, run_name)


def _fit(accelerator, config, model, names, specs, resume, allow_config_change, run_settings, stop_after, finish,
         run_name):
    batches = MultiDatasetBatches(config.data_dir, names, "train", config.batch_size, config.n_steps_input,
                                  config.n_steps_output, config.use_normalization, config.seed,
                                  accelerator.process_index, accelerator.num_processes, config.train_trajectories)
    sampler = CurriculumSampler(batches.full_sizes, config.temperature, config.difficulty_alpha, config.difficulty_eps,
                                config.difficulty_ema, config.seed)
    valid_sets = {
        name: load_shard(config.data_dir, name, "valid", config.n_steps_input, config.n_steps_output,
                         config.use_normalization, accelerator.process_index, accelerator.num_processes)[0]
        for name in names
    }

    for key in TRAINING_KEYS_IN_MODEL:  # the saved model says how it was trained; evaluation and predict default to it
        setattr(model.config, key, getattr(config, key))
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    budget = config.time_budget_minutes * 60 if config.time_budget_minutes else None
    schedule = WarmupCosine(config.warmup_steps, config.max_steps, config.min_lr_ratio, budget)
    lr_schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, lr_schedule)
    settings = json.loads(json.dumps({**config.to_dict(), **run_settings}))

    os.makedirs(config.output_dir, exist_ok=True)
    run_info = os.path.join(config.output_dir, "run_info")
    os.makedirs(run_info, exist_ok=True)
    with open(os.path.join(run_info, f"rank{accelerator.process_index}.json"), "w") as f:
        json.dump({"rank": accelerator.process_index, "world_size": accelerator.num_processes,
                   "shard_windows": batches.shard_sizes(), "total_windows": batches.full_sizes,
                   "trainable_parameters": sum(p.numel() for p in trainable)}, f)

    step, nonfinite_total = 0, 0
    if resume:
        checkpoint = read_latest_checkpoint(config.output_dir, accelerator.process_index)
        if checkpoint is None:
            accelerator.print(f"--resume: no checkpoint in {config.output_dir}/checkpoints; starting from scratch")
        else:
            check_resumable(accelerator, checkpoint, settings, allow_config_change)
            apply_checkpoint(checkpoint, accelerator.unwrap_model(model), optimizer)
            state = checkpoint.trainer_state
            step, nonfinite_total = checkpoint.step, state.get("nonfinite_total", 0)
            schedule.load_state_dict(state["schedule"])
            sampler.load_state_dict(state["sampler"])
            batches.load_state_dict(checkpoint.rank_state["batches"])
            # The schedule follows this run's horizon and learning rate (the same numbers when they did not change).
            lr_schedule.base_lrs = [config.learning_rate] * len(optimizer.param_groups)
            lr_schedule.last_epoch = step
            for group, base in zip(optimizer.param_groups, lr_schedule.base_lrs):
                group["initial_lr"], group["lr"], group["weight_decay"] = base, base * schedule(step), config.weight_decay
            lr_schedule._last_lr = [group["lr"] for group in optimizer.param_groups]
            accelerator.print(f"resumed from {checkpoint.path} at step {step}")
    if config.log_with != "none":
        accelerator.init_trackers(run_name, config={k: (v if isinstance(v, (int, float, str, bool)) else str(v))
                                                      for k, v in config.to_dict().items()})
    accelerator.print(f"datasets {names}; sampling probabilities {json.dumps({k: round(v, 3) for k, v in sampler.probabilities().items()})}")

    reference = (validate(model, accelerator, config, valid_sets, specs, persistence=True)
                 if config.difficulty_measure == "relative" else None)
    model.train()
    nonfinite_in_a_row = 0
    # In a log file (no terminal) a bar line every 30 s, not one per step.
    bar = tqdm(total=config.max_steps, initial=step, desc="train", disable=not accelerator.is_main_process,
               mininterval=0.5 if sys.stderr.isatty() else 30)
    started, elapsed_before = time.perf_counter(), schedule.elapsed
    while not schedule.done(step):
        if stop_after is not None and step >= stop_after:
            raise KeyboardInterrupt(f"stopped at step {step} (simulated interruption)")
        optimizer.zero_grad(set_to_none=True)
        skipped, parts, name = False, {}, None
        for micro in range(config.gradient_accumulation_steps):
            name = sampler.draw()
            batch = batches.next_batch(name)
            target = batch["output_fields"].to(accelerator.device)
            sync = nullcontext() if micro == config.gradient_accumulation_steps - 1 else accelerator.no_sync(model)
            with sync:
                with accelerator.autocast():
                    # The objective (VRMSE + spectral term) is the model's own: what `model(labels=...).loss` gives.
                    out = model(**model_inputs(batch, accelerator.device), labels=target)
                loss, parts = out.loss, {"vrmse": out.vrmse_loss.detach(), "spectral": out.spectral_loss.detach()}
                finite = accelerator.reduce(torch.isfinite(loss).float().reshape(1), reduction="sum").item() == accelerator.num_processes
                if not finite:
                    skipped = True
                    break
                accelerator.backward(loss / config.gradient_accumulation_steps)
        if skipped:
            optimizer.zero_grad(set_to_none=True)
            nonfinite_in_a_row += 1
            nonfinite_total += 1
            accelerator.print(f"step {step}: non-finite loss on dataset {name!r}; step skipped ({nonfinite_in_a_row} in a row)")
            if nonfinite_in_a_row > config.max_nonfinite_in_a_row:
                raise NonFiniteLossError(
                    f"{nonfinite_in_a_row} non-finite losses in a row (last on dataset {name!r} at step {step}); "
                    f"more than max_nonfinite_in_a_row={config.max_nonfinite_in_a_row}. Lower learning_rate or check the data."
                )
            continue
        nonfinite_in_a_row = 0
        grad_norm = accelerator.clip_grad_norm_(trainable, config.grad_clip)
        optimizer.step()
        elapsed = torch.tensor([elapsed_before + time.perf_counter() - started], device=accelerator.device)
        if budget is not None and accelerator.num_processes > 1:  # every rank must stop at the same step
            elapsed = accelerator.gather(elapsed).max().reshape(1)
        schedule.elapsed = float(elapsed.item())
        scheduler.step()
        step += 1
        bar.update(1)
        finished = schedule.done(step)
        if step % config.log_every == 0:
            logs = {"loss": loss.item(), "vrmse": parts["vrmse"].item(), "spectral": parts["spectral"].item(),
                    "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm), f"loss/{name}": loss.item(),
                    "nonfinite_skipped": nonfinite_total}
            logs.update({f"p/{k}": v for k, v in sampler.probabilities().items()})
            accelerator.log(logs, step=step)
            bar.set_postfix(loss=f"{loss.item():.3f}", data=name[:12])
        if step % config.eval_every == 0 or finished:
            losses = validate(model, accelerator, config, valid_sets, specs)
            sampler.update_losses({k: v / max(reference[k], 1e-8) for k, v in losses.items()} if reference else losses)
            accelerator.log({f"valid_vrmse/{k}": v for k, v in losses.items()}, step=step)
            accelerator.print(f"step {step}: validation VRMSE {json.dumps({k: round(v, 4) for k, v in losses.items()})}; "
                              f"sampling {json.dumps({k: round(v, 3) for k, v in sampler.probabilities().items()})}")
        if step % config.checkpoint_every == 0 or finished:
            save_checkpoint(accelerator, config.output_dir, step, model=model, optimizer=optimizer,
                            trainer_state={"nonfinite_total": nonfinite_total, "schedule": schedule.state_dict(),
                                           "sampler": sampler.state_dict(), "settings": settings},
                            rank_state={"batches": batches.state_dict()}, keep=config.keep_checkpoints)
    bar.close()
    seconds = schedule.elapsed
    accelerator.wait_for_everyone()
    report = {}
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model).eval()
        for name in names:
            test, _ = load_shard(config.data_dir, name, config.report_split, config.n_steps_input, 1,
                                 config.use_normalization, rank=0, world_size=1)
            report[name] = one_step_vrmse(unwrapped, test, specs[name]["n_spatial_dims"], config.batch_size)
            report[name]["field_names"] = specs[name].get("field_names")
        if finish is not None:
            finish(unwrapped, report, seconds, step)
        with open(os.path.join(config.output_dir, "pretrain_config.json"), "w") as f:
            json.dump(config.to_dict(), f, indent=2)
    accelerator.end_training()
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
    with open(os.path.join(config.output_dir, "report.json"), "w") as f:
        json.dump({"steps": steps, "train_seconds": seconds, "split": config.report_split, "datasets": report}, f, indent=2)
    beaten = sum(r["vrmse"] < r["persistence_vrmse"] for r in report.values())
    every_field = sum(not fields_beaten(r)[2] for r in report.values())
    text = [f"# {title}", "", f"{steps} steps in {seconds:.0f} s, preset `{config.model_preset}`, data `{config.data_dir}`.",
            "", f"One-step VRMSE on the {config.report_split} split (model against persistence, i.e. the last input frame):",
            "", metrics_table(report), "", f"The model beats persistence on {beaten} of {len(report)} datasets, and on every "
            f"field of {every_field} of them.", ""]
    with open(os.path.join(config.output_dir, "report.md"), "w") as f:
        f.write("\n".join(text))
    print("\n".join(text))


def main(argv: list[str] | None = None) -> int:
    try:
        config, args = load_config(argv, __doc__, prog="python -m train.pretrain")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    configure_threads("train")  # no more busy threads than cores (dataset_scripts/threads.py)
    try:
        train(config, resume=args.resume, allow_config_change=args.allow_config_change)
    except (ValueError, RunLockError, CheckpointError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
