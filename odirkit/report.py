"""Comparison reports: variants (or finished runs) side by side, tested against a baseline.

``report.md`` opens with the verdicts (is each difference real?), then the
test results with their intervals, the external validations (internal against
external per metric: :mod:`odirkit.external_report`), the validation curves
per epoch (and the test curves where a run asked for them), and each run's
own figures (:mod:`odirkit.figures`). ``comparison.csv`` and ``comparison.json`` hold the
numbers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd

from odirkit.external_report import markdown_section
from odirkit.figures import colour, error_bars, save_figure, style_axes
from odirkit.files import write_json, write_text
from odirkit.labels import LABEL_NAMES
from odirkit.learning import LOSS_MARGIN


@dataclass
class RunSummary:
    """What a comparison needs of one run: its name, per-epoch history, final metrics and
    (for the paired tests) its folder."""

    label: str
    history: pd.DataFrame
    final: dict[str, Any]
    labels: list[str]
    directory: Path | None = None


#: the columns of a comparison that carry a bootstrap interval
WITH_INTERVALS = ("f1_micro", "f1_macro", "recall_macro", "auc_macro")


def disease_metrics(runs: Sequence[RunSummary]) -> list[str]:
    """The paper's figures for a task of two exclusive labels (Normal vs Diabetes): the
    F1 and the recall of the disease (the second label); none otherwise."""
    tasks = {(r.final.get("task"), tuple(r.labels)) for r in runs}
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
) -> pd.DataFrame:
    """One row per run: the test result of its reported checkpoint, with intervals (the
    disease's F1 and recall first for a two-label task); then, for variants run over
    several seeds or folds, their mean, deviation and interval (within each measure's
    range: :func:`odirkit.comparison.group_summary`)."""
    from odirkit.comparison import FinishedRun, group_summary, metric_value

    shown = [*disease_metrics(runs), *WITH_INTERVALS]
    rows = []
    for run in runs:
        final = run.final.get("final") or {}
        intervals = final.get("intervals") or {}
        best = run.final.get("best") or {}
        learning = run.final.get("learning")
        row: dict[str, Any] = {
            "run": run.label,
            "learned": None if learning is None else bool(learning.get("learned")),
            "epochs": int(run.history["epoch"].max()) if len(run.history) else 0,
            "checkpoint": run.final.get("checkpoint", "last"),
            "checkpoint_epoch": run.final.get("checkpoint_epoch"),
        }
        for metric in shown:
            row[metric] = metric_value(final, metric)
            low, high = intervals.get(metric) or (None, None)
            row[f"{metric}_low"], row[f"{metric}_high"] = low, high
        if "odir_patient" in final:
            row["odir_patient_final"] = final["odir_patient"]["final"]
            low, high = intervals.get("odir_patient_final") or (None, None)
            row["odir_patient_final_low"], row["odir_patient_final_high"] = low, high
        row["best_epoch"] = best.get("epoch")
        row[f"best_val_{best.get('monitor', 'f1_micro')}"] = best.get("value")
        for label in run.labels:
            row[f"recall_{label}"] = final.get("per_class", {}).get(label, {}).get("recall")
        rows.append(row)
    table = pd.DataFrame(rows)
    groups = group_summary(
        [FinishedRun(r.label, r.final, r.directory) for r in runs],
        shown,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    if groups.empty:
        return table
    extra = []
    for group in groups.to_dict("records"):
        row = {"run": f"{group['variant']} (mean of {group['runs']} {group['unit']})"}
        for metric in shown:
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


def plot_comparison(runs: Sequence[RunSummary], path: Path, title: str, split: str = "val") -> bool:
    """F1 and recall per epoch for every run, side by side (validation curves, or the test
    curves of runs that asked for them). Returns whether anything was drawn."""
    runs = [r for r in runs if f"{split}_f1_micro" in r.history]
    if not runs:
        return False
    labels = _labels_of(runs)
    single = all(r.final.get("task") == "single_label" for r in runs)
    if single and len(labels) == 2:  # the paper's Figures 2 and 3: the disease's F1, recall
        positive = labels[1]
        panels = [
            (f"f1_{positive}", f"F1 {positive} ({LABEL_NAMES[positive]})"),
            (f"recall_{positive}", f"recall {positive} ({LABEL_NAMES[positive]})"),
            ("f1_micro", "accuracy"),
        ]
    else:
        panels = [("f1_micro", "micro F1"), ("recall_macro", "macro recall")] + [
            (f"recall_{label}", f"recall {label} ({LABEL_NAMES[label]})") for label in labels
        ]
    columns = len(panels)
    ncols = min(4, columns)
    nrows = math.ceil(columns / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    flat = axes.ravel()
    for ax, (column, name) in zip(flat, panels, strict=False):
        for i, run in enumerate(runs):
            if f"{split}_{column}" in run.history:
                ax.plot(
                    run.history["epoch"],
                    run.history[f"{split}_{column}"],
                    marker=".",
                    label=run.label,
                    color=colour(i),
                )
        style_axes(ax, name, "recall" if column.startswith("recall_") else name)
    for ax in flat[len(panels) :]:
        ax.axis("off")
    which = (
        "validation patients"
        if split == "val"
        else "test patients, every epoch (not used for selection)"
    )
    fig.suptitle(f"{title}: {which}")
    fig.tight_layout()
    save_figure(fig, path)
    return True


def plot_recall_per_class(runs: Sequence[RunSummary], path: Path, title: str) -> None:
    """Test recall per class, one group of bars per class, one bar per run, with bootstrap
    intervals (the paper's Figure 4)."""
    labels = _labels_of(runs)
    width = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels) * max(1, len(runs)) ** 0.5), 4))
    for i, run in enumerate(runs):
        final = run.final.get("final", {})
        per_class = final.get("per_class", {})
        intervals = final.get("intervals", {})
        values = [per_class.get(label, {}).get("recall", float("nan")) for label in labels]
        errors = error_bars([intervals.get(f"recall_{label}") for label in labels], values)
        positions = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(
            positions,
            values,
            width=width,
            label=run.label,
            color=colour(i),
            yerr=errors,
            capsize=2,
        )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test recall")
    ax.set_title(
        f"{title}: test recall per class, each run's reported checkpoint (best on validation "
        "unless eval.checkpoint = last), with bootstrap intervals",
        fontsize=9,
    )
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


@dataclass
class Comparison:
    """A written comparison: the table, the paired tests and their verdicts in words."""

    table: pd.DataFrame
    tests: list[Any]
    verdicts: list[str]


def write_report(
    out_dir: Path,
    *,
    title: str,
    description: str,
    runs: Sequence[RunSummary],
    figures: dict[str, str],
    baseline: str | None = None,
    metrics: Sequence[str] = ("f1_micro", "auc_macro"),
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    unfinished: Sequence[str] = (),
    require_learning: bool = True,
) -> Comparison:
    """comparison.csv, comparison.json, the figures, report.md and report.html in
    ``out_dir``."""
    from odirkit.comparison import FinishedRun, compare_variants

    table = comparison_table(runs, resamples=resamples, confidence=confidence, seed=seed)
    tests = compare_variants(
        [FinishedRun(r.label, r.final, r.directory) for r in runs],
        baseline=baseline,
        metrics=metrics,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        require_learning=require_learning,
    )
    verdicts = [line for test in tests for line in test.verdicts(confidence)]
    write_text(out_dir / "comparison.csv", table.to_csv(index=False))
    write_json(
        out_dir / "comparison.json",
        {"tests": [t.to_dict() for t in tests], "verdicts": verdicts, "confidence": confidence},
    )
    drawn_val = drawn_test = False
    if runs:
        drawn_val = plot_comparison(runs, out_dir / "comparison.png", title, "val")
        drawn_test = plot_comparison(runs, out_dir / "comparison_test.png", title, "test")
        plot_recall_per_class(runs, out_dir / "recall_per_class.png", title)
    level = round(confidence * 100)
    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    learning = learning_lines(runs)
    if learning:
        lines += ["## Did each run learn?", "", *[f"- {line}" for line in learning], ""]
        lines += [
            "A run learned when its training loss ended at least "
            f"{LOSS_MARGIN:.0%} below chance (the loss of the best constant answer), the "
            "interval of its validation AUC lies above 0.5, and it does not give every "
            "test patient the same answer; no verdict is drawn from a run that did not.",
            "",
        ]
    lines += ["## Is the difference real?", ""]
    lines += [f"- {v}" for v in verdicts] or ["(one variant: nothing to compare)"]
    lines += [
        "",
        "## Test results",
        "",
        "Each run's test patients, scored once, for the checkpoint chosen on the validation "
        f"patients; [low, high] is the {level}% bootstrap interval over test patients. Rows "
        "'mean of N runs' give the mean over seeds or folds, with an interval from resampling "
        "the runs and their test patients (it stays within the measure's range).",
        "",
        _markdown(_named(table, runs)),
        "",
    ]
    lines += markdown_section(out_dir, runs)
    with_tta = [line for run in runs if (line := tta_line(run.label, run.final))]
    if with_tta:
        lines += ["## With and without test-time augmentation", ""]
        lines += [f"- {line}" for line in with_tta] + [""]
    if drawn_val:
        lines += [
            "## F1 and recall per epoch (validation)",
            "",
            "![comparison](comparison.png)",
            "",
        ]
    if drawn_test:
        lines += [
            "## F1 and recall per epoch on the test patients",
            "",
            "Drawn because the experiment asked for them (`train.test_every_epoch`); no "
            "choice was made on them.",
            "",
            "![test per epoch](comparison_test.png)",
            "",
        ]
    if runs:
        lines += ["## Recall per class (test)", "", "![recall per class](recall_per_class.png)", ""]
    for run in runs:
        link = figures.get(run.label)
        if link:
            lines += [
                f"## {run.label}",
                "",
                f"![F1 per epoch]({link}/f1_per_epoch.png) "
                f"![recall per class]({link}/recall_per_class.png) "
                f"![reliability]({link}/reliability.png)",
                "",
                _screening(run),
                "",
                *_left_out(run),
                *_explanation_flags(run),
            ]
    if unfinished:
        lines += ["## Not finished", "", *[f"- {u}" for u in unfinished], ""]
    write_text(out_dir / "report.md", "\n".join(lines))
    from odirkit.html_report import write_html

    write_html(
        out_dir,
        title=title,
        description=description,
        runs=runs,
        results=_named(table, runs),
        verdicts=verdicts,
        unfinished=unfinished,
        learning=learning,
    )
    return Comparison(table, tests, verdicts)


def learning_lines(runs: Sequence[RunSummary]) -> list[str]:
    """Per run: learned, or what shows it did not (:mod:`odirkit.learning`); runs made
    before odirkit checked are said to be unchecked."""
    from odirkit.learning import LearningCheck

    lines = []
    for run in runs:
        found = run.final.get("learning")
        if not found:
            lines.append(f"{run.label}: not checked (a run made before odirkit checked)")
            continue
        check = LearningCheck.from_dict(found)
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


def tta_line(label: str, final: dict[str, Any]) -> str | None:
    """A run's headline scores with and without its test-time views (None without TTA)."""
    plain = final.get("final_without_tta")
    if not plain:
        return None
    scores = final.get("final") or {}
    parts = []
    for metric in ("f1_micro", "f1_macro", "auc_macro"):
        if metric not in plain or metric not in scores:
            continue
        name = metric
        if final.get("task") == "single_label":
            name = metric.replace("f1_micro", "accuracy")

        def shown(values: dict[str, Any], metric: str = metric) -> str:
            low, high = (values.get("intervals") or {}).get(metric) or (None, None)
            interval = f" [{low:.3f}, {high:.3f}]" if low is not None else ""
            return f"{values[metric]:.3f}{interval}"

        parts.append(f"{name} {shown(scores)} with TTA, {shown(plain)} without TTA")
    views = ", ".join(final.get("tta") or [])
    return f"{label} (views: {views}): " + "; ".join(parts)


def _screening(run: RunSummary) -> str:
    """Screening cares about missed disease: each disease's sensitivity at its operating
    point, with the specificity that point reached on the test patients, beside the rule
    that chose it on validation ("sensitivity S [interval] at specificity T on test
    (target t on validation)")."""
    final = run.final.get("final", {})
    thresholds = final.get("thresholds") or {}
    intervals = final.get("intervals", {})
    rule = str(final.get("threshold_rule", "0.5"))
    kind, _, target = rule.partition(":")
    parts = []
    for label in run.labels:
        if label == "N":
            continue
        figures = final.get("per_class", {}).get(label, {})
        recall, specificity = figures.get("recall"), figures.get("specificity")
        if recall is None:
            continue
        text = f"{label}: sensitivity {recall:.3f}{_bracket(intervals.get(f'recall_{label}'))}"
        if specificity is not None:
            spec = _bracket(intervals.get(f"specificity_{label}"))
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
    found = (run.final.get("final") or {}).get("macro_left_out") or {}
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
    from odirkit.engine.rundir import VariantDirectory
    from odirkit.explain import read_flags

    if run.directory is None:
        return []
    flags = read_flags(VariantDirectory(run.directory).explain_dir)
    return [f"**Explanations:** {line}." for line in flags] + ([""] if flags else [])


def _named(table: pd.DataFrame, runs: Sequence[RunSummary]) -> pd.DataFrame:
    """The table as shown: a single-label task's micro F1 is called accuracy."""
    if runs and all(r.final.get("task") == "single_label" for r in runs):
        renamed = {c: c.replace("f1_micro", "accuracy", 1) for c in table.columns}
        return table.rename(columns=renamed)
    return table


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


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


#: columns that count (epochs), shown without decimals
_COUNTS = ("epochs", "checkpoint_epoch", "best_epoch")


def _cell(value: Any, column: str = "") -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.0f}" if column in _COUNTS else f"{value:.3f}"
    return "" if value is None else str(value)


def read_comparison(out_dir: Path) -> Comparison | None:
    """The comparison :func:`write_report` left in ``out_dir`` (``comparison.csv`` and the
    verdicts of ``comparison.json``), to show it without writing it again."""
    try:
        table = pd.read_csv(out_dir / "comparison.csv")
        verdicts = json.loads((out_dir / "comparison.json").read_text()).get("verdicts", [])
    except (OSError, ValueError):
        return None
    return Comparison(table, [], list(verdicts))
