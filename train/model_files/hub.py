"""Finding model and adapter folders (local folders, Hub ids, the offline cache) and pushing them to the Hub."""

from __future__ import annotations

import glob
import json
import os
import re
import stat

from huggingface_hub import HfApi, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError

from pdefm.runtime.remote import RemoteUnreachableError, is_unreachable, unreachable_message


class ModelResolutionError(OSError):
    """A model or adapter that cannot be found; says where it was looked for and what to do."""


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").strip().lower() in ("1", "true", "yes", "on")


def _looks_like_path(value: str) -> bool:
    # A Hub id is `name` or `owner/name`; anything else is meant as a path.
    return value.startswith((".", "/", "~")) or value.count("/") > 1


def resolve_folder(path_or_id: str, what: str = "model", revision: str | None = None) -> str:
    """A local folder holding `path_or_id`: the folder itself, or the Hub repo's snapshot (from the Hugging Face cache
    when `HF_HUB_OFFLINE=1`)."""
    if os.path.isdir(path_or_id):
        return path_or_id
    if _looks_like_path(path_or_id) or os.path.exists(path_or_id):
        raise ModelResolutionError(f"{what} {path_or_id!r}: no such folder")
    try:
        return snapshot_download(path_or_id, revision=revision)
    except Exception as error:  # noqa: BLE001 - every way a download fails ends in one named error
        if not isinstance(error, (LocalEntryNotFoundError, RepositoryNotFoundError, HfHubHTTPError, ValueError,
                                  OSError)) and not is_unreachable(error):
            raise
        if hub_offline():
            raise ModelResolutionError(
                f"{what} {path_or_id!r} is not in the Hugging Face cache "
                f"({os.environ.get('HF_HUB_CACHE') or os.environ.get('HF_HOME') or '~/.cache/huggingface'}) and "
                "HF_HUB_OFFLINE=1 forbids downloading it: download it once while online (`hf download "
                f"{path_or_id}`), point HF_HUB_CACHE at the cache that holds it, or pass a local folder"
            ) from None
        raise ModelResolutionError(f"{what} {path_or_id!r} could not be resolved as a folder or Hub repo: {error}") from None


# What a model or adapter repository needs, and nothing else: weights, configs, model card, report, the figures the
# card shows, and the remote code `config.json`'s `auto_map` names with the modules it imports. Everything else
# (checkpoints, TensorBoard logs whose names hold host names and pids, run info, locks, evaluations, and whatever the
# user keeps in the folder: credentials, scripts, notes) stays home: files are chosen by name, never by suffix, and
# never through a link.
PUSHED_FILES = frozenset({
    "config.json", "model.safetensors", "model.safetensors.index.json",  # a model
    "adapter_config.json", "adapter_model.safetensors", "pdefm_adapter.json",  # a LoRA adapter
    "README.md", "report.md", "report.json", "validation_curve.json", "pretrain_config.json", "finetune.json",
})
SHARD_NAME = re.compile(r"model-\d{5}-of-\d{5}\.safetensors")
PUSHED_FOLDERS = {"figures": (".png",)}
RELATIVE_IMPORT = re.compile(r"^\s*from\s+\.(\w+)\s+import\s", re.MULTILINE)


class PushRefusedError(ValueError):
    """A folder whose files cannot be pushed as they are (a needed file is a link or not a regular file)."""


def _regular(folder: str, relative: str) -> bool:
    """Whether `folder/relative` is a regular file reached without a link; a link or a special file is refused by
    name (its target may lie anywhere on the machine)."""
    path = os.path.join(folder, relative)
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(mode) or not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
        raise PushRefusedError(f"{path}: {kind}; push uploads only regular files inside the folder (copy the file "
                               "into the folder to push it)")
    return True


def remote_code_files(folder: str) -> list[str]:
    """The `.py` files `config.json`'s `auto_map` names in `folder`, with every module they import relatively
    (transitively): the remote code `trust_remote_code=True` loads, and no other Python file."""
    config_path = os.path.join(folder, "config.json")
    if not _regular(folder, "config.json"):
        return []
    try:
        with open(config_path) as f:
            auto_map = json.load(f).get("auto_map") or {}
    except (OSError, ValueError, AttributeError) as error:
        raise PushRefusedError(f"{config_path}: not a JSON object with an auto_map ({error})") from None
    targets = auto_map.values() if isinstance(auto_map, dict) else []
    pending = [str(t).split("--")[-1].rsplit(".", 1)[0] for t in targets]
    found: set[str] = set()
    while pending:
        module = pending.pop()
        name = f"{module}.py"
        if name in found or not re.fullmatch(r"\w+", module) or not _regular(folder, name):
            continue
        found.add(name)
        with open(os.path.join(folder, name), encoding="utf-8", errors="replace") as f:
            pending += RELATIVE_IMPORT.findall(f.read())
    return sorted(found)


def files_to_push(folder: str) -> list[str]:
    """The relative paths under `folder` that `push_folder` uploads (sorted): `PUSHED_FILES`, weight shards, the
    remote code (`remote_code_files`) and the PNGs of `PUSHED_FOLDERS`. A chosen name that is a link or a special
    file is refused (`PushRefusedError`)."""
    chosen = [name for name in os.listdir(folder)
              if (name in PUSHED_FILES or SHARD_NAME.fullmatch(name)) and _regular(folder, name)]
    chosen += remote_code_files(folder)
    for sub, suffixes in PUSHED_FOLDERS.items():
        path = os.path.join(folder, sub)
        if os.path.islink(path):
            raise PushRefusedError(f"{path}: a symbolic link; push uploads only folders inside the folder")
        if os.path.isdir(path):
            chosen += [f"{sub}/{f}" for f in os.listdir(path) if f.endswith(suffixes) and _regular(folder, f"{sub}/{f}")]
    return sorted(set(chosen))


def check_repo_id(repo_id: str) -> str:
    """`repo_id` if the Hub accepts it as a repository name, else a ValueError that says what it expects."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"repository id {repo_id!r} is not a Hub id ({str(error).splitlines()[0]}); expected "
                         "ORG/NAME or NAME with letters, digits, '-', '_' and '.'") from None
    return repo_id


def push_folder(folder: str, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str | None = None) -> str:
    """Create `repo_id` if needed and upload a saved model or adapter folder (`files_to_push`: weights, config, code,
    model card, report, figures) to it; returns the commit URL."""
    check_repo_id(repo_id)
    files = files_to_push(folder)
    if not files:
        raise ValueError(f"{folder}: nothing to push (none of {', '.join(sorted(PUSHED_FILES))} at its top)")
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, exist_ok=True)
        # Exact names as patterns (escaped): fnmatch's `*` would also match inside subfolders.
        info = api.upload_folder(folder_path=folder, repo_id=repo_id,
                                 commit_message=commit_message or f"Upload {os.path.basename(os.path.abspath(folder))}",
                                 allow_patterns=[glob.escape(f) for f in files])
    except Exception as error:  # noqa: BLE001 - only connection failures are turned into a one-line error
        if is_unreachable(error):
            raise RemoteUnreachableError(unreachable_message(f"the Hugging Face Hub to push {repo_id!r}", error)) from None
        raise
    return str(getattr(info, "commit_url", info))
