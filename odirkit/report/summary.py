"""The runs a report compares (RunSummary) and the table of their test figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from odirkit.runs.records import BestEpoch, RunMetrics


@dataclass
class RunSummary:
    """What a comparison needs of one run: its name, per-epoch history, ``metrics.json``
    and (for the paired tests) its folder."""

    label: str
    history: pd.DataFrame
    metrics: RunMetrics  # metrics.json: its test scores are .metrics.final
    labels: list[str]
    directory: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, RunMetrics):  # a document as read from JSON
            self.metrics = RunMetrics.from_json(self.metrics, self.label)


#: the columns of a comparison that carry a bootstrap interval
WITH_INTERVALS = ("f1_micro", "f1_macro", "recall_macro", "auc_macro")


def disease_metrics(runs: Sequence[RunSummary]) -> list[str]:
    """The paper's figures for a task of two exclusive labels (Normal vs Diabetes): the
    F1 and the recall of the disease (the second label); none otherwise."""
    tasks = {(r.metrics.task, tuple(r.labels)) for r in runs}
    if len(tasks) != 1:
        return []
    ((task, labels),) = tasks
    if task != "single_label" or len(labels) != 2:
        return []
    return [f"f1_{labels[1]}", f"recall_{labels[1]}"]


def comparison_table(
    runs: Sequence[RunSummary],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metrics: Sequence[str] = (),
) -> pd.DataFrame:
    """One row per run: the test result of its reported checkpoint, with intervals (the
    disease's F1 and recall first for a two-label task, then the other ``metrics`` a
    comparison tests); then, for variants run over several seeds or folds, their mean,
    deviation and interval (within each measure's range:
    :func:`odirkit.comparison.group_summary`)."""
    from odirkit.comparison import FinishedRun, group_summary, metric_value

    shown = list(dict.fromkeys([*disease_metrics(runs), *metrics, *WITH_INTERVALS]))
    grouped = shown + [f"recall_{x}" for x in _labels_of(runs) if f"recall_{x}" not in shown]
    rows = []
    for run in runs:
        scores = run.metrics.final
        best = run.metrics.best or BestEpoch()
        learned = run.metrics.learned
        row: dict[str, Any] = {
            "run": run.label,
            "learned": None if run.metrics.learning is None else bool(learned),
            "epochs": int(run.history["epoch"].max()) if len(run.history) else 0,
            "checkpoint": run.metrics.checkpoint,
            "checkpoint_epoch": run.metrics.checkpoint_epoch,
        }
        for metric in shown:
            row[metric] = metric_value(scores, metric)
            low, high = scores.interval(metric) or (None, None)
            row[f"{metric}_low"], row[f"{metric}_high"] = low, high
        if scores.odir_patient is not None:
            row["odir_patient_final"] = scores.odir_patient["final"]
            low, high = scores.interval("odir_patient_final") or (None, None)
            row["odir_patient_final_low"], row["odir_patient_final_high"] = low, high
        row["best_epoch"] = best.epoch
        row[f"best_val_{best.monitor}"] = best.value
        for label in run.labels:
            row[f"recall_{label}"] = scores.label(label).get("recall")
        rows.append(row)
    table = pd.DataFrame(rows)
    groups = group_summary(
        [FinishedRun(r.label, r.metrics, r.directory) for r in runs],
        grouped,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    if groups.empty:
        return table
    extra = []
    for group in groups.to_dict("records"):
        row = {"run": f"{group['variant']} (mean of {group['runs']} {group['unit']})"}
        for metric in grouped:
            row[metric] = group[metric]
            row[f"{metric}_std"] = group[f"{metric}_std"]
            row[f"{metric}_low"] = group[f"{metric}_low"]
            row[f"{metric}_high"] = group[f"{metric}_high"]
        extra.append(row)
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True)


def _labels_of(runs: Sequence[RunSummary]) -> list[str]:
    labels: list[str] = []
    for run in runs:
        labels += [label for label in run.labels if label not in labels]
    return labels


def variants_of(runs: Sequence[RunSummary]) -> list[str]:
    """The variants of ``runs`` in order of first appearance (``"gan-seed1"`` -> ``"gan"``):
    one colour each, in every figure and table."""
    from odirkit.comparison import parse_run_name

    return list(dict.fromkeys(parse_run_name(r.label)[0] for r in runs))


def _base(label: str) -> str:
    from odirkit.comparison import parse_run_name

    return parse_run_name(label)[0]


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
