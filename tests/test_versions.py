"""The declared dependency ranges hold the versions the tests run with (pyproject.toml against the installed ones)."""

import os
from importlib.metadata import version

import pytest
from packaging.requirements import Requirement

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_the_installed_versions_of_the_hugging_face_stack_are_in_the_declared_ranges():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        declared = {Requirement(r).name: Requirement(r) for r in tomllib.load(f)["project"]["dependencies"]}
    for name in ("torch", "transformers", "peft", "accelerate", "datasets", "huggingface-hub", "safetensors"):
        installed = version(name).split("+")[0]
        assert declared[name].specifier.contains(installed, prereleases=True), (name, installed, str(declared[name]))
