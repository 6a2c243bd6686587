"""Saved models as files: loading a PDE-FM folder or Hub id (with its PEFT adapters if asked), model cards, and the
Hugging Face Hub (resolving folders offline, pushing)."""
