"""The answer in the study's terms: per variant the disease's F1 and recall, runs that learned,
the verdict in words; comparison.json read back.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from odirkit.bootstrap import below_level
from odirkit.report.summary import (
    RunSummary,
    _base,
    _finite,
    disease_metrics,
    variants_of,
)
from odirkit.runs import VariantDirectory
from odirkit.runs.names import ReportFiles


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

    single = bool(runs) and all(r.metrics.single_label for r in runs)
    headline = disease_metrics(runs) or [m for m in metrics if m in table.columns][:2]
    headline = headline or [m for m in ("f1_micro", "auc_macro") if m in table.columns]
    variants = variants_of(runs)
    described = _described(runs, variants)
    names = {m: metric_name(m, single_label=single) for m in headline}
    rows, figures = [], {}
    for variant in variants:
        members = [r for r in runs if _base(r.label) == variant]
        record, how = _summary_row(table, variant, members)
        known = [r.metrics for r in members if r.metrics.learning is not None]
        learned = sum(bool(c.learned) for c in known)
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

    augmenters: dict[str, str] = {}
    for variant in variants:
        member = next(r for r in runs if _base(r.label) == variant)
        names: list[str] = []
        empty: list[str] = []
        if member.directory is not None:
            vdir = VariantDirectory(member.directory)
            try:
                names = vdir.config().augmenters
            except Exception:  # a folder without config.json: no description
                names = []
            empty = _added_nothing(vdir, names)
        augmenters[variant] = (
            (" and ".join(names) + " augmentation") if names else "no augmentation"
        )
        if empty:  # an offline augmenter that added no image: the runs are the baseline's
            augmenters[variant] += f", but {' and '.join(empty)} added no training image"
    if len(set(augmenters.values())) < 2:
        return {v: v for v in variants}
    return {v: f"{v} ({augmenters[v]})" for v in variants}


def _added_nothing(vdir: VariantDirectory, names: Sequence[str]) -> list[str]:
    """The offline augmenters of a variant (those with a folder of their own) that added
    no training image (a DCGAN with too few images of every class, say)."""
    try:
        added = vdir.data_report().extra_train_images
    except Exception:  # no data.json: nothing to say
        return []
    return [
        name
        for position, name in enumerate(names)
        if vdir.augment_dir(position, name).is_dir() and not added.get(name)
    ]


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


def read_comparison(out_dir: Path) -> Comparison | None:
    """The comparison :func:`write_report` left in ``out_dir`` (``comparison.csv``, the
    verdicts and the answer of ``comparison.json``), to show it without writing it again."""
    try:
        table = pd.read_csv(out_dir / ReportFiles.TABLE)
        found = json.loads((out_dir / ReportFiles.ANSWER).read_text())
    except (OSError, ValueError):
        return None
    return Comparison(table, [], list(found.get("verdicts", [])), list(found.get("answer", [])))
