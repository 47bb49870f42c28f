"""Third-party plugins: pip-installed packages appear, work, and a broken one is contained.

The example packages under tests/plugins are installed with pip into a private
folder that goes on PYTHONPATH for the odirkit processes started here, so the
discovery path is exactly the one a user's ``pip install`` takes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import EXAMPLE_PLUGINS, tiny_experiment


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    # pip builds a package in its source folder (build/, *.egg-info): it builds copies, so
    # the checkout stays clean and parallel workers (pytest -n) never build in one folder
    sources = tmp_path_factory.mktemp("sources")
    for name in ("odirkit-tinynet", "odirkit-broken"):
        shutil.copytree(
            EXAMPLE_PLUGINS / name,
            sources / name,
            ignore=shutil.ignore_patterns("build", "*.egg-info"),
        )
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--target",
            str(target),
            str(sources / "odirkit-tinynet"),
            str(sources / "odirkit-broken"),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return target


def odirkit(site: Path, *args: str, env: dict | None = None, cwd: Path | None = None):
    environment = {**os.environ, "PYTHONPATH": str(site), "ODIRKIT_QUIET": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "odirkit", *args],
        env=environment,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.mark.slow
def test_installed_plugin_is_listed_with_its_distribution(site):
    result = odirkit(site, "list-plugins", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    plugins = {(p["kind"], p["name"]): p for p in doc["plugins"]}
    tinynet = plugins[("model", "tinynet")]
    assert (tinynet["distribution"], tinynet["version"]) == ("odirkit-tinynet", "0.3.1")
    assert ("augmenter", "brightness") in plugins
    assert ("model", "cnn") in plugins  # the built-ins still load next to it


def test_broken_plugin_is_listed_with_its_error_and_skipped(site):
    result = odirkit(site, "list-plugins")
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("broken\t")]
    assert "odirkit-broken" in line and "nonexistent_dependency" in line
    assert "Traceback" not in result.stdout + result.stderr
    assert "--verbose" in result.stderr  # where to see why


@pytest.mark.slow
def test_a_broken_plugins_traceback_is_shown_on_request(site):
    verbose = odirkit(site, "list-plugins", "--verbose")
    assert verbose.returncode == 0
    assert "Traceback" in verbose.stderr and "nonexistent_dependency" in verbose.stderr
    listed = json.loads(odirkit(site, "list-plugins", "--json").stdout)
    (broken,) = [b for b in listed["broken"] if b["distribution"] == "odirkit-broken"]
    assert "Traceback" in broken["details"]


def test_piped_names_and_distributions_are_never_cut(site):
    result = odirkit(site, "list-plugins", env={"COLUMNS": "30"})
    rows = [line.split("\t") for line in result.stdout.splitlines()]
    assert rows[[r[1] for r in rows].index("tinynet")][:2] == ["model", "tinynet"]
    assert any(r[-1] == "odirkit-tinynet 0.3.1" for r in rows)


@pytest.mark.slow
def test_strict_mode_makes_a_broken_plugin_fatal(site):
    for args, env in (
        (("--strict", "list-plugins"), None),
        (("list-plugins",), {"ODIRKIT_STRICT_PLUGINS": "1"}),
    ):
        result = odirkit(site, *args, env=env)
        assert result.returncode == 2, result.stdout
        assert "odirkit-broken" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_experiment_uses_the_installed_plugins_despite_a_broken_one(site, tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=1).replace('name = "cnn"', 'name = "tinynet"')
    text = text.replace(
        "widths = [4, 8, 8, 8]\nkernels = [5, 3, 3, 3]\npool = 2\ndense = [16]\ndropout = 0.0",
        "width = 4",
    )
    text = 'augment = [{ name = "brightness", strength = 0.3 }]\n' + text
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    assert odirkit(site, "validate", str(exp)).returncode == 0
    result = odirkit(site, "run", str(exp), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    config = json.loads((variant / "config.json").read_text())
    assert config["model"] == {
        "name": "tinynet",
        "width": 4,
        "dropout": 0.0,
        "metadata": False,
        "metadata_hidden": 64,
        "finetune": "full",
        "finetune_blocks": None,
    }
    assert config["augment"] == [{"name": "brightness", "strength": 0.3}]
    environment = json.loads((variant / "environment.json").read_text())
    assert {
        "kind": "model",
        "name": "tinynet",
        "distribution": "odirkit-tinynet",
        "version": "0.3.1",
    } in environment["plugins"]


def test_installed_plugins_pass_the_conformance_checks(site):
    code = (
        "from odirkit import get_registry\n"
        "from odirkit.testing import check_model, check_augmenter\n"
        "reg = get_registry()\n"
        "check_model(reg.get('model', 'tinynet'))\n"
        "check_augmenter(reg.get('augmenter', 'brightness'))\n"
        "check_augmenter(reg.get('augmenter', 'gamma'))\n"
        "print('conforms')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(site)},
    )
    assert result.returncode == 0, result.stderr
    assert "conforms" in result.stdout


def test_a_plugin_factory_that_raises_is_a_clear_error(site, tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=1).replace('name = "cnn"', 'name = "tinynet"')
    text = text.replace(
        "widths = [4, 8, 8, 8]\nkernels = [5, 3, 3, 3]\npool = 2\ndense = [16]\ndropout = 0.0",
        "width = 0",
    )
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    result = odirkit(site, "run", str(exp), "--out", str(tmp_path / "runs"))
    assert result.returncode == 2
    assert "[model] tinynet: width must be at least 1" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_a_deterministic_plugin_augmenter_is_a_test_time_view(site, tmp_path, phantom_root):
    extra = '[eval]\ntta = [{ name = "gamma", value = 0.5 }]'
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=1, extra=extra))
    result = odirkit(site, "run", str(exp), "--out", str(tmp_path / "runs"))
    assert result.returncode == 0, result.stderr
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    final = json.loads((variant / "metrics.json").read_text())
    assert final["tta"] == ["gamma"]
    assert final["final"]["loss"] != final["final_without_tta"]["loss"]
    exp.write_text(exp.read_text().replace('"gamma", value = 0.5', '"brightness"'))
    refused = odirkit(site, "validate", str(exp))
    assert refused.returncode == 2 and "brightness" in refused.stderr
    assert "deterministic" in refused.stderr and "Traceback" not in refused.stderr
