"""Engine overhead: odirkit's training loop against a minimal hand-written PyTorch loop.

Both train the same model (same initial weights) on the same batches, in the
same order, in one process; epochs alternate between the two so that machine
noise hits both alike. Prints one JSON object with both throughputs, their
ratio and the engine's overhead in percent.

    python benchmarks/engine_overhead.py [--epochs 6] [--image-size 128] [--patients 300]
        [--batch-size 32] [--photo-size 256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

os.environ.setdefault("ODIRKIT_QUIET", "1")

import torch

from odirkit.config import resolve_document
from odirkit.console import progress_bar
from odirkit.data.prepare import prepare_data
from odirkit.engine.losses import make_loss
from odirkit.engine.trainer import EpochProgress, Trainer, make_optimizer
from odirkit.plugins import get_registry
from odirkit.view import ModelView


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6, help="measured epochs per loop")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--patients", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--photo-size", type=int, default=256, help="phantom photograph height")
    args = parser.parse_args(argv)

    root = tempfile.mkdtemp(prefix="odirkit-bench-")
    doc = {
        "name": "overhead",
        "device": "auto",
        "data": {
            "dataset": "phantom",
            "root": f"{root}/phantom",
            "patients": args.patients,
            "size": args.photo_size,
            "labels": ["N", "D"],
            "image_size": args.image_size,
        },
        "model": {"name": "cnn", "widths": [8, 16, 32, 64], "dense": [128, 32], "dropout": 0.0},
        "train": {"batch_size": args.batch_size, "optimizer": "sgd", "lr": 0.01},
    }
    (exp,) = resolve_document(doc, get_registry(), source="benchmark")
    data = prepare_data(exp)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    view = ModelView.of(exp, single_label=data.task.single_label, age_stats=data.age_stats)

    def fresh_model() -> torch.nn.Module:
        torch.manual_seed(0)
        return exp.model.build(num_classes=data.task.num_classes).to(device)

    # odirkit's engine, with the progress bar a run shows
    engine_model = fresh_model()
    trainer = Trainer(
        model=engine_model,
        optimizer=make_optimizer(
            "sgd", engine_model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4
        ),
        loss_fn=make_loss(True, None, device),
        data=data,
        device=device,
        view=view,
        seed=0,
        batch_size=args.batch_size,
    )

    # the minimal loop
    plain_model = fresh_model()
    plain_opt = torch.optim.SGD(plain_model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    plain_loss = torch.nn.CrossEntropyLoss()
    mean = torch.tensor(view.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(view.std, device=device).view(1, 3, 1, 1)

    def plain_epoch(epoch: int) -> None:
        plain_model.train()
        order = trainer.epoch_order(epoch)  # the very same batches as the engine's
        for start in range(0, len(order), args.batch_size):
            idx = order[start : start + args.batch_size]
            x = data.store.batch(idx).to(device).float().div_(255.0)
            x = (x - mean) / std
            y = data.targets_tensor(idx).to(device)
            plain_opt.zero_grad(set_to_none=True)
            loss = plain_loss(plain_model(x), y)
            loss.backward()
            plain_opt.step()
            float(loss.detach())  # the engine reads every loss (divergence guard): so does this

    def engine_epoch(epoch: int) -> None:
        with progress_bar() as bar:
            task = bar.add_task("steps", total=trainer.steps_per_epoch(), status="")
            trainer.train_epoch(
                EpochProgress(epoch),
                after_step=lambda p: bar.update(task, completed=p.step, status=f"{p.loss:.3f}"),
            )

    images = len(data.train_idx)
    engine_epoch(0)  # warm-up both
    plain_epoch(0)
    engine_rates, plain_rates = [], []
    pairs = [(engine_epoch, engine_rates), (plain_epoch, plain_rates)]
    for epoch in range(1, args.epochs + 1):
        for run, rates in pairs if epoch % 2 else pairs[::-1]:  # alternate who goes first
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run(epoch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates.append(images / (time.perf_counter() - start))
    engine = statistics.median(engine_rates)
    plain = statistics.median(plain_rates)
    result = {
        "benchmark": "engine_overhead",
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "model": "cnn (quickstart widths)",
        "image_size": args.image_size,
        "train_images": images,
        "batch_size": args.batch_size,
        "epochs_measured": args.epochs,
        "engine_images_per_s": round(engine, 1),
        "plain_images_per_s": round(plain, 1),
        "ratio": round(engine / plain, 4),
        "overhead_percent": round(100 * (plain / engine - 1), 2),
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
