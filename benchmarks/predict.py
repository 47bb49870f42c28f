"""Prediction throughput: photographs on disk to a submission CSV, against the model alone.

Trains the quickstart's CNN for one epoch on a small phantom, writes ``--images``
photographs of ``--height`` pixels, then measures

- ``odirkit predict`` end to end (decode in parallel, fundus check, preprocessing,
  model, fusion, CSV), in images per second;
- the raw forward pass of the same model on the same batches, already decoded;

and their ratio. Prints one JSON object.

    python benchmarks/predict.py [--images 200] [--height 1024]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ODIRKIT_QUIET", "1")

import torch

QUICKSTART = Path(__file__).parents[1] / "experiments" / "quickstart.toml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--height", type=int, default=1024)
    args = parser.parse_args()

    from typer.testing import CliRunner

    from odirkit.cli import app
    from odirkit.plugins import get_registry
    from odirkit.predict import load_trained, predict
    from odirkit.runs import find_variant

    registry = get_registry()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train = CliRunner().invoke(
            app,
            [
                "run",
                str(QUICKSTART),
                "--variant",
                "default",
                "--out",
                str(tmp / "runs"),
                "--set",
                "seeds=[0]",
                "--set",
                "explain=[]",
                "--set",
                "train.epochs=1",
                "--set",
                "data.patients=60",
                "--set",
                f"data.root={(tmp / 'train').as_posix()}",
            ],
        )
        if train.exit_code != 0:
            raise SystemExit(train.output)
        vdir = find_variant(next((tmp / "runs").glob("quickstart/*/default-seed0")))
        photos = tmp / "photos"
        registry.get("dataset", "phantom").build(
            root=str(photos), patients=args.images // 2, size=args.height, seed=1
        )
        folder = photos / "ODIR-5K_Training_Dataset"

        start = time.perf_counter()
        result = predict(vdir, folder, registry)
        result.patients.to_csv(tmp / "submission.csv", index=False)
        end_to_end = time.perf_counter() - start
        n = len(result.images)

        exp, model, view = load_trained(vdir, registry)
        model.eval()
        images = [view.preprocess(p) for p in sorted(folder.glob("*.jpg"))]
        batches = [view.batch(images[i : i + 32]) for i in range(0, len(images), 32)]
        with torch.inference_mode():
            model(view.normalise(batches[0]))  # warm-up
            start = time.perf_counter()
            for batch in batches:
                view.probabilities(model(view.normalise(batch)))
            forward = time.perf_counter() - start
    report = {
        "benchmark": "predict",
        "torch_threads": torch.get_num_threads(),
        "images": n,
        "photograph_height": args.height,
        "image_size": exp.image_size,
        "end_to_end_images_per_s": round(n / end_to_end, 1),
        "model_forward_images_per_s": round(n / forward, 1),
        "end_to_end_over_forward": round(forward / end_to_end, 3),
    }
    json.dump(report, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
