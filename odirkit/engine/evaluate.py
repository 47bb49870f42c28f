"""Scoring a model's outputs: per image, or per patient with both eyes fused.

The protocol (``docs/evaluation.md``):

1. During training only the **validation** patients are scored; they choose
   the best checkpoint, stop training early and, afterwards, fit the
   temperature and choose the thresholds.
2. The **test** patients are scored once per kept checkpoint (best and last),
   with the temperature and thresholds chosen on validation, and with
   bootstrap intervals over the test patients.

At ``data.level = "patient"`` — the unit of the ODIR-2019 challenge — each
patient's images are fused (:mod:`odirkit.fusion`) and compared with the
patient's own labels (on ``odir5k`` the workbook's, the challenge's ground
truth). Multi-label tasks at patient level also get the challenge's own score
(``odir_patient``); it is never computed on images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from odirkit import bootstrap
from odirkit.calibration import fit_temperature, probabilities, reliability
from odirkit.data.prepare import DataBundle
from odirkit.engine.trainer import Evaluation
from odirkit.files import write_text
from odirkit.fusion import fuse_eyes
from odirkit.metrics import classification_metrics, indicator, odir_score, predictions
from odirkit.runs import VariantDirectory
from odirkit.runs.records import Scores
from odirkit.thresholds import choose_thresholds, parse_rule


@dataclass
class LevelPredictions:
    """One evaluation at the experiment's level: a row per image, or per patient."""

    keys: pd.DataFrame  # image level: patient_id, eye, path; patient level: ID
    probs: np.ndarray  # [N, C]
    targets: np.ndarray  # class indices [N] or 0/1 [N, C]
    patients: np.ndarray  # [N] the patient of each row (the bootstrap's unit)
    labels: tuple[str, ...]
    single_label: bool
    level: str

    def __len__(self) -> int:
        return len(self.probs)

    @property
    def challenge(self) -> bool:
        """Whether the ODIR-2019 score applies: patients, independent labels."""
        return self.level == "patient" and not self.single_label


def at_level(
    data: DataBundle,
    evaluation: Evaluation,
    *,
    level: str,
    fusion: str,
    temperature: float | None = None,
    softmax: bool | None = None,
) -> LevelPredictions:
    """The evaluation's rows at ``level``; probabilities re-scaled by ``temperature`` first.

    At patient level a single-label task keeps the patients with exactly one of
    the task's labels (a patient with none, or two, has no single answer).
    """
    task = data.task
    probs = evaluation.probs
    if temperature is not None and evaluation.logits is not None:
        probs = probabilities(
            evaluation.logits,
            single_label=task.single_label if softmax is None else softmax,
            temperature=temperature,
        )
    rows = data.table.iloc[evaluation.indices]
    if level != "patient":
        keys = pd.DataFrame(
            {
                "patient_id": rows["patient_id"].to_numpy(),
                "eye": rows["eye"].to_numpy(),
                "path": rows["path"].to_numpy(),
            }
        )
        return LevelPredictions(
            keys,
            np.asarray(probs, dtype=np.float64),
            evaluation.targets,
            keys["patient_id"].to_numpy(),
            task.labels,
            task.single_label,
            "image",
        )
    fused = fuse_eyes(probs, rows["patient_id"].to_numpy(), task.labels, fusion)
    assert data.patients is not None
    truth = data.patients.loc[fused.index, list(task.labels)].to_numpy()
    ids = fused.index.to_numpy()
    values = fused.to_numpy()
    if task.single_label:
        keep = truth.sum(axis=1) == 1
        ids, values, targets = ids[keep], values[keep], truth[keep].argmax(axis=1)
    else:
        targets = truth.astype(np.float32)
    return LevelPredictions(
        pd.DataFrame({"ID": ids}),
        values,
        targets,
        ids,
        task.labels,
        task.single_label,
        "patient",
    )


def metrics_of(preds: LevelPredictions, thresholds: np.ndarray | None = None) -> dict[str, Any]:
    """Every metric of ``preds`` at ``thresholds`` (``None``: 0.5, or argmax).

    ``thresholds`` is one per label, ``[C]``."""
    metrics = classification_metrics(
        preds.targets,
        preds.probs,
        labels=preds.labels,
        single_label=preds.single_label,
        thresholds=thresholds,
    )
    if preds.challenge:  # the challenge's own figures, at its own threshold 0.5
        metrics["odir_patient"] = odir_score(preds.targets, preds.probs)
    return metrics


def scored(preds: LevelPredictions, thresholds: np.ndarray | None) -> bootstrap.Scored:
    """``preds`` as the bootstrap sees them: outcomes, decisions, scores, patients.

    ``thresholds`` is one per label, ``[C]`` (``None``: 0.5, or argmax)."""
    n = len(preds.labels)
    decided = predictions(preds.probs, single_label=preds.single_label, thresholds=thresholds)
    return bootstrap.Scored.build(
        indicator(preds.targets, n, preds.single_label),
        indicator(decided, n, True) if preds.single_label else decided,
        preds.probs,
        labels=preds.labels,
        clusters=preds.patients,
        challenge=preds.challenge,
    )


def thresholds_dict(labels: tuple[str, ...], thresholds: np.ndarray | None) -> dict[str, Any]:
    """``{label: threshold}`` for metrics.json (argmax: ``{}``).

    ``thresholds`` is one per label, ``[C]``, in the order of ``labels``."""
    if thresholds is None:
        return {}
    return {
        label: round(float(t), 6)
        for label, t in zip(labels, thresholds, strict=True)
        if np.isfinite(t)
    }


def thresholds_array(labels: list[str], chosen: dict[str, float]) -> np.ndarray | None:
    """The inverse of :func:`thresholds_dict`.

    ``[C]`` in the order of ``labels``; ``None`` when ``chosen`` is empty (argmax)."""
    if not chosen:
        return None
    return np.array([chosen.get(label, np.nan) for label in labels], dtype=np.float64)


@dataclass
class TestResult:
    """The test patients scored once, for one checkpoint, as the protocol says."""

    metrics: dict[str, Any]
    intervals: dict[str, list[float]]
    thresholds: np.ndarray | None
    temperature: float | None
    validation: dict[str, Any] | None
    test: LevelPredictions
    val: LevelPredictions | None
    image_metrics: dict[str, Any] | None = None

    def summary(
        self, rule: str, confidence: float = bootstrap.CONFIDENCE, *, loss: float | None
    ) -> Scores:
        """``metrics.json``'s ``final``: metrics, intervals, operating points, calibration
        and the test ``loss``."""
        return Scores(
            **self.metrics,
            intervals=self.intervals,
            confidence=confidence,
            threshold_rule=rule,
            thresholds=thresholds_dict(self.test.labels, self.thresholds),
            temperature=self.temperature,
            reliability=reliability_table(self.test),
            loss=loss,
        )


def reliability_table(preds: LevelPredictions) -> dict[str, dict[str, list[float]]]:
    """Per class: the reliability diagram's bins (mean probability, frequency, count)."""
    outcomes = indicator(preds.targets, len(preds.labels), preds.single_label)
    table = {}
    for c, label in enumerate(preds.labels):
        r = reliability(outcomes[:, c], preds.probs[:, c], bins=10)
        used = r.counts > 0
        table[label] = {
            "mean_probability": [round(float(v), 6) for v in r.mean_probability[used]],
            "frequency": [round(float(v), 6) for v in r.frequency[used]],
            "count": [int(v) for v in r.counts[used]],
        }
    return table


def score_test(
    data: DataBundle,
    *,
    val: Evaluation | None,
    test: Evaluation,
    level: str,
    fusion: str,
    threshold: str = "0.5",
    calibrate: bool = False,
    resamples: int = bootstrap.RESAMPLES,
    confidence: float = bootstrap.CONFIDENCE,
    seed: int = 0,
    softmax: bool | None = None,
) -> TestResult:
    """Choose the temperature and thresholds on ``val``; score ``test`` with them, once.

    Nothing about ``test`` but its scores reaches the result: the temperature and
    the thresholds are fixed before the test predictions are looked at.
    """
    task = data.task
    temperature = None
    if calibrate:
        if val is None or val.logits is None:
            raise ValueError("calibration needs the validation images' logits")
        shared = task.single_label if softmax is None else softmax
        temperature = fit_temperature(val.logits, val.targets, single_label=shared)
    val_preds = (
        at_level(data, val, level=level, fusion=fusion, temperature=temperature, softmax=softmax)
        if val is not None and len(val.indices)
        else None
    )
    rule = parse_rule(threshold)
    if val_preds is None:
        if not rule.fixed:
            raise ValueError(f"threshold {rule} needs validation patients")
        empty = np.zeros((0, task.num_classes))
        thresholds = choose_thresholds(rule, empty, empty, single_label=task.single_label)
    else:
        thresholds = choose_thresholds(
            rule, val_preds.targets, val_preds.probs, single_label=task.single_label
        )
    test_preds = at_level(
        data, test, level=level, fusion=fusion, temperature=temperature, softmax=softmax
    )
    metrics = metrics_of(test_preds, thresholds)
    intervals = bootstrap.intervals(
        scored(test_preds, thresholds), resamples=resamples, confidence=confidence, seed=seed
    )
    image_metrics = None
    if level == "patient" and not data.per_patient:  # a both-eyes model has no per-image score
        image_metrics = metrics_of(
            at_level(
                data, test, level="image", fusion=fusion, temperature=temperature, softmax=softmax
            )
        )
    return TestResult(
        metrics=metrics,
        intervals=intervals,
        thresholds=thresholds,
        temperature=temperature,
        validation=metrics_of(val_preds, thresholds) if val_preds is not None else None,
        test=test_preds,
        val=val_preds,
        image_metrics=image_metrics,
    )


# -- prediction files ------------------------------------------------------------------------


def predictions_frame(preds: LevelPredictions, thresholds: np.ndarray | None) -> pd.DataFrame:
    """One row per image (``predictions.csv``) or patient (``patient_predictions.csv``):
    keys, targets, decisions at ``thresholds`` and probabilities.

    Image rows name each probability ``prob_<L>``; patient rows name it ``<L>``,
    as a challenge submission does.

    ``thresholds`` is one per label, ``[C]`` (``None``: 0.5, or argmax)."""
    out = preds.keys.copy()
    labels = list(preds.labels)
    decided = predictions(preds.probs, single_label=preds.single_label, thresholds=thresholds)
    patient = preds.level == "patient"
    if preds.single_label:
        out["target"] = [labels[i] for i in np.asarray(preds.targets).astype(int)]
        out["predicted"] = [labels[i] for i in decided]
    for i, label in enumerate(labels):
        if not preds.single_label:
            out[f"target_{label}"] = np.asarray(preds.targets)[:, i].astype(int)
            out[f"predicted_{label}"] = decided[:, i]
        out[label if patient else f"prob_{label}"] = np.round(preds.probs[:, i], 6)
    return out


def write_prediction_files(
    vdir: VariantDirectory, data: DataBundle, result: TestResult, test: Evaluation
) -> None:
    """predictions.csv (test images), patient_predictions.csv (test patients, at patient
    level) and val_predictions.csv (validation, at the experiment's level)."""
    patient = result.test.level == "patient"
    images = at_level(data, test, level="image", fusion="max", temperature=result.temperature)
    write_text(
        vdir.predictions_file,
        predictions_frame(images, None if patient else result.thresholds).to_csv(index=False),
    )
    if patient:
        write_text(
            vdir.patient_predictions_file,
            predictions_frame(result.test, result.thresholds).to_csv(index=False),
        )
    if result.val is not None:
        write_text(
            vdir.val_predictions_file,
            predictions_frame(result.val, result.thresholds).to_csv(index=False),
        )


def scored_from_frame(
    frame: pd.DataFrame,
    *,
    labels: list[str],
    single_label: bool,
    thresholds: np.ndarray | None,
    challenge: bool = False,
) -> tuple[bootstrap.Scored, pd.Series]:
    """A prediction file read back for a paired comparison: its rows as the bootstrap takes
    them, and the key of each row (patient ID, or patient/eye/path).

    ``thresholds`` is one per label, ``[C]`` (``None``: 0.5, or argmax)."""
    patient = "ID" in frame.columns
    probs = frame[[label if patient else f"prob_{label}" for label in labels]].to_numpy(float)
    if single_label:
        targets = np.array([labels.index(t) for t in frame["target"]])
    else:
        targets = frame[[f"target_{label}" for label in labels]].to_numpy()
    n = len(labels)
    decided = predictions(probs, single_label=single_label, thresholds=thresholds)
    ids = frame["ID" if patient else "patient_id"].astype(str)
    key = ids if patient else ids + "/" + frame["eye"].astype(str) + "/" + frame["path"].astype(str)
    return (
        bootstrap.Scored.build(
            indicator(targets, n, single_label),
            indicator(decided, n, True) if single_label else decided,
            probs,
            labels=labels,
            clusters=ids.to_numpy(),
            challenge=challenge and patient and not single_label,
        ),
        key.reset_index(drop=True),
    )
