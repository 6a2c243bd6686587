"""Atomic checkpoints with `accelerator.save_state`: written to a temporary folder, renamed when complete, so a
kill during saving never leaves a broken latest checkpoint. The last `keep` are kept."""

from __future__ import annotations

import json
import os
import re
import shutil

STATE_FILE = "trainer_state.json"
PATTERN = re.compile(r"^step_(\d{8})$")


def checkpoint_root(output_dir: str) -> str:
    return os.path.join(output_dir, "checkpoints")


def latest_checkpoint(output_dir: str) -> str | None:
    """The newest complete checkpoint (a renamed folder holding its state file), or None."""
    root = checkpoint_root(output_dir)
    if not os.path.isdir(root):
        return None
    complete = [d for d in os.listdir(root) if PATTERN.match(d) and os.path.exists(os.path.join(root, d, STATE_FILE))]
    return os.path.join(root, max(complete)) if complete else None


def save_checkpoint(accelerator, output_dir: str, step: int, trainer_state: dict, keep: int) -> str:
    root = checkpoint_root(output_dir)
    final = os.path.join(root, f"step_{step:08d}")
    tmp = os.path.join(root, f".tmp_step_{step:08d}")
    if accelerator.is_main_process:
        os.makedirs(root, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        with open(os.path.join(tmp, STATE_FILE), "w") as f:
            json.dump({**trainer_state, "step": step}, f)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        complete = sorted(d for d in os.listdir(root) if PATTERN.match(d))
        for old in complete[:-keep]:
            shutil.rmtree(os.path.join(root, old), ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def read_trainer_state(checkpoint: str) -> dict:
    with open(os.path.join(checkpoint, STATE_FILE)) as f:
        return json.load(f)
