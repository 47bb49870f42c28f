"""Metrics agree with scikit-learn computed directly."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score, recall_score

from odirkit.metrics import classification_metrics, flatten_metrics


def test_single_label_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(3), size=50)
    targets = rng.integers(0, 3, size=50)
    m = classification_metrics(targets, probs, labels=["N", "D", "G"], single_label=True)
    pred = probs.argmax(1)
    assert m["f1_micro"] == pytest.approx(f1_score(targets, pred, average="micro"))
    assert m["f1_macro"] == pytest.approx(f1_score(targets, pred, average="macro"))
    recalls = recall_score(targets, pred, average=None)
    assert [m["per_class"][k]["recall"] for k in "NDG"] == pytest.approx(recalls)
    assert m["per_class"]["N"]["support"] == int((targets == 0).sum())


def test_multi_label_metrics_threshold_at_one_half():
    targets = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probs = np.array([[0.9, 0.2], [0.4, 0.6], [0.7, 0.3], [0.1, 0.51]])
    m = classification_metrics(targets, probs, labels=["N", "D"], single_label=False)
    pred = (probs > 0.5).astype(int)
    assert m["f1_micro"] == pytest.approx(f1_score(targets, pred, average="micro"))
    assert m["per_class"]["D"]["recall"] == pytest.approx(0.5)
    assert m["accuracy"] == pytest.approx(0.5)  # exact label-set match on two of four


def test_auc_is_nan_for_a_class_with_one_outcome_and_rows_flatten():
    targets = np.array([0, 0, 0])
    probs = np.array([[0.8, 0.2], [0.6, 0.4], [0.3, 0.7]])
    m = classification_metrics(targets, probs, labels=["N", "D"], single_label=True)
    assert np.isnan(m["per_class"]["N"]["auc"])
    row = flatten_metrics(m)
    assert row["recall_N"] == pytest.approx(2 / 3)
    assert "per_class" not in row


def test_a_macro_figure_and_its_interval_leave_out_the_same_undefined_classes():
    from odirkit.bootstrap import Scored, intervals

    rng = np.random.default_rng(0)
    n = 60
    y = np.zeros((n, 3), dtype=np.int64)
    y[:, 0] = rng.integers(0, 2, n)
    y[:, 1] = rng.integers(0, 2, n)  # the third label: no positive test patient at all
    probs = np.clip(y * 0.6 + rng.uniform(0, 0.5, (n, 3)), 0, 1)
    probs[:5, 2] = 0.9  # ... and five false alarms for it: its F1 is 0, its recall undefined
    metrics = classification_metrics(y, probs, labels=["D", "G", "A"], single_label=False)
    a = metrics["per_class"]["A"]
    assert np.isnan(a["recall"]) and a["f1"] == 0.0 and np.isnan(a["auc"])
    defined = [metrics["per_class"][x]["recall"] for x in ("D", "G")]
    assert metrics["recall_macro"] == pytest.approx(np.mean(defined))  # not (D + G + 0) / 3
    assert metrics["f1_macro"] == pytest.approx(
        np.mean([metrics["per_class"][x]["f1"] for x in ("D", "G", "A")])
    )  # A's F1 is defined: 0 with false alarms
    assert metrics["macro_left_out"]["recall_macro"] == ["A"]
    assert metrics["macro_left_out"]["auc_macro"] == ["A"]
    assert "f1_macro" not in metrics["macro_left_out"]
    decisions = (probs > 0.5).astype(np.int64)
    found = intervals(
        Scored.build(y, decisions, probs, labels=("D", "G", "A")), resamples=300, seed=2
    )
    for name in ("recall_macro", "f1_macro", "auc_macro", "specificity_macro"):
        low, high = found[name]
        assert low <= metrics[name] <= high, (name, metrics[name], low, high)
