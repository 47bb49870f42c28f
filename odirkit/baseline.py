"""Baselines that need no images: logistic regression on age and sex.

The paper reports that patient age and sex alone reach a micro F1 of 0.44 on
the eight labels. ``odirkit baseline metadata FILE`` fits scikit-learn's
logistic regression on the experiment's training patients (multinomial for a
single-label task, one per label for a multi-label one), on the same split,
and reports the same metrics as a network, at the same level.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.multiclass import OneVsRestClassifier

from odirkit.config import Experiment
from odirkit.data.prepare import metadata_features, prepare_data
from odirkit.engine.checkpoint import write_json, write_text
from odirkit.engine.evaluate import score
from odirkit.engine.trainer import Evaluation


def fit_metadata_baseline(exp: Experiment, out_dir: Path) -> dict[str, Any]:
    """Fit, evaluate and write ``out_dir``: config, data, metrics and predictions."""
    data = prepare_data(exp, images=False)
    features = metadata_features(data.table, *data.age_stats)
    weights = "balanced" if exp.config.data.balance == "weighted" else None
    train, test = data.train_idx, data.test_idx
    y = data.targets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # a label with one class in training
        if data.task.single_label:
            model = LogisticRegression(max_iter=1000, class_weight=weights)
            model.fit(features[train], y[train].astype(int))
            probs = np.zeros((len(test), data.task.num_classes))
            probs[:, model.classes_] = model.predict_proba(features[test])
            loss = log_loss(y[test].astype(int), probs, labels=list(range(data.task.num_classes)))
        else:
            model = OneVsRestClassifier(LogisticRegression(max_iter=1000, class_weight=weights))
            model.fit(features[train], y[train].astype(int))
            probs = model.predict_proba(features[test])
            loss = float(
                np.mean(
                    [
                        log_loss(y[test][:, i], probs[:, i], labels=[0, 1])
                        for i in range(data.task.num_classes)
                    ]
                )
            )
    evaluation = Evaluation(indices=test, probs=probs, targets=y[test], loss=float(loss))
    scores = score(data, evaluation, level=exp.config.data.level, fusion=exp.config.data.fusion)

    write_json(out_dir / "config.json", {**exp.to_dict(), "baseline": "metadata"})
    write_json(out_dir / "data.json", data.report)
    rows = data.table.iloc[test]
    predictions = pd.DataFrame(
        {
            "patient_id": rows["patient_id"].to_numpy(),
            "eye": rows["eye"].to_numpy(),
            "path": rows["path"].to_numpy(),
        }
    )
    for i, label in enumerate(data.task.labels):
        predictions[f"prob_{label}"] = np.round(probs[:, i], 6)
    write_text(out_dir / "predictions.csv", predictions.to_csv(index=False))
    if scores.patients is not None:
        write_text(
            out_dir / "patient_predictions.csv", scores.patients.round(6).to_csv(index=False)
        )
    result = {
        "experiment": exp.name,
        "variant": "baseline-metadata",
        "baseline": "logistic regression on age and sex",
        "task": data.task.kind,
        "labels": list(data.task.labels),
        "level": exp.config.data.level,
        "final": {**scores.metrics, "loss": float(loss)},
        "data": data.report,
    }
    write_json(out_dir / "metrics.json", result)
    return result
