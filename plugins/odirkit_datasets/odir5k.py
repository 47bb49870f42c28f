"""ODIR-5K as published: the annotation workbook (or ``full_df.csv``) and its images.

With nothing but ``root`` it finds the common layouts:

- the official one: ``ODIR-5K_Training_Annotations(Updated)_V2.xlsx`` beside
  ``ODIR-5K_Training_Dataset/``;
- the widespread mirror's: ``ODIR-5K/data.xlsx`` with ``ODIR-5K/Training Images/``,
  and ``full_df.csv`` (one row per image) with ``preprocessed_images/``;
- in general, a workbook or CSV with the official columns anywhere under
  ``root``, and images found by file name anywhere under ``root``.

``annotations`` and ``images`` name anything else. Each eye's labels come from
its diagnostic keywords (see :mod:`odirkit_datasets.keywords`); images that are
not fundus photographs are left out. A patient's own labels (``patient_N`` ..
``patient_O``, the truth of patient-level evaluation) are the workbook's N..O
columns, the challenge's ground truth, when the file has them, else the union
of the eyes' keywords; the two are compared, and what was left out and every
disagreement are reported (printed, and kept in the run's ``data.json``).
"""

from __future__ import annotations

import os
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

import odirkit
from odirkit import LABELS
from odirkit.api import IMAGE_SUFFIXES, warn
from odirkit_datasets.keywords import diagnose_eye, one_hot, patient_labels

OFFICIAL_COLUMNS = (
    "ID",
    "Patient Age",
    "Patient Sex",
    "Left-Fundus",
    "Right-Fundus",
    "Left-Diagnostic Keywords",
    "Right-Diagnostic Keywords",
)
#: (annotation file, preferred image folders), most specific first
KNOWN_LAYOUTS = (
    ("ODIR-5K_Training_Annotations(Updated)_V2.xlsx", ("ODIR-5K_Training_Dataset",)),
    ("ODIR-5K/data.xlsx", ("ODIR-5K/Training Images", "Training Images")),
    ("full_df.csv", ("preprocessed_images",)),
)
SKIP_FOLDERS = {".odirkit-cache", "__pycache__", ".git"}
HOW_TO_GET = (
    "Get ODIR-5K from https://odir2019.grand-challenge.org/ (or a mirror such as Kaggle's "
    "'ocular-disease-recognition-odir5k') and unpack it there, or name the files with "
    "data.annotations and data.images. To run the same experiment on synthetic data instead: "
    "--set data.dataset=phantom --set data.root=data/phantom"
)


def _normalise_columns(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={c: " ".join(str(c).split()) for c in frame.columns})


def _read(path: Path, nrows: int | None = None) -> pd.DataFrame:
    try:
        if path.suffix.lower() in {".xlsx", ".xlsm", ".xls"}:
            return _normalise_columns(pd.read_excel(path, nrows=nrows))
        # as text, as a workbook would show it; numbers are parsed per cell (_cell)
        return _normalise_columns(pd.read_csv(path, nrows=nrows, dtype=str, keep_default_na=False))
    except Exception as exc:  # openpyxl and pandas raise many kinds for a damaged file
        raise odirkit.DataError(f"{path}: cannot read the annotations ({exc})") from None


def _has_official_columns(path: Path) -> bool:
    try:
        header = _read(path, nrows=0)
    except odirkit.DataError:
        return False
    return all(c in header.columns for c in OFFICIAL_COLUMNS)


def find_annotations(root: Path) -> tuple[Path, tuple[str, ...]]:
    """The annotation file under ``root`` and the image folders to prefer."""
    for name, folders in KNOWN_LAYOUTS:
        if (root / name).is_file():
            return root / name, folders
    candidates = sorted(
        p for p in _walk(root) if p.suffix.lower() in {".xlsx", ".csv"} and _has_official_columns(p)
    )
    # A per-patient workbook is the primary source; a per-image CSV comes second.
    candidates.sort(key=lambda p: (p.suffix.lower() != ".xlsx", len(p.parts), str(p)))
    if candidates:
        return candidates[0], ()
    looked = ", ".join(name for name, _ in KNOWN_LAYOUTS)
    raise odirkit.DataError(
        f"{root}: no ODIR-5K annotations found (looked for {looked}, and for any workbook or "
        f"CSV with the columns {', '.join(OFFICIAL_COLUMNS)}). {HOW_TO_GET}"
    )


def _walk(root: Path):
    """Every file under ``root``, in a stable order, through symbolic links to folders too
    (a dataset linked into place), each real folder once."""
    seen: set[str] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if d not in SKIP_FOLDERS and not d.startswith(".odirkit"))
        for name in sorted(files):
            yield Path(folder) / name


def index_images(root: Path, preferred: tuple[str, ...]) -> dict[str, Path]:
    """Image files under ``root`` by file name; a preferred folder wins a name clash."""
    found: dict[str, list[Path]] = {}
    for path in _walk(root):
        if path.suffix.lower() in IMAGE_SUFFIXES:
            found.setdefault(path.name, []).append(path)

    def rank(path: Path) -> tuple[int, str]:
        relative = path.relative_to(root).parent.as_posix()
        for i, folder in enumerate(preferred):
            if relative == folder or relative.endswith("/" + folder):
                return i, str(path)
        return len(preferred), str(path)

    return {name: min(paths, key=rank) for name, paths in found.items()}


#: the patient label columns, by their code or the long names some copies use
LABEL_COLUMN_NAMES = {
    "N": ("n", "normal"),
    "D": ("d", "diabetes", "diabetic retinopathy"),
    "G": ("g", "glaucoma"),
    "C": ("c", "cataract"),
    "A": ("a", "age related macular degeneration", "amd", "age-related macular degeneration"),
    "H": ("h", "hypertension"),
    "M": ("m", "pathological myopia", "myopia"),
    "O": ("o", "other diseases/abnormalities", "other diseases", "others"),
}


def label_columns(frame: pd.DataFrame) -> dict[str, str]:
    """The file's column for each patient label (``N`` or ``Normal``...), where it has one."""
    found = {}
    by_name = {str(c).strip().casefold(): c for c in frame.columns}
    for label, names in LABEL_COLUMN_NAMES.items():
        for name in names:
            if name in by_name:
                found[label] = by_name[name]
                break
    return found


def _cell(value: object) -> object:
    """A cell as the same value whatever the file type: stripped text, whole numbers as
    ``int``, blanks (NaN, empty text) as ``None``."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, str):
        text = " ".join(value.split())
        if not text:
            return None
        try:
            number = float(text)
        except ValueError:
            return text
        return int(number) if number.is_integer() else number
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def patient_rows(frame: pd.DataFrame, path: Path) -> tuple[list[dict], dict]:
    """One record per patient from an annotation table, and what was merged.

    A per-patient workbook has one row per patient; ``full_df.csv`` has one row per
    image, each naming both of its patient's eyes (with or without a ``filename``
    column), so a patient's rows repeat. Rows that agree on every official column and
    patient label are one patient (the repeats are counted); rows of one ID that
    disagree stop the reading, naming the ID, both rows (as numbered in the file,
    header = 1) and the columns where they differ. Raises :class:`odirkit.DataError`.
    """
    labels = label_columns(frame)
    compared = [*OFFICIAL_COLUMNS, *labels.values()]
    records: dict[str, dict] = {}
    first_row: dict[str, int] = {}
    named: dict[str, set[str]] = {}
    repeats = 0
    per_image = "filename" in frame.columns
    for index, raw in enumerate(frame.to_dict("records")):
        row = {column: _cell(raw.get(column)) for column in compared}
        row["ID"] = _patient_id(raw.get("ID"))
        if row["ID"] is None:
            if any(value is not None for value in row.values()):
                raise odirkit.DataError(
                    f"{path}: row {index + 2} has no patient ID but holds data; give it its ID "
                    "or remove the row"
                )
            continue  # an empty line
        pid = str(row["ID"])
        if per_image and _cell(raw.get("filename")) is not None:
            named.setdefault(pid, set()).add(str(_cell(raw["filename"])))
        if pid not in records:
            records[pid], first_row[pid] = row, index + 2
            continue
        differs = [c for c in compared if _same(records[pid][c]) != _same(row[c])]
        if differs:
            shown = "; ".join(
                f"{c}: {records[pid][c]!r} (row {first_row[pid]}) vs {row[c]!r} (row {index + 2})"
                for c in differs[:4]
            )
            raise odirkit.DataError(
                f"{path}: patient ID {pid} appears in rows {first_row[pid]} and {index + 2} "
                f"with different values ({shown}). Keep one row per patient (or identical "
                "rows, one per image), then run again"
            )
        repeats += 1
    blank = {
        label: [pid for pid, row in records.items() if row[column] is None]
        for label, column in labels.items()
    }
    blank = {label: pids for label, pids in blank.items() if pids}
    if blank:
        pids = sorted({p for ps in blank.values() for p in ps}, key=_natural)
        raise odirkit.DataError(
            f"{path}: blank patient label cell(s) in column(s) "
            f"{', '.join(labels[label] for label in blank)} for patient ID(s) "
            f"{', '.join(pids[:10])}{' ...' if len(pids) > 10 else ''}: fill them with 0 or 1 "
            "(or remove the label columns N..O to take each patient's labels from the "
            "keywords)"
        )
    for pid, row in records.items():
        for column in labels.values():
            if row[column] not in (0, 1):
                raise odirkit.DataError(
                    f"{path}: patient ID {pid}: column {column} holds {row[column]!r}, "
                    "expected 0 or 1"
                )
        row["_labels"] = {label: row[column] for label, column in labels.items()}
        row["_named"] = named.get(pid)
    return list(records.values()), {
        "rows": len(frame),
        "repeated_rows_merged": repeats,
        "label_columns": dict(labels),
    }


def _patient_id(value: object) -> str | None:
    """A patient ID as text, None when blank: ``88``, ``"88"`` and ``88.0`` (a
    spreadsheet's float) are one patient; ``"0088"`` keeps its zeros."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = " ".join(str(value).split())
    return re.sub(r"^(\d+)\.0+$", r"\1", text) or None


def _same(value: object) -> object:
    """A cell as compared between two rows of one patient: text without regard to case
    ("Normal fundus" is "normal fundus")."""
    return value.casefold() if isinstance(value, str) else value


def _natural(pid: str) -> tuple[int, float, str]:
    try:
        return (0, float(pid), "")
    except ValueError:
        return (1, 0.0, pid)


def _eye_rows(patients: list[dict], unnamed: list[dict]) -> list[dict]:
    """One record per eye: both eyes of each patient, or, for a per-image file with a
    ``filename`` column, the eyes whose file a row names. An eye without a file name is
    listed in ``unnamed``."""
    rows = []
    for record in patients:
        for eye in ("left", "right"):
            side = eye.capitalize()
            filename = record[f"{side}-Fundus"]
            if filename is None:
                unnamed.append({"patient_id": str(record["ID"]), "eye": eye})
                continue
            filename = str(filename)
            if record["_named"] is not None and filename not in record["_named"]:
                continue
            rows.append(
                {
                    "patient_id": str(record["ID"]),
                    "eye": eye,
                    "filename": filename,
                    "age": record["Patient Age"],
                    "sex": "" if record["Patient Sex"] is None else str(record["Patient Sex"]),
                    "keywords": record[f"{side}-Diagnostic Keywords"] or "",
                    "workbook": record["_labels"],
                }
            )
    return rows


def read_odir(
    root: Path, annotations: Path, preferred: tuple[str, ...], images: Path | None
) -> pd.DataFrame:
    """The sample table of an ODIR-5K annotation file, with a report in ``attrs``.

    Every patient appears once and each photograph once, whichever distribution the
    file comes from (see :func:`patient_rows`). A photograph the file names but the
    image folder lacks is left out here, counted and listed in the report, with one
    warning; files that exist but cannot be decoded are the core's to report
    (``data.on_bad_image``).
    """
    frame = _read(annotations)
    missing = [c for c in OFFICIAL_COLUMNS if c not in frame.columns]
    if missing:
        raise odirkit.DataError(
            f"{annotations}: missing column(s) {', '.join(missing)}; an ODIR-5K annotation file "
            f"has {', '.join(OFFICIAL_COLUMNS)} and N, D, G, C, A, H, M, O"
        )
    patients, merged = patient_rows(frame, annotations)
    unnamed: list[dict] = []
    eye_rows = _eye_rows(patients, unnamed)
    owners: dict[str, tuple[str, str]] = {}
    for r in eye_rows:  # a photograph belongs to one eye of one patient
        other = owners.setdefault(r["filename"], (r["patient_id"], r["eye"]))
        if other != (r["patient_id"], r["eye"]):
            raise odirkit.DataError(
                f"{annotations}: {r['filename']} is named for patient {other[0]} ({other[1]} "
                f"eye) and for patient {r['patient_id']} ({r['eye']} eye); one photograph "
                "cannot be two eyes (it would sit on both sides of a split)"
            )
    index = index_images(images or root, preferred)

    diagnoses = {(r["patient_id"], r["eye"]): diagnose_eye(r["keywords"]) for r in eye_rows}
    # Patient labels from both eyes' keywords (an eye missing from a per-image file is normal).
    by_patient: dict[str, set[str]] = {}
    for pid in {r["patient_id"] for r in eye_rows}:
        left = diagnoses.get((pid, "left")) or diagnose_eye("normal fundus")
        right = diagnoses.get((pid, "right")) or diagnose_eye("normal fundus")
        by_patient[pid] = patient_labels(left, right)

    rows, non_fundus, disagreements, not_found, unlabelled = [], [], {}, [], []
    other_keywords: Counter[str] = Counter()
    for record in eye_rows:
        pid, eye = record["patient_id"], record["eye"]
        if not str(record["keywords"]).strip():  # no diagnosis: not "normal", unknown
            unlabelled.append({"patient_id": pid, "eye": eye, "filename": record["filename"]})
            continue
        diagnosis = diagnoses[(pid, eye)]
        other_keywords.update(diagnosis.unknown)
        if not diagnosis.fundus:
            non_fundus.append({"patient_id": pid, "eye": eye, "keywords": record["keywords"]})
            continue
        workbook = record["workbook"]
        derived = by_patient[pid]
        stated: set[str] = set()
        if len(workbook) == len(LABELS):
            stated = {label for label, v in workbook.items() if v == 1}
            if stated != derived and pid not in disagreements:
                disagreements[pid] = {
                    "patient_id": pid,
                    "keywords": "".join(sorted(derived, key=LABELS.index)),
                    "workbook": "".join(sorted(stated, key=LABELS.index)),
                }
        path = index.get(record["filename"])
        if path is None:
            not_found.append({"patient_id": pid, "eye": eye, "filename": record["filename"]})
            continue
        row = {
            "patient_id": pid,
            "eye": eye,
            "path": _relative(path, root),
            "age": record["age"],
            "sex": record["sex"],
            "keywords": record["keywords"],
            **one_hot(diagnosis.labels),
        }
        # The patient's truth is the workbook's N..O (the challenge's ground truth) when the
        # file gives all eight; the eyes' keywords remain each image's training target.
        truth = stated if len(workbook) == len(LABELS) else derived
        row.update({f"patient_{label}": int(label in truth) for label in LABELS})
        rows.append(row)

    table = pd.DataFrame(rows)
    if merged["repeated_rows_merged"]:
        warn(
            f"odir5k: {annotations.name} has {merged['rows']} rows for {len(patients)} "
            f"patients (one row per image): {merged['repeated_rows_merged']} repeated row(s) "
            "merged, each photograph read once"
        )
    if non_fundus:
        warn(
            f"odir5k: {len(non_fundus)} image(s) marked 'anterior segment image' or "
            "'no fundus image' are not fundus photographs and are left out"
        )
    if disagreements:
        shown = ", ".join(
            f"{d['patient_id']} (keywords {d['keywords']}, workbook {d['workbook']})"
            for d in list(disagreements.values())[:3]
        )
        warn(
            f"odir5k: for {len(disagreements)} patient(s) the labels from the diagnostic "
            f"keywords disagree with the workbook's N..O columns: {shown}"
        )
    if unnamed:
        warn(
            f"odir5k: {annotations.name} names no photograph for {len(unnamed)} eye(s) "
            f"(blank Left-/Right-Fundus cells), e.g. patient {unnamed[0]['patient_id']} "
            f"{unnamed[0]['eye']}: left out (listed in data.json)"
        )
    if unlabelled:
        warn(
            f"odir5k: {len(unlabelled)} photograph(s) have blank diagnostic keywords, e.g. "
            f"{unlabelled[0]['filename']}: without a diagnosis they are left out (listed in "
            "data.json)"
        )
    if not_found:
        warn(
            f"odir5k: {len(not_found)} of the {len(eye_rows)} photographs {annotations.name} "
            f"names are not under {images or root} and are left out (listed in data.json), "
            f"e.g. {not_found[0]['filename']}"
        )
    table.attrs["odirkit_report"] = {
        "annotations": str(annotations),
        "per_image_file": merged["repeated_rows_merged"] > 0 or "filename" in frame.columns,
        "rows": merged["rows"],
        "repeated_rows_merged": merged["repeated_rows_merged"],
        "patient_label_columns": merged["label_columns"],
        "patients": len(patients),
        "images_named": len(eye_rows),
        "images": len(table),
        "non_fundus_left_out": non_fundus,
        "keyword_workbook_disagreements": list(disagreements.values()),
        "images_not_found": not_found,
        "eyes_without_a_file_name": unnamed,
        "images_without_keywords": unlabelled,
        "other_keywords": dict(other_keywords.most_common()),
    }
    return table


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to the dataset root when it lies below it, else absolute."""
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path.resolve())


def odir5k(*, root: str, annotations: str | None = None, images: str | None = None) -> pd.DataFrame:
    """ODIR-5K read from its annotation workbook or full_df.csv, labels from the keywords.

    annotations: the workbook or CSV, relative to root (default: found under root).
    images: the folder holding the photographs, relative to root (default: found
    by file name anywhere under root).
    """
    base = Path(root)
    if not base.is_dir():
        raise odirkit.DataError(f"{base}: ODIR-5K not found: no such folder. {HOW_TO_GET}")
    if annotations is not None:
        path = base / annotations
        if not path.is_file():
            raise odirkit.DataError(f"{path}: annotation file not found")
        preferred: tuple[str, ...] = ()
    else:
        path, preferred = find_annotations(base)
    image_root = base / images if images is not None else None
    if image_root is not None and not image_root.is_dir():
        raise odirkit.DataError(f"{image_root}: image folder not found")
    if image_root is None:  # a known layout's own folder, when it is there, and no other:
        for folder in preferred:  # the re-release's crops are not the full-size originals
            if (base / folder).is_dir():
                image_root = base / folder
                break
    return read_odir(base, path, preferred, image_root)


def write_test_data(root: Path) -> None:
    """A small dataset in the official layout, for the conformance tests."""
    from odirkit_datasets.phantom import Settings, generate

    generate(root, Settings(patients=4, size=48, seed=0, difficulty="easy"))


@odirkit.hookimpl
def odirkit_register_datasets(register):
    register(
        "odir5k",
        odir5k,
        summary="ODIR-5K from its workbook or full_df.csv; labels from each eye's keywords",
        test_params={},
        test_setup=write_test_data,
    )
