"""How many photographs of each folder pass the fundus check, and why the others fail.

    python benchmarks/fundus_check.py FOLDER [FOLDER ...] [--size 224] [--variants]
        [--list-failures N]

Every image under each folder (recursively: JPEG, PNG, TIFF, BMP) is preprocessed
as a run would (crop to the field of view, pad to a square, resize to ``--size``)
and checked (:mod:`odirkit.data.fundus_check`). With ``--variants``, each
photograph is also checked after the changes real collections show: darkened to
a fifth, blended half with white (haze), blurred, cropped so that the field fills
the square (tight), clipped top and bottom, padded with white, stretched to a
square, and with a transparent surround (RGBA). Prints one
JSON object: per folder (and per variant) the images checked, passed, failed, the
failure share, the count per reason, the first failures, the time per image, and
the range of each statistic over the photographs that passed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections import Counter
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("ODIRKIT_QUIET", "1")

import numpy as np
from PIL import Image, ImageFilter

from odirkit.data.fundus_check import check_fundus
from odirkit.data.images import IMAGE_SUFFIXES, Preprocessing, preprocess
from odirkit.errors import DataError

STATISTICS = ("field", "coverage", "leak", "redness", "brightness", "saturated", "sharpness")


def _dark_corners(rgb: np.ndarray) -> np.ndarray:
    """The photograph with everything outside its inscribed circle black."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    inside = ((yy - (h - 1) / 2) / (h / 2)) ** 2 + ((xx - (w - 1) / 2) / (w / 2)) ** 2 <= 1
    return rgb * inside[..., None]


def variants(rgb: np.ndarray) -> dict[str, Image.Image]:
    """The photograph as other collections would ship it."""
    h, w = rgb.shape[:2]
    grey = rgb.max(axis=2)
    ys, xs = np.nonzero(grey > 20)
    top, bottom = (ys.min(), ys.max() + 1) if ys.size else (0, h)
    left, right = (xs.min(), xs.max() + 1) if xs.size else (0, w)
    field = rgb[top:bottom, left:right]
    fh, fw = field.shape[:2]
    surround = grey <= 20
    out = {
        "dark": Image.fromarray((rgb * 0.2).astype(np.uint8)),
        "haze": Image.fromarray((rgb * 0.5 + 127).astype(np.uint8) * ~surround[..., None]),
        "blur": Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(max(h, w) / 150)),
        "tight": Image.fromarray(
            field[int(fh * 0.08) : int(fh * 0.92), int(fw * 0.08) : int(fw * 0.92)]
        ),
        "clipped": Image.fromarray(field[int(fh * 0.12) : int(fh * 0.88)]),
        "stretched": Image.fromarray(field[int(fh * 0.1) : int(fh * 0.9)]).resize((fw, fw)),
    }
    white = rgb.copy()
    white[surround] = 255
    out["white_padding"] = Image.fromarray(white)
    rgba = np.dstack([rgb, np.where(surround, 0, 255).astype(np.uint8)])
    rgba[surround, :3] = 255  # what lies under a transparent pixel is arbitrary
    out["rgba"] = Image.fromarray(rgba, "RGBA")
    return out


def check_folder(paths: list[Path], prep: Preprocessing, show: int) -> dict:
    reasons: Counter[str] = Counter()
    failures, passed_stats = [], {k: [] for k in STATISTICS}
    start = time.perf_counter()
    for path in paths:
        try:
            verdict = check_fundus(preprocess(path, prep))
        except DataError as exc:
            reasons["unreadable"] += 1
            failures.append({"image": str(path), "reason": "unreadable", "error": str(exc)})
            continue
        if verdict.usable:
            for key in STATISTICS:
                passed_stats[key].append(getattr(verdict, key))
        else:
            reasons[verdict.reason] += 1
            failures.append({"image": str(path), **asdict(verdict)})
    seconds = time.perf_counter() - start
    failed = sum(reasons.values())
    return {
        "images": len(paths),
        "passed": len(paths) - failed,
        "failed": failed,
        "failure_share": round(failed / max(len(paths), 1), 4),
        "reasons": dict(reasons.most_common()),
        "ms_per_image": round(1000 * seconds / max(len(paths), 1), 2),
        "passed_range": {
            k: [round(float(min(v)), 4), round(float(max(v)), 4)]
            for k, v in passed_stats.items()
            if v
        },
        "first_failures": [
            {k: (round(v, 4) if isinstance(v, float) else v) for k, v in f.items()}
            for f in failures[:show]
        ],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--variants", action="store_true")
    parser.add_argument("--list-failures", type=int, default=10)
    args = parser.parse_args(argv)
    prep = Preprocessing(size=args.size)
    report: dict = {"size": args.size, "folders": {}}
    for folder in args.folders:
        if not folder.is_dir():
            print(f"{folder}: no such folder", file=sys.stderr)
            raise SystemExit(2)
        paths = sorted(
            p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        entry = {"photographs": check_folder(paths, prep, args.list_failures)}
        if args.variants:
            with tempfile.TemporaryDirectory() as tmp:
                made: dict[str, list[Path]] = {}
                for i, path in enumerate(paths):
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("error", Image.DecompressionBombWarning)
                            with Image.open(path) as img:
                                rgb = np.asarray(img.convert("RGB"))
                    except (OSError, Image.DecompressionBombError, Image.DecompressionBombWarning):
                        continue  # counted as unreadable among the photographs
                    for name, picture in variants(rgb).items():
                        target = Path(tmp) / name / f"{i:05d}.png"
                        target.parent.mkdir(exist_ok=True)
                        picture.save(target)
                        made.setdefault(name, []).append(target)
                for name, files in made.items():
                    result = check_folder(files, prep, args.list_failures)
                    for failure in result["first_failures"]:  # name the original photograph
                        failure["image"] = str(paths[int(Path(failure["image"]).stem)])
                    entry[name] = result
        report["folders"][str(folder)] = entry
    print(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
