"""The sample table: the dataset plugin's rows, the split by patient, the patients' own truth,
age and sex as features.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from odirkit.config import ResolvedVariant
from odirkit.data.split import (
    carve_validation,
    patient_folds,
    patient_level_split,
    split_file_assignment,
    write_split_file,
)
from odirkit.data.table import Task, TaskSelection, check_sample_table, select_task
from odirkit.errors import ConfigError, DataError
from odirkit.labels import LABELS
from odirkit.runs.records import PatientTruth
from odirkit.seeding import Stream, derive_seed


@dataclass
class Samples:
    """The dataset plugin's table, checked; the task's selection of it; the plugin's report."""

    table: pd.DataFrame
    selection: TaskSelection
    report: dict[str, Any]


def load_samples(exp: ResolvedVariant) -> Samples:
    """The dataset plugin's sample table, checked, narrowed to the experiment's task."""
    cfg = exp.config.data
    root = Path(cfg.root)
    raw = exp.dataset.build(root=str(root))
    report = dict(getattr(raw, "attrs", {}).get("odirkit_report", {}))
    table = check_sample_table(raw, dataset=exp.dataset.name, root=root)
    return Samples(table, select_task(table, list(cfg.labels), cfg.task), report)


def assign_split(exp: ResolvedVariant, table: pd.DataFrame) -> pd.Series:
    """``"train"``, ``"val"`` or ``"test"`` for every patient of the full table.

    The split is made on all patients and all eight labels, whatever the task,
    so that experiments with the same seed (or the same split file) share it.
    The test patients are drawn first (or the held-out fold); then
    ``data.val_fraction`` of the remaining patients become validation
    patients, stratified the same way. With ``data.split_file`` an existing
    file is read (a file without ``val`` gets its validation patients drawn
    now), a missing one written. A dataset whose table has a ``split`` column (a collection
    that comes split, as RETFound's benchmark ships its datasets) keeps that split; validation
    patients are drawn from its training ones when it has no ``val``.

    Raises :class:`ConfigError` when ``data.folds`` does not fit the dataset's own split or
    the split file, :class:`DataError` for a dataset that comes split without test images
    (and as the splitting functions of :mod:`odirkit.data.split` do)."""
    cfg = exp.config.data
    seed = exp.config.seed
    file = Path(cfg.split_file) if cfg.split_file else None

    def with_validation(sides: pd.Series) -> pd.Series:
        if (sides == "val").any():
            return sides
        return carve_validation(
            table,
            sides,
            labels=list(LABELS),
            fraction=cfg.val_fraction,
            seed=derive_seed(seed, Stream.SPLIT) % 2**32,
        )

    if "split" in table.columns and not (file is not None and file.exists()):
        # the collection comes split (train/, val/, test/ folders): its split is kept
        if cfg.folds:
            raise ConfigError(
                f"dataset {exp.dataset.name!r} in {cfg.root} comes split into train, val and "
                f"test, so data.folds = {cfg.folds} cannot apply; turn the dataset's own split "
                "off (folder: splits = false) to draw folds"
            )
        given = table.groupby("patient_id")["split"].first().rename("split")
        if not (given == "test").any():
            raise DataError(
                f"dataset {exp.dataset.name!r} in {cfg.root} comes split but has no test "
                "images; add a test/ folder, or turn its split off (folder: splits = false)"
            )
        given = with_validation(given)
        if file is not None:
            write_split_file(file, given)
        return given
    if file is not None and file.exists():
        saved = split_file_assignment(file, table)
        if saved.name == "fold":
            if cfg.fold is None:
                raise ConfigError(
                    f"{file}: this split file has folds; set data.folds and data.fold"
                )
            return with_validation(saved.map(lambda f: "test" if int(f) == cfg.fold else "train"))
        if cfg.folds:
            raise ConfigError(f"{file}: this split file has no folds, but data.folds = {cfg.folds}")
        return with_validation(saved.astype(str))
    if cfg.folds:
        folds = patient_folds(table, labels=list(LABELS), folds=cfg.folds, seed=seed)
        if file is not None:
            write_split_file(file, folds)
        return with_validation(folds.map(lambda f: "test" if int(f) == cfg.fold else "train"))
    train_idx, test_idx = patient_level_split(
        table, labels=list(LABELS), test_fraction=cfg.test_fraction, seed=seed
    )
    sides = pd.concat(
        [
            pd.Series("train", index=table.loc[train_idx, "patient_id"].unique()),
            pd.Series("test", index=table.loc[test_idx, "patient_id"].unique()),
        ]
    ).rename("split")
    sides = with_validation(sides)
    if file is not None:
        write_split_file(file, sides)
    return sides


def eye_union_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Each patient's eight labels as the union of their eyes' (N only when no eye is
    diseased)."""
    per_patient = table.groupby("patient_id")[list(LABELS)].max()
    diseased = per_patient[[label for label in LABELS if label != "N"]].max(axis=1)
    per_patient["N"] = (diseased == 0).astype(int)
    return per_patient.astype(int)


def patient_truth(table: pd.DataFrame) -> tuple[pd.DataFrame, PatientTruth]:
    """Each patient's eight labels, and a report of where they came from.

    A dataset that gives ``patient_<L>`` columns (``odir5k``: the workbook's
    patient columns N..O, the challenge's ground truth) is taken at its word;
    otherwise the patient's labels are the union of their eyes' labels. The
    report counts the patients on whom the two disagree. ``table`` is the whole
    sample table, so a patient's truth does not depend on which eyes a task keeps.
    """
    union = eye_union_labels(table)
    if not all(f"patient_{label}" in table.columns for label in LABELS):
        return union, PatientTruth(source="union of the eyes' labels", patients=len(union))
    columns = [f"patient_{label}" for label in LABELS]
    given = table.groupby("patient_id")[columns].max().fillna(0).astype(int)
    given.columns = list(LABELS)
    differs = (given != union.loc[given.index]).any(axis=1)
    examples = [
        {
            "patient_id": str(pid),
            "dataset": "".join(x for x in LABELS if given.at[pid, x]),
            "eyes": "".join(x for x in LABELS if union.at[pid, x]),
        }
        for pid in given.index[differs][:10]
    ]
    return given, PatientTruth(
        source="the dataset's patient labels (patient_N..patient_O)",
        patients=len(given),
        disagree_with_eye_labels=int(differs.sum()),
        examples=examples,
    )


def age_statistics(table: pd.DataFrame, train_idx: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation, in years, of the ages of the training images
    (``train_idx``, row positions ``[N]``), missing ages left out: a mean of 0 when none is
    known, a deviation of 1 when fewer than two are or all are equal."""
    age = pd.to_numeric(table["age"].iloc[train_idx], errors="coerce").dropna().to_numpy()
    mean = float(age.mean()) if age.size else 0.0
    std = float(age.std()) if age.size > 1 and age.std() > 0 else 1.0
    return mean, std


def metadata_features(table: pd.DataFrame, mean: float, std: float) -> np.ndarray:
    """Age standardised with the training images' ``mean`` and ``std`` (missing: 0, the
    mean) and sex as 1 (male), 0 (female) or 0.5 (unknown): ``float32 [N, 2]``."""
    age = pd.to_numeric(table["age"], errors="coerce").to_numpy(dtype=np.float64)
    z = np.nan_to_num((age - mean) / std, nan=0.0)
    sex = (
        table["sex"]
        .astype(str)
        .str.strip()
        .str.lower()
        .map({"male": 1.0, "m": 1.0, "female": 0.0, "f": 0.0})
        .fillna(0.5)
        .to_numpy()
    )
    return np.stack([z, sex], axis=1).astype(np.float32)


def _counts(targets: np.ndarray, task: Task) -> dict[str, int]:
    if task.single_label:
        counts = np.bincount(targets.astype(np.int64), minlength=task.num_classes)
    else:
        counts = targets.sum(axis=0)
    return {label: int(c) for label, c in zip(task.labels, counts, strict=True)}
