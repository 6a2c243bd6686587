"""One call at the start of every command that sets up the process for its kind of work."""

from __future__ import annotations

import signal

from .allocator import configure_allocator
from .threads import configure_threads

KINDS = ("train", "generate")


def setup_process(kind: str, keep_current: bool = False) -> None:
    """`train` (training, evaluation, prediction): no more busy threads than cores (`pdefm.runtime.threads`) and freed
    memory kept for reuse instead of page-faulted in afresh (`pdefm.runtime.allocator`). `generate`: the threads only
    (solvers allocate little). `keep_current`: keep a thread count the user set (`configure_threads`)."""
    if kind not in KINDS:
        raise ValueError(f"setup_process: kind must be one of {KINDS}, got {kind!r}")
    exit_cleanly_on_sigterm()
    try:
        configure_threads(kind, keep_current=keep_current)
    except ValueError as error:  # a bad PDEFM_NUM_THREADS: one line, not a traceback from every command
        raise SystemExit(f"error: {error}") from None
    if kind == "train":
        configure_allocator()


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM (what `kill`, `timeout` and job schedulers send) into `SystemExit(143)`, so `finally` blocks and
    context managers run: a partial output file is removed, a run lock released, instead of being left behind."""
    def stop(signum, frame):
        raise SystemExit(128 + signum)

    try:
        signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread: signals are the main thread's business
        pass
