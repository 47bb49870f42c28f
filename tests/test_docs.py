"""The README's commands, the TOML reference and lint stay true to the code."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
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


def toml_examples() -> list[tuple[str, str]]:
    """Every TOML block of README.md and docs/*.md, as ``(file#n, text)``."""
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        blocks = re.findall(r"```toml\n(.*?)```", path.read_text(), flags=re.S)
        found += [(f"{path.relative_to(ROOT)}#{i}", text) for i, text in enumerate(blocks, 1)]
    return found


def _example_plugins():
    """The example package docs/writing-plugins.md describes (tinynet, brightness, gamma),
    as its tests/plugins copy: the plugins that page invents are registered for its
    examples, and no other page may use them."""
    path = ROOT / "tests" / "plugins" / "odirkit-tinynet" / "odirkit_tinynet" / "__init__.py"
    spec = importlib.util.spec_from_file_location("odirkit_tinynet_docs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_docs_have_toml_examples():
    examples = dict(toml_examples())
    assert len(examples) >= 9 and "docs/experiments.md#1" in examples


@pytest.mark.parametrize(("where", "text"), toml_examples(), ids=[w for w, _ in toml_examples()])
def test_every_toml_example_in_the_docs_is_valid(where, text, tmp_path):
    """Each block parses, and an experiment (or a fragment of one: a [data] table, a
    [tune] table) passes odirkit's own checks: keys, types, ranges, plugin names and
    parameters. A plugin's pyproject.toml declares its entry points."""
    from odirkit.config import load_experiment
    from odirkit.plugins import Registry

    document = tomllib.loads(text)
    if "project" in document:
        assert "odirkit" in document["project"]["entry-points"], where
        return
    registry = Registry()
    registry.load_entry_points()
    if where.startswith("docs/writing-plugins.md"):  # the page that writes them
        assert registry.add_plugin(_example_plugins(), name="tinynet")
    (tmp_path / "example.toml").write_text(text)
    assert load_experiment(tmp_path / "example.toml", registry), where


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
    # --no-cache: nothing written into the checkout, which parallel workers share
    result = subprocess.run(
        [_ruff(), *command, "--no-cache", *files], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
