"""`pdefm.train`: what runs on a model. The modules at this level are the commands (each has `main()` and runs with
`python -m pdefm.train.<name>` or `pdefm <name>`): `pretrain`, `evaluate`, `benchmark`, `finetune`, `predict`,
`push`. Below them, the parts they are built from: `training`, `evaluation`, `baselines`, `adapters`."""
