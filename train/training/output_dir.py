"""What a training run finds in its output folder: a finished result is never replaced unless the user asks, and
nothing pdefm did not write is ever deleted or silently replaced.

A run records the names it writes at the top of its folder in `.pdefm_outputs.json` (the manifest), before it writes
them. A fresh run (no `--resume`) is refused where the folder holds an earlier run's checkpoints or results, or
anything pdefm did not write there (a user's README.md, config.json, notes); `--overwrite_output_dir` (transformers'
name) first deletes what the earlier run wrote (its manifest's entries: checkpoints, logs, results and the saved model,
so an interrupted replacement never leaves the old model beside the new checkpoints) and leaves everything else
alone. `--resume` needs a checkpoint to continue from. Folders written before the manifest existed are recognised
by the run's own folders and files.
"""

from __future__ import annotations

import json
import os
import shutil
import stat

from pdefm.runtime.files import write_text_atomically

from .checkpointing import checkpoint_root, complete_checkpoints
from .run_lock import LOCK_FILE

# What `fit` and its `finish` callbacks write, besides the model files that `save_pretrained` replaces.
RESULT_FILES = ("report.json", "report.md", "validation_curve.json", "pretrain_config.json", "finetune.json")
SAVED_MODEL = "model.safetensors"
# Files a run writes at the top of its folder besides RESULT_FILES: the saved model and its card.
MODEL_FILES = (SAVED_MODEL, "config.json", "README.md")
# The report's rollout evaluation and figures (`report_rollout_steps`).
EVALUATION_FOLDER = "evaluation"
RUN_FOLDERS = ("checkpoints", "run_info", EVALUATION_FOLDER)
MANIFEST = ".pdefm_outputs.json"
# A folder written before the manifest existed is a run's when it holds one of these.
LEGACY_MARKERS = ("run_info", "pretrain_config.json", "finetune.json")


def remote_code_names() -> tuple[str, ...]:
    """The module files `save_pretrained` copies beside a model (its remote code)."""
    import modeling_pdefm

    folder = os.path.dirname(os.path.abspath(modeling_pdefm.__file__))
    return tuple(sorted(n for n in os.listdir(folder) if n.endswith(".py") and n != "__init__.py"))


def run_names(log_folder: str | None = None, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Every name a run may write at the top of its output folder: `extra` are the command's own (an adapter's
    folder)."""
    return (*RUN_FOLDERS, *((log_folder,) if log_folder else ()), *RESULT_FILES, *MODEL_FILES, *remote_code_names(),
            *extra)


def earlier_run(output_dir: str) -> list[str]:
    """The names of an earlier run's checkpoints and results in `output_dir` (empty: nothing to lose)."""
    if not os.path.isdir(output_dir):
        return []
    found = [name for name in (*RESULT_FILES, SAVED_MODEL) if os.path.isfile(os.path.join(output_dir, name))]
    root = checkpoint_root(output_dir)
    if os.path.isdir(root) and os.listdir(root):
        found.insert(0, "checkpoints/")
    return found


def read_manifest(output_dir: str) -> set[str] | None:
    """The names the manifest says pdefm wrote, or None when the folder has no manifest."""
    path = os.path.join(output_dir, MANIFEST)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(mode):
        raise ValueError(f"output_dir {output_dir}: {MANIFEST} is not a regular file (a link, FIFO or folder); "
                         "remove it or choose another output_dir")
    try:
        with open(path) as f:
            names = json.load(f)
    except (OSError, ValueError) as error:
        raise ValueError(f"output_dir {output_dir}: {MANIFEST} is damaged ({error}); remove it to have the folder "
                         "judged as one pdefm did not write, or choose another output_dir") from None
    if not isinstance(names, list) or not all(isinstance(n, str) and n and "/" not in n and n not in (".", "..")
                                              for n in names):
        raise ValueError(f"output_dir {output_dir}: {MANIFEST} is not a list of names in the folder")
    return set(names)


def pdefm_entries(output_dir: str, names: tuple[str, ...]) -> list[str]:
    """What an earlier run wrote at the top of `output_dir`: its manifest's names that are there, or for a folder
    written before manifests the run's own `names` that are there (where a run's marker is)."""
    if not os.path.isdir(output_dir):
        return []
    present = set(os.listdir(output_dir))
    manifest = read_manifest(output_dir)
    if manifest is None:
        manifest = set(names) if present & set(LEGACY_MARKERS) else set()
    return sorted(present & manifest)


def foreign_entries(output_dir: str, names: tuple[str, ...]) -> list[str]:
    """What is at the top of `output_dir` that pdefm did not write (its lock and manifest aside)."""
    if not os.path.isdir(output_dir):
        return []
    own = set(pdefm_entries(output_dir, names)) | {LOCK_FILE, MANIFEST}
    return sorted(n for n in os.listdir(output_dir) if n not in own and not n.startswith(f"{LOCK_FILE}."))


def write_manifest(output_dir: str, names: tuple[str, ...]) -> None:
    """Record, before the run writes them, the names it writes (atomically, merged with an earlier manifest's)."""
    earlier = read_manifest(output_dir) or set()
    write_text_atomically(os.path.join(output_dir, MANIFEST), json.dumps(sorted(earlier | set(names)), indent=1))


def refuse_links(output_dir: str, names: tuple[str, ...]) -> None:
    """A run writes only inside `output_dir`: a file or folder it writes that is a link (e.g. `checkpoints` pointing
    at another run's) is refused by name, whatever the flags, since writing through it would replace what it points
    at."""
    for name in names:
        path = os.path.join(output_dir, name)
        if os.path.islink(path):
            raise ValueError(f"output_dir {output_dir}: {name} is a symbolic link (to {os.readlink(path)!r}); a run "
                             "writes only inside its output_dir and would write through it. Nothing was changed: "
                             "remove the link or choose another output_dir")


def prepare_output_dir(output_dir: str, resume: bool, overwrite: bool, log_folder: str | None = None,
                       clear: bool = True, extra_names: tuple[str, ...] = ()) -> None:
    """Refuse what would lose or mix an earlier run, or replace what the user keeps, in `output_dir`; with
    `overwrite`, delete the earlier run's entries first. Only where `clear` (the main process of a run) is anything
    deleted or the manifest written. `log_folder`: the run's tracker folder; `extra_names`: other names the command
    writes at the top of the folder."""
    names = run_names(log_folder, extra_names)
    refuse_links(output_dir, names)
    if resume and overwrite:
        raise ValueError("--resume continues the run in output_dir and --overwrite_output_dir deletes it: pass one")
    found = earlier_run(output_dir)
    if resume:
        if not complete_checkpoints(output_dir) and found:
            raise ValueError(f"--resume: {output_dir} holds a run ({', '.join(found)}) but no checkpoint to continue "
                             "from; nothing was changed. Pass --overwrite_output_dir instead of --resume to start over "
                             "there (the earlier run's files are deleted first), or choose another output_dir")
        if clear:
            write_manifest(output_dir, names)
        return
    foreign = foreign_entries(output_dir, names)
    if not overwrite:
        if found:
            raise ValueError(f"output_dir {output_dir} holds an earlier run ({', '.join(found)}); nothing was changed. "
                             "Pass --resume to continue it, --overwrite_output_dir to replace it (its checkpoints and "
                             "results are deleted first), or choose another output_dir")
        if foreign:
            listed = ", ".join(foreign[:8]) + (", ..." if len(foreign) > 8 else "")
            raise ValueError(f"output_dir {output_dir} holds files pdefm did not write ({listed}); nothing was changed. "
                             "Choose an empty or new output_dir, or pass --overwrite_output_dir to write beside them "
                             f"(a run replaces only its own names: {', '.join(n for n in foreign if n in names) or 'none of these'})")
    if not clear:
        return
    os.makedirs(output_dir, exist_ok=True)
    if overwrite:
        for name in pdefm_entries(output_dir, names):
            path = os.path.join(output_dir, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            elif os.path.lexists(path):
                os.remove(path)
    write_manifest(output_dir, names)
