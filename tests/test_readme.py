import json
import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_commands() -> list[str]:
    text = open(os.path.join(ROOT, "README.md")).read()
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_readme_starts_with_the_main_job_and_the_test_command():
    commands = readme_commands()
    assert len(commands) == 2
    assert "python -m pytest" in commands[1]


def test_ci_runs_the_readme_test_command_verbatim():
    ci = open(os.path.join(ROOT, ".ci", "run")).read().splitlines()
    assert readme_commands()[1] in ci


def python_blocks() -> list[str]:
    text = open(os.path.join(ROOT, "README.md")).read()
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_the_readme_python_snippets_run_as_written(tmp_path, monkeypatch):
    """Every Python block of the README runs; the data example's folder is pointed at small files made here, and
    lines marked `# network` (reading from the Hub) are left out."""
    from pdefm.data.the_well import compute_stats

    from well_files import write_dataset

    compute_stats(write_dataset(str(tmp_path / "datasets"), "shear_flow", files_per_split=(1, 1, 1)))
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert len(blocks) >= 2
    for block in blocks:
        code = block.replace('"/data/the_well/datasets"', repr(str(tmp_path / "datasets")))
        code = "\n".join(line for line in code.splitlines() if not line.rstrip().endswith("# network"))
        namespace: dict = {}
        exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 - our own README
    assert (tmp_path / "my-pdefm" / "config.json").exists()
    assert namespace["sample"]["input_fields"].shape[0] == 4


def readme_shell_commands() -> list[tuple[str, tuple[str, ...], list[str]]]:
    """(module, arguments in front, flags) of every `pdefm COMMAND`, `python -m MODULE` and `accelerate launch -m
    MODULE` command in the README's shell blocks (lines joined where they end in a backslash)."""
    from pdefm.cli import COMMANDS

    text = open(os.path.join(ROOT, "README.md")).read()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" # ")[0]
            for part in line.split("&&"):
                module = re.search(r"(?:python|accelerate launch.*?) -m ([\w.]+)(.*)", part)
                command = re.search(r"(?:^|\s)pdefm (\w+)(.*)", part)
                if module and module.group(1) not in ("pytest", "pip"):
                    commands.append((module.group(1), (), re.findall(r"(?<!\S)(--[\w-]+)", module.group(2))))
                elif command:
                    target, front, _ = COMMANDS[command.group(1)]
                    commands.append((target, front, re.findall(r"(?<!\S)(--[\w-]+)", command.group(2))))
    return commands


def test_every_readme_command_exists_with_the_options_it_shows():
    """The README's commands are too slow to run here; each command's --help must list every option they use."""
    import subprocess
    import sys

    commands = readme_shell_commands()
    assert {m for m, _, _ in commands} >= {"pdefm.train.pretrain", "pdefm.train.evaluate", "pdefm.studies.benchmark",
                                           "pdefm.train.finetune", "pdefm.train.predict", "pdefm.data.generate"}
    # One process imports every module and asks each main() for --help (a process per module costs ~5 s each).
    script = (
        "import contextlib, importlib, io, json, sys\n"
        "helps = {}\n"
        "for key in sys.argv[1:]:\n"
        "    module, *front = key.split(' ')\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            code = importlib.import_module(module).main([*front, '--help'])\n"
        "        except SystemExit as exit:\n"
        "            code = exit.code\n"
        "    helps[key] = [code or 0, out.getvalue()]\n"
        "print(json.dumps(helps))\n"
    )
    keys = sorted({" ".join([m, *front]) for m, front, _ in commands})
    result = subprocess.run([sys.executable, "-c", script, *keys], cwd=ROOT, capture_output=True, text=True,
                            timeout=300, env={**os.environ, "PYTHONPATH": ROOT})
    assert result.returncode == 0, result.stderr[-3000:]
    helps = {}
    for key, (code, text) in json.loads(result.stdout.splitlines()[-1]).items():
        assert code == 0, f"{key} --help exited {code}"
        helps[key] = text
    for module, front, flags in commands:
        key = " ".join([module, *front])
        missing = [f for f in flags if f not in helps[key]]
        assert not missing, f"README uses {missing} with {key}, which its --help does not list"


def test_the_regime_table_is_what_the_generators_say():
    """The regime table is generated from the generators' constants; a changed constant must show in the document."""
    from pdefm.data.regimes import regime_table

    text = open(os.path.join(ROOT, "docs", "mini_well.md")).read()
    table = re.search(r"<!-- regime-table:start -->\n(.*?)\n<!-- regime-table:end -->", text, re.S)
    assert table, "docs/mini_well.md lost its regime-table markers"
    assert table.group(1) == regime_table(), "docs/mini_well.md's regime table is stale: python -m pdefm.data.regimes"


@pytest.mark.parametrize("marker,document_name", [("transfer-summary", "transfer.md"),
                                                  ("benchmark-summary", "benchmark_delta.md")])
def test_the_readme_summaries_are_quoted_from_the_generated_documents(marker, document_name):
    text = open(os.path.join(ROOT, "README.md")).read()
    summary = re.search(rf"<!-- {marker}:start -->\n(.*?)<!-- {marker}:end -->", text, re.S)
    assert summary, f"README.md lost its {marker} markers"
    document = open(os.path.join(ROOT, "docs", document_name)).read()
    quoted = [line for line in summary.group(1).splitlines() if line.startswith("- ")]
    assert quoted, f"the {marker} block quotes nothing"
    for line in quoted:
        assert line in document, f"README quotes a verdict that docs/{document_name} does not have: {line}"
