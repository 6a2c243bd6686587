import os
import re

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
