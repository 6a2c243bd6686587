"""Models and domain adapters as files: LoRA adapters per domain, loading a saved PDE-FM with them, model cards,
and the Hugging Face Hub."""
