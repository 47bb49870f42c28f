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


# -- every figure, computed independently ---------------------------------------------------------


def _operating_points(y: np.ndarray, s: np.ndarray) -> tuple[float, float, float]:
    """Sensitivity at specificity 0.90 and 0.95, specificity at sensitivity 0.90, by trying
    every cut ``s >= t`` (the ROC curve's rule) and keeping the best one that qualifies."""
    cuts = np.r_[np.unique(s), np.inf]
    sens = np.array([(s[y == 1] >= t).mean() for t in cuts])
    spec = np.array([(s[y == 0] < t).mean() for t in cuts])
    return (
        float(sens[spec >= 0.90 - 1e-12].max()),
        float(sens[spec >= 0.95 - 1e-12].max()),
        float(spec[sens >= 0.90 - 1e-12].max()),
    )


def _multi_label_case():
    # three labels of unequal prevalence (30, 12 and 4 of 60) and unequal scores, so that
    # micro differs from macro, precision from recall, and each operating point from the others
    rng = np.random.default_rng(7)
    y = np.zeros((60, 3), dtype=np.int64)
    y[:30, 0] = 1
    y[10:22, 1] = 1
    y[[3, 17, 40, 55], 2] = 1
    probs = np.clip(y * rng.uniform(0.3, 0.7, (60, 3)) + rng.uniform(0, 0.5, (60, 3)), 0, 1)
    return y, probs.round(3)


def test_every_multi_label_figure_matches_its_definition():
    from sklearn.metrics import (
        accuracy_score,
        average_precision_score,
        precision_score,
        roc_auc_score,
    )

    from odirkit.calibration import brier_score, expected_calibration_error

    y, probs = _multi_label_case()
    thresholds = np.array([0.5, 0.45, 0.6])
    m = classification_metrics(
        y, probs, labels=["N", "D", "G"], single_label=False, thresholds=thresholds
    )
    pred = (probs > thresholds).astype(int)
    assert pred.tolist() != (probs > 0.5).astype(int).tolist()  # the thresholds matter here
    assert m["f1_micro"] == pytest.approx(f1_score(y, pred, average="micro"))
    assert m["f1_macro"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    precision = precision_score(y, pred, average=None, zero_division=np.nan)
    recall = recall_score(y, pred, average=None)
    specificity = [((1 - y[:, c]) * (1 - pred[:, c])).sum() / (1 - y[:, c]).sum() for c in range(3)]
    assert m["precision_macro"] == pytest.approx(np.mean(precision))
    assert m["recall_macro"] == pytest.approx(np.mean(recall))
    assert m["specificity_macro"] == pytest.approx(np.mean(specificity))
    assert m["auc_macro"] == pytest.approx(roc_auc_score(y, probs, average="macro"))
    assert m["pr_auc_macro"] == pytest.approx(average_precision_score(y, probs, average="macro"))
    briers = [brier_score(y[:, c], probs[:, c]) for c in range(3)]
    eces = [expected_calibration_error(y[:, c], probs[:, c]) for c in range(3)]
    assert m["brier_macro"] == pytest.approx(np.mean(briers))
    assert m["ece_macro"] == pytest.approx(np.mean(eces))
    for c, label in enumerate("NDG"):
        figures = m["per_class"][label]
        assert figures["precision"] == pytest.approx(precision[c])
        assert figures["recall"] == pytest.approx(recall[c])
        assert figures["specificity"] == pytest.approx(specificity[c])
        assert figures["f1"] == pytest.approx(f1_score(y[:, c], pred[:, c]))
        assert figures["auc"] == pytest.approx(roc_auc_score(y[:, c], probs[:, c]))
        assert figures["pr_auc"] == pytest.approx(average_precision_score(y[:, c], probs[:, c]))
        assert figures["brier"] == pytest.approx(briers[c])
        assert figures["ece"] == pytest.approx(eces[c])
        assert figures["support"] == int(y[:, c].sum())
        at90, at95, spec90 = _operating_points(y[:, c], probs[:, c])
        assert figures["sens_at_spec_90"] == pytest.approx(at90), label
        assert figures["sens_at_spec_95"] == pytest.approx(at95), label
        assert figures["spec_at_sens_90"] == pytest.approx(spec90), label
    row = flatten_metrics(m)
    assert row["spec_at_sens_90_G"] == m["per_class"]["G"]["spec_at_sens_90"]
    assert row["precision_macro"] == m["precision_macro"]
    assert flatten_metrics({"odir_patient": {"kappa": 0.3, "note": "x"}, "n": 4}, "val_") == {
        "val_odir_patient_kappa": 0.3,
        "val_n": 4,
    }


def test_a_class_never_decided_has_no_precision_and_a_class_always_decided_no_specificity():
    y = np.array([[1, 0], [0, 0], [1, 0], [0, 0]])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])  # N always, D never
    m = classification_metrics(y, probs, labels=["N", "D"], single_label=False)
    n, d = m["per_class"]["N"], m["per_class"]["D"]
    assert n["specificity"] == 0.0 and n["precision"] == 0.5 and n["recall"] == 1.0
    assert np.isnan(d["precision"]) and np.isnan(d["recall"]) and np.isnan(d["f1"])
    assert d["specificity"] == 1.0
    assert m["precision_macro"] == 0.5 and m["macro_left_out"]["precision_macro"] == ["D"]
    assert m["f1_micro"] == pytest.approx(f1_score(y, (probs > 0.5).astype(int), average="micro"))
    assert np.isnan(d["auc"]) and np.isnan(d["pr_auc"])
    assert np.isnan(d["sens_at_spec_90"]) and np.isnan(d["spec_at_sens_90"])
    # one positive, found: recall and precision are 1 / 1
    one = classification_metrics(
        np.array([[1], [0], [0]]), np.array([[0.9], [0.2], [0.1]]), labels=["G"], single_label=False
    )
    assert one["per_class"]["G"]["recall"] == 1.0 and one["per_class"]["G"]["precision"] == 1.0
    # nothing to find and nothing found: micro F1 is undefined, as its bootstrap interval is
    empty = classification_metrics(
        np.zeros((3, 2)), np.full((3, 2), 0.1), labels=["D", "G"], single_label=False
    )
    assert np.isnan(empty["f1_micro"]) and empty["accuracy"] == 1.0


def test_operating_points_admit_exactly_the_allowed_share_of_errors():
    from odirkit.metrics import sensitivity_at_specificity, specificity_at_sensitivity

    # 10 negatives and 10 positives: one false alarm (specificity exactly 0.9) buys two more
    # true findings; one miss (sensitivity exactly 0.9) spares seven false alarms
    negatives = [0.97, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1]
    positives = [0.99, 0.96, 0.95, 0.85, 0.84, 0.83, 0.75, 0.74, 0.73, 0.05]
    y = np.r_[np.zeros(10), np.ones(10)]
    s = np.r_[negatives, positives]
    assert sensitivity_at_specificity(y, s, 0.9) == pytest.approx(0.3)
    assert sensitivity_at_specificity(y, s, 1.0) == pytest.approx(0.1)
    assert specificity_at_sensitivity(y, s, 0.9) == pytest.approx(0.7)
    assert specificity_at_sensitivity(y, s, 1.0) == pytest.approx(0.0)
    assert _operating_points(y, s)[0] == pytest.approx(0.3)


def test_a_two_class_threshold_decides_the_second_class_above_it_not_at_it():
    from odirkit.metrics import predictions

    probs = np.array([[0.8, 0.2], [0.7, 0.3], [0.6, 0.4], [0.4, 0.6]])
    assert predictions(probs, single_label=True).tolist() == [0, 0, 0, 1]
    assert predictions(probs, single_label=True, thresholds=[0.7, 0.3]).tolist() == [0, 0, 1, 1]
    assert predictions(probs, single_label=True, thresholds=np.array([0.0, 0.1])).dtype == np.int64
    with pytest.raises(ValueError, match="needs exactly two classes"):
        predictions(np.full((2, 3), 1 / 3), single_label=True, thresholds=[0.5, 0.5, 0.5])
    multi = predictions(probs, single_label=False, thresholds=[0.75, 0.3])
    assert multi.tolist() == [[1, 0], [0, 0], [0, 1], [0, 1]] and multi.dtype == np.int64
    assert predictions(probs, single_label=False).tolist() == [[1, 0], [1, 0], [1, 0], [0, 1]]
    targets = np.array([0, 0, 1, 1])
    m = classification_metrics(
        targets, probs, labels=["N", "D"], single_label=True, thresholds=np.array([0.7, 0.3])
    )
    assert m["per_class"]["D"]["recall"] == 1.0 and m["accuracy"] == 1.0
    # a class no image has and none is predicted still counts in the micro F1's labels
    three = classification_metrics(
        np.array([0, 1, 0, 1]),
        np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1]]),
        labels=["N", "D", "G"],
        single_label=True,
    )
    assert three["f1_micro"] == pytest.approx(0.75) and three["accuracy"] == pytest.approx(0.75)
    assert three["per_class"]["G"]["specificity"] == 1.0
    assert np.isnan(three["per_class"]["G"]["recall"])


def test_the_odir_challenge_score_is_the_mean_of_kappa_f1_and_auc_over_flattened_patients():
    from sklearn.metrics import cohen_kappa_score, roc_auc_score

    from odirkit.metrics import odir_score

    y, probs = _multi_label_case()
    score = odir_score(y, probs)
    flat_y, flat_p = y.ravel(), probs.ravel()
    kappa = cohen_kappa_score(flat_y, flat_p > 0.5)
    f1 = f1_score(flat_y, flat_p > 0.5, average="micro")
    auc = roc_auc_score(flat_y, flat_p)
    assert len({round(kappa, 6), round(f1, 6), round(auc, 6)}) == 3
    assert score == pytest.approx(
        {"kappa": kappa, "f1": f1, "auc": auc, "final": (kappa + f1 + auc) / 3}
    )
    assert odir_score(y.astype(float), probs.tolist()) == pytest.approx(score)
    assert odir_score(y, probs, threshold=0.7)["f1"] == pytest.approx(
        f1_score(flat_y, flat_p > 0.7, average="micro")
    )
    none = odir_score(np.zeros((3, 2)), np.full((3, 2), 0.2))
    assert np.isnan(none["auc"]) and np.isnan(none["final"]) and none["f1"] == 1.0
