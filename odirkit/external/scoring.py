"""Internal against external: the shared labels scored on both sides, intervals of the
difference, the verdict, the figure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from odirkit import bootstrap
from odirkit.engine.evaluate import (
    LevelPredictions,
    metrics_of,
)
from odirkit.figures import colour, error_bars, save_figure
from odirkit.runs import ExternalDirectory
from odirkit.runs.records import ExternalMetrics

#: the metrics compared between the internal test and the external collection
COMPARED = ("f1_micro", "f1_macro", "recall_macro", "specificity_macro", "auc_macro")

#: compared metrics that move with how common each label is (accuracy and F1 through
#: precision), unlike recall, specificity and AUC
CASE_MIX_DEPENDENT = ("f1_micro", "f1_macro")

#: a label's share that differs by more than this between the two sets is a different case mix
CASE_MIX_TOLERANCE = 0.10


def case_mix(internal: np.ndarray, external: np.ndarray, shared: tuple[str, ...]) -> str:
    """The shared labels whose share of rows differs between the two sets by more than
    :data:`CASE_MIX_TOLERANCE`, in words (``""`` when none): ``outcomes`` are 0/1 ``[N, C]``
    over the ``shared`` labels, in that order."""
    parts = []
    for c, label in enumerate(shared):
        a = float(internal[:, c].mean()) if len(internal) else float("nan")
        b = float(external[:, c].mean()) if len(external) else float("nan")
        if math.isfinite(a) and math.isfinite(b) and abs(a - b) > CASE_MIX_TOLERANCE:
            parts.append(f"{label} {a:.0%} internal, {b:.0%} external")
    return "; ".join(parts)


#: seed streams of the run's seed (3 is the run's own test intervals, see engine.loop)


@dataclass
class ExternalResult:
    """A written external validation: its folder, ``metrics.json`` and the comparison."""

    directory: ExternalDirectory
    summary: ExternalMetrics
    comparison: pd.DataFrame


@dataclass(frozen=True)
class SharedScoring:
    """How a run's predictions are scored on the labels a collection grades (``shared``).

    A multi-label run's labels are independent: the shared columns are scored alone. A
    single-label run decides among all its classes; its accuracy (micro F1) counts every
    row, the per-class and macro figures cover the shared classes.
    """

    labels: tuple[str, ...]  # the run's
    shared: tuple[str, ...]
    single_label: bool

    @property
    def columns(self) -> list[int]:
        """The run's output columns of the labels the collection grades."""
        return [self.labels.index(label) for label in self.shared]

    @property
    def partial(self) -> bool:
        """Whether the collection grades fewer labels than the run learnt."""
        return tuple(self.shared) != tuple(self.labels)

    def predictions(self, preds: LevelPredictions) -> LevelPredictions:
        """A multi-label run's predictions on the shared columns (a single-label run's
        stay whole: its decisions need every class)."""
        if self.single_label or not self.partial:
            return preds
        cols = self.columns
        return LevelPredictions(
            preds.keys,
            preds.probs[:, cols],
            np.asarray(preds.targets)[:, cols],
            preds.patients,
            self.shared,
            False,
            preds.level,
        )

    def thresholds(self, thresholds: np.ndarray | None) -> np.ndarray | None:
        """The run's thresholds restricted to the shared labels.

        ``[C]`` in, ``[C_shared]`` out (as given for a single-label task, or when every label
        is shared)."""
        if thresholds is None or self.single_label or not self.partial:
            return thresholds
        return np.asarray(thresholds)[self.columns]

    def metrics(self, preds: LevelPredictions, thresholds: np.ndarray | None) -> dict[str, Any]:
        """Every metric of :func:`~odirkit.engine.evaluate.metrics_of` on the shared labels.

        ``thresholds`` the run's, one per label ``[C]``."""
        metrics = metrics_of(self.predictions(preds), self.thresholds(thresholds))
        if not (self.single_label and self.partial):
            return metrics
        per_class = {label: metrics["per_class"][label] for label in self.shared}

        def mean(name: str) -> float:  # as metrics.classification_metrics averages
            return float(np.mean([per_class[label][name] for label in self.shared]))

        def nanmean(name: str) -> float:
            values = np.array([per_class[label][name] for label in self.shared], dtype=float)
            return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

        return {
            **metrics,
            "f1_macro": mean("f1"),
            "recall_macro": mean("recall"),
            "precision_macro": mean("precision"),
            "specificity_macro": nanmean("specificity"),
            "auc_macro": nanmean("auc"),
            "pr_auc_macro": nanmean("pr_auc"),
            "brier_macro": nanmean("brier"),
            "ece_macro": nanmean("ece"),
            "per_class": per_class,
        }

    def restrict(self, full: bootstrap.Scored) -> bootstrap.Scored:
        """The bootstrap's view of the shared columns."""
        cols = self.columns
        return bootstrap.Scored(
            full.outcomes[:, cols],
            full.decisions[:, cols],
            full.scores[:, cols],
            full.clusters,
            self.shared,
            full.challenge and not self.single_label,
        )

    def resampled(self, full: bootstrap.Scored, weights: np.ndarray) -> dict[str, np.ndarray]:
        """Every bootstrap metric under ``weights`` ``[B, N]`` on the shared labels."""
        values = bootstrap.weighted_metrics(self.restrict(full), weights)
        if self.single_label and self.partial:  # accuracy over all the run's classes
            values["f1_micro"] = bootstrap.weighted_metrics(full, weights)["f1_micro"]
        return values

    def intervals(
        self, full: bootstrap.Scored, *, resamples: int, confidence: float, seed: int
    ) -> dict[str, list[float]]:
        """Percentile intervals of every bootstrap metric (as :func:`bootstrap.intervals`)."""
        if resamples <= 0 or full.clusters_count == 0:
            return {}
        weights = bootstrap.row_weights(full, resamples, seed)
        values = self.resampled(full, weights)
        return {name: bootstrap.percentile_interval(v, confidence) for name, v in values.items()}


def compare_with_internal(
    internal: bootstrap.Scored,
    external: bootstrap.Scored,
    scoring: SharedScoring,
    *,
    resamples: int,
    confidence: float,
    seeds: tuple[int, int],
    metrics: tuple[str, ...] = COMPARED,
) -> pd.DataFrame:
    """Internal test against external collection, per metric: each with its interval, and
    the difference external - internal with the percentile interval of the differences of
    independent resamples of the two patient sets (two different samples: not paired).
    A difference is *distinguishable* from noise when its interval excludes 0."""
    names = [*metrics, *(f"{m}_{label}" for m in ("recall", "auc") for label in scoring.shared)]
    one = scoring.resampled(internal, np.ones((1, len(internal.outcomes))))
    two = scoring.resampled(external, np.ones((1, len(external.outcomes))))
    cols = [internal.labels.index(label) for label in scoring.shared]
    mix = case_mix(internal.outcomes[:, cols], external.outcomes[:, cols], scoring.shared)
    rows = []
    draws = None
    if resamples > 0:
        a = scoring.resampled(internal, bootstrap.row_weights(internal, resamples, seeds[0]))
        b = scoring.resampled(external, bootstrap.row_weights(external, resamples, seeds[1]))
        draws = (a, b)
    for name in names:
        row: dict[str, Any] = {
            "metric": name,
            "internal": float(one[name][0]),
            "external": float(two[name][0]),
        }
        row["difference"] = row["external"] - row["internal"]
        low = high = [float("nan")] * 2
        diff = [float("nan")] * 2
        if draws is not None:
            low = bootstrap.percentile_interval(draws[0][name], confidence)
            high = bootstrap.percentile_interval(draws[1][name], confidence)
            diff = bootstrap.percentile_interval(draws[1][name] - draws[0][name], confidence)
        row["internal_low"], row["internal_high"] = low
        row["external_low"], row["external_high"] = high
        row["difference_low"], row["difference_high"] = diff
        row["distinguishable"] = bool(
            math.isfinite(diff[0]) and math.isfinite(diff[1]) and (diff[0] > 0 or diff[1] < 0)
        )
        row["case_mix"] = mix if name in CASE_MIX_DEPENDENT else ""
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(row: dict[str, Any], confidence: float) -> str:
    """One metric's change in words."""
    level = round(confidence * 100)
    low, high = row["difference_low"], row["difference_high"]
    if not (math.isfinite(low) and math.isfinite(high)):
        return f"{row['metric']}: {row['difference']:+.3f} (no interval)"
    direction = "lower" if row["difference"] < 0 else "higher"
    if row["distinguishable"]:
        judgement = f"{direction} externally, distinguishable from noise"
    else:
        judgement = "not distinguishable from noise"
    text = (
        f"{row['metric']}: {row['internal']:.3f} internal, {row['external']:.3f} external, "
        f"difference {row['difference']:+.3f} [{low:+.3f}, {high:+.3f}] ({level}%): {judgement}"
    )
    mix = row.get("case_mix")
    if isinstance(mix, str) and mix:  # pandas reads an empty cell back as NaN
        text += (
            f"; the case mix differs ({mix}) and this figure moves with it: compare recall, "
            "specificity and AUC"
        )
    return text


def plot_internal_vs_external(
    comparison: pd.DataFrame, path: Any, title: str, confidence: float
) -> None:
    """Each compared metric, internal test and external collection side by side, with their
    bootstrap intervals; the difference and its interval below."""

    shown = comparison[comparison["metric"].isin(COMPARED)].reset_index(drop=True)
    x = np.arange(len(shown))
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(max(6.0, 1.3 * len(shown)), 6), sharex=True, height_ratios=[2, 1]
    )
    for i, side in enumerate(("internal", "external")):
        values = shown[side].to_numpy(float)
        bars = error_bars(
            [[lo, hi] for lo, hi in zip(shown[f"{side}_low"], shown[f"{side}_high"], strict=True)],
            list(values),
        )
        top.errorbar(
            x + (i - 0.5) * 0.25,
            values,
            yerr=bars,
            fmt="o",
            capsize=3,
            color=colour(i),
            label="internal test" if side == "internal" else "external",
        )
    top.set_ylim(0, 1.05)
    top.set_ylabel("value")
    top.grid(axis="y", alpha=0.3)
    top.legend(fontsize=8)
    top.set_title(f"{title} ({round(confidence * 100)}% bootstrap intervals)", fontsize=9)
    diff = shown["difference"].to_numpy(float)
    # a difference may be negative: its bars are drawn from the interval directly
    lows = shown["difference_low"].to_numpy(float)
    highs = shown["difference_high"].to_numpy(float)
    yerr = np.clip(np.array([np.nan_to_num(diff - lows), np.nan_to_num(highs - diff)]), 0, None)
    bottom.errorbar(x, diff, yerr=yerr, fmt="s", capsize=3, color=colour(2))
    bottom.axhline(0.0, color="black", linewidth=0.8)
    bottom.set_ylabel("external - internal")
    bottom.grid(axis="y", alpha=0.3)
    bottom.set_xticks(x, list(shown["metric"]))
    fig.tight_layout()
    save_figure(fig, path)
