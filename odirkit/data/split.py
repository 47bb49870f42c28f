"""Train/test splits by patient, never by image, and class balancing."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from odirkit.data.table import label_sets
from odirkit.errors import ConfigError, DataError


def patient_level_split(
    table: pd.DataFrame,
    *,
    labels: list[str],
    test_fraction: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the training and test images; no patient is on both sides.

    Patients are stratified on their label sets (the union of their images'
    labels) as far as the counts allow: sets held by a single patient are
    pooled, and when even that cannot be stratified the split is a plain
    shuffle. The same seed gives the same split.
    """
    keys = label_sets(table, labels)
    patients = np.asarray(keys.index)
    if len(patients) < 2:
        raise DataError(
            f"a train/test split needs at least two patients; the data has {len(patients)}"
        )
    strata = keys.to_numpy().astype(object)
    counts = pd.Series(strata).value_counts()
    strata = np.where(pd.Series(strata).map(counts).to_numpy() < 2, "rare", strata)
    n_test = max(1, round(test_fraction * len(patients)))
    if n_test >= len(patients):
        raise ConfigError(
            f"data.test_fraction = {test_fraction} leaves no training patient "
            f"out of {len(patients)}"
        )
    try:
        train_p, test_p = train_test_split(
            patients, test_size=n_test, random_state=seed, stratify=strata
        )
    except ValueError:  # too few patients per stratum for this test size
        train_p, test_p = train_test_split(patients, test_size=n_test, random_state=seed)
    test_set = set(test_p.tolist())
    is_test = table["patient_id"].isin(test_set).to_numpy()
    return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def undersample(indices: np.ndarray, classes: np.ndarray, *, seed: int) -> np.ndarray:
    """Keep as many images of each class as the rarest class has (single-label tasks)."""
    rng = np.random.default_rng(seed)
    present = np.unique(classes)
    smallest = min(int((classes == c).sum()) for c in present)
    kept = [rng.choice(indices[classes == c], size=smallest, replace=False) for c in present]
    return np.sort(np.concatenate(kept))


def class_weights(targets: np.ndarray, num_classes: int, *, single_label: bool) -> np.ndarray:
    """Loss weights against class imbalance.

    Single-label: ``n / (C * count_c)`` per class (cross-entropy weights).
    Multi-label: ``negatives / positives`` per label (BCE ``pos_weight``).
    """
    if single_label:
        counts = np.bincount(targets.astype(np.int64), minlength=num_classes).astype(float)
        return len(targets) / (num_classes * np.maximum(counts, 1.0))
    positives = targets.sum(axis=0)
    negatives = len(targets) - positives
    return negatives / np.maximum(positives, 1.0)
