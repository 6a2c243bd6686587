"""Telling "the Hub (or another remote store) could not be reached" apart from other errors, so that commands say
so in one line instead of ending in an HTTP client's traceback."""

from __future__ import annotations

import os
import socket

NETWORK_MODULES = ("httpx", "httpcore", "requests", "urllib3", "aiohttp")


class RemoteUnreachableError(OSError):
    """A remote location (the Hugging Face Hub, an fsspec URL) could not be reached."""


def is_unreachable(error: BaseException) -> bool:
    """Whether `error`, or an error it was raised from, is a failure to connect (refused, no route, DNS, timeout)."""
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)):
            return True
        module = type(error).__module__ or ""
        if module.split(".")[0].startswith(NETWORK_MODULES) and any(
                word in type(error).__name__ for word in ("Connect", "Timeout", "Network", "Transport", "Proxy")):
            return True
        error = error.__cause__ or error.__context__
    return False


def unreachable_message(target: str, error: BaseException) -> str:
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    return (f"could not reach {target} ({type(error).__name__}: {error}); check the network connection and HF_ENDPOINT "
            f"(now {endpoint}), or work from a local copy")
