"""Sentences and tables the report shows per run: learning, test-time views, screening, left-
out classes, explanation flags, formatted cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pandas as pd

from odirkit.explain import read_flags
from odirkit.learning import LearningCheck
from odirkit.report.summary import (
    RunSummary,
    _finite,
)
from odirkit.runs import VariantDirectory
from odirkit.runs.records import RunMetrics, Scores


def learning_lines(runs: Sequence[RunSummary]) -> list[str]:
    """Per run: learned, or what shows it did not (:mod:`odirkit.learning`); runs made
    before odirkit checked are said to be unchecked."""

    lines = []
    for run in runs:
        found = run.metrics.learning
        if found is None:
            lines.append(f"{run.label}: not checked (a run made before odirkit checked)")
            continue
        check = LearningCheck.from_record(found)
        auc = ""
        if check.val_auc is not None and check.val_auc_interval:
            low, high = check.val_auc_interval
            auc = f", validation AUC {check.val_auc:.3f} [{low:.3f}, {high:.3f}]"
        evidence = f"training loss {check.train_loss:.3f} (chance {check.chance_loss:.3f}){auc}"
        if check.learned:
            lines.append(f"{run.label}: learned ({evidence})")
        else:
            lines.append(f"{run.label}: did not learn: {'; '.join(check.reasons)}")
    return lines


def tta_line(label: str, metrics: RunMetrics) -> str | None:
    """A run's headline scores with and without its test-time views (None without TTA)."""
    plain = metrics.final_without_tta
    if plain is None:
        return None
    scores = metrics.final
    parts = []
    for metric in ("f1_micro", "f1_macro", "auc_macro"):
        if plain.value(metric) is None or scores.value(metric) is None:
            continue
        name = metric
        if metrics.single_label:
            name = metric.replace("f1_micro", "accuracy")

        def shown(values: Scores, metric: str = metric) -> str:
            return f"{values.value(metric):.3f}{_bracket(values.interval(metric))}"

        parts.append(f"{name} {shown(scores)} with TTA, {shown(plain)} without TTA")
    test_time_views = ", ".join(metrics.tta)
    return f"{label} (views: {test_time_views}): " + "; ".join(parts)


def _screening(run: RunSummary) -> str:
    """Screening cares about missed disease: each disease's sensitivity at its operating
    point, with the specificity that point reached on the test patients, beside the rule
    that chose it on validation ("sensitivity S [interval] at specificity T on test
    (target t on validation)")."""
    scores = run.metrics.final
    thresholds = scores.thresholds
    rule = scores.threshold_rule
    kind, _, target = rule.partition(":")
    parts = []
    for label in run.labels:
        if label == "N":
            continue
        figures = scores.label(label)
        recall, specificity = figures.get("recall"), figures.get("specificity")
        if recall is None:
            continue
        text = f"{label}: sensitivity {recall:.3f}{_bracket(scores.interval(f'recall_{label}'))}"
        if specificity is not None:
            spec = _bracket(scores.interval(f"specificity_{label}"))
            text += f" at specificity {specificity:.3f}{spec} on test"
        if target:
            text += f" (target {kind} {float(target):.2f} on validation"
        elif rule[:1] in "0.":
            text += f" (fixed threshold {rule}"
        else:
            text += f" (threshold by {rule} on validation"
        text += f", threshold {thresholds[label]:.3f})" if label in thresholds else ")"
        parts.append(text)
    return "Operating points per disease: " + ("; ".join(parts) if parts else "-") + "."


def _left_out(run: RunSummary) -> list[str]:
    """The classes a macro figure leaves out, being undefined for them (no positive test
    patient for recall, no predicted one for precision, ...), named beside the figure."""
    found = run.metrics.final.macro_left_out
    if not found:
        return []
    parts = [f"{name.replace('_macro', '')}: {', '.join(labels)}" for name, labels in found.items()]
    return [
        "Macro figures average the classes they are defined for; left out here: "
        + "; ".join(parts)
        + ".",
        "",
    ]


def _bracket(interval: Sequence[float] | None) -> str:
    if not interval or any(v is None or not math.isfinite(v) for v in interval):
        return ""
    return f" [{interval[0]:.3f}, {interval[1]:.3f}]"


def _explanation_flags(run: RunSummary) -> list[str]:
    """The run's explainers that failed a sanity check (their localisation is unreliable)."""

    if run.directory is None:
        return []
    flags = read_flags(VariantDirectory(run.directory).explain_dir)
    return [f"**Explanations:** {line}." for line in flags] + ([""] if flags else [])


def _named(table: pd.DataFrame, runs: Sequence[RunSummary]) -> pd.DataFrame:
    """The table as shown: a single-label task's micro F1 is called accuracy."""
    if runs and all(r.metrics.single_label for r in runs):
        renamed = {c: c.replace("f1_micro", "accuracy", 1) for c in table.columns}
        return table.rename(columns=renamed)
    return table


def shown_table(table: pd.DataFrame, runs: Sequence[RunSummary]) -> pd.DataFrame:
    """The comparison table as a reader sees it in report.md and report.html: a
    single-label task's micro F1 called accuracy, ``learned`` as yes or no, the checkpoint
    and its epoch in one column, ``best_epoch`` only where it is not that epoch, counts as
    whole numbers. ``comparison.csv`` keeps every column as computed."""
    frame = _named(table, runs).copy()
    if frame.empty:
        return frame
    if "learned" in frame:
        frame["learned"] = [
            {True: "yes", False: "no"}.get(v, "") if isinstance(v, bool) else ""
            for v in frame["learned"]
        ]
    if {"best_epoch", "checkpoint_epoch"} <= set(frame.columns):
        both = frame[["best_epoch", "checkpoint_epoch"]].dropna()
        if (both["best_epoch"] == both["checkpoint_epoch"]).all():
            frame = frame.drop(columns="best_epoch")
    if {"checkpoint", "checkpoint_epoch"} <= set(frame.columns):
        frame["checkpoint"] = [
            f"{c} (epoch {int(e)})"
            if isinstance(c, str) and _finite(e)
            else ("" if not isinstance(c, str) else c)
            for c, e in zip(frame["checkpoint"], frame["checkpoint_epoch"], strict=True)
        ]
        frame = frame.drop(columns="checkpoint_epoch")
    for column in _COUNTS:
        if column in frame:
            frame[column] = pd.Series(
                [int(v) if _finite(v) else None for v in frame[column]],
                index=frame.index,
                dtype=object,
            )
    return frame


def _markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "(no finished runs)"
    shown = [c for c in table.columns if not c.endswith(("_low", "_high", "_std"))]
    head = "| " + " | ".join(shown) + " |"
    rule = "|" + "|".join("---" for _ in shown) + "|"
    body = []
    for record in table.to_dict("records"):
        cells = []
        for column in shown:
            cell = _cell(record.get(column), column)
            low, high = record.get(f"{column}_low"), record.get(f"{column}_high")
            if cell and _finite(low) and _finite(high):
                cell += f" [{low:.3f}, {high:.3f}]"
            cells.append(cell)
        body.append("| " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *body])


#: columns that count (epochs), shown without decimals
_COUNTS = ("epochs", "checkpoint_epoch", "best_epoch")


def _cell(value: Any, column: str = "") -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.0f}" if column in _COUNTS else f"{value:.3f}"
    return "" if value is None else str(value)
