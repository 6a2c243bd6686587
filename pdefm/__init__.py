"""pdefm: PDE-FM, a foundation model for partial differential equations.

- `modeling_pdefm` (its own top-level package, so that it can travel to the Hub as remote code): `PDEFMConfig`,
  `PDEFMModel`.
- `pdefm.data`: The Well's format as Hugging Face datasets, and the Mini-Well generators.
- `pdefm.train`: pretraining, evaluation, the benchmark, finetuning with LoRA, prediction, the Hub.
- `pdefm` on the command line: one command with a subcommand for each (`pdefm --help`).
"""

__version__ = "0.3.0"
