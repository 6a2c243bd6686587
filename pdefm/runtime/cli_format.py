"""How the command lines print `--help`: the module docstring as written, then one line per option with its default."""

from __future__ import annotations

import argparse
import shutil


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's layout and appends `(default: ...)` to every option that has help text."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=40, width=max(100, shutil.get_terminal_size().columns))

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        # Flags (default False) and options whose help already says their default need no "(default: ...)".
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS or "default" in text:
            return text
        return super()._get_help_string(action)
