"""Logger plugins: MLflow and TensorBoard for real, and a logger that breaks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_experiment

LOGGED = '[[log]]\nname = "{name}"\n{params}\n'


def run(cli, tmp_path: Path, phantom_root: Path, logs: str, *args: str, epochs: int = 2):
    exp = tmp_path / "exp.toml"
    text = tiny_experiment(phantom_root, epochs=epochs) + "\n" + logs
    text = text.replace("[train]", "[[variants.a]]\n" if False else "[train]")
    exp.write_text(text + "\n[variants.a]\n[variants.b]\ntrain = { lr = 0.01 }\n")
    result = cli("run", exp, "--out", tmp_path / "runs", *args, cwd=tmp_path)
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "runs").glob("*/*")
    return folder, result


@pytest.mark.slow
def test_mlflow_logs_each_variant_as_a_run_with_its_history_parameters_and_report(
    cli, tmp_path, phantom_root
):
    from mlflow import MlflowClient

    uri = f"sqlite:///{(tmp_path / 'mlruns.db').as_posix()}"
    logs = LOGGED.format(name="mlflow", params=f'tracking_uri = "{uri}"')
    folder, _ = run(cli, tmp_path, phantom_root, logs)
    client = MlflowClient(tracking_uri=uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
    runs = client.search_runs([experiment.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["a", "b"]
    for tracked in runs:
        variant = tracked.info.run_name
        history = client.get_metric_history(tracked.info.run_id, "val_f1_micro")
        assert sorted(m.step for m in history) == [1, 2]
        config = json.loads((folder / variant / "config.json").read_text())
        assert tracked.data.params["train.lr"] == str(config["train"]["lr"])
        assert tracked.data.params["data.labels"] == str(config["data"]["labels"])
        assert tracked.data.metrics["test.f1_micro"] == pytest.approx(
            json.loads((folder / variant / "metrics.json").read_text())["final"]["f1_micro"]
        )
        artifacts = {a.path for a in client.list_artifacts(tracked.info.run_id)}
        assert {"report.md", "report.html", "metrics.json", "config.json"} <= artifacts
        assert tracked.info.status == "FINISHED"


@pytest.mark.slow
def test_a_resumed_run_continues_the_same_mlflow_run(cli, tmp_path, phantom_root):
    from mlflow import MlflowClient

    uri = f"sqlite:///{(tmp_path / 'mlruns.db').as_posix()}"
    logs = LOGGED.format(name="mlflow", params=f'tracking_uri = "{uri}"')
    folder, _ = run(cli, tmp_path, phantom_root, logs)
    client = MlflowClient(tracking_uri=uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "tiny"]
    before = {
        r.info.run_name: r.info.run_id for r in client.search_runs([experiment.experiment_id])
    }
    # Undo the end of variant b: it resumes from its last checkpoint and finishes again.
    (folder / "b" / "metrics.json").unlink()
    resumed = cli("run", "--resume", folder, cwd=tmp_path)
    assert resumed.exit_code == 0, resumed.output
    after = {r.info.run_name: r.info.run_id for r in client.search_runs([experiment.experiment_id])}
    assert after == before  # no new MLflow run
    history = client.get_metric_history(before["b"], "test.f1_micro")
    assert len(history) == 2  # the final scores logged again into the same run


@pytest.mark.slow
def test_tensorboard_holds_one_value_per_epoch_for_each_scalar(cli, tmp_path, phantom_root):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = LOGGED.format(name="tensorboard", params="")
    folder, _ = run(cli, tmp_path, phantom_root, logs, epochs=3)
    events = EventAccumulator(str(folder / "a" / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"train_loss", "val_loss", "val_f1_micro", "val_recall_D"} <= tags
    for tag in ("train_loss", "val_f1_micro"):
        assert [e.step for e in events.Scalars(tag)] == [1, 2, 3]
    history = pd.read_csv(folder / "a" / "metrics.csv")
    logged = [e.value for e in events.Scalars("val_f1_micro")]
    assert logged == pytest.approx(history["val_f1_micro"].tolist(), abs=1e-6)
    assert events.Tags()["images"]  # the run's figures


BROKEN = """
import odirkit

class Broken:
    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise RuntimeError("the tracking server is down")
        return fail

@odirkit.hookimpl
def odirkit_register_loggers(register):
    register("broken", Broken, summary="fails at every call")
"""


@pytest.mark.slow
def test_a_broken_logger_changes_no_result(tmp_path, phantom_root):
    import os
    import subprocess
    import sys

    site = tmp_path / "site"
    site.mkdir()
    (site / "brokenlog.py").write_text(BROKEN)
    info = site / "odirkit_brokenlog-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: odirkit-brokenlog\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[odirkit]\nbrokenlog = brokenlog\n")
    env = {**os.environ, "PYTHONPATH": str(site), "ODIRKIT_QUIET": "1"}
    outputs = {}
    for label, logs in (("plain", ""), ("broken", '[[log]]\nname = "broken"\n')):
        work = tmp_path / label
        work.mkdir()
        (work / "exp.toml").write_text(tiny_experiment(phantom_root, epochs=2) + "\n" + logs)
        result = subprocess.run(
            [sys.executable, "-m", "odirkit", "run", "exp.toml", "--out", "runs"],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        outputs[label] = (result, next((work / "runs").glob("*/*/default")))
    broken, folder = outputs["broken"]
    assert broken.stderr.count("logger 'broken' failed") == 1  # one warning, then silence
    plain = outputs["plain"][1]
    for name in ("predictions.csv", "val_predictions.csv"):
        assert (folder / name).read_text() == (plain / name).read_text(), name
    history = pd.read_csv(folder / "metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(
        history, pd.read_csv(plain / "metrics.csv").drop(columns=["seconds"])
    )
    a = json.loads((folder / "metrics.json").read_text())
    b = json.loads((plain / "metrics.json").read_text())
    assert a["final"] == b["final"]
    shutil.rmtree(tmp_path / "plain")
