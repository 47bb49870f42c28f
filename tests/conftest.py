"""Shared fixtures: a fresh plugin registry, a tiny phantom, a CLI runner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

os.environ.setdefault("ODIRKIT_QUIET", "1")  # no progress bars in test output

from odirkit.plugins import Registry, reset_registry

TESTS = Path(__file__).parent
EXAMPLE_PLUGINS = TESTS / "plugins"

#: the columns of the official ODIR-5K annotation workbook, as published
OFFICIAL_COLUMNS = [
    "ID",
    "Patient Age",
    "Patient Sex",
    "Left-Fundus",
    "Right-Fundus",
    "Left-Diagnostic Keywords",
    "Right-Diagnostic Keywords",
    "N",
    "D",
    "G",
    "C",
    "A",
    "H",
    "M",
    "O",
]


def file_digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder``, by relative path."""
    import hashlib

    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def undeclared(record: Any, where: str = "") -> list[str]:
    """The keys of a run document, read as its record, that no record declares (kept as
    extras): where a writer's key and its record's field have parted."""
    from pydantic import BaseModel

    found: list[str] = []
    if isinstance(record, BaseModel):
        found += [f"{where}.{key}".lstrip(".") for key in record.model_extra or {}]
        for name in type(record).model_fields:
            found += undeclared(getattr(record, name), f"{where}.{name}")
    elif isinstance(record, dict):
        for key, value in record.items():
            found += undeclared(value, f"{where}.{key}")
    elif isinstance(record, list):
        for i, value in enumerate(record):
            found += undeclared(value, f"{where}.{i}")
    return found


@pytest.fixture
def registry() -> Registry:
    """A registry loaded from the installed entry points, as the CLI loads it."""
    reg = Registry()
    reg.load_entry_points()
    return reg


@pytest.fixture(autouse=True)
def _fresh_process_registry():
    reset_registry()
    yield
    reset_registry()


@pytest.fixture(scope="session")
def phantom_root(tmp_path_factory) -> Path:
    """A 40-patient phantom at 96 px, the easy look, written once per test session."""
    reg = Registry()
    reg.load_entry_points()
    root = tmp_path_factory.mktemp("phantom") / "phantom"
    reg.get("dataset", "phantom").build(
        root=str(root), patients=40, size=96, seed=0, difficulty="easy"
    )
    return root


@pytest.fixture
def phantom_copy(phantom_root, tmp_path) -> Path:
    """A private copy of the session phantom that a test may damage."""
    target = tmp_path / "phantom"
    shutil.copytree(phantom_root, target)
    return target


@pytest.fixture
def cli():
    """Invoke the odirkit CLI in-process; returns click's Result (stdout, stderr, exit_code)."""
    from odirkit.cli import app

    runner = CliRunner()

    def invoke(*args: str, cwd: Path | None = None):
        old = Path.cwd()
        if cwd is not None:
            os.chdir(cwd)
        try:
            return runner.invoke(app, [str(a) for a in args])
        finally:
            os.chdir(old)

    return invoke


def tiny_experiment(root: Path, *, name: str = "tiny", epochs: int = 2, extra: str = "") -> str:
    """A small, fast experiment on the phantom at ``root`` (TOML text)."""
    return f"""
name = "{name}"
seed = 0
device = "cpu"

[data]
dataset = "phantom"
root = "{root.as_posix()}"
patients = 40
size = 96
difficulty = "easy"
labels = ["N", "D"]
image_size = 48
test_fraction = 0.25

[model]
name = "cnn"
widths = [4, 8, 8, 8]
kernels = [5, 3, 3, 3]
pool = 2
dense = [16]
dropout = 0.0

[train]
epochs = {epochs}
batch_size = 16
optimizer = "adam"
lr = 0.003
{extra}
"""
