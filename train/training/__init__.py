"""Training: run configuration, data streams and curriculum, schedule, checkpoints, the run lock, and the loop
(`fit`) that pretraining and finetuning share."""
