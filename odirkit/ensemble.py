"""Ensembles: the average of finished runs' probabilities on their shared test images.

Thiry et al. (2021) name ensembling their models as the next step. The runs
must have learned the same labels the same way; their held-out images are
matched by patient, eye and file (runs with the same seed hold out the same
patients, whatever the model). At patient level the runs' fused per-patient
probabilities are averaged instead. The operating point follows the first
run's rule, chosen on the members' averaged validation predictions; the test
samples get bootstrap intervals like a run's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from odirkit import bootstrap
from odirkit.engine.evaluate import scored_from_frame, thresholds_dict
from odirkit.errors import RunError
from odirkit.files import write_text
from odirkit.metrics import classification_metrics, odir_score, predictions
from odirkit.runs import VariantDirectory
from odirkit.runs.records import EnsembleMetrics, RunMetrics, Scores
from odirkit.thresholds import choose_thresholds, parse_rule


@dataclass
class Member:
    """One run of an ensemble: its folder, ``metrics.json``, test and validation predictions."""

    directory: VariantDirectory
    metrics: RunMetrics
    predictions: pd.DataFrame
    validation: pd.DataFrame | None


def _member(vdir: VariantDirectory) -> Member:
    return Member(vdir, vdir.metrics(), vdir.test_predictions(), vdir.val_predictions())


def _average(frames: list[pd.DataFrame], keys: list[str], probs: list[str]) -> pd.DataFrame:
    """The rows every frame holds (by ``keys``), with the frames' mean probabilities."""
    shared = frames[0][keys]
    for frame in frames[1:]:
        shared = shared.merge(frame[keys], on=keys)
    stacked = [shared.merge(f, on=keys, how="left")[probs].to_numpy(float) for f in frames]
    out = shared.merge(frames[0].drop(columns=probs), on=keys, how="left")
    for i, column in enumerate(probs):
        out[column] = np.mean(stacked, axis=0)[:, i]
    return out


def _targets(frame: pd.DataFrame, labels: list[str], single: bool) -> np.ndarray:
    if single:
        return np.array([labels.index(t) for t in frame["target"]])
    return frame[[f"target_{label}" for label in labels]].to_numpy()


def ensemble(directories: list[VariantDirectory], out_dir: Path) -> EnsembleMetrics:
    """Average the members' probabilities; choose the operating point on their averaged
    validation predictions; score the shared test samples with intervals; write and return.

    Raises :class:`RunError` for fewer than two runs, runs that differ in labels, task or
    level, or runs that share no held-out image."""
    members = [_member(d) for d in directories]
    if len(members) < 2:
        raise RunError("an ensemble needs at least two finished runs")
    first = members[0].metrics
    for member in members[1:]:
        for key in ("labels", "task", "level"):
            if getattr(member.metrics, key) != getattr(first, key):
                raise RunError(
                    f"{member.directory} has {key} {getattr(member.metrics, key)!r} but "
                    f"{members[0].directory} has {getattr(first, key)!r}: runs to ensemble "
                    "must agree"
                )
    labels = list(first.labels)
    single = first.single_label
    patient = first.level == "patient"
    keys = ["ID"] if patient else ["patient_id", "eye", "path"]
    probs = [label if patient else f"prob_{label}" for label in labels]
    test = _average([m.predictions for m in members], keys, probs)
    if test.empty:
        raise RunError("the runs share no held-out image: were they split with the same seed?")
    rule = parse_rule(first.final.threshold_rule)
    validations = [m.validation for m in members]
    val = None
    if all(v is not None for v in validations):
        val = _average(validations, keys, probs)  # type: ignore[arg-type]
    if val is not None and not val.empty:
        thresholds = choose_thresholds(
            rule, _targets(val, labels, single), val[probs].to_numpy(float), single_label=single
        )
    else:
        if not rule.fixed:
            rule = parse_rule("0.5")  # no shared validation: the challenge's default
        empty = np.zeros((0, len(labels)))
        thresholds = choose_thresholds(rule, empty, empty, single_label=single)
    targets = _targets(test, labels, single)
    mean = test[probs].to_numpy(float)
    metrics = classification_metrics(
        targets, mean, labels=labels, single_label=single, thresholds=thresholds
    )
    if patient and not single:  # the challenge's score, on patients only
        metrics["odir_patient"] = odir_score(targets, mean)
    scored, _ = scored_from_frame(
        test, labels=labels, single_label=single, thresholds=thresholds, challenge=True
    )
    intervals = bootstrap.intervals(scored)
    decided = predictions(mean, single_label=single, thresholds=thresholds)
    out = test.copy()
    if single:
        out["predicted"] = [labels[i] for i in decided]
    else:
        for i, label in enumerate(labels):
            out[f"predicted_{label}"] = decided[:, i]
    out[probs] = out[probs].round(6)
    written = VariantDirectory(out_dir)
    target = written.patient_predictions_file if patient else written.predictions_file
    write_text(target, out.to_csv(index=False))
    result = EnsembleMetrics(
        ensemble_of=[str(m.directory) for m in members],
        members_f1_micro={str(m.directory): m.metrics.final.f1_micro for m in members},
        members_tta={str(m.directory): m.metrics.tta for m in members},
        shared_test_samples=len(test),
        labels=labels,
        task=first.task,
        level=first.level,
        checkpoint="last",
        final=Scores.from_json(
            {
                **metrics,
                "intervals": intervals,
                "threshold_rule": str(rule),
                "thresholds": thresholds_dict(tuple(labels), thresholds),
            },
            written.metrics_file,
        ),
    )
    result.write(written.metrics_file)
    return result
