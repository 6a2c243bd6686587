"""Pretrain PDE-FM on many datasets at once with Hugging Face Accelerate.

    pdefm pretrain --config mini_well [--max_steps 200 --output_dir out/]
    accelerate launch -m pdefm.train.pretrain --config mini_well --resume

One dataset per batch, drawn by the curriculum sampler; each process reads its own shard. Loss: VRMSE plus a
wavenumber-weighted spectral loss. AdamW with warm-up and cosine decay, gradient clipping and accumulation, bf16
autocast where the hardware has it. Checkpoints (safetensors + JSON, atomic) every `checkpoint_every` steps;
`--resume` continues from the latest (`--allow_config_change` to change more than the horizon). One run per
`output_dir` (a lock file). The final model is saved with `save_pretrained` into `output_dir`, with a model card
and `report.json` / `report.md` (one-step VRMSE per dataset against persistence).
"""

from __future__ import annotations

import sys
import warnings

from accelerate import Accelerator
from accelerate.utils import set_seed

from modeling_pdefm import PDEFMConfig, PDEFMModel
from pdefm.runtime.process import setup_process
from pdefm.data.layout import dataset_folders

from .model_files.model_card import write_model_card
from .training.batches import find_datasets, model_specs
from .training.checkpointing import CheckpointError
from .training.config import PretrainConfig, load_config
from .training.fit import TRAINING_KEYS_IN_MODEL, NonFiniteLossError, fit, make_accelerator, print_outputs, write_report
from .training.output_dir import prepare_output_dir
from .training.run_lock import RunLockError


def maybe_generate(config: PretrainConfig, accelerator: Accelerator) -> None:
    """Generate Mini-Well into an empty `data_dir`, or finish a generation there that was interrupted."""
    if config.generate_if_missing:
        if accelerator.is_main_process:
            from pdefm.data.generate import complete_suite

            def report(r: dict) -> None:
                if r["files_written"]:
                    print(f"Mini-Well {r['dataset']}: {r['files_written']} files written into {config.data_dir} "
                          f"in {r['seconds']:.1f} s")

            if not dataset_folders(config.data_dir):
                print(f"Mini-Well is not in {config.data_dir}: generating its suite {config.suite} there once before "
                      "training (docs/performance.md gives the time and disk it takes)", flush=True)
            complete_suite(config.data_dir, suite=config.suite, seed=config.seed, on_dataset_done=report)
        accelerator.wait_for_everyone()


def command_arguments() -> list[str]:
    """This process's arguments after the command: `pdefm pretrain X` and `python -m pdefm.train.pretrain X` give X."""
    arguments = sys.argv[1:]
    return arguments[1:] if arguments[:1] == ["pretrain"] else arguments


def model_config(config: PretrainConfig, specs: dict[str, dict]) -> PDEFMConfig:
    """The model a pretraining run of `config` builds for the datasets `specs`: its preset, the run's window and
    objective (known before the model is built: the decoder's skip depends on the window), then its
    `model_overrides`."""
    training_keys = {key: getattr(config, key) for key in TRAINING_KEYS_IN_MODEL}
    return PDEFMConfig.from_preset(config.model_preset, datasets=specs, **{**training_keys, **config.model_overrides})


def train(config: PretrainConfig, resume: bool = False, stop_after: int | None = None,
          allow_config_change: bool = False, overwrite_output_dir: bool = False) -> dict:
    """Run (or continue) pretraining; returns the final report. `stop_after` simulates an interruption (tests)."""
    # A folder that holds a finished run is refused before data are generated or checked (that takes minutes).
    prepare_output_dir(config.output_dir, resume, overwrite_output_dir, "pretrain", clear=False)
    accelerator = make_accelerator(config)
    set_seed(config.seed)
    maybe_generate(config, accelerator)
    names = find_datasets(config.data_dir, config.datasets)
    unknown = sorted(set(config.batch_sizes) - set(find_datasets(config.data_dir, None)))
    if unknown:
        # A bundled config names its suite's datasets; run on other data, those entries have nothing to apply to.
        warnings.warn(f"config key 'batch_sizes' names {unknown}, which are not datasets in {config.data_dir}: "
                      "not used", stacklevel=2)
    specs = model_specs(config.data_dir, names, config.use_normalization)
    model = PDEFMModel(model_config(config, specs))
    if config.gradient_checkpointing:
        # transformers 5 renamed it (the old name warns); older 5.x releases only have the old one
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        enable()

    def finish(unwrapped, report: dict, seconds: float, step: int) -> None:
        unwrapped.save_pretrained(config.output_dir)
        write_report(config, report, seconds, step)
        write_model_card(config.output_dir, title=f"PDE-FM ({config.model_preset}) pretrained on {len(names)} datasets",
                         datasets=names, report=report, command=" ".join(["pdefm pretrain", *command_arguments()]),
                         description=f"PDE-FM `{config.model_preset}` preset ({unwrapped.num_parameters():,} parameters), "
                                     f"pretrained for {step} steps with `pdefm pretrain` (config in `pretrain_config.json`).")
        print_outputs(config, "pretrain", model_folder=config.output_dir)

    return fit(accelerator, config, model, names, specs, resume=resume, allow_config_change=allow_config_change,
               stop_after=stop_after, finish=finish, overwrite_output_dir=overwrite_output_dir)


def main(argv: list[str] | None = None) -> int:
    try:
        config, args, _ = load_config(argv, __doc__, prog="pdefm pretrain")
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    setup_process("train", keep_current=True)  # threads and memory reuse (pdefm.runtime.process)
    try:
        train(config, resume=args.resume, allow_config_change=args.allow_config_change,
              overwrite_output_dir=args.overwrite_output_dir)
    except (ValueError, RunLockError, CheckpointError, NonFiniteLossError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
