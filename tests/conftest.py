"""Shared fixtures: a fresh plugin registry, a tiny phantom, a CLI runner."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

os.environ.setdefault("ODIRKIT_QUIET", "1")  # no progress bars in test output
if "PYTEST_XDIST_WORKER" in os.environ:  # pytest -n: each worker its share of the cores
    # (set before torch is imported; the processes the tests start inherit it): the threads
    # of two workers fighting over the same cores made -n 2 slower than one worker
    _workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // _workers)))

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
def cli(monkeypatch, tmp_path_factory):
    """Invoke the odirkit CLI in-process; returns click's Result (stdout, stderr, exit_code).

    The command runs in ``cwd``, by default a folder of this test's own: a relative path it
    writes (``runs/``, a logger's files) never lands in the checkout, which every test and
    every ``pytest -n`` worker shares. The working directory is restored after the call.
    """
    from odirkit.cli import app

    runner = CliRunner()
    own: list[Path] = []

    def invoke(*args: str, cwd: Path | None = None):
        if cwd is None:
            if not own:
                own.append(tmp_path_factory.mktemp("cwd"))
            cwd = own[0]
        with monkeypatch.context() as patch:
            patch.chdir(cwd)
            return runner.invoke(app, [str(a) for a in args])

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
