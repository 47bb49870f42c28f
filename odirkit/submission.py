"""ODIR-2019 submissions: reading ground truth and predictions, checking them, scoring them.

A submission is a CSV ``ID,N,D,G,C,A,H,M,O`` with one row per patient and the
probability of each label. The ground truth is the annotation workbook (or a
CSV) with ``ID`` and the same eight 0/1 columns. Scoring follows the
challenge's evaluation (:func:`odirkit.metrics.odir_score`), with the
per-class figures that are easier to read alongside.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from odirkit.errors import DataError
from odirkit.labels import LABELS
from odirkit.metrics import classification_metrics, odir_score

COLUMNS = ("ID", *LABELS)


def read_table(path: Path, what: str) -> pd.DataFrame:
    """A workbook or CSV with ``ID`` and the eight label columns, IDs as strings."""
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
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: the {what} lacks column(s) {', '.join(missing)}; expected {','.join(COLUMNS)}"
        )
    frame = frame[list(COLUMNS)].copy()
    frame["ID"] = frame["ID"].map(normalise_id)
    duplicated = frame["ID"][frame["ID"].duplicated()].unique()
    if len(duplicated):
        raise DataError(
            f"{path}: patient ID(s) repeated in the {what}: {', '.join(duplicated[:5])}"
        )
    for label in LABELS:
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
    """The challenge's figures and the per-class ones."""

    patients: int
    odir: dict[str, float]
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"patients": self.patients, "odir": self.odir, "metrics": self.metrics}


def align(
    truth: pd.DataFrame,
    predictions: pd.DataFrame,
    *,
    sort: bool,
    truth_path: Path,
    predictions_path: Path,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check that both files hold the same patients in the same order (or sort both)."""
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
    """Score a submission against the ground truth, as the ODIR-2019 challenge did."""
    truth = read_table(truth_path, "ground truth")
    predictions = read_table(predictions_path, "predictions")
    truth, predictions = align(
        truth,
        predictions,
        sort=sort,
        truth_path=Path(truth_path),
        predictions_path=Path(predictions_path),
    )
    gt = truth[list(LABELS)].to_numpy().astype(np.int64)
    if set(np.unique(gt)) - {0, 1}:
        raise DataError(f"{truth_path}: ground-truth labels must be 0 or 1")
    probs = predictions[list(LABELS)].to_numpy()
    metrics = classification_metrics(gt, probs, labels=LABELS, single_label=False)
    return ScoreReport(len(truth), odir_score(gt, probs), metrics)
