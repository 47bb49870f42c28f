"""ODIR-2019 submissions: reading ground truth and predictions, checking them, scoring them.

A submission is a CSV ``ID,N,D,G,C,A,H,M,O`` with one row per patient and the
probability of each label (or some of the labels: a run that learned N and D writes
``ID,N,D``, and is scored on those two). The ground truth is the annotation workbook (or a
CSV) with ``ID`` and the same eight 0/1 columns. Scoring follows the
challenge's evaluation (:func:`odirkit.metrics.odir_score`), with the
per-class figures that are easier to read alongside.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from odirkit.errors import DataError
from odirkit.labels import LABELS
from odirkit.metrics import classification_metrics, odir_score

COLUMNS = ("ID", *LABELS)


def read_table(path: Path, what: str, labels: Sequence[str] | None = None) -> pd.DataFrame:
    """A workbook or CSV with ``ID`` and label columns, IDs as strings, values in [0, 1].

    ``labels``: the label columns it must have; None takes those of ``N..O`` it has (at
    least one). Raises :class:`~odirkit.errors.DataError` naming the file and what is
    wrong: a missing column, a repeated ID, a value that is not a number in [0, 1].
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: {what} file not found")
    try:
        if path.suffix.lower() in {".xlsx", ".xlsm", ".xls"}:
            frame = pd.read_excel(path)
        else:
            frame = pd.read_csv(path, keep_default_na=False)
    except Exception as exc:  # a damaged file raises many kinds of errors
        raise DataError(f"{path}: cannot read the {what} ({exc})") from None
    frame = frame.rename(columns={c: " ".join(str(c).split()) for c in frame.columns})
    wanted = list(labels) if labels is not None else [x for x in LABELS if x in frame.columns]
    missing = [c for c in ("ID", *wanted) if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: the {what} file lacks column(s) {', '.join(missing)}; expected "
            f"{','.join(COLUMNS)}" + (" (or ID and some of the labels)" if labels is None else "")
        )
    if not wanted:
        raise DataError(
            f"{path}: the {what} file has no label column (any of {', '.join(LABELS)}); "
            f"expected {','.join(COLUMNS)} (or ID and some of the labels)"
        )
    frame = frame[["ID", *wanted]].copy()
    frame["ID"] = frame["ID"].map(normalise_id)
    duplicated = frame["ID"][frame["ID"].duplicated()].unique()
    if len(duplicated):
        raise DataError(
            f"{path}: patient ID(s) repeated in the {what} file: {', '.join(duplicated[:5])}"
        )
    for label in wanted:
        values = pd.to_numeric(frame[label], errors="coerce")
        bad = values.isna() | (values < 0) | (values > 1)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataError(
                f"{path}: column {label} must hold numbers in [0, 1]; patient "
                f"{frame['ID'].iloc[row]} (row {row + 2}) has {frame[label].iloc[row]!r}"
            )
        frame[label] = values.astype(float)
    return frame


def normalise_id(value: object) -> str:
    """Patient IDs as text; ``12``, ``12.0`` and ``" 12"`` are the same patient."""
    text = str(value).strip()
    try:
        number = float(text)
    except ValueError:
        return text
    return str(int(number)) if number.is_integer() else text


@dataclass
class ScoreReport:
    """The challenge's figures and the per-class ones, on the labels the submission has.

    ``odir``: the challenge's kappa, ``f1`` (its agreement F1: the share of agreeing
    answers in the flattened 0/1 vector) AUC and final score; ``metrics``: the per-class
    figures and their averages, where ``f1_micro`` is the micro F1 of the positive answers
    (a different figure); ``missing``: the labels the submission lacks, not scored.
    """

    patients: int
    odir: dict[str, float]
    metrics: dict[str, Any]
    labels: tuple[str, ...] = LABELS
    missing: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The scores as ``odirkit score --json`` prints them."""
        return {
            "patients": self.patients,
            "labels": list(self.labels),
            "labels_missing": list(self.missing),
            "odir": self.odir,
            "metrics": self.metrics,
        }


def align(
    truth: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    sort: bool,
    truth_path: Path,
    predictions_path: Path,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check that both files hold the same patients in the same order (or sort both).

    Raises :class:`DataError` naming the predictions file when the patients differ, or
    (without ``sort``) come in another order."""
    truth_ids, pred_ids = set(truth["ID"]), set(predictions["ID"])
    missing = sorted(truth_ids - pred_ids)
    extra = sorted(pred_ids - truth_ids)
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} patient(s) of the ground truth have no prediction "
                f"(e.g. {', '.join(missing[:5])})"
            )
        if extra:
            parts.append(
                f"{len(extra)} predicted patient(s) are not in the ground truth "
                f"(e.g. {', '.join(extra[:5])})"
            )
        raise DataError(f"{predictions_path}: " + "; ".join(parts))
    if sort:
        return (
            truth.sort_values("ID", key=_id_order).reset_index(drop=True),
            predictions.sort_values("ID", key=_id_order).reset_index(drop=True),
        )
    mismatch = np.flatnonzero(truth["ID"].to_numpy() != predictions["ID"].to_numpy())
    if len(mismatch):
        row = int(mismatch[0])
        raise DataError(
            f"{predictions_path}: patients are not in the order of {truth_path.name}: row "
            f"{row + 2} is patient {predictions['ID'].iloc[row]}, the ground truth has "
            f"{truth['ID'].iloc[row]} there; pass --sort to match them by ID"
        )
    return truth, predictions


def _id_order(ids: pd.Series) -> pd.Series:
    numeric = pd.to_numeric(ids, errors="coerce")
    return numeric if numeric.notna().all() else ids


def score_files(truth_path: Path, predictions_path: Path, *, sort: bool = False) -> ScoreReport:
    """Score a submission against the ground truth, as the ODIR-2019 challenge did, on the
    labels the submission has (a two-label run's ``ID,N,D``: N and D; the others are
    named in ``missing``); the ground truth must have those labels.

    Raises :class:`DataError` for ground-truth labels other than 0 and 1 (and as
    :func:`align` and the readers do)."""
    predictions = read_table(predictions_path, "predictions")
    labels = tuple(c for c in predictions.columns if c != "ID")
    truth = read_table(truth_path, "ground truth", labels)
    truth, predictions = align(
        truth,
        predictions,
        sort=sort,
        truth_path=Path(truth_path),
        predictions_path=Path(predictions_path),
    )
    gt = truth[list(labels)].to_numpy().astype(np.int64)
    if set(np.unique(gt)) - {0, 1}:
        raise DataError(f"{truth_path}: ground-truth labels must be 0 or 1")
    probs = predictions[list(labels)].to_numpy()
    metrics = classification_metrics(gt, probs, labels=labels, single_label=False)
    missing = tuple(x for x in LABELS if x not in labels)
    return ScoreReport(len(truth), odir_score(gt, probs), metrics, labels, missing)
