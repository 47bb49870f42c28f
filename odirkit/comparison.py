"""Comparing variants: is the difference real?

Runs are named ``<variant>[-seed<k>][-fold<i>]``. Runs of one variant over
seeds and folds are summarised by their mean, standard deviation and the
t-interval of the mean. Each variant is tested against the baseline (the first
variant, or ``[compare] baseline``) on the same test patients: for every
(seed, fold) the two runs share, a paired bootstrap of the difference
(:func:`odirkit.bootstrap.paired_bootstrap`); over several such pairs, a paired
t-test of the differences. The verdict says in words whether the difference
is distinguishable from noise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from odirkit import bootstrap
from odirkit.engine.evaluate import scored_from_frame, thresholds_array
from odirkit.learning import LearningCheck
from odirkit.runs import VariantDirectory
from odirkit.runs.records import RunMetrics, Scores

_NAME = re.compile(r"^(?P<base>.+?)(?:-seed(?P<seed>\d+))?(?:-fold(?P<fold>\d+))?$")

METRIC_NAMES = {
    "f1_micro": "micro F1",
    "f1_macro": "macro F1",
    "recall_macro": "macro recall",
    "auc_macro": "macro AUC",
}


PER_CLASS_NAMES = {"f1": "F1", "recall": "recall", "specificity": "specificity", "auc": "AUC"}


def metric_name(metric: str, *, single_label: bool) -> str:
    """How a metric is called: a single-label task's micro F1 is its accuracy; ``f1_D``
    is the F1 of D."""
    if metric == "f1_micro" and single_label:
        return "accuracy"
    if metric in METRIC_NAMES:
        return METRIC_NAMES[metric]
    kind, _, label = metric.rpartition("_")
    if kind in PER_CLASS_NAMES and len(label) == 1:
        return f"{PER_CLASS_NAMES[kind]} of {label}"
    return metric


def metric_value(result: Scores, metric: str) -> float:
    """A metric of a run's result (``metrics.json``'s ``final``): a headline figure, or a
    class's (``f1_D``, ``recall_D``) from ``per_class``; NaN when it has none."""
    value = result.value(metric)
    return float("nan") if value is None else value


def parse_run_name(name: str) -> tuple[str, int | None, int | None]:
    """``"gan-seed1-fold0"`` -> ``("gan", 1, 0)``."""
    match = _NAME.match(name)
    assert match is not None
    seed, fold = match["seed"], match["fold"]
    return match["base"], int(seed) if seed else None, int(fold) if fold else None


@dataclass
class FinishedRun:
    """What a comparison needs of one finished run."""

    name: str
    metrics: RunMetrics  # metrics.json: its test scores are .metrics.final
    directory: Path | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.metrics, RunMetrics):  # a document as read from JSON
            self.metrics = RunMetrics.from_json(self.metrics, self.name)

    @property
    def base(self) -> str:
        """The variant's name without its seed or fold (``default`` of ``default-seed1``)."""
        return parse_run_name(self.name)[0]

    @property
    def pair_key(self) -> tuple[int | None, int | None]:
        """The seed and fold this run shares with its pair in another variant."""
        _, seed, fold = parse_run_name(self.name)
        return seed, fold

    def predictions(self) -> pd.DataFrame | None:
        """The run's test predictions at its level, or None if the files are gone.

        Raises :class:`RunError` naming the file when one is there but damaged."""
        if self.directory is None:
            return None
        vdir = VariantDirectory(self.directory)
        if not (vdir.predictions_file.exists() or vdir.patient_predictions_file.exists()):
            return None
        return vdir.test_predictions()

    @property
    def learning(self) -> LearningCheck | None:
        """Whether the run learned (None for a run made before odirkit checked)."""
        found = self.metrics.learning
        return None if found is None else LearningCheck.from_record(found)

    def scored(self) -> bootstrap.Scored | None:
        """The run's test decisions and scores, for resampling (None without predictions)."""
        frame = self.predictions()
        if frame is None:
            return None
        labels = list(self.metrics.labels)
        thresholds = thresholds_array(labels, self.metrics.final.thresholds)
        single = self.metrics.single_label
        return scored_from_frame(frame, labels=labels, single_label=single, thresholds=thresholds)[
            0
        ]


@dataclass
class PairTest:
    """One (seed, fold) pair of a candidate and the baseline, on their shared test patients."""

    seed: int | None
    fold: int | None
    patients: int
    differences: list[bootstrap.PairedDifference]


@dataclass
class VariantTest:
    """A candidate variant against the baseline."""

    candidate: str
    baseline: str
    pairs: list[PairTest] = field(default_factory=list)
    over_runs: dict[str, dict[str, float]] = field(default_factory=dict)
    note: str = ""
    single_label: bool = False
    not_learned: dict[str, str] = field(default_factory=dict)  # run -> what shows it
    require_learning: bool = True  # no verdict when a run did not learn

    def verdicts(self, confidence: float) -> list[str]:
        """One sentence per metric: the difference and whether it is distinguishable; or,
        when a run of either side did not learn, that finding instead of a verdict."""
        if self.note:
            return [f"{self.candidate} vs {self.baseline}: {self.note}"]
        if self.not_learned and self.require_learning:
            runs = "; ".join(f"{name} {why}" for name, why in self.not_learned.items())
            return [
                f"{self.candidate} vs {self.baseline}: no verdict, {len(self.not_learned)} "
                f"run(s) did not learn ({runs}): a difference with a run that learned nothing "
                "says nothing about the method."
            ]
        caveat = (
            f" (caution: {', '.join(self.not_learned)} did not learn)" if self.not_learned else ""
        )
        return [line[:-1] + caveat + "." if caveat else line for line in self._verdicts(confidence)]

    def _verdicts(self, confidence: float) -> list[str]:
        lines = []
        level = round(confidence * 100)
        for i, diff in enumerate(self.pairs[0].differences if self.pairs else []):
            name = metric_name(diff.metric, single_label=self.single_label)
            if len(self.pairs) == 1:
                pair = self.pairs[0]
                low, high = diff.interval
                word = (
                    "distinguishable from noise"
                    if diff.distinguishable
                    else "not distinguishable from noise"
                )
                lines.append(
                    f"{self.candidate} vs {self.baseline}: {name} {diff.difference:+.3f} "
                    f"({level}% CI {low:+.3f} to {high:+.3f}, {_p(diff.p_value)}, paired "
                    f"bootstrap over {pair.patients} test patients): {word}."
                )
                continue
            summary = self.over_runs.get(diff.metric, {})
            per_pair = [p.differences[i] for p in self.pairs]
            alone = sum(d.distinguishable for d in per_pair)
            p = summary.get("p_value", float("nan"))
            distinguishable = bootstrap.below_level(p, confidence)
            word = (
                "distinguishable from noise"
                if distinguishable
                else "not distinguishable from noise"
            )
            lines.append(
                f"{self.candidate} vs {self.baseline}: {name} {summary.get('mean', np.nan):+.3f} "
                f"on average over {len(self.pairs)} paired runs (paired t-test {_p(p)}; "
                f"{alone} of {len(self.pairs)} runs distinguishable alone): {word}."
            )
        return lines

    def to_dict(self) -> dict[str, Any]:
        """The test as ``comparison.json`` keeps it."""
        return {
            "candidate": self.candidate,
            "baseline": self.baseline,
            "note": self.note,
            "not_learned": self.not_learned,
            "pairs": [
                {
                    "seed": p.seed,
                    "fold": p.fold,
                    "patients": p.patients,
                    "differences": [d.to_dict() for d in p.differences],
                }
                for p in self.pairs
            ],
            "over_runs": self.over_runs,
        }


def _p(value: float) -> str:
    if not np.isfinite(value):
        return "p not defined"
    return "p < 0.001" if value < 0.001 else f"p = {value:.3f}"


def group_summary(
    runs: Sequence[FinishedRun],
    metrics: Sequence[str],
    *,
    resamples: int = bootstrap.RESAMPLES,
    confidence: float = bootstrap.CONFIDENCE,
    seed: int = 0,
) -> pd.DataFrame:
    """Per variant with several runs (seeds, folds): the mean of each metric over them, its
    standard deviation, and an interval that stays within the metric's range.

    The interval is a two-level bootstrap (:func:`odirkit.bootstrap.runs_interval`):
    runs resampled with replacement and, within each, its test patients, so it carries
    both the seed-to-seed and the patient-to-patient variation; a t-interval of three
    values of a bounded measure can run past 1. Runs without prediction files fall back
    to a t-interval on the logit scale (``mean_interval(bounded=True)``).
    """
    rows = []
    bases = list(dict.fromkeys(r.base for r in runs))
    for base in bases:
        members = [r for r in runs if r.base == base]
        if len(members) < 2:
            continue
        seeds = {parse_run_name(r.name)[1] for r in members}
        folds = {parse_run_name(r.name)[2] for r in members}
        unit = "folds" if len(seeds) == 1 else "seeds" if len(folds) == 1 else "runs"
        row: dict[str, Any] = {"variant": base, "runs": len(members), "unit": unit}
        scored = [r.scored() for r in members]
        for metric in metrics:
            values = [metric_value(r.metrics.final, metric) for r in members]
            stats = bootstrap.mean_interval(values, confidence, bounded=True)
            if all(s is not None for s in scored):
                low, high = bootstrap.runs_interval(
                    scored, metric, resamples=resamples, confidence=confidence, seed=seed
                )
                stats.update(low=low, high=high)
            row[metric] = stats["mean"]
            row[f"{metric}_std"] = stats["std"]
            row[f"{metric}_low"] = stats["low"]
            row[f"{metric}_high"] = stats["high"]
        rows.append(row)
    return pd.DataFrame(rows)


def compare_variants(
    runs: Sequence[FinishedRun],
    *,
    baseline: str | None = None,
    metrics: Sequence[str] = ("f1_micro", "auc_macro"),
    resamples: int = bootstrap.RESAMPLES,
    confidence: float = bootstrap.CONFIDENCE,
    seed: int = 0,
    require_learning: bool = True,
) -> list[VariantTest]:
    """Every variant against the baseline, pair by pair, then over the pairs; a pair in
    which a run did not learn withholds the verdict (unless ``require_learning`` is off)."""
    bases = list(dict.fromkeys(r.base for r in runs))
    if len(bases) < 2:
        return []
    reference = baseline if baseline in bases else bases[0]
    by_key = {(r.base, r.pair_key): r for r in runs}
    tests = []
    for candidate in bases:
        if candidate == reference:
            continue
        single = any(r.metrics.single_label for r in runs if r.base == candidate)
        test = VariantTest(
            candidate, reference, single_label=single, require_learning=require_learning
        )
        for (base, key), run in by_key.items():
            if base != candidate or (reference, key) not in by_key:
                continue
            pair = _pair(by_key[(reference, key)], run, key, metrics, resamples, confidence, seed)
            if isinstance(pair, str):
                test.note = pair
                break
            test.pairs.append(pair)
        if not test.pairs and not test.note:
            test.note = "no run of the two shares a seed and fold: nothing to pair"
        for base, key in [(reference, p) for p in _keys(test)] + [
            (candidate, p) for p in _keys(test)
        ]:
            check = by_key[(base, key)].learning
            if check is not None and not check.learned:
                test.not_learned[by_key[(base, key)].name] = check.summary()
        if len(test.pairs) > 1:
            test.over_runs = {
                metric: bootstrap.paired_over_runs(
                    [p.differences[i].difference for p in test.pairs]
                )
                for i, metric in enumerate(metrics)
            }
        tests.append(test)
    return tests


def _keys(test: VariantTest) -> list[tuple[int | None, int | None]]:
    return [(p.seed, p.fold) for p in test.pairs]


def _pair(
    reference: FinishedRun,
    candidate: FinishedRun,
    key: tuple[int | None, int | None],
    metrics: Sequence[str],
    resamples: int,
    confidence: float,
    seed: int,
) -> PairTest | str:
    for field_name in ("labels", "task", "level"):
        if getattr(reference.metrics, field_name) != getattr(candidate.metrics, field_name):
            return f"they differ in {field_name}: no paired test"
    frames = [reference.predictions(), candidate.predictions()]
    if any(f is None for f in frames):
        return "a prediction file is missing: no paired test"
    labels = list(reference.metrics.labels)
    single = reference.metrics.single_label
    sides = []
    for run, frame in zip((reference, candidate), frames, strict=True):
        thresholds = thresholds_array(labels, run.metrics.final.thresholds)
        sides.append(
            scored_from_frame(frame, labels=labels, single_label=single, thresholds=thresholds)
        )
    (a, key_a), (b, key_b) = sides
    shared = sorted(set(key_a) & set(key_b))
    if len(shared) < len(key_a) or len(shared) < len(key_b):
        return "they were tested on different patients: no paired test"
    order_a = key_a.reset_index(drop=True).sort_values().index.to_numpy()
    order_b = key_b.reset_index(drop=True).sort_values().index.to_numpy()
    a, b = _rows(a, order_a), _rows(b, order_b)
    if not np.array_equal(a.outcomes, b.outcomes):
        return "the same patients carry different labels in the two runs: no paired test"
    differences = bootstrap.paired_bootstrap(
        a, b, metrics, resamples=resamples, confidence=confidence, seed=seed
    )
    return PairTest(key[0], key[1], a.clusters_count, differences)


def _rows(scored: bootstrap.Scored, order: np.ndarray) -> bootstrap.Scored:
    return bootstrap.Scored(
        scored.outcomes[order],
        scored.decisions[order],
        scored.scores[order],
        np.unique(scored.clusters[order], return_inverse=True)[1],
        scored.labels,
        scored.challenge,
    )
