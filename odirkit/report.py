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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from odirkit.bootstrap import below_level
from odirkit.external_report import markdown_section
from odirkit.figures import colour, error_bars, save_figure
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


def plot_comparison(runs: Sequence[RunSummary], path: Path, title: str, split: str = "val") -> bool:
    """One panel per metric (the disease's F1 and recall, then accuracy, for a two-label
    task; micro F1, macro recall and each class's recall otherwise), one line per variant:
    the mean over its seeds or folds per epoch, with a band from its lowest to its highest
    run (validation curves, or the test curves of runs that asked for them). The legend
    sits below the panels, off the lines. Returns whether anything was drawn."""
    runs = [r for r in runs if f"{split}_f1_micro" in r.history]
    if not runs:
        return False
    labels = _labels_of(runs)
    single = all(r.final.get("task") == "single_label" for r in runs)
    if single and len(labels) == 2:  # the paper's Figures 2 and 3: the disease's F1, recall
        positive = labels[1]
        panels = [
            (f"f1_{positive}", f"F1 of {positive} ({LABEL_NAMES[positive]})"),
            (f"recall_{positive}", f"recall of {positive} ({LABEL_NAMES[positive]})"),
            ("f1_micro", "accuracy"),
        ]
    else:
        panels = [("f1_micro", "micro F1"), ("recall_macro", "macro recall")] + [
            (f"recall_{label}", f"recall of {label} ({LABEL_NAMES[label]})") for label in labels
        ]
    variants = variants_of(runs)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    flat = axes.ravel()
    handles = {}
    for ax, (column, name) in zip(flat, panels, strict=False):
        key = f"{split}_{column}"
        for i, variant in enumerate(variants):
            members = [r for r in runs if _base(r.label) == variant and key in r.history]
            if not members:
                continue
            curves = pd.concat([r.history[["epoch", key]] for r in members])
            stats = curves.groupby("epoch")[key].agg(["mean", "min", "max", "count"])
            many = len(members) > 1
            (line,) = ax.plot(
                stats.index,
                stats["mean"],
                marker=".",
                color=colour(i),
                label=f"{variant} (mean of {len(members)} runs, band: lowest to highest)"
                if many
                else variant,
            )
            if many:
                ax.fill_between(
                    stats.index, stats["min"], stats["max"], color=colour(i), alpha=0.18, lw=0
                )
            handles.setdefault(variant, line)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("recall" if column.startswith("recall_") else name.split(" (")[0])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in flat[len(panels) :]:
        ax.axis("off")
    which = (
        "validation patients"
        if split == "val"
        else "test patients, every epoch (not used for selection)"
    )
    fig.suptitle(f"{title}: {which}")
    fig.tight_layout()
    fig.legend(
        list(handles.values()),
        [h.get_label() for h in handles.values()],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncols=min(3, len(handles)),
        frameon=False,
    )
    save_figure(fig, path)
    return True


def plot_recall_per_class(
    runs: Sequence[RunSummary], path: Path, title: str, table: pd.DataFrame | None = None
) -> None:
    """Test recall per class, one group of bars per class, one bar per variant (the paper's
    Figure 4): a variant run over several seeds or folds is the mean of its runs (each run a
    dot) with the interval of the mean from ``table`` (:func:`comparison_table`'s "mean of"
    rows); a single run is its own value with its bootstrap interval. The legend sits below
    the axes, off the bars."""
    labels = _labels_of(runs)
    variants = variants_of(runs)
    means = {}
    if table is not None and not table.empty:
        for record in table.to_dict("records"):
            name = str(record["run"])
            if " (mean of " in name:
                means[name.split(" (mean of ")[0]] = record
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) * max(1, len(variants)) ** 0.5), 4))
    for i, variant in enumerate(variants):
        members = [r for r in runs if _base(r.label) == variant]
        per_run = [
            [
                (r.final.get("final") or {}).get("per_class", {}).get(x, {}).get("recall")
                for x in labels
            ]
            for r in members
        ]
        values = np.array(
            [[np.nan if v is None else float(v) for v in row] for row in per_run], dtype=float
        )
        positions = np.arange(len(labels)) + (i - (len(variants) - 1) / 2) * width
        summary = means.get(variant)
        if summary is not None:
            shown = [float(summary.get(f"recall_{x}", np.nan)) for x in labels]
            intervals = [
                (summary.get(f"recall_{x}_low"), summary.get(f"recall_{x}_high")) for x in labels
            ]
            name = f"{variant} (mean of {len(members)} runs; dots: each run)"
        else:
            shown = list(values[0])
            found = (members[0].final.get("final") or {}).get("intervals", {})
            intervals = [found.get(f"recall_{x}") for x in labels]
            name = variant
        clean = [i if i and all(_finite(v) for v in i) else None for i in intervals]
        errors = error_bars(clean, [0.0 if not _finite(v) else v for v in shown])
        ax.bar(positions, shown, width=width, label=name, color=colour(i), yerr=errors, capsize=2)
        if len(members) > 1:
            for row in values:
                ax.plot(positions, row, "o", color="black", markersize=2.5, zorder=3)
    ax.set_xticks(
        range(len(labels)),
        [f"{x} ({LABEL_NAMES.get(x, x)})" if len(labels) <= 3 else x for x in labels],
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test recall")
    ax.set_title(f"{title}: test recall per class", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncols=min(2, len(variants)),
        frameon=False,
    )
    save_figure(fig, path)


@dataclass
class Answer:
    """The result in the study's terms, stated before any detail: per variant its headline
    figures (for Normal vs Diabetes the F1 and the recall of D: the mean over its seeds or
    folds with an interval, or a single run's value with its bootstrap interval) and how
    many of its runs learned; per variant tested against the baseline, one sentence giving
    the verdict in words."""

    sentences: list[str]
    table: pd.DataFrame  # variant, learned, then per figure its value, _low and _high


@dataclass
class Comparison:
    """A written comparison: the table, the paired tests, their verdicts in words, and the
    answer they add up to."""

    table: pd.DataFrame
    tests: list[Any]
    verdicts: list[str]
    answer: list[str] = field(default_factory=list)


def answer_of(
    runs: Sequence[RunSummary],
    table: pd.DataFrame,
    tests: Sequence[Any],
    *,
    metrics: Sequence[str],
    confidence: float,
) -> Answer:
    """The answer of a comparison (:class:`Answer`).

    ``table`` is :func:`comparison_table`'s, ``tests`` are
    :func:`odirkit.comparison.compare_variants`' and ``metrics`` the metrics they tested.
    The verdict is on the disease's recall when it was tested (the paper's question: does
    the method find more of the disease?), else on the first metric tested. A verdict is
    "improved" or "lowered" only where the difference is distinguishable from noise
    (the same rule as :meth:`~odirkit.comparison.VariantTest.verdicts`), "did not
    improve" otherwise, and withheld where a run did not learn.
    """
    from odirkit.comparison import metric_name

    single = bool(runs) and all(r.final.get("task") == "single_label" for r in runs)
    headline = disease_metrics(runs) or [m for m in metrics if m in table.columns][:2]
    headline = headline or [m for m in ("f1_micro", "auc_macro") if m in table.columns]
    variants = variants_of(runs)
    described = _described(runs, variants)
    names = {m: metric_name(m, single_label=single) for m in headline}
    rows, figures = [], {}
    for variant in variants:
        members = [r for r in runs if _base(r.label) == variant]
        record, how = _summary_row(table, variant, members)
        checks = [r.final.get("learning") for r in members]
        known = [c for c in checks if c]
        learned = sum(bool(c.get("learned")) for c in known)
        row: dict[str, Any] = {
            "variant": described[variant],
            "learned": f"{learned} of {len(known)} runs" if known else "not checked",
        }
        for metric in dict.fromkeys([*headline, *metrics]):
            value = record.get(metric) if record else None
            low, high = (
                (record.get(f"{metric}_low"), record.get(f"{metric}_high"))
                if record
                else (None, None)
            )
            figures[(variant, metric)] = (value, low, high, how)
            if metric in headline:
                row[names[metric]] = value
                row[f"{names[metric]}_low"], row[f"{names[metric]}_high"] = low, high
        rows.append(row)
    verdict_metric = next(
        (m for m in (*[x for x in headline if x.startswith("recall_")], *metrics) if m in metrics),
        None,
    )
    sentences = []
    for test in tests:
        sentences.append(
            _answer_sentence(test, verdict_metric, figures, described, single, confidence)
        )
    if not tests:
        for variant in variants:
            parts = [
                f"{names[m]} {_figure(figures[(variant, m)])}{_how(figures[(variant, m)])}"
                for m in headline
            ]
            learned = rows[variants.index(variant)]["learned"]
            sentences.append(
                f"On this data, {described[variant]}: {'; '.join(parts)}; learned: {learned}."
            )
    return Answer(sentences, pd.DataFrame(rows))


def _summary_row(
    table: pd.DataFrame, variant: str, members: Sequence[RunSummary]
) -> tuple[dict[str, Any] | None, str]:
    """A variant's row of the comparison table: its "mean of N" row, or its one run's."""
    records = table.to_dict("records") if not table.empty else []
    for record in records:
        name = str(record["run"])
        if name.startswith(f"{variant} (mean of "):
            return record, name[len(variant) + 2 : -1]  # "mean of 3 seeds"
    for record in records:
        if len(members) == 1 and record["run"] == members[0].label:
            return record, "one run"
    return None, ""


def _described(runs: Sequence[RunSummary], variants: Sequence[str]) -> dict[str, str]:
    """Each variant's name, with its augmentation when the variants differ in it
    (``augmented (classic augmentation)``, ``default (no augmentation)``)."""
    from odirkit.engine.rundir import VariantDirectory

    augmenters: dict[str, str] = {}
    for variant in variants:
        member = next(r for r in runs if _base(r.label) == variant)
        names: list[str] = []
        if member.directory is not None:
            try:
                config = VariantDirectory(member.directory).config()
            except Exception:  # a folder without config.json: no description
                config = {}
            names = [str(a.get("name")) for a in config.get("augment") or [] if a.get("name")]
        augmenters[variant] = (
            (" and ".join(names) + " augmentation") if names else "no augmentation"
        )
    if len(set(augmenters.values())) < 2:
        return {v: v for v in variants}
    return {v: f"{v} ({augmenters[v]})" for v in variants}


def _figure(found: tuple[Any, Any, Any, str]) -> str:
    value, low, high, _ = found
    if not _finite(value):
        return "-"
    text = f"{value:.3f}"
    if _finite(low) and _finite(high):
        text += f" [{low:.3f}, {high:.3f}]"
    return text


def _how(*found: tuple[Any, Any, Any, str]) -> str:
    """``", means of 3 seeds each"`` after figures that are means over runs."""
    kinds = [f[3] for f in found]
    if not any(k.startswith("mean of") for k in kinds):
        return ""
    if len(set(kinds)) == 1:
        return f", means of {kinds[0][len('mean of ') :]}" + (" each" if len(kinds) > 1 else "")
    return " (" + " and ".join(kinds) + ")"


def _answer_sentence(
    test: Any,
    metric: str | None,
    figures: dict[tuple[str, str], tuple[Any, Any, Any, str]],
    described: dict[str, str],
    single: bool,
    confidence: float,
) -> str:
    from odirkit.comparison import metric_name

    who, ref = described[test.candidate], described[test.baseline]
    if test.note or metric is None:
        return f"On this data, {who} could not be tested against {ref}: {test.note or 'no metric'}."
    name = metric_name(metric, single_label=single)
    mine, theirs = figures[(test.candidate, metric)], figures[(test.baseline, metric)]
    numbers = f"{_figure(mine)} against {_figure(theirs)} for {ref}{_how(mine, theirs)}"
    if test.not_learned and test.require_learning:
        return (
            f"On this data, no verdict on {who} against {ref}: {len(test.not_learned)} of the "
            f"{2 * len(test.pairs)} runs compared did not learn "
            f"({', '.join(test.not_learned)}), so their difference says nothing about the "
            f"method ({name} {numbers})."
        )
    index = [d.metric for d in test.pairs[0].differences].index(metric) if test.pairs else -1
    if index < 0:
        return f"On this data, {who} against {ref}: {name} {numbers}."
    if len(test.pairs) == 1:
        diff = test.pairs[0].differences[index]
        difference, p, distinguishable = diff.difference, diff.p_value, diff.distinguishable
        how = f"paired bootstrap over {test.pairs[0].patients} test patients"
    else:
        over = test.over_runs.get(metric, {})
        difference, p = over.get("mean", math.nan), over.get("p_value", math.nan)
        distinguishable = below_level(p, confidence)
        how = f"paired t-test over {len(test.pairs)} paired runs"
    # "improved" or "lowered" only where the difference is told apart from noise
    word = ("improved" if difference > 0 else "lowered") if distinguishable else "did not improve"
    pvalue = (
        "p not defined" if not math.isfinite(p) else "p < 0.001" if p < 0.001 else f"p = {p:.3f}"
    )
    noise = "distinguishable" if distinguishable else "not distinguishable"
    caveat = f" Caution: {', '.join(test.not_learned)} did not learn." if test.not_learned else ""
    return (
        f"On this data, {who} {word} the {name}: {numbers}; difference {difference:+.3f} "
        f"({how}, {pvalue}), {noise} from noise.{caveat}"
    )


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

    table = comparison_table(
        runs, resamples=resamples, confidence=confidence, seed=seed, metrics=metrics
    )
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
    answer = answer_of(runs, table, tests, metrics=metrics, confidence=confidence)
    write_text(out_dir / "comparison.csv", table.to_csv(index=False))
    write_json(
        out_dir / "comparison.json",
        {
            "answer": answer.sentences,
            "tests": [t.to_dict() for t in tests],
            "verdicts": verdicts,
            "confidence": confidence,
        },
    )
    drawn_val = drawn_test = False
    if runs:
        drawn_val = plot_comparison(runs, out_dir / "comparison.png", title, "val")
        drawn_test = plot_comparison(runs, out_dir / "comparison_test.png", title, "test")
        plot_recall_per_class(runs, out_dir / "recall_per_class.png", title, table)
    level = round(confidence * 100)
    shown = shown_table(table, runs)
    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    if runs:
        lines += ["## The answer", ""]
        lines += [line for sentence in answer.sentences for line in (sentence, "")]
        lines += [_markdown(answer.table), ""]
        lines += [
            f"Brackets: {level}% intervals (over test patients for one run; over the runs "
            "and their test patients for a mean).",
            "",
        ]
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
        _markdown(shown),
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
        results=shown,
        verdicts=verdicts,
        answer=answer,
        unfinished=unfinished,
        learning=learning,
    )
    return Comparison(table, tests, verdicts, answer.sentences)


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
    """The comparison :func:`write_report` left in ``out_dir`` (``comparison.csv``, the
    verdicts and the answer of ``comparison.json``), to show it without writing it again."""
    try:
        table = pd.read_csv(out_dir / "comparison.csv")
        found = json.loads((out_dir / "comparison.json").read_text())
    except (OSError, ValueError):
        return None
    return Comparison(table, [], list(found.get("verdicts", [])), list(found.get("answer", [])))
