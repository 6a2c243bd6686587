"""What `pip install pdefm` puts into a user's environment, and the `pdefm` command."""

import os
import subprocess
import sys

import pytest

from pdefm.cli import COMMANDS, main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_only_two_import_names_are_installed():
    """Nothing generic (`train`, `dataset_scripts`) at the top level: only `modeling_pdefm` (remote code) and `pdefm`."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        project = tomllib.load(f)
    packages = project["tool"]["setuptools"]["packages"]
    assert {p.split(".")[0] for p in packages} == {"modeling_pdefm", "pdefm"}
    assert project["project"]["scripts"]["pdefm"] == "pdefm.cli:main"


def test_help_lists_every_command_with_one_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in ("generate", "check", "info", "stats", "pretrain", "evaluate", "benchmark", "transfer", "finetune", "predict",
                 "push"):
        line = next((l for l in out.splitlines() if l.split()[:1] == [name]), None)
        assert line and len(line.split()) > 2, f"{name} missing from pdefm --help"
    assert set(COMMANDS) == {l.split()[0] for l in out.splitlines() if l.startswith("  ")}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_answers_help(name, capsys):
    try:
        code = main([name, "--help"])
    except SystemExit as exit:  # argparse's own --help
        code = exit.code
    assert code == 0
    assert f"usage: pdefm {name}" in capsys.readouterr().out


def test_an_unknown_command_is_named(capsys):
    assert main(["pretrian"]) == 2
    assert "unknown command 'pretrian'" in capsys.readouterr().err


def test_commands_run_from_outside_the_repository(tmp_path):
    """The installed package, not the checkout, answers: from another directory, with the repository off the path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    code = ("import pdefm.cli, pdefm.train.pretrain, pdefm.data\n"
            "import importlib.util as u\n"
            "print(u.find_spec('train') is None, u.find_spec('dataset_scripts') is None)\n"
            "raise SystemExit(pdefm.cli.main(['info', '--help']))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines()[0] == "True True"
