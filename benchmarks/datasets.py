"""Reading a large collection: the ``table`` and ``folder`` datasets on 10,000 images.

Writes an EyePACS-style collection of ``--rows`` images (``trainLabels.csv`` with
``image,level`` and ``train/<patient>_<left|right>.jpeg``; every file the same small
JPEG, since reading a table never decodes images) and the same images as a folder
per grade, then times

- the ``table`` dataset: read the CSV, index the image folder (one walk), map the
  grades, take patient and eye from the file names;
- the core's check of the sample table it returns (``check_sample_table``);
- the ``folder`` dataset on the folder-per-grade copy;
- for scale, what a walk of the image folder per row would cost (measured on a few
  rows, multiplied out).

Prints one JSON object.

    python benchmarks/datasets.py [--rows 10000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("ODIRKIT_QUIET", "1")

from PIL import Image


def write_collection(root: Path, rows: int) -> None:
    """``rows`` images in the EyePACS layout and, under ``by_grade/``, a folder per grade."""
    buffer = io.BytesIO()
    Image.new("RGB", (40, 32), (180, 70, 30)).save(buffer, format="JPEG")
    data = buffer.getvalue()
    (root / "train").mkdir(parents=True)
    lines = ["image,level"]
    for i in range(rows):
        patient, eye = 10 + i // 2, ("left", "right")[i % 2]
        name = f"{patient}_{eye}"
        level = (i * 7) % 5
        (root / "train" / f"{name}.jpeg").write_bytes(data)
        grade = root / "by_grade" / str(level)
        grade.mkdir(parents=True, exist_ok=True)
        (grade / f"{name}.jpeg").write_bytes(data)
        lines.append(f"{name},{level}")
    (root / "trainLabels.csv").write_text("\n".join(lines) + "\n")


def best_of(repeats: int, work) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from odirkit_datasets.folder import folder
    from odirkit_datasets.table import table

    from odirkit.data.table import check_sample_table

    mapping = {"0": "N", "1-4": "D"}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        start = time.perf_counter()
        write_collection(root, args.rows)
        written = time.perf_counter() - start

        def read_table():
            return table(
                root=str(root),
                file="trainLabels.csv",
                images="train",
                image_column="image",
                label_column="level",
                mapping=mapping,
                pattern=r"(?P<patient>\d+)_(?P<eye>left|right)",
            )

        table_seconds, frame = best_of(args.repeats, read_table)
        check_seconds, clean = best_of(
            args.repeats, lambda: check_sample_table(frame, dataset="table", root=root)
        )
        folder_seconds, by_folder = best_of(
            args.repeats,
            lambda: folder(
                root=str(root), images="by_grade", mapping=mapping, pattern=r"(?P<patient>\d+)_"
            ),
        )
        sample = 20
        start = time.perf_counter()
        for i in range(sample):
            name = f"{10 + i // 2}_{('left', 'right')[i % 2]}.jpeg"
            list((root / "train").rglob(name))  # every match, as a unique lookup must
        walk_per_row = (time.perf_counter() - start) / sample

    result = {
        "rows": args.rows,
        "images_read": {"table": len(clean), "folder": len(by_folder)},
        "patients": int(clean["patient_id"].nunique()),
        "seconds": {
            "write_collection": round(written, 3),
            "table_dataset": round(table_seconds, 4),
            "check_sample_table": round(check_seconds, 4),
            "folder_dataset": round(folder_seconds, 4),
        },
        "rows_per_second_table": round(args.rows / table_seconds),
        "walk_per_row_estimate_seconds": round(walk_per_row * args.rows, 1),
        "python": sys.version.split()[0],
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
