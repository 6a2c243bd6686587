"""Fixed evaluation windows: the same batches on every run, spread over a whole split."""

from __future__ import annotations

import numpy as np


def evaluation_batches(dataset, batch_size: int, n_batches: int | None):
    """Deterministic batches spread over the whole split (all of it when `n_batches` is None)."""
    n = len(dataset)
    if n_batches is None:
        indices = np.arange(n)
    else:
        indices = np.unique(np.linspace(0, n - 1, min(n, n_batches * batch_size)).round().astype(int))
    for start in range(0, len(indices), batch_size):
        yield dataset[indices[start : start + batch_size].tolist()]
