"""Finding model and adapter folders (local folders, Hub ids, the offline cache) and pushing them to the Hub."""

from __future__ import annotations

import glob
import os

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


# What a model or adapter repository needs, at the top of the folder: weights, configs, remote code, model card and
# report. Everything else (checkpoints, TensorBoard logs whose file names hold host names and pids, run info, locks,
# evaluations) stays home: an allow-list, so a new kind of local file is never uploaded by accident.
PUSHED_SUFFIXES = (".json", ".safetensors", ".py", ".md")
PUSHED_FOLDERS = {"figures": (".png",)}


def files_to_push(folder: str) -> list[str]:
    """The relative paths under `folder` that `push_folder` uploads (sorted)."""
    chosen = []
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith("."):
            continue
        if os.path.isfile(path) and name.endswith(PUSHED_SUFFIXES):
            chosen.append(name)
        elif os.path.isdir(path) and name in PUSHED_FOLDERS:
            chosen += [f"{name}/{f}" for f in os.listdir(path)
                       if f.endswith(PUSHED_FOLDERS[name]) and os.path.isfile(os.path.join(path, f))]
    return sorted(chosen)


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
        raise ValueError(f"{folder}: nothing to push (no {', '.join(PUSHED_SUFFIXES)} files at its top)")
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
