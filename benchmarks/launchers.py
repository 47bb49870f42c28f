"""Launchers: the wall time of 4 small runs one after another (``local``) against a pool
of processes (``pool --jobs N``) on this machine.

Writes a small phantom and an experiment of 4 variants of the quickstart's CNN (a few
epochs at 96 px), runs it with each launcher in a fresh process (as a user would), and
reports how far apart their validation curves are (float noise: a pool job
uses fewer threads). Prints one JSON object. On 2 CPU cores
this shows the mechanism (process start-up, threads split between the jobs), not a
speed claim; on a machine with several GPUs each pool job has its own.

    python benchmarks/launchers.py [--epochs 3] [--jobs 2] [--patients 80]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

EXPERIMENT = """
name = "bench"
seed = 0
device = "cpu"

[data]
dataset = "phantom"
root = "{root}"
patients = {patients}
size = 128
labels = ["N", "D"]
image_size = 96
test_fraction = 0.25

[model]
name = "cnn"
widths = [8, 16, 16, 16]
kernels = [5, 3, 3, 3]
pool = 2
dense = [32]

[train]
epochs = {epochs}
batch_size = 16
optimizer = "adam"
lr = 0.003

[variants.a]
[variants.b]
train.lr = 0.001
[variants.c]
seed = 1
[variants.d]
model.dropout = 0.2
"""


def timed(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "odirkit", *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(done.stdout + done.stderr)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--patients", type=int, default=80)
    args = parser.parse_args()
    env = {**os.environ, "ODIRKIT_QUIET": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        phantom = where / "phantom"
        subprocess.run(
            [
                sys.executable,
                "-m",
                "odirkit",
                "phantom",
                str(phantom),
                "--patients",
                str(args.patients),
                "--size",
                "128",
            ],
            check=True,
            capture_output=True,
            env=env,
        )
        exp = where / "bench.toml"
        exp.write_text(
            EXPERIMENT.format(root=phantom.as_posix(), epochs=args.epochs, patients=args.patients)
        )
        local = timed(["run", str(exp), "--out", "local"], where, env)
        pool = timed(
            ["run", str(exp), "--out", "pool", "--launcher", "pool", "--jobs", str(args.jobs)],
            where,
            env,
        )
        (a,) = (where / "local").glob("*/*")
        (b,) = (where / "pool").glob("*/*")
        gap = max(
            (
                pd.read_csv(a / v / "metrics.csv")["val_loss"]
                - pd.read_csv(b / v / "metrics.csv")["val_loss"]
            )
            .abs()
            .max()
            for v in "abcd"
        )
    print(
        json.dumps(
            {
                "runs": 4,
                "epochs": args.epochs,
                "cpu_cores": os.cpu_count(),
                "local_seconds": round(local, 2),
                f"pool_jobs{args.jobs}_seconds": round(pool, 2),
                "speedup": round(local / pool, 2),
                # one thread per pool job against two for the local run: float noise only
                "max_val_loss_gap": float(gap),
            }
        )
    )


if __name__ == "__main__":
    main()
