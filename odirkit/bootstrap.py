"""Uncertainty: bootstrap confidence intervals over patients, and paired comparisons.

**Intervals.** The test patients are resampled with replacement ``resamples``
times (1000 by default; seeded, so the same run gives the same interval). A
patient is the unit: at image level both eyes of a resampled patient come
along (a cluster bootstrap), since two eyes of one person are not two
independent observations. Each metric is recomputed on every resample; the
95% interval is the 2.5th and 97.5th percentile of those values (the
percentile bootstrap; Efron & Tibshirani, 1993). Thresholds are fixed before
resampling (chosen on validation), so the interval is about the test
patients, not the threshold choice.

**Paired comparison.** Two variants scored on the same test patients are
resampled *together* (the same patients in each resample), and the difference
of their metric is recomputed each time. The difference is called
distinguishable from noise when its 95% interval excludes 0; the two-sided
p-value is twice the share of resampled differences on the far side of 0.

**Across seeds or folds**, each (seed, fold) pair gives one paired difference;
a paired t-test over them (``scipy.stats.ttest_1samp`` on the differences) says
whether the mean difference is distinguishable from 0. The mean of a metric
over runs gets its interval from a two-level bootstrap (runs, then patients
within each: :func:`runs_interval`), so it stays within the metric's range.

Everything is vectorised over the resamples: a metric is a function of
per-patient weights (how often each patient was drawn), so one resample costs
a matrix product, not a call into scikit-learn.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Scored:
    """What the weighted metrics need: outcomes, decisions and scores ``[N, C]``, and the
    patient (cluster) of each row."""

    outcomes: np.ndarray  # 0/1 [N, C]
    decisions: np.ndarray  # 0/1 [N, C]
    scores: np.ndarray  # probabilities [N, C]
    clusters: np.ndarray  # [N] integer code of each row's patient
    labels: tuple[str, ...]
    challenge: bool = False  # also the ODIR-2019 figures (patient level, multi-label)

    @classmethod
    def build(
        cls,
        outcomes: np.ndarray,
        decisions: np.ndarray,
        scores: np.ndarray,
        *,
        labels: Sequence[str],
        clusters: Sequence[Any] | None = None,
        challenge: bool = False,
    ) -> Scored:
        """The per-patient counts every resample sums: ``outcomes`` and ``decisions`` are
        0/1 ``[N, C]`` (truth and decision per label), ``scores`` the probabilities
        ``[N, C]``; ``clusters`` (a patient per row) makes a resample draw patients, not
        rows; ``challenge`` keeps what the ODIR-2019 score needs."""
        n = len(outcomes)
        codes = (
            np.arange(n)
            if clusters is None
            else np.unique(np.asarray(clusters), return_inverse=True)[1]
        )
        return cls(
            np.asarray(outcomes, dtype=np.float64),
            np.asarray(decisions, dtype=np.float64),
            np.asarray(scores, dtype=np.float64),
            codes.astype(np.int64),
            tuple(labels),
            challenge,
        )

    @property
    def clusters_count(self) -> int:
        """How many clusters (patients) the resamples draw."""
        return int(self.clusters.max()) + 1 if len(self.clusters) else 0


def cluster_weights(clusters: int, resamples: int, seed: int) -> np.ndarray:
    """``float [resamples, clusters]``: how often each cluster is drawn in each resample
    (each row sums to ``clusters``; the same ``seed`` draws the same counts)."""
    rng = np.random.default_rng(seed)
    drawn = rng.integers(0, clusters, size=(resamples, clusters))
    offsets = (np.arange(resamples) * clusters)[:, None]
    counts = np.bincount((drawn + offsets).ravel(), minlength=resamples * clusters)
    return counts.reshape(resamples, clusters).astype(np.float64)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def weighted_auc(outcomes: np.ndarray, scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """ROC AUC of one class under each row of ``weights`` ``[B, N]`` (ties count one half):
    the weighted Mann-Whitney statistic."""
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    w = weights[:, order]
    y = outcomes[order]
    pos = np.add.reduceat(w * y, starts, axis=1)  # [B, K] weight of positives per distinct score
    neg = np.add.reduceat(w * (1.0 - y), starts, axis=1)
    below = np.cumsum(neg, axis=1) - neg
    total_pos, total_neg = pos.sum(axis=1), neg.sum(axis=1)
    return _ratio((pos * (below + 0.5 * neg)).sum(axis=1), total_pos * total_neg)


def weighted_metrics(scored: Scored, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The headline metrics under each row of per-row ``weights`` ``[B, N]``.

    With all weights 1 these equal :func:`odirkit.metrics.classification_metrics`
    (and :func:`odirkit.metrics.odir_score`) wherever both outcomes of a class occur.
    """
    y, d, s = scored.outcomes, scored.decisions, scored.scores
    tp = weights @ (y * d)
    fp = weights @ ((1 - y) * d)
    fn = weights @ (y * (1 - d))
    tn = weights @ ((1 - y) * (1 - d))
    out: dict[str, np.ndarray] = {}
    out["f1_micro"] = _ratio(2 * tp.sum(1), 2 * tp.sum(1) + fp.sum(1) + fn.sum(1))
    per_class_f1 = _ratio(2 * tp, 2 * tp + fp + fn)  # NaN where undefined, as the estimate
    recall = _ratio(tp, tp + fn)
    specificity = _ratio(tn, tn + fp)
    auc = np.stack([weighted_auc(y[:, c], s[:, c], weights) for c in range(y.shape[1])], axis=1)
    with warnings.catch_warnings():  # an all-NaN row (no class defined) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        out["f1_macro"] = np.nanmean(per_class_f1, axis=1)
        out["recall_macro"] = np.nanmean(recall, axis=1)
        out["specificity_macro"] = np.nanmean(specificity, axis=1)
        out["auc_macro"] = np.nanmean(auc, axis=1)
    for c, label in enumerate(scored.labels):
        out[f"f1_{label}"] = per_class_f1[:, c]
        out[f"recall_{label}"] = recall[:, c]
        out[f"specificity_{label}"] = specificity[:, c]
        out[f"auc_{label}"] = auc[:, c]
    if scored.challenge:
        out.update(_weighted_challenge(y, d, s, weights))
    return out


def _weighted_challenge(
    y: np.ndarray, d: np.ndarray, s: np.ndarray, weights: np.ndarray
) -> dict[str, np.ndarray]:
    """The ODIR-2019 figures (flattened over patients and labels) under each weighting."""
    c = y.shape[1]
    total = weights.sum(axis=1) * c
    agree = weights @ (y == d).sum(axis=1)
    true_yes = weights @ y.sum(axis=1) / total
    pred_yes = weights @ d.sum(axis=1) / total
    observed = agree / total
    expected = true_yes * pred_yes + (1 - true_yes) * (1 - pred_yes)
    kappa = _ratio(observed - expected, 1 - expected)
    flat_w = np.repeat(weights, c, axis=1)
    auc = weighted_auc(y.ravel(), s.ravel(), flat_w)
    # F1 with average="micro" over a flattened 0/1 vector is the share of agreements.
    return {
        "odir_patient_kappa": kappa,
        "odir_patient_f1": observed,
        "odir_patient_auc": auc,
        "odir_patient_final": (kappa + observed + auc) / 3.0,
    }


def row_weights(scored: Scored, resamples: int, seed: int) -> np.ndarray:
    """Each row's weight in each of ``resamples`` patient-level (cluster) resamples,
    ``float [resamples, rows]``: a row counts as often as its patient was drawn."""
    return cluster_weights(scored.clusters_count, resamples, seed)[:, scored.clusters]


def percentile_interval(values: np.ndarray, confidence: float) -> list[float]:
    """The central ``confidence`` (a fraction: 0.95) percentile interval ``[low, high]`` of
    the finite ``values`` (``[resamples]``); NaN, NaN when none is finite."""
    finite = values[np.isfinite(values)]
    if len(finite) == 0:
        return [float("nan"), float("nan")]
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def intervals(
    scored: Scored,
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> dict[str, list[float]]:
    """``{metric: [low, high]}``: percentile bootstrap intervals over the clusters."""
    if resamples <= 0 or scored.clusters_count == 0:
        return {}
    values = weighted_metrics(scored, row_weights(scored, resamples, seed))
    return {name: percentile_interval(v, confidence) for name, v in values.items()}


@dataclass(frozen=True)
class PairedDifference:
    """``candidate - baseline`` of one metric on the same patients."""

    metric: str
    difference: float
    interval: list[float]
    p_value: float

    @property
    def distinguishable(self) -> bool:
        """Whether the difference's interval leaves out zero."""
        low, high = self.interval
        return bool(np.isfinite(low) and (low > 0 or high < 0))

    def to_dict(self) -> dict[str, Any]:
        """The difference as ``comparison.json`` keeps it."""
        return {
            "metric": self.metric,
            "difference": self.difference,
            "interval": self.interval,
            "p_value": self.p_value,
            "distinguishable": self.distinguishable,
        }


def paired_bootstrap(
    baseline: Scored,
    candidate: Scored,
    metrics: Sequence[str] = ("f1_micro", "auc_macro"),
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> list[PairedDifference]:
    """Resample the shared patients once for both, and bootstrap the difference of each metric.

    The two must hold the same rows in the same order (the same patients and targets).
    """
    if baseline.outcomes.shape != candidate.outcomes.shape or not np.array_equal(
        baseline.outcomes, candidate.outcomes
    ):
        raise ValueError("a paired comparison needs the same patients and targets on both sides")
    full = np.ones((1, len(baseline.outcomes)))
    point_a, point_b = weighted_metrics(baseline, full), weighted_metrics(candidate, full)
    weights = row_weights(baseline, max(resamples, 1), seed)
    a, b = weighted_metrics(baseline, weights), weighted_metrics(candidate, weights)
    results = []
    for metric in metrics:
        diff = b[metric] - a[metric]
        finite = diff[np.isfinite(diff)]
        if len(finite):
            p = min(1.0, 2 * min(float(np.mean(finite <= 0)), float(np.mean(finite >= 0))))
        else:
            p = float("nan")
        results.append(
            PairedDifference(
                metric,
                float(point_b[metric][0] - point_a[metric][0]),
                percentile_interval(diff, confidence),
                p,
            )
        )
    return results


def paired_over_runs(differences: Sequence[float]) -> dict[str, float]:
    """A paired t-test of per-seed (or per-fold) differences against 0."""
    from scipy import stats

    values = np.asarray([d for d in differences if np.isfinite(d)], dtype=np.float64)
    n = len(values)
    if n < 2:
        return {
            "runs": n,
            "mean": float(values.mean()) if n else float("nan"),
            "t": float("nan"),
            "p_value": float("nan"),
        }
    if np.allclose(values, values[0]):
        p = 1.0 if values[0] == 0 else 0.0
        return {"runs": n, "mean": float(values.mean()), "t": float("nan"), "p_value": p}
    result = stats.ttest_1samp(values, 0.0)
    return {
        "runs": n,
        "mean": float(values.mean()),
        "t": float(result.statistic),
        "p_value": float(result.pvalue),
    }


def below_level(p: float, confidence: float = CONFIDENCE) -> bool:
    """Whether a p-value is below ``1 - confidence`` (0.05 at 95%): p = 0.05 is not, though
    ``1 - 0.95`` is 0.050000000000000044 in floating point. NaN never is."""
    return bool(np.isfinite(p) and p < round(1.0 - confidence, 12))


def mean_interval(
    values: Sequence[float], confidence: float = CONFIDENCE, *, bounded: bool = False
) -> dict[str, float]:
    """Mean, standard deviation and t-interval of the mean over runs (seeds, folds).

    ``bounded``: the values lie in [0, 1] (F1, recall, AUC ...), and so must the
    interval: it is the t-interval on the logit scale, mapped back (values of exactly
    0 or 1 are held a hair inside).
    """
    from scipy import stats

    v = np.asarray([x for x in values if np.isfinite(x)], dtype=np.float64)
    if len(v) == 0:
        return {
            "n": 0,
            "mean": float("nan"),
            "std": float("nan"),
            "low": float("nan"),
            "high": float("nan"),
        }
    mean = float(v.mean())
    if len(v) < 2:
        return {
            "n": 1,
            "mean": mean,
            "std": float("nan"),
            "low": float("nan"),
            "high": float("nan"),
        }
    std = float(v.std(ddof=1))
    t = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1))
    if not bounded:
        half = t * std / np.sqrt(len(v))
        return {"n": len(v), "mean": mean, "std": std, "low": mean - half, "high": mean + half}
    logits = np.log(np.clip(v, 1e-6, 1 - 1e-6) / (1 - np.clip(v, 1e-6, 1 - 1e-6)))
    centre, half = logits.mean(), t * logits.std(ddof=1) / np.sqrt(len(v))
    low, high = (float(1 / (1 + np.exp(-x))) for x in (centre - half, centre + half))
    return {"n": len(v), "mean": mean, "std": std, "low": low, "high": high}


def runs_interval(
    runs: Sequence[Scored],
    metric: str,
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> tuple[float, float]:
    """The interval of a metric's mean over runs (seeds, folds), by a two-level bootstrap.

    Each resample draws as many runs as there are, with replacement, and within each
    drawn run its test patients (the cluster bootstrap of :func:`intervals`); the
    value is the mean of the metric over the drawn runs. The percentile interval of
    those means stays within the metric's range, and carries the variation between
    seeds as well as between patients (Davison & Hinkley 1997, sec. 3.8: resampling
    both stages of a two-stage sample).
    """
    if not runs or resamples <= 0:
        return float("nan"), float("nan")
    per_run = np.stack(
        [
            weighted_metrics(run, row_weights(run, resamples, seed + 7919 * i))[metric]
            for i, run in enumerate(runs)
        ]
    )  # [runs, resamples]
    rng = np.random.default_rng([seed, len(runs), resamples, 1])
    drawn = rng.integers(0, len(runs), size=(resamples, len(runs)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        means = np.nanmean(per_run[drawn, np.arange(resamples)[:, None]], axis=1)
    low, high = percentile_interval(means, confidence)
    return low, high
