"""What a training run finds in its output folder: a finished result is never replaced unless the user asks.

A fresh run (no `--resume`) into a folder that holds an earlier run's checkpoints or results is refused; with
`--overwrite_output_dir` (transformers' name) the earlier run's checkpoints, results and logs are deleted first, so
the two runs never mix. `--resume` needs a checkpoint to continue from.
"""

from __future__ import annotations

import os
import shutil

from .checkpointing import checkpoint_root, complete_checkpoints

# What `fit` and its `finish` callbacks write, besides the model files that `save_pretrained` replaces (a saved model
# there counts as an earlier result, but only these are deleted: a README.md may be the user's own).
RESULT_FILES = ("report.json", "report.md", "validation_curve.json", "pretrain_config.json", "finetune.json")
SAVED_MODEL = "model.safetensors"
# The report's rollout evaluation and figures (`report_rollout_steps`).
EVALUATION_FOLDER = "evaluation"
RUN_FOLDERS = ("checkpoints", "run_info", EVALUATION_FOLDER)


def earlier_run(output_dir: str) -> list[str]:
    """The names of an earlier run's checkpoints and results in `output_dir` (empty: nothing to lose)."""
    if not os.path.isdir(output_dir):
        return []
    found = [name for name in (*RESULT_FILES, SAVED_MODEL) if os.path.isfile(os.path.join(output_dir, name))]
    root = checkpoint_root(output_dir)
    if os.path.isdir(root) and os.listdir(root):
        found.insert(0, "checkpoints/")
    return found


# Files a run writes at the top of its folder besides RESULT_FILES: the saved model and its card.
MODEL_FILES = (SAVED_MODEL, "config.json", "README.md")


def refuse_links(output_dir: str, log_folder: str | None = None) -> None:
    """A run writes only inside `output_dir`: a file or folder it writes that is a link (e.g. `checkpoints` pointing
    at another run's) is refused by name, whatever the flags, since writing through it would replace what it points
    at."""
    for name in (*RUN_FOLDERS, *((log_folder,) if log_folder else ()), *RESULT_FILES, *MODEL_FILES):
        path = os.path.join(output_dir, name)
        if os.path.islink(path):
            raise ValueError(f"output_dir {output_dir}: {name} is a symbolic link (to {os.readlink(path)!r}); a run "
                             "writes only inside its output_dir and would write through it. Nothing was changed: "
                             "remove the link or choose another output_dir")


def prepare_output_dir(output_dir: str, resume: bool, overwrite: bool, log_folder: str | None = None,
                       clear: bool = True) -> None:
    """Refuse what would lose or mix an earlier run in `output_dir`; with `overwrite`, delete that run first (only
    where `clear`: the main process of a run). `log_folder`: the run's tracker folder under `output_dir`."""
    refuse_links(output_dir, log_folder)
    if resume and overwrite:
        raise ValueError("--resume continues the run in output_dir and --overwrite_output_dir deletes it: pass one")
    found = earlier_run(output_dir)
    if resume:
        if not complete_checkpoints(output_dir) and found:
            raise ValueError(f"--resume: {output_dir} holds a run ({', '.join(found)}) but no checkpoint to continue "
                             "from; nothing was changed. Pass --overwrite_output_dir instead of --resume to start over "
                             "there (the earlier run's files are deleted first), or choose another output_dir")
        return
    if not found:
        return
    if not overwrite:
        raise ValueError(f"output_dir {output_dir} holds an earlier run ({', '.join(found)}); nothing was changed. Pass "
                         "--resume to continue it, --overwrite_output_dir to replace it (its checkpoints and results "
                         "are deleted first), or choose another output_dir")
    if not clear:
        return
    for name in RUN_FOLDERS + ((log_folder,) if log_folder else ()):
        path = os.path.join(output_dir, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
    for name in RESULT_FILES:
        path = os.path.join(output_dir, name)
        if os.path.isfile(path) or os.path.islink(path):
            os.remove(path)
