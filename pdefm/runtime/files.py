"""Writing a small text file so that no reader ever sees half of it and a failure (a full disk, a kill) leaves the
earlier file whole and no partial one beside it."""

from __future__ import annotations

import os


def write_text_atomically(path: str, text: str) -> None:
    """`path` replaced by `text` in one rename of a temporary file beside it (removed if anything fails)."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
