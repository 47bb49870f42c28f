"""The sample table: checking what a dataset plugin returned, choosing the task.

A dataset plugin returns one row per image (see the ``odirkit_register_datasets``
hook). The core checks it here, resolves image paths against the dataset root,
and turns the experiment's ``labels`` and ``task`` into targets.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from odirkit.errors import DataError, PluginError
from odirkit.labels import LABELS

REQUIRED_COLUMNS: tuple[str, ...] = ("patient_id", "eye", "path", "age", "sex", *LABELS)
#: the values of a dataset's optional ``split`` column
SIDES: tuple[str, ...] = ("train", "val", "test")
TaskKind = Literal["single_label", "multi_label"]


def check_sample_table(table: object, *, dataset: str, root: Path) -> pd.DataFrame:
    """Validate a dataset plugin's table; return a clean copy with absolute ``image_path``.

    Label columns become 0/1 integers, ``patient_id`` a string, ``eye`` one of
    ``left``/``right``, and mask paths (``mask_path_<L>``) absolute or empty. An optional
    ``split`` column (``train``, ``val``, ``test``; one per patient) is the collection's own
    split.

    Raises :class:`PluginError` when the plugin returns no DataFrame or one without the
    required columns; :class:`DataError` for no images, an eye that is neither left nor right,
    a label that is not 0/1, an unknown split, or a patient in two splits."""
    if not isinstance(table, pd.DataFrame):
        raise PluginError(
            f"dataset {dataset!r} returned {type(table).__name__}, expected a pandas DataFrame"
        )
    if len(table) == 0:
        raise DataError(f"dataset {dataset!r} at {root}: no images found")
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise PluginError(
            f"dataset {dataset!r}: the sample table lacks column(s) {', '.join(missing)}; "
            f"required: {', '.join(REQUIRED_COLUMNS)}"
        )
    out = table.reset_index(drop=True).copy()
    for label in LABELS:
        values = pd.to_numeric(out[label], errors="coerce")
        bad = ~values.isin([0, 1])
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"dataset {dataset!r}: label column {label!r} must hold 0 or 1; "
                f"row {row} ({out.loc[row, 'path']}) has {out.loc[row, label]!r}"
            )
        out[label] = values.astype(np.int64)
    out["patient_id"] = out["patient_id"].astype(str)
    out["eye"] = out["eye"].astype(str).str.lower()
    bad_eye = ~out["eye"].isin(["left", "right"])
    if bad_eye.any():
        value = out.loc[bad_eye, "eye"].iloc[0]
        raise DataError(f"dataset {dataset!r}: eye must be 'left' or 'right', got {value!r}")
    out["age"] = pd.to_numeric(out["age"], errors="coerce").astype(float)
    out["sex"] = out["sex"].astype(str)
    out["path"] = out["path"].astype(str)
    out["image_path"] = [str(_resolve(root, p)) for p in out["path"]]
    if "split" in out.columns:  # the collection comes split (train/, val/, test/ folders)
        out["split"] = out["split"].fillna("").astype(str)
        bad = ~out["split"].isin(SIDES)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"dataset {dataset!r}: split must be train, val or test; row {row} "
                f"({out.loc[row, 'path']}) has {out.loc[row, 'split']!r}"
            )
        sides = out.groupby("patient_id")["split"].nunique()
        if (sides > 1).any():
            patient = sides.index[sides.to_numpy() > 1][0]
            raise DataError(
                f"dataset {dataset!r}: patient {patient} has images in more than one split "
                "(a patient belongs to one side only)"
            )
    for label in LABELS:
        column = f"mask_path_{label}"
        if column in out.columns:
            out[column] = [
                str(_resolve(root, p)) if isinstance(p, str) and p else ""
                for p in out[column].fillna("")
            ]
    return out


def _resolve(root: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else root / p


@dataclass(frozen=True)
class Task:
    """What the model learns: which labels, and whether they exclude each other."""

    labels: tuple[str, ...]
    kind: TaskKind

    @property
    def num_classes(self) -> int:
        """How many outputs the model has (the labels learnt)."""
        return len(self.labels)

    @property
    def single_label(self) -> bool:
        """Whether each sample has exactly one label (softmax) rather than several (sigmoids)."""
        return self.kind == "single_label"


@dataclass
class TaskSelection:
    """The rows kept for a task, their targets, and what was left out and why."""

    table: pd.DataFrame
    task: Task
    targets: np.ndarray  # class index [N] (single-label) or 0/1 matrix [N, C] (multi-label)
    dropped_none: int
    dropped_several: int


def select_task(table: pd.DataFrame, labels: list[str], task: str) -> TaskSelection:
    """Keep the images the task can use and build their targets.

    ``task = "auto"`` is single-label when no image carries two of ``labels``
    (``["N", "D"]``), multi-label otherwise. A single-label task keeps the
    images with exactly one of the labels; a multi-label task keeps every
    image (one with none of the labels is a negative for all of them).

    Raises :class:`DataError` when no image carries any of the labels."""
    y = table[list(labels)].to_numpy(dtype=np.int64)
    per_row = y.sum(axis=1)
    kind: TaskKind = task  # type: ignore[assignment]
    if task == "auto":
        kind = "single_label" if (per_row <= 1).all() else "multi_label"
    if kind == "single_label":
        keep = per_row == 1
        selection = table[keep].reset_index(drop=True)
        targets = y[keep].argmax(axis=1)
        dropped_none = int((per_row == 0).sum())
        dropped_several = int((per_row > 1).sum())
    else:
        selection = table.reset_index(drop=True)
        targets = y.astype(np.float32)
        dropped_none = dropped_several = 0
    if selection.empty:
        raise DataError(
            f"no image carries any of the labels {', '.join(labels)}; nothing to train on"
        )
    return TaskSelection(
        selection, Task(tuple(labels), kind), targets, dropped_none, dropped_several
    )


def label_sets(table: pd.DataFrame, labels: list[str]) -> pd.Series:
    """Each patient's set of positive labels (over all their images), as a string key."""
    y = table[list(labels)].astype(bool)
    per_patient = y.groupby(table["patient_id"]).any()
    return per_patient.apply(lambda row: "".join(x for x in labels if row[x]) or "-", axis=1)
