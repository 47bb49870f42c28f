"""The phantom: a deterministic synthetic ODIR-5K, lesion masks included.

It writes the official ODIR-5K layout — the annotation workbook
``ODIR-5K_Training_Annotations(Updated)_V2.xlsx`` (one row per patient, the
official columns, diagnostic keywords from the real vocabulary joined by the
full-width comma the official file uses) beside ``ODIR-5K_Training_Dataset/``
holding ``<ID>_left.jpg`` and ``<ID>_right.jpg`` — plus what the real data
lacks: ``phantom_images.csv`` with per-eye labels and ``masks/<ID>_<eye>_<L>.png``,
one lesion mask per eye and label, the ground truth for judging explanations.

Label frequencies follow ODIR-5K's training set (within a few per cent, by
construction), a disease sits in one or both eyes, and age
and sex depend on the labels (older patients for A and C, younger for M), so
metadata carries some signal. ``difficulty = "realistic"`` (the default) draws
disease as a continuum from barely visible to severe, mild cases the most
common, with overlapping features, benign look-alikes and acquisition
variation, and gives a stated share of eyes keywords that disagree with their
lesions (``label_noise``): ``phantom_images.csv`` says per eye what is drawn
(``drawn_<L>``) and whether the label is noisy. ``difficulty = "easy"`` is the
first version's look: florid lesions, classes apart, for fast tests.
``phantom.json`` records every generator parameter. Each patient is drawn from
random streams of its own, one per purpose (the diseases, the label noise and
camera, each eye's photograph; :func:`stream`), seeded by ``(seed, patient,
purpose)``: same seed, same bytes, adding patients leaves the first ones
unchanged, and nothing the camera does depends on the diagnosis
(``difficulty.acquisition_shortcuts`` measures it). Each label's share of
patients is ODIR-5K's (:func:`draw_diseases`).
"""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import shutil
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from enum import IntEnum
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import Field

import odirkit
from odirkit import LABELS
from odirkit.api import progress_bar
from odirkit_datasets.fundus_render import CAMERAS, EASY, LOOKS, Look, jpeg_quality, render_eye

GENERATOR_VERSION = 3  # 3: independent streams per purpose; ODIR-5K's label shares
WORKBOOK = "ODIR-5K_Training_Annotations(Updated)_V2.xlsx"
IMAGE_DIR = "ODIR-5K_Training_Dataset"
MASK_DIR = "masks"
IMAGE_TABLE = "phantom_images.csv"
MANIFEST = "phantom.json"
KEYWORD_SEPARATOR = "，"  # U+FF0C, as in the official workbook

#: ODIR-5K training set, patients per label out of 3500 (N is drawn separately)
PATIENT_RATE = {"D": 1128, "G": 215, "C": 212, "A": 164, "H": 103, "M": 174, "O": 979}
NORMAL_RATE = 1138 / 3500
#: how many diseases a diseased patient has: 1.26 on average, as in ODIR-5K's training set
#: (2975 disease labels among 2362 patients who are not normal)
DISEASE_COUNT = {1: 0.77, 2: 0.20, 3: 0.03}
#: probability that a disease of the patient shows in both eyes
BOTH_EYES = {"D": 0.7, "G": 0.6, "C": 0.6, "A": 0.55, "H": 0.6, "M": 0.75, "O": 0.35}
#: years added to a patient's age per label
AGE_SHIFT = {"D": 4.0, "G": 5.0, "C": 12.0, "A": 14.0, "H": 6.0, "M": -12.0, "O": 1.0}

KEYWORDS: dict[str, list[str]] = {
    "N": ["normal fundus"],
    "D": [
        "mild nonproliferative retinopathy",
        "moderate non proliferative retinopathy",
        "severe nonproliferative retinopathy",
        "proliferative diabetic retinopathy",
    ],
    "G": ["glaucoma", "suspected glaucoma"],
    "C": ["cataract"],
    "A": ["dry age-related macular degeneration", "wet age-related macular degeneration"],
    "H": ["hypertensive retinopathy"],
    "M": ["pathological myopia", "myopic retinopathy"],
    "O": [
        "laser spot",
        "retinal pigmentation",
        "chorioretinal atrophy",
        "post laser photocoagulation",
    ],
}
#: keywords that decide nothing, drawn now and then as in the real data
NON_DECISIVE = ["lens dust", "low image quality", "image offset"]


@dataclass(frozen=True)
class PhantomPatient:
    """One synthetic patient: per eye the diseases drawn and the diseases the keywords name
    (they differ where label noise struck), age, sex, keywords and camera."""

    patient_id: int
    age: int
    sex: str
    left: frozenset[str]  # what the keywords say (the labels)
    right: frozenset[str]
    left_keywords: str
    right_keywords: str
    left_dust: bool
    right_dust: bool
    left_drawn: frozenset[str] = frozenset()  # what is drawn in the photograph
    right_drawn: frozenset[str] = frozenset()
    camera: int = 0

    @property
    def labels(self) -> set[str]:
        diseases = set(self.left | self.right)
        return diseases or {"N"}

    def drawn(self, eye: str) -> set[str]:
        return set(self.left_drawn if eye == "left" else self.right_drawn)

    def labelled(self, eye: str) -> set[str]:
        return set(self.left if eye == "left" else self.right)


class Stream(IntEnum):
    """What a patient's random stream is for: each purpose has a stream of its own."""

    DRAW = 1  # diseases, eyes, age, sex, keywords
    NOISE = 2  # label noise and camera
    LEFT_EYE = 3  # rendering each photograph
    RIGHT_EYE = 4


def stream(seed: int, patient_id: int, purpose: Stream) -> np.random.Generator:
    """An independent random stream for one patient and purpose.

    The key ends in the purpose, never zero: NumPy drops trailing zeros from a seed
    list (``[s, p, 2, 0]`` seeds as ``[s, p, 2]``), which in version 2 made the right
    eye's rendering reuse the very numbers that drew the patient's diseases, so the
    right eye's field of view told its label.
    """
    return np.random.default_rng([seed, patient_id, GENERATOR_VERSION, int(purpose)])


def _label_sets() -> tuple[list[frozenset[str]], np.ndarray]:
    """Every set of one to three diseases, and its probability for a diseased patient.

    Chosen so that each label's share of all patients is ODIR-5K's (``PATIENT_RATE``,
    ``NORMAL_RATE``) and a diseased patient has 1.26 diseases on average, as there:
    the number of diseases is drawn from ``DISEASE_COUNT``, and within a count a set's
    weight is the product of per-label weights (diabetes with hypertension favoured),
    fitted by iterative proportional scaling. Exact, deterministic, computed once.
    """
    diseases = list(PATIENT_RATE)
    sets = [
        frozenset(combo) for k in DISEASE_COUNT for combo in itertools.combinations(diseases, k)
    ]
    size = np.array([len(s) for s in sets])
    member = np.array([[label in s for label in diseases] for s in sets], dtype=float)
    bonus = np.array([1.5 if {"D", "H"} <= s else 1.0 for s in sets])
    share = 1.0 - NORMAL_RATE
    target = np.array([PATIENT_RATE[label] / 3500 / share for label in diseases])
    weight = np.ones(len(diseases))
    for _ in range(500):
        product = np.exp(member @ np.log(weight)) * bonus
        p = np.zeros(len(sets))
        for k, chance in DISEASE_COUNT.items():
            within = size == k
            p[within] = chance * product[within] / product[within].sum()
        weight *= (target / (p @ member)) ** 0.5
    return sets, p


LABEL_SETS, LABEL_SET_P = _label_sets()


def draw_diseases(rng: np.random.Generator) -> set[str]:
    """A patient's diseases: none (normal) or a set drawn with ODIR-5K's label shares."""
    if rng.uniform() < NORMAL_RATE:
        return set()
    return set(LABEL_SETS[int(rng.choice(len(LABEL_SETS), p=LABEL_SET_P))])


def draw_patient(
    seed: int, patient_id: int, *, label_noise: float = 0.0, cameras: int = 1
) -> PhantomPatient:
    """The diseases, eyes, age, sex, keywords and camera of one patient.

    With ``label_noise``, that share of patients have keywords drawn afresh, as
    another patient's, whatever their photographs show (a grader's mix-up): each
    label's share of patients stays ODIR-5K's, and an eye whose keywords then
    disagree with its lesions is marked. Noise and camera come from a stream of
    their own, so the drawn patient does not depend on them.
    """
    rng = stream(seed, patient_id, Stream.DRAW)
    diseases = draw_diseases(rng)
    eyes = place_in_eyes(rng, diseases)
    age = rng.normal(55.0, 10.0) + sum(AGE_SHIFT[label] for label in diseases)
    male = rng.uniform() < (0.62 if "H" in diseases else 0.53)
    side = stream(seed, patient_id, Stream.NOISE)
    labelled = {eye: set(found) for eye, found in eyes.items()}
    if label_noise and side.uniform() < label_noise:
        labelled = place_in_eyes(side, draw_diseases(side))
    camera = int(side.integers(0, cameras)) if cameras > 1 else 0
    keywords = {}
    dust = {}
    for eye, found in labelled.items():
        words = [str(rng.choice(KEYWORDS[label])) for label in sorted(found, key=LABELS.index)]
        words = words or list(KEYWORDS["N"])
        dust[eye] = bool(rng.uniform() < 0.06)
        if dust[eye]:
            words.append("lens dust")
        elif rng.uniform() < 0.03:
            words.append(str(rng.choice(NON_DECISIVE[1:])))
        keywords[eye] = KEYWORD_SEPARATOR.join(words)
    return PhantomPatient(
        patient_id=patient_id,
        age=int(np.clip(round(age), 18, 95)),
        sex="Male" if male else "Female",
        left=frozenset(labelled["left"]),
        right=frozenset(labelled["right"]),
        left_keywords=keywords["left"],
        right_keywords=keywords["right"],
        left_dust=dust["left"],
        right_dust=dust["right"],
        left_drawn=frozenset(eyes["left"]),
        right_drawn=frozenset(eyes["right"]),
        camera=camera,
    )


def place_in_eyes(rng: np.random.Generator, diseases: set[str]) -> dict[str, set[str]]:
    """Which eye shows each disease: both with ``BOTH_EYES``' chance, else one at random."""
    eyes: dict[str, set[str]] = {"left": set(), "right": set()}
    for label in sorted(diseases, key=LABELS.index):
        if rng.uniform() < BOTH_EYES[label]:
            eyes["left"].add(label)
            eyes["right"].add(label)
        else:
            eyes[str(rng.choice(["left", "right"]))].add(label)
    return eyes


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


def phantom(
    *,
    root: str,
    patients: Annotated[int, Field(ge=1)] = 400,
    size: Annotated[int, Field(ge=32, le=4096)] = 256,
    seed: Annotated[int, Field(ge=0)] = 0,
    difficulty: Literal["realistic", "easy"] = "realistic",
    label_noise: Annotated[float, Field(ge=0.0, le=0.5)] | None = None,
    camera_shift: bool = False,
) -> pd.DataFrame:
    """Synthetic fundus photographs in the ODIR-5K layout, generated into ``root`` on first use.

    patients: number of patients (two images each).
    size: height in pixels of the generated photographs (width is 1.25 times).
    seed: the generator's seed; the same seed writes the same bytes.
    difficulty: realistic (mild disease most common, overlapping classes, benign
    look-alikes, acquisition variation) or easy (florid lesions, one camera).
    label_noise: share of patients whose keywords are drawn afresh, whatever their
    photographs show (default: 0.07 when realistic, about 5% of eyes then disagree
    with their lesions; 0 when easy); each label keeps ODIR-5K's share, and every eye
    that disagrees is recorded.
    camera_shift: patients photographed by three cameras of different colour,
    vignetting and framing.
    """
    noise = label_noise if label_noise is not None else (0.07 if difficulty == "realistic" else 0.0)
    settings = Settings(patients, size, seed, difficulty, float(noise), camera_shift)
    path = Path(root)
    if needs_generation(path, settings):
        with progress_bar() as bar:
            task = bar.add_task(f"Drawing the phantom in {path}", total=patients, status="")
            generate(path, settings, progress=lambda done, _: bar.update(task, completed=done))
    return load_table(path)


@odirkit.hookimpl
def odirkit_register_datasets(register):
    register(
        "phantom",
        phantom,
        summary="Synthetic fundus photographs in the ODIR-5K layout, with lesion masks",
        test_params={"patients": 6, "size": 64, "difficulty": "easy"},
        creates_root=True,
    )
