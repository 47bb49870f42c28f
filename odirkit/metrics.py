"""Classification metrics: F1, recall, specificity, precision, AUC and PR-AUC per class,
micro and macro; operating points on the ROC curve; calibration; the ODIR-2019 score.

Single-label tasks predict the most probable class (or, for a two-class task
given a threshold, the second class when its probability exceeds it);
multi-label tasks predict every label whose probability *exceeds* its
threshold (``p > t``; 0.5 unless thresholds were chosen on validation), as
the ODIR-2019 evaluation did. scikit-learn computes the figures.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    cohen_kappa_score,
    f1_score,
    roc_auc_score,
    roc_curve,
)

from odirkit.calibration import brier_score, expected_calibration_error
from odirkit.thresholds import THRESHOLD, indicator

#: the operating points read off each class's ROC curve
SPECIFICITY_POINTS = (0.90, 0.95)
SENSITIVITY_POINTS = (0.90,)


def predictions(
    probs: np.ndarray, *, single_label: bool, thresholds: np.ndarray | None = None
) -> np.ndarray:
    """Class indices (single-label) or a 0/1 matrix (multi-label) from probabilities.

    ``thresholds`` (one per class) replace 0.5 for a multi-label task; for a
    single-label task they need two classes, and ``thresholds[1]`` decides the
    second class (the first is the rest).

    ``probs`` ``[N, C]``, ``thresholds`` ``[C]``; returns ``int [N]`` (single-label) or
    ``int [N, C]`` (multi-label)."""
    probs = np.asarray(probs)
    if single_label:
        if thresholds is None:
            return probs.argmax(axis=1)
        if probs.shape[1] != 2:
            raise ValueError("a threshold on a single-label task needs exactly two classes")
        return (probs[:, 1] > np.asarray(thresholds)[1]).astype(np.int64)
    cut = THRESHOLD if thresholds is None else np.asarray(thresholds, dtype=np.float64)[None, :]
    return (probs > cut).astype(np.int64)


def sensitivity_at_specificity(
    outcomes: np.ndarray, scores: np.ndarray, specificity: float
) -> float:
    """The highest sensitivity reachable while specificity stays at or above ``specificity``.

    ``outcomes`` 0/1 ``[N]`` and ``scores`` ``[N]`` of one class; fractions in [0, 1]; NaN
    without positives or negatives."""
    if outcomes.min() == outcomes.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(outcomes, scores)
    return float(tpr[fpr <= 1.0 - specificity + 1e-12].max())


def specificity_at_sensitivity(
    outcomes: np.ndarray, scores: np.ndarray, sensitivity: float
) -> float:
    """The highest specificity reachable while sensitivity stays at or above ``sensitivity``.

    ``outcomes`` 0/1 ``[N]`` and ``scores`` ``[N]`` of one class; fractions in [0, 1]; NaN
    without positives or negatives."""
    if outcomes.min() == outcomes.max():
        return float("nan")
    fpr, tpr, _ = roc_curve(outcomes, scores)
    return float((1.0 - fpr[tpr >= sensitivity - 1e-12]).max())


def _ranking(outcomes: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """Threshold-free figures of one class: AUC, PR-AUC, operating points, calibration."""
    both = outcomes.min() != outcomes.max()
    figures = {
        "auc": float(roc_auc_score(outcomes, scores)) if both else float("nan"),
        "pr_auc": float(average_precision_score(outcomes, scores)) if both else float("nan"),
    }
    for s in SPECIFICITY_POINTS:
        figures[f"sens_at_spec_{round(s * 100)}"] = sensitivity_at_specificity(outcomes, scores, s)
    for s in SENSITIVITY_POINTS:
        figures[f"spec_at_sens_{round(s * 100)}"] = specificity_at_sensitivity(outcomes, scores, s)
    figures["brier"] = brier_score(outcomes, scores)
    figures["ece"] = expected_calibration_error(outcomes, scores)
    return figures


def _nanmean(values: Sequence[float]) -> float:
    values = np.asarray(values, dtype=np.float64)
    if np.all(np.isnan(values)):
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))


def classification_metrics(
    targets: np.ndarray,
    probs: np.ndarray,
    *,
    labels: Sequence[str],
    single_label: bool,
    thresholds: np.ndarray | None = None,
) -> dict[str, Any]:
    """Every metric of one evaluation, as plain floats.

    ``targets`` are class indices ``[N]`` (single-label) or a 0/1 matrix
    ``[N, C]`` (multi-label); ``probs`` are ``[N, C]``; ``thresholds`` as in
    :func:`predictions`. Per-class figures come under ``per_class[label]``:
    f1, recall (sensitivity), specificity, precision, auc, pr_auc,
    sens_at_spec_90/95, spec_at_sens_90, brier, ece and support. A figure
    undefined for a class is NaN there (recall without positives, precision without
    predicted positives, F1 without either, specificity without negatives, AUC and
    PR-AUC without both outcomes; micro F1 when no label is true or predicted anywhere), and
    every macro figure is the mean over the classes
    it is defined for, those left out named under ``macro_left_out`` — the rule the
    bootstrap intervals follow (:mod:`odirkit.bootstrap`), so an estimate always lies
    in its interval.
    """
    n_classes = len(labels)
    probs = np.asarray(probs, dtype=np.float64)
    pred = predictions(probs, single_label=single_label, thresholds=thresholds)
    y_true = indicator(targets, n_classes, single_label)
    y_pred = indicator(pred, n_classes, single_label) if single_label else pred
    # micro F1 with nothing to find and nothing found is undefined (NaN), as in the bootstrap
    kw: dict[str, Any] = {"zero_division": np.nan}
    if single_label:
        ids = list(range(n_classes))
        t = np.asarray(targets).astype(np.int64)
        f1_micro = f1_score(t, pred, labels=ids, average="micro", **kw)
        accuracy = accuracy_score(t, pred)
    else:
        f1_micro = f1_score(y_true, y_pred, average="micro", **kw)
        accuracy = accuracy_score(y_true, y_pred)  # exact match of the label sets
    # Per class from the confusion counts, NaN where undefined (the bootstrap's rule too):
    # recall without positives, precision without predicted positives, F1 without either,
    # specificity without negatives. Macro figures average the defined classes only.
    tp = (y_true * y_pred).sum(axis=0).astype(np.float64)
    fp = ((1 - y_true) * y_pred).sum(axis=0).astype(np.float64)
    fn = (y_true * (1 - y_pred)).sum(axis=0).astype(np.float64)
    tn = ((1 - y_true) * (1 - y_pred)).sum(axis=0).astype(np.float64)
    f1_pc = _ratio(2 * tp, 2 * tp + fp + fn)
    rec_pc = _ratio(tp, tp + fn)
    prec_pc = _ratio(tp, tp + fp)
    spec_pc = _ratio(tn, tn + fp)
    per_class = {}
    for i, label in enumerate(labels):
        per_class[label] = {
            "f1": float(f1_pc[i]),
            "recall": float(rec_pc[i]),
            "specificity": float(spec_pc[i]),
            "precision": float(prec_pc[i]),
            **_ranking(y_true[:, i], probs[:, i]),
            "support": int(y_true[:, i].sum()),
        }

    def macro(name: str) -> float:
        return _nanmean([per_class[label][name] for label in labels])

    left_out = {
        f"{name}_macro": [label for label in labels if np.isnan(per_class[label][name])]
        for name in MACRO_FIGURES
    }
    return {
        "f1_micro": float(f1_micro),
        "f1_macro": macro("f1"),
        "recall_macro": macro("recall"),
        "specificity_macro": macro("specificity"),
        "precision_macro": macro("precision"),
        "accuracy": float(accuracy),
        "auc_macro": macro("auc"),
        "pr_auc_macro": macro("pr_auc"),
        "brier_macro": macro("brier"),
        "ece_macro": macro("ece"),
        "per_class": per_class,
        # the classes each macro figure leaves out (undefined for them): named beside it
        "macro_left_out": {name: found for name, found in left_out.items() if found},
    }


#: the per-class figures averaged into a macro figure (over the classes defined for them)
MACRO_FIGURES = ("f1", "recall", "specificity", "precision", "auc", "pr_auc", "brier", "ece")


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """``{"per_class": {"N": {"recall": x}}, "odir_patient": {"kappa": k}}`` ->
    ``{"recall_N": x, "odir_patient_kappa": k}``: one CSV row."""
    row: dict[str, float] = {}
    for key, value in metrics.items():
        if key == "per_class":
            for label, figures in value.items():
                for name, number in figures.items():
                    row[f"{prefix}{name}_{label}"] = number
        elif isinstance(value, dict):
            for name, number in value.items():
                if isinstance(number, int | float):
                    row[f"{prefix}{key}_{name}"] = number
        elif isinstance(value, int | float):
            row[f"{prefix}{key}"] = value
    return row


def odir_score(targets: np.ndarray, probs: np.ndarray, threshold: float = THRESHOLD) -> dict:
    """The ODIR-2019 challenge score, computed exactly as its evaluation did.

    Over **patients** — the challenge scored patients, never images — the
    ground truth ``[P, 8]`` and the probabilities ``[P, 8]`` are flattened into
    one vector each; with ``p > threshold`` as the prediction: Cohen's kappa,
    F1 with ``average='micro'``, ROC AUC of the probabilities, and their mean as
    the final score.
    """
    gt = np.asarray(targets).astype(np.int64).ravel()
    pr = np.asarray(probs, dtype=np.float64).ravel()
    predicted = pr > threshold
    kappa = float(cohen_kappa_score(gt, predicted))
    f1 = float(f1_score(gt, predicted, average="micro"))
    auc = float(roc_auc_score(gt, pr)) if gt.min() != gt.max() else float("nan")
    return {"kappa": kappa, "f1": f1, "auc": auc, "final": (kappa + f1 + auc) / 3.0}
