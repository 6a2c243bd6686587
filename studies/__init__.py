"""Studies built on the library: the benchmark against The Well's baselines (and ablations), the transfer study, and
what they need alone (baseline training, their reports, memory estimates). Installed as `pdefm.studies`; run as
`pdefm benchmark` and `pdefm transfer`. They call the library's typed APIs (`PretrainConfig` and `train`,
`FinetuneConfig` and `finetune`, `evaluate_model`); nothing in `modeling_pdefm`, `pdefm.data` or `pdefm.train` imports
them."""
