"""Preprocessing throughput at ODIR-5K's sizes: full decode, draft decode, the cache.

Writes phantom photographs of ODIR-5K's size (about 2000 x 2500 px JPEGs),
then measures images per second for

- full decode + crop + resize to 512 (Pillow, no draft mode),
- odirkit's preprocessing (draft-mode decode: libjpeg reduces in the DCT domain),
- reading the preprocessed image back from odirkit's cache,

and, for scale, how many images per second the paper's CNN trains on at 512 px
on this machine. Prints one JSON object.

    python benchmarks/preprocessing.py [--images 12] [--height 2000] [--no-train]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ODIRKIT_QUIET", "1")

import numpy as np
import torch
from PIL import Image

from odirkit.data.images import ImageCache, Preprocessing, fov_box, preprocess
from odirkit.plugins import get_registry


def full_decode(path: Path, size: int) -> np.ndarray:
    """The same crop and resize, decoding the whole JPEG first."""
    with Image.open(path) as img:
        img = img.convert("RGB")
    box = fov_box(np.asarray(img.convert("L")))
    img = img.crop(box) if box else img
    side = max(img.size)
    square = Image.new("RGB", (side, side))
    square.paste(img, ((side - img.size[0]) // 2, (side - img.size[1]) // 2))
    return np.asarray(square.resize((size, size), Image.Resampling.BICUBIC))


def rate(fn, items, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        times.append(time.perf_counter() - start)
    return len(items) / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--height", type=int, default=2000)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--no-train", action="store_true", help="skip the CNN measurement")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="odirkit-prep-"))
    phantom = get_registry().get("dataset", "phantom")
    table = phantom.build(
        root=str(work / "phantom"), patients=(args.images + 1) // 2, size=args.height, seed=0
    )
    paths = [work / "phantom" / p for p in table["path"]][: args.images]
    width, height = Image.open(paths[0]).size
    prep = Preprocessing(size=args.size)
    cache = ImageCache(work / "cache", prep)
    for path in paths:
        cache.get(path)  # build the cache entries
    entries = [cache.entry(p) for p in paths]

    full = rate(lambda p: full_decode(p, args.size), paths)
    draft = rate(lambda p: preprocess(p, prep), paths)
    cached = rate(lambda e: np.load(e), entries, repeats=5)
    result = {
        "benchmark": "preprocessing",
        "source_jpeg": f"{width}x{height}",
        "output_size": args.size,
        "images": len(paths),
        "full_decode_images_per_s": round(full, 1),
        "draft_decode_images_per_s": round(draft, 1),
        "cache_read_images_per_s": round(cached, 1),
        "draft_vs_full": round(draft / full, 2),
        "cache_vs_full_decode": round(cached / full, 1),
        "cache_vs_draft_decode": round(cached / draft, 1),
    }
    if not args.no_train:
        cnn = get_registry().get("model", "cnn")
        model = cnn.build(num_classes=2, input_size=args.size)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.rand(4, 3, args.size, args.size)
        y = torch.tensor([0, 1, 0, 1])

        def step(_: object) -> None:
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            optimizer.step()

        step(None)
        result["paper_cnn_train_images_per_s"] = round(4 * rate(step, [None], repeats=2), 2)
        result["cache_vs_paper_cnn_training"] = round(
            cached / result["paper_cnn_train_images_per_s"], 1
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    sys.exit(main())
