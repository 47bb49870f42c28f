"""Classification metrics: micro and macro F1, recall, precision and AUC per class.

Single-label tasks predict the most probable class; multi-label tasks predict
every label whose probability exceeds 0.5. scikit-learn computes everything.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

THRESHOLD = 0.5


def predictions(probs: np.ndarray, *, single_label: bool) -> np.ndarray:
    """Class indices (single-label) or a 0/1 matrix (multi-label) from probabilities."""
    if single_label:
        return probs.argmax(axis=1)
    return (probs > THRESHOLD).astype(np.int64)


def _indicator(targets: np.ndarray, num_classes: int, single_label: bool) -> np.ndarray:
    if not single_label:
        return targets.astype(np.int64)
    out = np.zeros((len(targets), num_classes), dtype=np.int64)
    out[np.arange(len(targets)), targets.astype(np.int64)] = 1
    return out


def classification_metrics(
    targets: np.ndarray,
    probs: np.ndarray,
    *,
    labels: Sequence[str],
    single_label: bool,
) -> dict[str, Any]:
    """Every metric of one evaluation, as plain floats.

    ``targets`` are class indices ``[N]`` (single-label) or a 0/1 matrix
    ``[N, C]`` (multi-label); ``probs`` are ``[N, C]``. Per-class figures come
    under ``per_class[label]``; AUC is NaN for a class without both outcomes.
    """
    n_classes = len(labels)
    pred = predictions(probs, single_label=single_label)
    y_true = _indicator(targets, n_classes, single_label)
    y_pred = _indicator(pred, n_classes, single_label) if single_label else pred
    kw: dict[str, Any] = {"zero_division": 0}
    if single_label:
        ids = list(range(n_classes))
        t, p = targets.astype(np.int64), pred
        f1_pc = f1_score(t, p, labels=ids, average=None, **kw)
        rec_pc = recall_score(t, p, labels=ids, average=None, **kw)
        prec_pc = precision_score(t, p, labels=ids, average=None, **kw)
        f1_micro = f1_score(t, p, labels=ids, average="micro", **kw)
        accuracy = accuracy_score(t, p)
    else:
        f1_pc = f1_score(y_true, y_pred, average=None, **kw)
        rec_pc = recall_score(y_true, y_pred, average=None, **kw)
        prec_pc = precision_score(y_true, y_pred, average=None, **kw)
        f1_micro = f1_score(y_true, y_pred, average="micro", **kw)
        accuracy = accuracy_score(y_true, y_pred)  # exact match of the label sets
    auc_pc = []
    for c in range(n_classes):
        column = y_true[:, c]
        if column.min() == column.max():
            auc_pc.append(float("nan"))
        else:
            auc_pc.append(float(roc_auc_score(column, probs[:, c])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        auc_macro = float(np.nanmean(auc_pc)) if not np.all(np.isnan(auc_pc)) else float("nan")
    per_class = {
        label: {
            "f1": float(f1_pc[i]),
            "recall": float(rec_pc[i]),
            "precision": float(prec_pc[i]),
            "auc": auc_pc[i],
            "support": int(y_true[:, i].sum()),
        }
        for i, label in enumerate(labels)
    }
    return {
        "f1_micro": float(f1_micro),
        "f1_macro": float(np.mean(f1_pc)),
        "recall_macro": float(np.mean(rec_pc)),
        "precision_macro": float(np.mean(prec_pc)),
        "accuracy": float(accuracy),
        "auc_macro": auc_macro,
        "per_class": per_class,
    }


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"per_class": {"N": {"recall": x}}, "odir": {"kappa": k}}`` ->
    ``{"recall_N": x, "odir_kappa": k}``: one CSV row."""
    row: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "per_class":
            for label, figures in value.items():
                for name, number in figures.items():
                    row[f"{prefix}{name}_{label}"] = number
        elif isinstance(value, dict):
            for name, number in value.items():
                row[f"{prefix}{key}_{name}"] = number
        elif isinstance(value, int | float):
            row[f"{prefix}{key}"] = value
    return row


def odir_score(targets: np.ndarray, probs: np.ndarray, threshold: float = THRESHOLD) -> dict:
    """The ODIR-2019 challenge score, computed exactly as its evaluation did.

    Over patients, the ground truth ``[P, 8]`` and the probabilities ``[P, 8]``
    are flattened into one vector each; with ``p > threshold`` as the
    prediction: Cohen's kappa, F1 with ``average='micro'``, ROC AUC of the
    probabilities, and their mean as the final score.
    """
    gt = np.asarray(targets).astype(np.int64).ravel()
    pr = np.asarray(probs, dtype=np.float64).ravel()
    predicted = pr > threshold
    kappa = float(cohen_kappa_score(gt, predicted))
    f1 = float(f1_score(gt, predicted, average="micro"))
    auc = float(roc_auc_score(gt, pr)) if gt.min() != gt.max() else float("nan")
    return {"kappa": kappa, "f1": f1, "auc": auc, "final": (kappa + f1 + auc) / 3.0}
