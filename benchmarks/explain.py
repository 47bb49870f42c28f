"""Explanation throughput: explained images per second per explainer.

For the quickstart's CNN (128 px) and VGG13-BN (224 px), each explainer plugin
explains a batch of images (one target class each) through odirkit's batched
path, on whatever device is present. SmoothGrad uses its defaults (25 noisy
samples, 5 at a time for each image). Prints one JSON object.

    python benchmarks/explain.py [--batch 8] [--repeats 2] [--models cnn vgg13_bn]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch

from odirkit.explain import ImageClass, compute_maps
from odirkit.layers import not_applicable, resolve_layer
from odirkit.plugins import get_registry

MODELS = {
    "cnn (quickstart) @128": (
        "cnn",
        128,
        {"input_size": 128, "widths": [8, 16, 32, 64], "dense": [128, 32]},
    ),
    "vgg13_bn @224": ("vgg13_bn", 224, {}),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--models",
        nargs="+",
        choices=[m[0] for m in MODELS.values()],
        default=None,
        help="the models to measure (default: all)",
    )
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    registry = get_registry()
    results: dict[str, dict[str, float | str]] = {}
    for label, (name, size, params) in MODELS.items():
        if args.models and name not in args.models:
            continue
        spec = registry.get("model", name)
        torch.manual_seed(0)
        model = spec.build(num_classes=2, **params).to(device).eval()
        x = torch.rand(args.batch, 3, size, size, device=device)
        image_classes = [ImageClass(i, i % 2) for i in range(args.batch)]
        _, layer = resolve_layer(model, "default", spec.meta["cam_layer"])
        results[label] = {}
        for explainer_spec in registry.specs("explainer"):
            reason = not_applicable(explainer_spec.meta.get("applies_to"), model)
            if reason:  # attention rollout on a CNN, say
                results[label][explainer_spec.name] = f"not applicable: {reason}"
                continue
            explainer = explainer_spec.build()
            compute_maps(explainer, model, x, image_classes[:1], layer, seed=0)  # warm-up
            times = []
            for _ in range(args.repeats):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
                compute_maps(
                    explainer, model, x, image_classes, layer, seed=0, batch_size=args.batch
                )
                if device.type == "cuda":
                    torch.cuda.synchronize()
                times.append(time.perf_counter() - start)
            results[label][explainer_spec.name] = round(args.batch / statistics.median(times), 2)
    print(
        json.dumps(
            {
                "benchmark": "explain",
                "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                "torch_threads": torch.get_num_threads(),
                "batch": args.batch,
                "unit": "explained images per second",
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
