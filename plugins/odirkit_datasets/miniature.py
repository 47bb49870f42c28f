"""Miniature copies of public fundus collections, in their published layouts.

A few small synthetic photographs (a lit disc on black) per collection, filed and
described exactly as the collection's own distribution does, so that a preset
(``experiments/collections/``) can be tried, and tested, without the data. The
layouts, and where each was taken from, are in ``docs/collections.md``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

#: the 0/1 condition columns of RFMiD's training labels after ID and Disease_Risk, in order
RFMID_CONDITIONS = (
    "DR", "ARMD", "MH", "DN", "MYA", "BRVO", "TSLN", "ERM", "LS", "MS", "CSR", "ODC", "CRVO",
    "TV", "AH", "ODP", "ODE", "ST", "AION", "PT", "RT", "RS", "CRS", "EDN", "RPEC", "MHL", "RP",
    "CWS", "CB", "ODPM", "PRH", "MNF", "HR", "CRAO", "TD", "CME", "PTCR", "CF", "VH", "MCA",
    "VS", "BRAO", "PLQ", "HPED", "CL",
)  # fmt: skip


def write_fundus(path: Path, *, seed: int, size: int = 48, lesions: int = 0) -> Path:
    """A small synthetic colour fundus photograph: an orange-red disc on black, a paler
    optic disc, and ``lesions`` dark red spots. The format follows the suffix."""
    rng = np.random.default_rng(seed)
    h, w = size, int(size * 1.25)
    yy, xx = np.mgrid[0:h, 0:w]
    cy, cx = h / 2, w / 2
    inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= (0.46 * h) ** 2
    shade = 1.0 - 0.5 * ((yy - cy) ** 2 + (xx - cx) ** 2) / (0.46 * h) ** 2
    pixels = np.zeros((h, w, 3), dtype=np.float64)
    base = np.array([205.0, 90.0, 35.0]) * rng.uniform(0.85, 1.1)
    pixels[inside] = base * shade[inside, None]
    disc = (yy - cy) ** 2 + (xx - (cx + 0.22 * w)) ** 2 <= (0.08 * h) ** 2
    pixels[disc & inside] = [240, 200, 140]
    for _ in range(lesions):
        ly, lx = rng.uniform(0.3, 0.7) * h, rng.uniform(0.3, 0.7) * w
        spot = (yy - ly) ** 2 + (xx - lx) ** 2 <= (0.04 * h) ** 2
        pixels[spot & inside] = [110, 15, 10]
    pixels[inside] += rng.normal(0, 4, size=(int(inside.sum()), 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def _write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def _grades(n: int, seed: int) -> list[int]:
    """Grades 0-4, every grade present once n >= 5, the rest drawn."""
    rng = np.random.default_rng(seed)
    return [i % 5 if i < 5 else int(rng.integers(0, 5)) for i in range(n)]


def write_aptos(root: Path, images: int = 10) -> None:
    """APTOS 2019 Blindness Detection: ``train.csv`` (id_code, diagnosis 0-4) and
    ``train_images/<id_code>.png``."""
    rows = []
    for i, grade in enumerate(_grades(images, 1)):
        code = f"{i:03x}{'c1434d8d7'[: 9 - i % 3]}"
        write_fundus(root / "train_images" / f"{code}.png", seed=i, lesions=grade)
        rows.append((code, grade))
    _write_csv(root / "train.csv", ["id_code", "diagnosis"], rows)


def write_eyepacs(root: Path, patients: int = 5) -> None:
    """EyePACS (Kaggle Diabetic Retinopathy Detection, 2015): ``trainLabels.csv`` (image,
    level 0-4) and ``train/<patient>_<left|right>.jpeg``."""
    rows = []
    grades = _grades(2 * patients, 2)
    for p in range(patients):
        patient = 10 + 3 * p  # IDs that do not sort like their text ("10" < "13" < "7")
        for e, eye in enumerate(("left", "right")):
            grade = grades[2 * p + e]
            name = f"{patient}_{eye}"
            write_fundus(root / "train" / f"{name}.jpeg", seed=100 + 2 * p + e, lesions=grade)
            rows.append((name, grade))
    _write_csv(root / "trainLabels.csv", ["image", "level"], rows)


def write_messidor2(root: Path, images: int = 10) -> None:
    """Messidor-2 with the adjudicated grades of Krause et al. (2018): ``messidor_data.csv``
    (image_id, adjudicated_dr_grade, adjudicated_dme, adjudicated_gradable) and the images
    in ``IMAGES/``; an ungradable image has a blank grade."""
    rows = []
    for i, grade in enumerate(_grades(images, 3)):
        name = f"20051020_{43808 + i}_0100_PP.png" if i % 2 else f"IM00{4000 + i}.JPG"
        write_fundus(root / "IMAGES" / name, seed=200 + i, lesions=grade)
        gradable = i != images - 1
        rows.append(
            (name, grade if gradable else "", int(grade > 2) if gradable else "", int(gradable))
        )
    _write_csv(
        root / "messidor_data.csv",
        ["image_id", "adjudicated_dr_grade", "adjudicated_dme", "adjudicated_gradable"],
        rows,
    )


IDRID_GRADING = Path("B. Disease Grading")


def write_idrid(root: Path, images: int = 10) -> None:
    """IDRiD, part B (disease grading): ``B. Disease Grading/2. Groundtruths/a. IDRiD_Disease
    Grading_Training Labels.csv`` (Image name, Retinopathy grade, "Risk of macular edema "
    with its trailing space, and empty trailing columns) and ``B. Disease Grading/1. Original
    Images/a. Training Set/IDRiD_NNN.jpg``."""
    base = root / IDRID_GRADING
    rows = []
    for i, grade in enumerate(_grades(images, 4)):
        name = f"IDRiD_{i + 1:03d}"
        write_fundus(
            base / "1. Original Images" / "a. Training Set" / f"{name}.jpg",
            seed=300 + i,
            lesions=grade,
        )
        rows.append((name, grade, min(grade, 2), "", ""))
    _write_csv(
        base / "2. Groundtruths" / "a. IDRiD_Disease Grading_Training Labels.csv",
        ["Image name", "Retinopathy grade", "Risk of macular edema ", "", ""],
        rows,
    )


def write_rfmid(root: Path, images: int = 12) -> None:
    """RFMiD (Retinal Fundus Multi-disease Image Dataset), training set:
    ``Training_Set/RFMiD_Training_Labels.csv`` (ID, Disease_Risk, then a 0/1 column per
    condition) and ``Training_Set/Training/<ID>.png``."""
    base = root / "Training_Set"
    picks = (
        (), ("DR",), ("ARMD",), ("MYA",), (), ("ODC",), ("DR", "TSLN"), ("MH",), (),
        ("DR",), ("ARMD", "MYA"), ("CRVO",),
    )  # fmt: skip
    rows = []
    for i in range(images):
        found = picks[i % len(picks)]
        conditions = [int(c in found) for c in RFMID_CONDITIONS]
        write_fundus(base / "Training" / f"{i + 1}.png", seed=400 + i, lesions=len(found))
        rows.append((i + 1, int(bool(found)), *conditions))
    _write_csv(base / "RFMiD_Training_Labels.csv", ["ID", "Disease_Risk", *RFMID_CONDITIONS], rows)


def write_hrf(root: Path, per_class: int = 3) -> None:
    """HRF (High-Resolution Fundus image database): ``images/NN_h.jpg`` (healthy),
    ``NN_dr.JPG`` (diabetic retinopathy; upper-case suffix, as published) and ``NN_g.jpg``
    (glaucoma), beside ``manual1/`` and ``mask/`` (not images of the eye)."""
    for i in range(1, per_class + 1):
        write_fundus(root / "images" / f"{i:02d}_h.jpg", seed=500 + i)
        write_fundus(root / "images" / f"{i:02d}_dr.JPG", seed=520 + i, lesions=3)
        write_fundus(root / "images" / f"{i:02d}_g.jpg", seed=540 + i)
    (root / "manual1").mkdir(parents=True, exist_ok=True)
    (root / "mask").mkdir(parents=True, exist_ok=True)


RETINA_CLASSES = ("1_normal", "2_cataract", "2_glaucoma", "3_retina_disease")


def write_retina(root: Path, per_class: int = 3) -> None:
    """The Kaggle "Retina" cataract dataset: ``dataset/<class>/*.png`` with the classes
    1_normal, 2_cataract, 2_glaucoma, 3_retina_disease."""
    for c, name in enumerate(RETINA_CLASSES):
        for i in range(per_class):
            write_fundus(
                root / "dataset" / name / f"{name.split('_')[1]}_{i:03d}.png",
                seed=600 + 10 * c + i,
                lesions=c,
            )


def write_retfound(
    root: Path, classes: Sequence[str] = ("0_normal", "1_dr"), per_class: int = 3
) -> None:
    """RETFound's benchmark layout: ``train/``, ``val/``, ``test/``, each a folder per class."""
    seed = 700
    for split in ("train", "val", "test"):
        for c, name in enumerate(classes):
            for i in range(per_class):
                seed += 1
                write_fundus(root / split / name / f"{split}_{i}.jpg", seed=seed, lesions=2 * c)
