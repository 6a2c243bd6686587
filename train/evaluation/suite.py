"""Evaluating a forecaster on datasets of a folder: one-step and rollout metrics per dataset (`evaluate_model`), what
`pdefm evaluate`, the main job's report and the studies run."""

from __future__ import annotations

import os
import sys

from pdefm.data.layout import dataset_folders, has_split
from tqdm.auto import tqdm

from .rollout import evaluate_dataset

# Rollouts from this many starts spread over each trajectory: one start (The Well's protocol, its first frames) shows
# one history; several show whether a verdict holds wherever the rollout begins.
STARTS_PER_TRAJECTORY = 5


def resolve_datasets(data: str, split: str, requested: list[str] | None) -> tuple[str, list[str]]:
    """(root, dataset names): `data` is one dataset folder (has `data/<split>`) or a folder of them."""
    if has_split(data, split):
        root, found = os.path.dirname(os.path.abspath(data)), [os.path.basename(os.path.abspath(data))]
    else:
        root, found = data, dataset_folders(data, split)
    if not found:
        raise FileNotFoundError(f"--data {data!r}: no dataset with a data/{split}/ folder there")
    if requested:
        missing = [n for n in requested if n not in found]
        if missing:
            raise ValueError(f"--datasets {missing} not found in {data!r} (split {split}); available: {found}")
        found = list(requested)
    return root, found


def evaluate_model(forecaster, root: str, names: list[str], split: str = "test", rollout_steps: int = 30,
                   batch_size: int = 8, n_steps_input: int | None = None, show_progress: bool = True,
                   n_batches: int | None = None, starts_per_trajectory: int = STARTS_PER_TRAJECTORY,
                   yardsticks: dict | None = None) -> dict:
    """Evaluate `forecaster` on datasets `names` under `root`; `n_batches` limits the one-step windows (spread evenly
    over the split) to that many batches per dataset. `n_steps_input` defaults to the forecaster's own. Rollouts
    start `starts_per_trajectory` times spread over every trajectory; `yardsticks` (`{label: forecaster}`, e.g.
    `pdefm.train.baselines.linear.fit_yardsticks`) are scored beside the model."""
    n_steps_input = n_steps_input or forecaster.n_steps_input
    unknown = [n for n in names if not forecaster.knows(n)]
    if unknown:
        raise ValueError(f"the model has no adapter for dataset(s) {unknown}; finetune it first "
                         "(python -m pdefm.train.finetune) or pick --datasets it knows")
    results = {}
    bar = tqdm(names, desc="evaluate", disable=not show_progress, mininterval=0.5 if sys.stderr.isatty() else 30)
    for name in bar:
        bar.set_postfix(data=name[:16])
        results[name] = evaluate_dataset(forecaster, root, name, split, n_steps_input, rollout_steps, batch_size,
                                         n_batches=n_batches, starts_per_trajectory=starts_per_trajectory,
                                         yardsticks=yardsticks)
    return results
