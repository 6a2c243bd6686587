"""The layout the README states: the library never imports the studies, and the studies drive the library through
its Python APIs, not by building other commands' command lines."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIBRARY = ("modeling_pdefm", "dataset_scripts", "train", "pdefm")


def python_files(folder: str) -> list[str]:
    return [os.path.join(d, f) for d, _, files in os.walk(os.path.join(ROOT, folder)) for f in files if f.endswith(".py")]


def test_no_library_module_imports_the_studies():
    offenders = [path for folder in LIBRARY for path in python_files(folder)
                 if not path.endswith(os.path.join("pdefm", "cli.py"))  # the command table names every command
                 and re.search(r"^\s*(from|import)\s+(pdefm\.)?studies\b|import_module\([\"'](pdefm\.)?studies",
                               open(path).read(), re.M)]
    assert offenders == []


def test_the_studies_build_no_command_lines_for_other_commands():
    """`load_config(argv)` and `finetune_arguments(argv)` parse command lines; a study calls `config_from_file` and
    `FinetuneConfig` instead, and never another command's `main`."""
    offenders = []
    for path in python_files("studies"):
        text = open(path).read()
        for pattern in (r"\bload_config\(", r"\bfinetune_arguments\(", r"from pdefm\.train\.\w+ import main\b",
                        r"\.main\(\["):
            offenders += [(os.path.basename(path), pattern)] if re.search(pattern, text) else []
    assert offenders == []
