"""Reading and preprocessing photographs: odirkit against a plain Pillow loop, then the cache.

Photographs come from ``--folder`` (any folder of JPEG/PNG: the 512-pixel ODIR-5K
re-release's ``preprocessed_images/``, say) or are written as phantom JPEGs of
``--height`` pixels (512: as the re-release ships them; 2000: as the official
release). On the same files it measures photographs per second for

- a plain Pillow loop (open, convert to RGB, resize to ``--size``), in one process
  and in a pool of processes on all cores: the floor of what reading costs;
- odirkit's preprocessing as a run does it (``prepare_images`` into an empty cache:
  draft decode, light surround made black, crop to the field of view, pad, resize,
  atomic cache write), with one thread and with all cores;
- reading the preprocessed images back from odirkit's cache, and the fundus check;

and, unless ``--no-train``, how many images per second the paper's CNN trains on at
``--size`` on this machine, for scale. Prints one JSON object.

    python benchmarks/preprocessing.py [--folder DIR] [--images 200] [--height 512]
        [--size 512] [--no-train]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

os.environ.setdefault("ODIRKIT_QUIET", "1")

import numpy as np
import torch
from PIL import Image

from odirkit.data.fundus_check import check_fundus
from odirkit.data.images import IMAGE_SUFFIXES, ImageCache, Preprocessing, prepare_images
from odirkit.plugins import get_registry


def plain_pillow(job: tuple[Path, int]) -> int:
    """What any reader has to do at least: decode, convert, resize."""
    path, size = job
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB").resize((size, size), Image.Resampling.BICUBIC)).size


def timed(fn, repeats: int) -> float:
    """The median seconds of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def photographs(args: argparse.Namespace, work: Path) -> list[Path]:
    if args.folder is not None:
        paths = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise SystemExit(f"{args.folder}: no photographs")
        return paths[: args.images] if args.images else paths
    phantom = get_registry().get("dataset", "phantom")
    table = phantom.build(
        root=str(work / "phantom"), patients=(args.images + 1) // 2, size=args.height, seed=0
    )
    return [work / "phantom" / p for p in table["path"]][: args.images]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-train", action="store_true", help="skip the CNN measurement")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1

    work = Path(tempfile.mkdtemp(prefix="odirkit-prep-"))
    try:
        paths = photographs(args, work)
        width, height = Image.open(paths[0]).size
        prep = Preprocessing(size=args.size)
        jobs = [(p, args.size) for p in paths]
        n = len(paths)

        pillow_one = timed(lambda: [plain_pillow(j) for j in jobs], args.repeats)
        with Pool(cores) as pool:
            pool.map(plain_pillow, jobs[:cores])  # start the workers first
            pillow_all = timed(lambda: pool.map(plain_pillow, jobs, chunksize=4), args.repeats)

        def fresh(workers: int) -> None:
            cache = ImageCache(work / f"cache-{time.perf_counter_ns()}", prep)
            prepared = prepare_images([str(p) for p in paths], cache, workers=workers)
            assert not prepared.failures, prepared.failures

        odirkit_one = timed(lambda: fresh(1), args.repeats)
        odirkit_all = timed(lambda: fresh(cores), args.repeats)
        cache = ImageCache(work / "cache", prep)
        images = prepare_images([str(p) for p in paths], cache).images
        cached = timed(lambda: prepare_images([str(p) for p in paths], cache), args.repeats)
        check = timed(lambda: [check_fundus(image) for image in images], 1)

        result = {
            "benchmark": "preprocessing",
            "source": str(args.folder) if args.folder else f"phantom JPEGs {width}x{height}",
            "photographs": n,
            "output_size": args.size,
            "cores": cores,
            "plain_pillow_per_s": {"one_process": round(n / pillow_one, 1)},
            "odirkit_per_s": {"one_thread": round(n / odirkit_one, 1)},
            "cache_read_per_s": round(n / cached, 1),
            "fundus_check_per_s": round(n / check, 1),
        }
        result["plain_pillow_per_s"]["all_cores"] = round(n / pillow_all, 1)
        result["odirkit_per_s"]["all_cores"] = round(n / odirkit_all, 1)
        result["odirkit_vs_plain_pillow"] = {
            "one": round(pillow_one / odirkit_one, 2),
            "all_cores": round(pillow_all / odirkit_all, 2),
        }
        result["cache_vs_odirkit_all_cores"] = round(odirkit_all / cached, 1)
        if args.folder is None or args.images:
            result["seconds_for_6392_photographs"] = {
                "odirkit_all_cores": round(6392 * odirkit_all / n, 1),
                "cache_read": round(6392 * cached / n, 1),
            }
        if not args.no_train:
            cnn = get_registry().get("model", "cnn")
            model = cnn.build(num_classes=2, input_size=args.size)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
            x = torch.rand(4, 3, args.size, args.size)
            y = torch.tensor([0, 1, 0, 1])

            def step() -> None:
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                optimizer.step()

            step()
            result["paper_cnn_train_images_per_s"] = round(4 / timed(step, 2), 2)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
