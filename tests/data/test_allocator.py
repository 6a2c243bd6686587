"""The training commands' allocator settings (pdefm/runtime/allocator.py): freed memory is reused instead of
page-faulted in again, the opt-out works, and a bad setting is named."""

import json
import platform
import subprocess
import sys

import pytest

from pdefm.runtime.allocator import ENV, configure_allocator

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the settings are glibc's mallopt")

# Allocate and free a 40 MB tensor (above the 32 MB up to which glibc's own settings adapt and reuse the heap) ten
# times, after the settings (or none) and a warm-up (aligned blocks take a few rounds to settle into a reused
# place): count the page faults those ten cost.
PROBE = """
import json, resource
import torch
from pdefm.runtime.allocator import configure_allocator
applied = configure_allocator()
for _ in range(15):
    torch.ones(10 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    torch.ones(10 << 20)
print(json.dumps({"applied": applied, "faults": resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before}))
"""


def probe(setting: str) -> dict:
    import os

    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, ENV: setting})
    return json.loads(out.stdout.strip().splitlines()[-1])


@glibc_only
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    default, reuse = probe("default"), probe("reuse")
    assert not default["applied"] and reuse["applied"]
    pages = (40 << 20) // 4096  # of one tensor
    assert default["faults"] > 5 * pages  # a fresh mmap per tensor: every page faults again
    assert reuse["faults"] < pages  # the heap keeps the pages


def test_a_bad_setting_is_named(monkeypatch):
    monkeypatch.setenv(ENV, "fast")
    with pytest.raises(ValueError, match="PDEFM_MALLOC must be 'reuse'.*'default'.*got 'fast'"):
        configure_allocator()
    monkeypatch.setenv(ENV, "default")
    assert configure_allocator() is False


def test_setup_process_names_a_wrong_kind():
    from pdefm.runtime.process import setup_process

    with pytest.raises(ValueError, match="kind must be one of"):
        setup_process("training")
