"""The `pdefm` command: one subcommand for each thing a user does, each handing its arguments to the module that
implements it (also runnable as `python -m <module>`, which is what `accelerate launch -m` needs)."""

from __future__ import annotations

import importlib
import sys

# subcommand -> (module with main(argv), arguments put in front, one line of help)
COMMANDS: dict[str, tuple[str, tuple[str, ...], str]] = {
    "generate": ("pdefm.data.generate", (), "generate Mini-Well data (real PDE solutions in The Well's format)"),
    "check": ("pdefm.data.the_well", ("check",), "validate HDF5 files or dataset folders against The Well's format"),
    "info": ("pdefm.data.the_well", ("info",), "fields, shapes, windows, boundaries and dynamics of a dataset"),
    "stats": ("pdefm.data.the_well", ("stats",), "compute a dataset's stats.yaml from its train split"),
    "pretrain": ("pdefm.train.pretrain", (), "pretrain PDE-FM on many datasets (Accelerate; --config mini_well)"),
    "evaluate": ("pdefm.train.evaluate", (), "one-step and rollout VRMSE of a saved model, against persistence"),
    "benchmark": ("pdefm.studies.benchmark", (), "PDE-FM against The Well's baselines, and its ablations"),
    "transfer": ("pdefm.studies.transfer", (), "transfer study: zero-shot and few-shot on datasets held out of pretraining"),
    "finetune": ("pdefm.train.finetune", (), "finetune a pretrained PDE-FM on a new dataset (LoRA, spectral adapters, full)"),
    "predict": ("pdefm.train.predict", (), "roll a saved model out from a window of a file and write the forecast"),
    "push": ("pdefm.train.push", (), "push a saved model or adapter folder to the Hugging Face Hub"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: pdefm COMMAND [ARGS ...]      (pdefm COMMAND --help for its arguments)", "",
             "PDE-FM, a foundation model for partial differential equations.", "", "commands:"]
    lines += [f"  {name:<{width}}  {help_line}" for name, (_, _, help_line) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from pdefm import __version__

        print(f"pdefm {__version__}")
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"pdefm: unknown command {name!r}; one of: {', '.join(COMMANDS)}\n\n{usage()}", file=sys.stderr)
        return 2
    module, front, _ = COMMANDS[name]
    code = importlib.import_module(module).main([*front, *rest])
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
