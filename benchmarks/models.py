"""Training and inference throughput of the paper's models and a RETFound-style ViT.

For the CNN (512 px), VGG13-BN (224 px), Inception v3 (299 px) and the ``vit``
model (RETFound's ViT-Large/16, 224 px, global average pooling), measures
images per second for a training step — forward, backward and an optimiser
step, as odirkit's trainer does them (SGD for the CNNs, AdamW for the ViT, its
recipe) — and for inference (evaluation mode, no gradients), in fp32, with
mixed precision (bf16 autocast; on CUDA the precision odirkit picks: bf16
where supported, else fp16 with a gradient scaler), with the channels-last
memory format (where it applies: not to a ViT, whose activations are token
sequences), and, on CUDA or with ``--compile``, with ``torch.compile`` on top of
mixed precision. Runs on whatever device is present; prints one JSON object.

    python benchmarks/models.py [--batch 8] [--steps 3] [--models cnn vgg13_bn inception_v3 vit]
        [--size N]
    python benchmarks/models.py --models vit --vit-arch vit_base_patch16_224 --batch 4
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from typing import Any

import torch

from odirkit.engine.trainer import resolve_performance
from odirkit.plugins import get_registry

PAPER_SIZES = {"cnn": 512, "vgg13_bn": 224, "inception_v3": 299, "vit": 224}
#: models whose activations are token sequences: channels-last does not apply
TOKEN_MODELS = {"vit"}


def build(name: str, size: int, vit_arch: str) -> torch.nn.Module:
    spec = get_registry().get("model", name)
    params: dict[str, Any] = {}
    if name == "cnn":
        params = {"input_size": size}
    elif name == "vit":
        params = {"arch": vit_arch, "input_size": size}
    return spec.build(num_classes=8, **params)


def measure(
    name: str,
    size: int,
    *,
    batch: int,
    steps: int,
    device: torch.device,
    precision: str,
    channels_last: bool,
    compile: bool,
    vit_arch: str,
) -> dict[str, float]:
    """Training and inference images per second of one model in one setting."""
    perf = resolve_performance(
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        num_workers=0,
        device=device,
        streaming=False,
    )
    torch.manual_seed(0)
    model = build(name, size, vit_arch).to(device)
    x = torch.rand(batch, 3, size, size, device=device)
    y = torch.randint(0, 2, (batch, 8), device=device).float()
    if perf.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if name in TOKEN_MODELS:
        optimizer: torch.optim.Optimizer = torch.optim.AdamW(
            model.parameters(), lr=1e-4, weight_decay=0.05
        )
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    scaler = torch.amp.GradScaler(device.type, enabled=perf.grad_scaler)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    forward = torch.compile(model) if perf.compile else model

    def autocast() -> Any:
        return torch.autocast(
            device.type,
            dtype=perf.autocast_dtype or torch.float32,
            enabled=perf.autocast_dtype is not None,
        )

    def train_step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = forward(x)
        loss = loss_fn(logits.float(), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        float(loss.detach())

    def infer_step() -> None:
        with torch.inference_mode(), autocast():
            float(forward(x).float().sum())

    def rate(step: Any) -> float:
        step()  # warm-up (and compilation)
        times = []
        for _ in range(steps):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        return round(batch / statistics.median(times), 2)

    model.train()
    train = rate(train_step)
    model.eval()
    return {"train": train, "inference": rate(infer_step)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=list(PAPER_SIZES))
    parser.add_argument(
        "--vit-arch",
        default="vit_large_patch16_224",
        help="the vit model's timm architecture (default RETFound's ViT-L/16)",
    )
    parser.add_argument(
        "--compile", action="store_true", help="also measure torch.compile on the CPU"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="one image size for every model (default: each model's own, as in the paper)",
    )
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    mixed = "auto" if device.type == "cuda" else "bf16"
    settings = {
        "fp32": ("fp32", False, False),
        "mixed_precision": (mixed, False, False),
        "channels_last_fp32": ("fp32", True, False),
        "mixed_and_channels_last": (mixed, True, False),
    }
    if device.type == "cuda" or args.compile:
        settings["mixed_and_compile"] = (mixed, False, True)
    results: dict[str, dict[str, Any]] = {}
    for name in args.models:
        size = args.size or PAPER_SIZES[name]
        label = f"{name}({args.vit_arch})@{size}" if name == "vit" else f"{name}@{size}"
        results[label] = {}
        for setting, (precision, channels_last, compile) in settings.items():
            if channels_last and name in TOKEN_MODELS:
                results[label][setting] = "not applicable: token sequences, no 4-D activations"
                continue
            results[label][setting] = measure(
                name,
                size,
                batch=args.batch,
                steps=args.steps,
                device=device,
                precision=precision,
                channels_last=channels_last,
                compile=compile,
                vit_arch=args.vit_arch,
            )
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    print(
        json.dumps(
            {
                "benchmark": "models",
                "device": name,
                "torch_threads": torch.get_num_threads(),
                "batch": args.batch,
                "unit": "images per second (train: forward, backward, optimiser step)",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
