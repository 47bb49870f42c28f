"""Distributed data parallel scaling: training throughput with 1 and 2 processes.

Runs the same small experiment (the paper's CNN at 96 px on the phantom) with
one process, then with two started by ``torchrun`` (gloo on the CPU, NCCL on
CUDA machines), and prints the training images per second of each and the
speed-up. On a 2-core CPU the two processes share the cores, so this shows
the mechanism working rather than a gain; on GPUs each process has its own.

    python benchmarks/ddp_scaling.py [--epochs 3] [--patients 200]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import torch

EXPERIMENT = """
name = "ddp_scaling"
seed = 0
[data]
dataset = "phantom"
root = "{root}"
patients = {patients}
size = 128
labels = ["N", "D"]
image_size = 96
[model]
name = "cnn"
widths = [8, 16, 32, 64]
kernels = [9, 3, 5, 3]
pool = 3
dense = [64]
dropout = 0.0
batch_norm = false
[train]
epochs = {epochs}
batch_size = 32
optimizer = "adam"
lr = 0.001
"""


def train_rate(work: Path, processes: int) -> float:
    env = {
        **os.environ,
        "ODIRKIT_QUIET": "1",
        "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // processes)),
    }
    out = work / f"runs-{processes}"
    if processes == 1:
        command = [sys.executable, "-m", "odirkit"]
    else:
        command = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc-per-node",
            str(processes),
            "-m",
            "odirkit",
        ]
    subprocess.run(
        [*command, "run", str(work / "exp.toml"), "--out", str(out)],
        env=env,
        check=True,
        capture_output=True,
    )
    (variant,) = out.glob("*/*/default")
    metrics = pd.read_csv(variant / "metrics.csv")
    images = json.loads((variant / "data.json").read_text())["train_images"]
    seconds = metrics["seconds"].diff().fillna(metrics["seconds"]).iloc[1:]  # skip warm-up
    return images / float(seconds.median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--patients", type=int, default=200)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="odirkit-ddp-"))
    (work / "exp.toml").write_text(
        EXPERIMENT.format(root=work / "phantom", epochs=args.epochs, patients=args.patients)
    )
    one = train_rate(work, 1)
    two = train_rate(work, 2)
    print(
        json.dumps(
            {
                "benchmark": "ddp_scaling",
                "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                "backend": "nccl" if torch.cuda.is_available() else "gloo",
                "cpu_count": os.cpu_count(),
                "unit": "training images per second (epoch time, evaluation included)",
                "processes_1": round(one, 1),
                "processes_2": round(two, 1),
                "speedup": round(two / one, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
