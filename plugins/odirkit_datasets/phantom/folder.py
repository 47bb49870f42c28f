"""The phantom's folder: the official ODIR-5K layout written all at once (photographs,
lesion masks, ``phantom_images.csv``, the workbook with fixed timestamps, ``phantom.json``),
and checked before it is used again (:func:`needs_generation`)."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import odirkit
from odirkit import LABELS
from odirkit_datasets.fundus_render import CAMERAS, EASY, LOOKS, Look, jpeg_quality, render_eye
from odirkit_datasets.phantom.patients import (
    AGE_SHIFT,
    BOTH_EYES,
    GENERATOR_VERSION,
    NORMAL_RATE,
    PATIENT_RATE,
    PhantomPatient,
    Stream,
    draw_patient,
    stream,
)

WORKBOOK = "ODIR-5K_Training_Annotations(Updated)_V2.xlsx"
IMAGE_DIR = "ODIR-5K_Training_Dataset"
MASK_DIR = "masks"
IMAGE_TABLE = "phantom_images.csv"
MANIFEST = "phantom.json"


def write_patient_images(
    root: Path, patient: PhantomPatient, seed: int, size: int, look: Look = EASY
) -> list[dict]:
    """Render both eyes of a patient; return their per-image table rows.

    The label columns say what the keywords say; ``drawn_<L>`` what the
    photograph shows, and ``label_noise`` marks an eye where they differ.
    """
    rows = []
    camera = CAMERAS[patient.camera]
    for eye in ("left", "right"):
        labels = patient.labelled(eye)
        drawn = patient.drawn(eye)
        dust = patient.left_dust if eye == "left" else patient.right_dust
        rng = stream(
            seed, patient.patient_id, Stream.LEFT_EYE if eye == "left" else Stream.RIGHT_EYE
        )
        image, masks = render_eye(
            rng, size, eye=eye, labels=drawn, lens_dust=dust, look=look, camera=camera
        )
        name = f"{patient.patient_id}_{eye}.jpg"
        quality = jpeg_quality(rng, look)
        Image.fromarray(image).save(root / IMAGE_DIR / name, quality=quality, optimize=False)
        row = {
            "patient_id": patient.patient_id,
            "eye": eye,
            "path": f"{IMAGE_DIR}/{name}",
            "age": patient.age,
            "sex": patient.sex,
            "keywords": patient.left_keywords if eye == "left" else patient.right_keywords,
        }
        for label in LABELS:
            positive = label in labels if label != "N" else not labels
            row[label] = int(positive)
            mask_path = ""
            if label in masks:
                mask_path = f"{MASK_DIR}/{patient.patient_id}_{eye}_{label}.png"
                Image.fromarray((masks[label] * 255).astype(np.uint8), mode="L").save(
                    root / mask_path
                )
            row[f"mask_path_{label}"] = mask_path
        for label in LABELS:
            row[f"drawn_{label}"] = int(label in drawn if label != "N" else not drawn)
        row["label_noise"] = int(labels != drawn)
        row["camera"] = patient.camera
        row["jpeg_quality"] = quality
        rows.append(row)
    return rows


def workbook_table(patients: list[PhantomPatient]) -> pd.DataFrame:
    """The official ODIR-5K annotation columns, one row per patient."""
    rows = []
    for p in patients:
        row = {
            "ID": p.patient_id,
            "Patient Age": p.age,
            "Patient Sex": p.sex,
            "Left-Fundus": f"{p.patient_id}_left.jpg",
            "Right-Fundus": f"{p.patient_id}_right.jpg",
            "Left-Diagnostic Keywords": p.left_keywords,
            "Right-Diagnostic Keywords": p.right_keywords,
        }
        labels = p.labels
        row.update({label: int(label in labels) for label in LABELS})
        rows.append(row)
    return pd.DataFrame(rows)


def write_workbook(table: pd.DataFrame, path: Path) -> None:
    """Write the workbook with fixed timestamps, so the same data gives the same bytes."""
    buffer = io.BytesIO()
    table.to_excel(buffer, index=False, sheet_name="Sheet1", engine="openpyxl")
    fixed = "2019-01-01T00:00:00Z"
    with (
        zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src,
        zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as dst,
    ):
        for info in sorted(src.infolist(), key=lambda i: i.filename):
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                text = re.sub(
                    r"(<dcterms:(created|modified)[^>]*>)[^<]*(</dcterms:\2>)",
                    rf"\g<1>{fixed}\g<3>",
                    data.decode("utf-8"),
                )
                data = text.encode("utf-8")
            dst.writestr(zipfile.ZipInfo(info.filename, date_time=(2019, 1, 1, 0, 0, 0)), data)


@dataclass(frozen=True)
class Settings:
    """Everything that decides a phantom's bytes."""

    patients: int
    size: int
    seed: int
    difficulty: str = "realistic"
    label_noise: float = 0.0
    camera_shift: bool = False

    @property
    def look(self) -> Look:
        return LOOKS[self.difficulty]

    @property
    def cameras(self) -> int:
        return len(CAMERAS) if self.camera_shift else 1

    def manifest(self) -> dict:
        """``phantom.json``: every generator parameter."""
        return {
            "generator": "odirkit phantom",
            "version": GENERATOR_VERSION,
            "patients": self.patients,
            "size": self.size,
            "seed": self.seed,
            "difficulty": self.difficulty,
            "label_noise": self.label_noise,
            "camera_shift": self.camera_shift,
            "look": self.look.to_dict(),
            "cameras": [asdict(c) for c in CAMERAS[: self.cameras]],
            "prevalence": {"N": NORMAL_RATE, **{k: v / 3500 for k, v in PATIENT_RATE.items()}},
            "both_eyes": BOTH_EYES,
            "age_shift": AGE_SHIFT,
        }


def generate(
    root: Path,
    settings: Settings,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Write a phantom dataset into ``root`` (which must not hold anything else).

    The dataset is written into a temporary sibling folder and moved into
    place at the end, so an interrupted generation leaves no half dataset.
    """
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    try:
        (staging / IMAGE_DIR).mkdir()
        (staging / MASK_DIR).mkdir()
        drawn = [
            draw_patient(
                settings.seed, pid, label_noise=settings.label_noise, cameras=settings.cameras
            )
            for pid in range(settings.patients)
        ]
        rows: list[dict] = []
        for i, patient in enumerate(drawn):
            rows.extend(
                write_patient_images(staging, patient, settings.seed, settings.size, settings.look)
            )
            if progress:
                progress(i + 1, settings.patients)
        pd.DataFrame(rows).to_csv(staging / IMAGE_TABLE, index=False)
        write_workbook(workbook_table(drawn), staging / WORKBOOK)
        manifest = {**settings.manifest(), "images": len(rows)}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if root.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{root.name}.old-", dir=root.parent))
            os.replace(root, old / root.name)
            os.replace(staging, root)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, root)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_manifest(root: Path) -> dict | None:
    """``phantom.json`` read back; ``None`` when it is missing, unreadable or no object."""
    try:
        found = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def needs_generation(root: Path, settings: Settings) -> bool:
    """Whether ``root`` must be drawn now: it is missing or empty.

    A folder holding anything else is never written into: a phantom drawn with other
    settings (or by another generator version) is an error naming the settings that
    differ, as is a folder that is no phantom at all. Raises :class:`odirkit.DataError`.
    """
    if root.exists() and not root.is_dir():
        raise odirkit.DataError(f"{root}: is a file, not a folder")
    if not root.exists() or not any(root.iterdir()):
        return True
    manifest = read_manifest(root)
    if manifest is None and (root / MANIFEST).is_file():
        raise odirkit.DataError(
            f"{root / MANIFEST}: damaged (not the JSON object the phantom wrote); the phantom "
            "will not write into the folder. Remove the folder to draw it again, or choose a "
            "new one for data.root."
        )
    if manifest is None:
        raise odirkit.DataError(
            f"{root}: this folder is not empty and is not a phantom dataset (no {MANIFEST}); "
            "the phantom will not write into it. Choose an empty or new folder for data.root."
        )
    wanted = {
        k: v for k, v in settings.manifest().items() if k not in {"look", "cameras", "prevalence"}
    }
    differ = {k: (manifest.get(k), v) for k, v in wanted.items() if manifest.get(k) != v}
    if not differ:
        return False
    shown = ", ".join(f"{k} {have} (asked: {want})" for k, (have, want) in differ.items())
    keys = [k for k in differ if k not in {"version", "generator"}]
    fix = (
        f"set data.{' and data.'.join(keys)} to what the folder holds, "
        if keys
        else "delete the folder to draw it with this generator, "
    )
    raise odirkit.DataError(
        f"{root}: holds a phantom drawn with other settings: {shown}. odirkit does not "
        f"write over a dataset it did not draw for this run: {fix}or choose another folder "
        "for data.root"
    )


def load_table(root: Path) -> pd.DataFrame:
    """The per-image table the phantom wrote (paths relative to ``root``)."""
    return pd.read_csv(root / IMAGE_TABLE, keep_default_na=False)
