"""How hard is a phantom? Baselines that see no lesion, and the generator's own oracle.

A synthetic dataset only supports a comparison of methods if the classes cannot be
told apart by something trivial. These measures, on Normal-vs-Diabetes images:

- a **colour histogram** (6 x 6 x 6 bins over the field of view, no spatial
  information) fed to a logistic regression, scored by ROC AUC with 5-fold
  cross-validation grouped by patient;
- a **pixel-count rule**: the number of yellow (exudate-like) and dark-red
  (haemorrhage-like) pixels in the field of view, as a score;
- the **oracle**: the area of the diabetic lesions the generator drew (its own
  masks), scored against the labels: the ceiling any model can reach given the
  label noise;
- **acquisition shortcuts** (:func:`acquisition_shortcuts`): how well what the
  camera did — each eye's field share, brightness, JPEG quality, file size,
  camera, plus the patient number — predicts each label of the patient, by a
  cross-validated logistic regression; none should beat chance by much.

``benchmarks/phantom_difficulty.py`` prints them for both difficulties.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

BINS = 6
FOV_LEVEL = 20  # grey level above which a pixel belongs to the field of view


def _pixels(path: Path) -> np.ndarray:
    """The field of view's pixels, ``float [P, 3]`` in [0, 1]."""
    rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
    inside = rgb.mean(axis=2) > FOV_LEVEL
    return rgb[inside] / 255.0


def colour_histogram(path: Path) -> np.ndarray:
    """A normalised 216-bin RGB histogram of the field of view."""
    px = _pixels(path)
    index = np.minimum((px * BINS).astype(np.int64), BINS - 1)
    flat = index[:, 0] * BINS * BINS + index[:, 1] * BINS + index[:, 2]
    counts = np.bincount(flat, minlength=BINS**3).astype(np.float64)
    return counts / max(counts.sum(), 1.0)


def lesion_colour_counts(path: Path) -> tuple[float, float]:
    """Shares of the field of view that are yellow (exudate-like) and dark red
    (haemorrhage-like)."""
    px = _pixels(path)
    r, g, b = px[:, 0], px[:, 1], px[:, 2]
    yellow = (r > 0.75) & (g > 0.6) & (b < 0.55) & (g / np.maximum(r, 1e-6) > 0.75)
    dark_red = (r > 0.2) & (r < 0.5) & (g < 0.12) & (b < 0.12)
    n = max(len(px), 1)
    return float(yellow.sum() / n), float(dark_red.sum() / n)


def normal_vs_diabetes(table: pd.DataFrame) -> pd.DataFrame:
    """The images a Normal-vs-Diabetes task keeps (exactly one of N and D), with ``y`` (1: D)."""
    keep = (table["N"] + table["D"]) == 1
    out = table[keep].copy()
    out["y"] = out["D"].astype(int)
    return out.reset_index(drop=True)


def cross_validated_auc(
    features: np.ndarray, y: np.ndarray, groups: Sequence[object], seed: int = 0
) -> float:
    """ROC AUC of a logistic regression, 5-fold cross-validated by patient."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import GroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    folds = GroupKFold(n_splits=5)
    scores = cross_val_predict(
        model, features, y, groups=np.asarray(groups), cv=folds, method="predict_proba"
    )[:, 1]
    return float(roc_auc_score(y, scores))


def measure(root: Path) -> dict[str, float]:
    """Every measure on the phantom at ``root`` (its ``phantom_images.csv``)."""
    from sklearn.metrics import roc_auc_score

    table = normal_vs_diabetes(pd.read_csv(root / "phantom_images.csv", keep_default_na=False))
    paths = [root / p for p in table["path"]]
    y = table["y"].to_numpy()
    histograms = np.stack([colour_histogram(p) for p in paths])
    counts = np.array([lesion_colour_counts(p) for p in paths])
    oracle = np.array(
        [
            (np.asarray(Image.open(root / m)) > 0).sum() if m else 0
            for m in table["mask_path_D"].fillna("")
        ],
        dtype=np.float64,
    )
    return {
        "images": len(table),
        "diabetic_share": float(y.mean()),
        "label_noise_share": float(table.get("label_noise", pd.Series(0)).mean()),
        "histogram_logistic_auc": cross_validated_auc(histograms, y, table["patient_id"]),
        "yellow_count_auc": float(roc_auc_score(y, counts[:, 0])),
        "red_count_auc": float(roc_auc_score(y, counts[:, 1])),
        "yellow_plus_red_auc": float(roc_auc_score(y, counts.sum(axis=1))),
        "oracle_lesion_area_auc": float(roc_auc_score(y, oracle)),
    }


#: what the camera did, per photograph: nothing a disease decides
ACQUISITION = ("field_share", "brightness", "jpeg_quality", "file_kb", "camera")


def acquisition_features(root: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Per photograph: the share of the picture that is field of view, the field's
    median brightness, the JPEG quality, the file size (kB) and the camera."""
    rows = []
    for record in table.itertuples(index=False):
        path = root / record.path
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)
        inside = rgb.mean(axis=2) > FOV_LEVEL
        rows.append(
            {
                "patient_id": str(record.patient_id),
                "eye": record.eye,
                "field_share": float(inside.mean()),
                "brightness": float(np.median(rgb[inside].max(axis=1))) if inside.any() else 0.0,
                "jpeg_quality": float(getattr(record, "jpeg_quality", 0)),
                "file_kb": path.stat().st_size / 1024,
                "camera": float(getattr(record, "camera", 0)),
            }
        )
    return pd.DataFrame(rows)


def acquisition_shortcuts(root: Path, labels: Sequence[str] | None = None) -> dict[str, float]:
    """ROC AUC of acquisition features alone for each label of the patient.

    Each patient is one sample: the features of the left and of the right
    photograph side by side (so a shortcut in one eye only counts) and the patient
    number; the target is the patient's label from the workbook. A logistic
    regression, 5-fold cross-validated by patient. A label with fewer than ten
    patients on either side is left out.
    """
    from odirkit import LABELS

    table = pd.read_csv(root / "phantom_images.csv", keep_default_na=False)
    features = acquisition_features(root, table)
    wide = features.pivot(index="patient_id", columns="eye", values=list(ACQUISITION))
    wide.columns = [f"{eye}_{name}" for name, eye in wide.columns]
    wide = wide.fillna(wide.mean())
    wide["patient_number"] = [float(pid) for pid in wide.index]
    per_patient = table.astype({"patient_id": str}).groupby("patient_id")[list(LABELS)].max()
    diseased = per_patient.drop(columns="N").max(axis=1)
    per_patient["N"] = (diseased == 0).astype(int)
    per_patient = per_patient.loc[wide.index]
    out = {}
    for label in labels or LABELS:
        y = per_patient[label].to_numpy()
        if min(y.sum(), len(y) - y.sum()) < 10:
            continue
        auc = cross_validated_auc(wide.to_numpy(), y, wide.index.to_numpy())
        out[label] = max(auc, 1.0 - auc)  # a shortcut in either direction
    return out
