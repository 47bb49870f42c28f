"""Classic augmentation throughput: odirkit's batched augmenter against torchvision per image.

Both apply the same three transforms to every image (probability 1): rotation
within ±π/4, the 0.2/99.8 percentile contrast stretch, and Gaussian noise of
variance 0.01. odirkit works on the whole batch at once; the reference loops
over the images with torchvision's functional transforms, as a per-sample
Dataset transform would. Prints one JSON object.

    python benchmarks/classic_augment.py [--size 512] [--batch 32] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time

import torch
from torchvision.transforms.v2 import functional as TF

from odirkit.plugins import get_registry


def per_image_reference(p: float):
    """The same transforms, one image at a time, with torchvision, each with probability p."""

    def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        out = []
        for image in images:
            draws = torch.rand(4, generator=generator)
            if draws[0] < p:
                angle = (draws[1].item() * 2 - 1) * 45.0
                image = TF.rotate(image, angle, interpolation=TF.InterpolationMode.BILINEAR)
            if draws[2] < p:
                lo, hi = torch.quantile(image.flatten(), torch.tensor([0.002, 0.998]))
                image = ((image - lo) / (hi - lo).clamp_min(1e-6)).clamp(0, 1)
            if draws[3] < p:
                image = TF.gaussian_noise(image, mean=0.0, sigma=math.sqrt(0.01), clip=True)
            out.append(image)
        return torch.stack(out)

    return augment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    spec = get_registry().get("augmenter", "classic")
    images = torch.rand(
        args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)
    )

    def rate(fn) -> float:
        fn(images, torch.Generator().manual_seed(0))  # warm-up
        times = []
        for r in range(args.repeats):
            start = time.perf_counter()
            fn(images, torch.Generator().manual_seed(r))
            times.append(time.perf_counter() - start)
        return args.batch / statistics.median(times)

    results = {}
    for p, label in ((1.0, "every_transform"), (0.5, "default_probabilities")):
        batched = spec.build(noise_p=p, rotation_p=p, contrast_p=p)
        odirkit_rate = rate(batched)
        reference_rate = rate(per_image_reference(p))
        results[label] = {
            "probability": p,
            "odirkit_batched_images_per_s": round(odirkit_rate, 1),
            "torchvision_per_image_images_per_s": round(reference_rate, 1),
            "ratio": round(odirkit_rate / reference_rate, 2),
        }
    print(
        json.dumps(
            {
                "benchmark": "classic_augment",
                "device": "cpu",
                "torch_threads": torch.get_num_threads(),
                "image_size": args.size,
                "batch": args.batch,
                **results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
