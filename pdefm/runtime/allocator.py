"""Memory allocator settings for the training commands: keep freed memory for reuse instead of handing it back.

Torch on a CPU allocates every activation with the C library's `malloc`. glibc serves large blocks (from 128 KB,
rising to 32 MB as it adapts) with a fresh `mmap` and returns them to the system when freed, so each training step
pays a page fault for every 4 KB page of every large tensor it creates: a `small` step at 128x128 allocates 33 MB
activations by the dozen. Measured with `python bench/allocator.py` (docs/performance.md). So the training,
evaluation and prediction commands, at start, ask glibc to serve every block from its heap (no `mmap`), to keep
up to 1 GB of freed memory at the top of the heap, and to grow the heap 64 MB at a time. The price is that a
process keeps its peak memory until it exits, instead of shrinking between steps.

`PDEFM_MALLOC=default` in the environment leaves the C library's settings alone; so does a C library other than
glibc (the settings are glibc's `mallopt` parameters). Library functions never change them; only the commands'
`main()` call `configure_allocator`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

ENV = "PDEFM_MALLOC"
# glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_MAX = -1, -2, -4
SETTINGS = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, 1 << 30), (M_TOP_PAD, 64 << 20))


def configure_allocator() -> bool:
    """Apply `SETTINGS` through glibc's `mallopt`, unless `PDEFM_MALLOC=default` or the C library is not glibc.
    Returns whether they were applied."""
    choice = os.environ.get(ENV, "").strip().lower()
    if choice not in ("", "reuse", "default"):
        raise ValueError(f"{ENV} must be 'reuse' (the default: keep freed memory for reuse) or 'default' (the C "
                         f"library's own settings); got {os.environ[ENV]!r}")
    if choice == "default" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return all(libc.mallopt(parameter, value) == 1 for parameter, value in SETTINGS)
    except (OSError, AttributeError):
        return False
