"""Distributed data parallel training with torchrun: two CPU processes over gloo."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from conftest import tiny_experiment

# Batch norm computes statistics per process (SyncBatchNorm needs CUDA) and dropout
# draws per process: without them, two processes must compute what one does.
NO_BN = "dropout = 0.0\nbatch_norm = false"


def run(args: list[str], tmp_path, *, world: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "ODIRKIT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    if world > 1:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(world),
            "-m",
            "odirkit",
            *args,
        ]
    else:
        command = [sys.executable, "-m", "odirkit", *args]
    return subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path
    )


@pytest.mark.slow
def test_two_processes_train_like_one(tmp_path, phantom_root):
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=2).replace("dropout = 0.0", NO_BN))
    single = run(["run", str(exp), "--out", "single"], tmp_path, world=1)
    assert single.returncode == 0, single.stderr
    double = run(["run", str(exp), "--out", "ddp"], tmp_path, world=2)
    assert double.returncode == 0, double.stderr

    runs = list((tmp_path / "ddp").glob("*/*"))
    assert len(runs) == 1  # the run folder is written once, by rank 0
    variant = runs[0] / "default"
    final = json.loads((variant / "metrics.json").read_text())
    assert final["distributed"] == {"world_size": 2, "backend": "gloo", "ranks_in_sync": True}

    (reference,) = (tmp_path / "single").glob("*/*/default")
    a = pd.read_csv(reference / "metrics.csv").drop(columns=["seconds"])
    b = pd.read_csv(variant / "metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b, rtol=1e-4, atol=1e-6)
    assert a["train_loss"].iloc[-1] != a["train_loss"].iloc[0]  # it did learn something

    # Every held-out image is evaluated exactly once.
    split = pd.read_csv(variant / "split.csv")
    predictions = pd.read_csv(variant / "predictions.csv")
    assert len(predictions) == (split["split"] == "test").sum()
    assert not predictions.duplicated(["patient_id", "eye"]).any()
    single_predictions = pd.read_csv(reference / "predictions.csv")
    assert (predictions["prob_D"] - single_predictions["prob_D"]).abs().max() < 1e-4


@pytest.mark.slow
def test_two_processes_agree_on_batch_norm_statistics(tmp_path, phantom_root):
    # The README's two-CPU-process command, with batch norm on (every built-in model has it).
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=2))
    double = run(["run", str(exp), "--out", "ddp"], tmp_path, world=2)
    assert double.returncode == 0, double.stderr
    (variant,) = (tmp_path / "ddp").glob("*/*/default")
    final = json.loads((variant / "metrics.json").read_text())
    assert final["distributed"]["ranks_in_sync"] is True
    import torch

    state = torch.load(variant / "checkpoints" / "last.pt", weights_only=True)["model"]
    assert any(key.endswith("running_mean") for key in state)
