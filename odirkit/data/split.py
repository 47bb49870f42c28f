"""Train/test splits by patient, never by image, and class balancing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from odirkit.data.table import label_sets
from odirkit.errors import ConfigError, DataError
from odirkit.files import write_text


def _strata(table: pd.DataFrame, labels: list[str], minimum: int) -> pd.Series:
    """Each patient's label set, with sets held by fewer than ``minimum`` patients pooled."""
    keys = label_sets(table, labels)
    counts = keys.value_counts()
    return keys.where(keys.map(counts) >= minimum, "rare")


def patient_folds(table: pd.DataFrame, *, labels: list[str], folds: int, seed: int) -> pd.Series:
    """A fold number (0..folds-1) per patient, stratified on label sets as far as possible.

    Raises :class:`DataError` when there are fewer patients than folds."""
    strata = _strata(table, labels, folds)
    patients = np.asarray(strata.index)
    if len(patients) < folds:
        raise DataError(
            f"{folds} folds need at least {folds} patients; the data has {len(patients)}"
        )
    assignment = np.zeros(len(patients), dtype=np.int64)
    # Pooled below ``folds`` patients, some stratum always holds at least ``folds`` (the
    # pool itself when every set is rare), so StratifiedKFold never refuses the strata.
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for fold, (_, test) in enumerate(splitter.split(patients, strata.to_numpy())):
        assignment[test] = fold
    return pd.Series(assignment, index=patients, name="fold")


SIDES = ("train", "val", "test")


def split_file_assignment(path: Path, table: pd.DataFrame) -> pd.Series:
    """Read a saved split: ``patient_id,split`` (train/val/test, or train/test) or
    ``patient_id,fold``.

    Raises :class:`DataError` naming the file when it cannot be read, lacks the columns,
    holds an unknown split value or leaves a patient of this dataset out."""
    try:
        frame = pd.read_csv(path, dtype={"patient_id": str}, keep_default_na=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the split file ({exc})") from None
    column = "fold" if "fold" in frame.columns else "split" if "split" in frame.columns else None
    if "patient_id" not in frame.columns or column is None:
        raise DataError(f"{path}: a split file has the columns patient_id and split (or fold)")
    assignment = frame.set_index("patient_id")[column]
    if column == "split":
        unknown = sorted(set(assignment.astype(str)) - set(SIDES))
        if unknown:
            raise DataError(
                f"{path}: split values are train, val or test; found {', '.join(unknown[:3])}"
            )
    patients = pd.Index(table["patient_id"].astype(str).unique())
    missing = patients.difference(assignment.index)
    if len(missing):
        raise DataError(
            f"{path}: the split file does not place {len(missing)} patient(s) of this dataset "
            f"(e.g. {', '.join(missing[:3])}); delete it to make a new split, or name another"
        )
    return assignment


def write_split_file(path: Path, assignment: pd.Series) -> None:
    """Write each image's side (train, val, test) as ``split.csv``, for ``split_file`` to reuse."""

    frame = assignment.rename_axis("patient_id").reset_index()
    write_text(path, frame.to_csv(index=False))


def patient_level_split(
    table: pd.DataFrame,
    *,
    labels: list[str],
    test_fraction: float,
    seed: int,
    key: str = "data.test_fraction",
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training and test images; no patient is on both sides.

    Patients are stratified on their label sets (the union of their images'
    labels) as far as the counts allow: sets held by a single patient are
    pooled, and when even that cannot be stratified the split is a plain
    shuffle. The same seed gives the same split. Returns two arrays of row
    positions, ``int [N_train]`` and ``int [N_test]``.

    Raises :class:`DataError` for fewer than two patients, :class:`ConfigError` when
    ``test_fraction`` leaves no training patient."""
    strata_series = _strata(table, labels, 2)
    patients = np.asarray(strata_series.index)
    if len(patients) < 2:
        raise DataError(
            f"a train/test split needs at least two patients; the data has {len(patients)}"
        )
    strata = strata_series.to_numpy()
    n_test = max(1, round(test_fraction * len(patients)))
    if n_test >= len(patients):
        raise ConfigError(
            f"{key} = {test_fraction} leaves no training patient out of {len(patients)}"
        )
    try:
        _, test_p = train_test_split(patients, test_size=n_test, random_state=seed, stratify=strata)
    except ValueError:  # too few patients per stratum for this test size
        _, test_p = train_test_split(patients, test_size=n_test, random_state=seed)
    test_set = set(test_p.tolist())
    is_test = table["patient_id"].isin(test_set).to_numpy()
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def carve_validation(
    table: pd.DataFrame, sides: pd.Series, *, labels: list[str], fraction: float, seed: int
) -> pd.Series:
    """Move ``fraction`` of the training patients to ``"val"``, stratified on label sets
    exactly as the test split is; test patients stay where they are.

    Raises :class:`DataError` for fewer than three training patients."""
    if fraction <= 0:
        return sides
    training = sides.index[sides == "train"]
    rows = table[table["patient_id"].isin(set(training))].reset_index(drop=True)
    if rows["patient_id"].nunique() < 3:
        raise DataError(
            f"a validation split needs at least three training patients; there are "
            f"{rows['patient_id'].nunique()} (set data.val_fraction = 0 to go without)"
        )
    _, val_idx = patient_level_split(
        rows, labels=labels, test_fraction=fraction, seed=seed, key="data.val_fraction"
    )
    out = sides.copy()
    out[rows.loc[val_idx, "patient_id"].unique()] = "val"
    return out


def undersample(indices: np.ndarray, classes: np.ndarray, *, seed: int) -> np.ndarray:
    """Keep as many images of each class as the rarest class has (single-label tasks):
    of ``indices`` (``[N]``, with their ``classes`` ``[N]``), the kept ones ``[K]``, sorted."""
    rng = np.random.default_rng(seed)
    present = np.unique(classes)
    smallest = min(int((classes == c).sum()) for c in present)
    kept = [rng.choice(indices[classes == c], size=smallest, replace=False) for c in present]
    return np.sort(np.concatenate(kept))


def undersample_multilabel(indices: np.ndarray, targets: np.ndarray, *, seed: int) -> np.ndarray:
    """Random undersampling for a multi-label task (in the manner of Charte et al.'s ML-RUS).

    A label is a *majority* label when more images carry it than the median label
    does. Images whose labels are all majority labels (N alone, D alone, N and D
    ...) are removed in a seeded random order, each only while every one of its
    labels keeps at least the median (and at least one image) after it: the
    common label sets are capped at the median, rounded up when it falls between
    two counts, and no image of a minority label is ever removed.

    ``indices`` ``[N]`` into ``targets`` ``[rows, C]`` (0/1); returns the kept ``[K]``, sorted."""
    y = np.asarray(targets) > 0.5
    counts = y[indices].sum(axis=0).astype(np.int64)
    target = float(np.median(counts))
    majority = counts > target
    rng = np.random.default_rng(seed)
    kept = np.ones(len(indices), dtype=bool)
    for position in rng.permutation(len(indices)):
        labels = y[indices[position]]
        if not labels.any() or not majority[labels].all():
            continue
        if (counts[labels] - 1 >= max(target, 1.0)).all():
            kept[position] = False
            counts[labels] -= 1
    return np.sort(indices[kept])


def class_weights(
    targets: np.ndarray, num_classes: int, *, single_label: bool, shares: bool = False
) -> np.ndarray:
    """Loss weights against class imbalance, ``[C]`` for targets ``[N]`` (class indices) or
    ``[N, C]`` (0/1 labels).

    Single-label: ``n / (C * count_c)`` per class (cross-entropy weights); the same
    for a multi-label task under a softmax loss (``shares``), counting each label.
    Multi-label: ``negatives / positives`` per label (BCE ``pos_weight``)."""
    if single_label:
        counts = np.bincount(targets.astype(np.int64), minlength=num_classes).astype(float)
        return len(targets) / (num_classes * np.maximum(counts, 1.0))
    if shares:
        counts = targets.sum(axis=0).astype(float)
        return len(targets) / (num_classes * np.maximum(counts, 1.0))
    positives = targets.sum(axis=0)
    negatives = len(targets) - positives
    return negatives / np.maximum(positives, 1.0)
