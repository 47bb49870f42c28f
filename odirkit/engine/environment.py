"""What a run ran on: versions, plugins, device, seed and source revision."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from odirkit.engine.device import describe_device
from odirkit.plugins import Registry
from odirkit.runs.records import BrokenPlugin, Environment, GitRevision, PluginVersion

PACKAGES = (
    "odirkit",
    "torch",
    "torchvision",
    "timm",
    "captum",
    "numpy",
    "pandas",
    "scikit-learn",
    "pluggy",
    "pydantic",
    "Pillow",
    "matplotlib",
)


def package_versions() -> dict[str, str | None]:
    """The installed versions of the packages a run depends on (None where absent)."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(where: Path) -> GitRevision | None:
    """The commit (and whether the tree is dirty) of the git checkout holding ``where``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=where,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return GitRevision(commit=commit.stdout.strip(), dirty=bool(status.stdout.strip()))


def capture_environment(
    *, registry: Registry, device: torch.device, seed: int, experiment_file: str | None
) -> Environment:
    """Everything needed to say what produced a run (``environment.json``)."""
    where = Path(experiment_file).resolve().parent if experiment_file else Path.cwd()
    return Environment(
        python=sys.version.split()[0],
        platform=platform.platform(),
        machine=platform.machine(),
        cpu_count=os.cpu_count(),
        torch_threads=torch.get_num_threads(),
        device=describe_device(device),
        cuda=torch.version.cuda,
        seed=seed,
        packages=package_versions(),
        plugins=[
            PluginVersion(
                kind=spec.kind,
                name=spec.name,
                distribution=spec.source.distribution,
                version=spec.source.version,
            )
            for spec in registry.specs()
        ],
        broken_plugins=[
            BrokenPlugin(plugin=b.plugin, distribution=b.source.distribution, error=b.error)
            for b in registry.broken
        ],
        git=git_revision(where),
        command=sys.argv,
        working_directory=str(Path.cwd()),
    )
