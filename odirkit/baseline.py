"""Baselines that need no images: logistic regression on age and sex.

The paper reports that a logistic regression on patient age and sex alone
reaches "a score of 0.44" on the eight labels, without naming the metric; the
baseline reports every metric, micro F1 first, so the reader can compare.
``odirkit baseline metadata FILE`` fits scikit-learn's logistic regression on
the experiment's training patients (multinomial for a single-label task, one
per label for a multi-label one), on the same split, chooses the operating
point on the validation patients and reports the same metrics as a network,
at the same level, with the same intervals.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.multiclass import OneVsRestClassifier

from odirkit.config import ResolvedVariant
from odirkit.data.prepare import metadata_features, prepare_data
from odirkit.engine.evaluate import score_test, write_prediction_files
from odirkit.engine.trainer import Evaluation
from odirkit.runs import VariantDirectory
from odirkit.runs.records import RunMetrics, Scores, VariantConfig
from odirkit.seeding import Stream, derive_seed


def _logits(probs: np.ndarray, single_label: bool) -> np.ndarray:
    """Logits whose softmax (single-label) or sigmoid (multi-label) gives ``probs`` back."""
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    return np.log(p) if single_label else np.log(p / (1 - p))


def _predict(model: Any, features: np.ndarray, num_classes: int, single_label: bool) -> np.ndarray:
    if single_label:
        probs = np.zeros((len(features), num_classes))
        probs[:, model.classes_] = model.predict_proba(features)
        return probs
    return model.predict_proba(features)


def _loss(y: np.ndarray, probs: np.ndarray, single_label: bool) -> float:
    if len(y) == 0:
        return float("nan")
    if single_label:
        return float(log_loss(y.astype(int), probs, labels=list(range(probs.shape[1]))))
    return float(
        np.mean([log_loss(y[:, i], probs[:, i], labels=[0, 1]) for i in range(probs.shape[1])])
    )


def fit_metadata_baseline(exp: ResolvedVariant, out: VariantDirectory) -> RunMetrics:
    """Fit on the training patients, choose the operating point on the validation ones,
    score the test ones once (as a network's run), and write the folder ``out``."""
    data = prepare_data(exp, images=False)
    features = metadata_features(data.table, *data.age_stats)
    weights = "balanced" if exp.config.data.balance == "weighted" else None
    task = data.task
    y = data.targets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # a label with one class in training
        if task.single_label:
            model: Any = LogisticRegression(max_iter=1000, class_weight=weights)
        else:
            model = OneVsRestClassifier(LogisticRegression(max_iter=1000, class_weight=weights))
        model.fit(features[data.train_idx], y[data.train_idx].astype(int))

    def evaluation(indices: np.ndarray) -> Evaluation:
        probs = _predict(model, features[indices], task.num_classes, task.single_label)
        loss = _loss(y[indices], probs, task.single_label)
        return Evaluation(indices, probs, y[indices], loss, _logits(probs, task.single_label))

    cfg = exp.config
    val = evaluation(data.val_idx) if len(data.val_idx) else None
    test = evaluation(data.test_idx)
    result = score_test(
        data,
        val=val,
        test=test,
        level=cfg.data.level,
        fusion=cfg.data.fusion,
        threshold=cfg.eval.threshold,
        calibrate=cfg.eval.calibrate,
        resamples=cfg.eval.bootstrap,
        confidence=cfg.eval.confidence,
        seed=derive_seed(cfg.seed, Stream.TEST_BOOTSTRAP),
    )
    VariantConfig(**exp.to_dict(), baseline="metadata").write(out.config_file)
    data.report.write(out.data_file)
    write_prediction_files(out, data, result, test)
    metrics = RunMetrics(
        experiment=exp.name,
        variant="baseline-metadata",
        baseline="logistic regression on age and sex",
        task=task.kind,
        labels=list(task.labels),
        level=cfg.data.level,
        seed=cfg.seed,
        checkpoint="last",
        final=result.summary(cfg.eval.threshold, cfg.eval.confidence, loss=test.loss),
        validation=None if result.validation is None else Scores(**result.validation),
        data=data.report,
    )
    if result.image_metrics:
        metrics.final_per_image = Scores(**result.image_metrics)
    metrics.write(out.metrics_file)
    return metrics
