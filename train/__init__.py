"""Training, evaluation and finetuning driven by accelerate."""
