"""One run per output folder: a lock file holding the owner's pid and host.

Two runs writing into one `output_dir` would interleave their checkpoints and overwrite each other's model. The
lock is created atomically (`O_EXCL`); a lock whose process is gone (same host, pid not alive) is stale and taken
over with a warning. A lock from another host cannot be checked and is never broken silently.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import stat
import time
import warnings
from contextlib import contextmanager

from pdefm.runtime.files import write_text_atomically

LOCK_FILE = ".pdefm_run.lock"


class RunLockError(RuntimeError):
    """Another run holds the output folder; the message names it and what to do."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _check_regular(path: str, output_dir: str) -> None:
    """A lock that is a link, FIFO, device or folder is refused by name: opening a FIFO would block forever and a link
    would have the run read or replace a file outside its folder."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISREG(mode):
        kind = "a symbolic link" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else \
            "a folder" if stat.S_ISDIR(mode) else "not a regular file"
        raise RunLockError(f"output_dir {output_dir!r}: its lock {path} is {kind}, not a lock file pdefm wrote; "
                           "remove it (or choose another output_dir)")


def _read_owner(path: str) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd) as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return None
            owner = json.loads(f.read(4096))
        return owner if isinstance(owner, dict) and isinstance(owner.get("pid"), int) else None
    except (OSError, ValueError):
        return None


@contextmanager
def _folder_guard(output_dir: str):
    """Hold an exclusive `flock` on the folder `output_dir` (released when its descriptor closes, also if the
    process dies): the short critical section in which the lock file is read and changed."""
    fd = os.open(output_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_owner(path: str, me: dict) -> None:
    """Replace the lock file by one naming `me`, atomically (a rename), so no reader sees it half-written."""
    write_text_atomically(path, json.dumps(me))


def acquire(output_dir: str) -> str:
    """Take the lock of `output_dir` (created if needed); returns the lock file's path."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, LOCK_FILE)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
    with _folder_guard(output_dir):
        _check_regular(path, output_dir)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            owner = _read_owner(path)
            if owner is None:
                # Written but not yet filled by its owner (a version without the folder guard), or damaged.
                time.sleep(0.2)
                owner = _read_owner(path)
            if owner is not None and owner.get("host") != me["host"]:
                raise RunLockError(
                    f"output_dir {output_dir!r} is locked by a run on host {owner.get('host')!r} (pid {owner['pid']}, "
                    f"since {owner.get('started')}); choose another output_dir, or delete {path} if that run is over"
                ) from None
            if owner is not None and _alive(owner["pid"]):
                raise RunLockError(
                    f"output_dir {output_dir!r} is in use by another run (pid {owner['pid']} on this host, since "
                    f"{owner.get('started')}); wait for it to finish or choose another output_dir"
                ) from None
            warnings.warn(f"removing the stale lock {path} (its run, {owner or 'unknown'}, is gone)", stacklevel=2)
            _write_owner(path, me)
            return path
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return path


def release(path: str) -> None:
    with _folder_guard(os.path.dirname(path) or "."):
        owner = _read_owner(path)
        if owner is not None and owner["pid"] == os.getpid():
            os.remove(path)


@contextmanager
def output_dir_lock(output_dir: str, enabled: bool = True):
    """Hold the lock of `output_dir` for the duration (only where `enabled`: the main process of a run)."""
    path = acquire(output_dir) if enabled else None
    try:
        yield path
    finally:
        if path is not None:
            release(path)


@contextmanager
def output_file_lock(path: str, what: str = "--out"):
    """Hold an exclusive `flock` on `<path>.pdefm-lock` for the duration: a second command writing the same file at
    the same time is refused at once, by name, instead of both printing "wrote" and one result being lost. The kernel
    releases the lock if the process dies; the lock file is removed on the way out."""
    lock_path = f"{path}.pdefm-lock"
    try:
        fd = os.open(lock_path, os.O_CREAT | os.O_WRONLY | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as error:
        raise RunLockError(f"{what} {path!r}: cannot take its lock {lock_path} ({error.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunLockError(f"{what} {path!r}: its lock {lock_path} is not a regular file; remove it")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockError(f"{what} {path!r} is being written by another pdefm command right now; wait for it or "
                               "give another path") from None
        try:
            yield lock_path
        finally:
            try:
                os.remove(lock_path)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)
