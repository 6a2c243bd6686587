"""Checks of user-given output paths, made before any work, so a typo costs a line of text and not a traceback after
an hour of training. Paths are used literally: never expanded as patterns."""

from __future__ import annotations

import os


def check_output_folder(path: str | None, flag: str) -> str:
    """`path` if it can be a folder to write into (existing or to be made), else a ValueError naming `flag`."""
    if path is None or not str(path).strip():
        raise ValueError(f"{flag} is empty: give the folder to write into")
    path = str(path)
    if "://" in path:
        return path  # a remote location: its filesystem checks it
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path!r} is a file, not a folder; give a folder to write into")
    parent = os.path.abspath(path)
    while not os.path.lexists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise ValueError(f"{flag} {path!r}: {parent} is a file, so no folder can be made below it")
    return path
