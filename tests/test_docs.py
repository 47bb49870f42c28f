"""The README's commands, the TOML reference and lint stay true to the code."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from odirkit.config import describe_tables

ROOT = Path(__file__).parents[1]


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text, flags=re.S)


def test_readme_opens_with_the_quickstart_and_the_test_command():
    quickstart, tests = readme_commands()[:2]
    assert (
        "pip install -e ." in quickstart and "odirkit run experiments/quickstart.toml" in quickstart
    )
    assert 'pip install -e ".[test]"' in tests and "pytest" in tests


def test_ci_runs_the_readme_test_command_verbatim():
    tests = readme_commands()[1]
    assert tests in (ROOT / ".ci" / "run").read_text()


def test_every_core_key_is_in_the_toml_reference():
    reference = (ROOT / "docs" / "experiments.md").read_text()
    for table, model in describe_tables().items():
        for key, field in model.model_fields.items():
            if hasattr(field.annotation, "model_fields"):
                continue  # a sub-table ([data], [model], [train]) has its own section
            assert f"`{key}`" in reference, f"docs/experiments.md lacks {table} key {key!r}"


def test_every_command_is_in_the_readme():
    from odirkit.cli import app

    readme = (ROOT / "README.md").read_text()
    for command in app.registered_commands:
        name = command.name or command.callback.__name__
        assert f"odirkit {name}" in readme, f"README does not document 'odirkit {name}'"


def _ruff() -> str:
    found = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(found).exists():
        if os.environ.get("CI"):
            pytest.fail("ruff is not installed (pip install -e '.[test]')")
        pytest.skip("ruff is not installed")
    return found


@pytest.mark.parametrize("command", [["check"], ["format", "--check"]], ids=["check", "format"])
def test_ruff_is_clean(command):
    tracked = subprocess.run(
        ["git", "ls-files", "*.py"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split()
    files = tracked or ["odirkit", "plugins", "tests", "benchmarks"]  # outside a git checkout
    result = subprocess.run([_ruff(), *command, *files], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
