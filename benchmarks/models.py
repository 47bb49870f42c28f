"""Training throughput of the paper's models at their paper sizes, per speed setting.

For the CNN (512 px), VGG13-BN (224 px) and Inception v3 (299 px), measures
training images per second — forward, backward and an SGD step, as odirkit's
trainer does them — in fp32, with mixed precision (bf16 autocast; on CUDA the
precision odirkit picks: bf16 where supported, else fp16 with a gradient
scaler), and with the channels-last memory format, on whatever device is
present. Prints one JSON object.

    python benchmarks/models.py [--batch 8] [--steps 3] [--models cnn vgg13_bn inception_v3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from odirkit.engine.trainer import resolve_performance
from odirkit.plugins import get_registry

PAPER_SIZES = {"cnn": 512, "vgg13_bn": 224, "inception_v3": 299}


def measure(
    name: str,
    size: int,
    *,
    batch: int,
    steps: int,
    device: torch.device,
    precision: str,
    channels_last: bool,
) -> float:
    perf = resolve_performance(
        precision=precision,
        channels_last=channels_last,
        compile=False,
        num_workers=0,
        device=device,
        streaming=False,
    )
    torch.manual_seed(0)
    spec = get_registry().get("model", name)
    params = {"input_size": size} if name == "cnn" else {}
    model = spec.build(num_classes=8, **params).to(device)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch, 8), device=device).float()
    if perf.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=perf.grad_scaler)
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(
            device.type,
            dtype=perf.autocast_dtype or torch.float32,
            enabled=perf.autocast_dtype is not None,
        ):
            logits = model(x)
        loss = loss_fn(logits.float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        float(loss.detach())

    step()  # warm-up
    times = []
    for _ in range(steps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(PAPER_SIZES))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mixed = "auto" if device.type == "cuda" else "bf16"
    settings = {
        "fp32": ("fp32", False),
        "mixed_precision": (mixed, False),
        "channels_last_fp32": ("fp32", True),
        "mixed_and_channels_last": (mixed, True),
    }
    results: dict[str, dict[str, float]] = {}
    for name in args.models:
        size = PAPER_SIZES[name]
        results[f"{name}@{size}"] = {
            label: round(
                measure(
                    name,
                    size,
                    batch=args.batch,
                    steps=args.steps,
                    device=device,
                    precision=precision,
                    channels_last=cl,
                ),
                2,
            )
            for label, (precision, cl) in settings.items()
        }
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(
        json.dumps(
            {
                "benchmark": "models",
                "device": name,
                "torch_threads": torch.get_num_threads(),
                "batch": args.batch,
                "unit": "training images per second",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
