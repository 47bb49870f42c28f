"""Operating points: per-class decision thresholds chosen on the validation patients.

``[eval] threshold`` names the rule:

- ``"0.5"`` (or any number in (0, 1)): that threshold for every class, the
  ODIR-2019 challenge's default;
- ``"max_f1"``: per class, the threshold that maximises F1 on validation;
- ``"sensitivity:0.90"``: per class, the highest threshold whose validation
  sensitivity is at least 0.90 (the most specific operating point that still
  finds 90% of the disease: a screening choice);
- ``"specificity:0.95"``: per class, the lowest threshold whose validation
  specificity is at least 0.95.

A class is predicted when its probability *exceeds* its threshold. Chosen
thresholds lie halfway between two neighbouring validation scores, so they do
not hinge on one image. The thresholds are then applied, unchanged, to the
test patients: the test set never moves them. A class without both outcomes
in validation keeps 0.5.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

__all__ = ["THRESHOLD", "ThresholdRule", "choose_thresholds", "indicator", "parse_rule"]

#: the challenge's default operating point: a class is predicted above it
THRESHOLD = 0.5

_RULE = re.compile(
    r"^(?:(?P<fixed>0?\.\d+)|(?P<max_f1>max_f1)"
    r"|(?P<kind>sensitivity|specificity):(?P<target>0?\.\d+|1(?:\.0*)?))$"
)


@dataclass(frozen=True)
class ThresholdRule:
    """A parsed ``[eval] threshold`` value."""

    kind: str  # "fixed", "max_f1", "sensitivity", "specificity"
    value: float = 0.5

    @property
    def fixed(self) -> bool:
        """Whether the rule is a fixed threshold (nothing is chosen on validation)."""
        return self.kind == "fixed"

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"{self.value:g}"
        if self.kind == "max_f1":
            return "max_f1"
        return f"{self.kind}:{self.value:g}"


def parse_rule(text: str) -> ThresholdRule:
    """``"0.5"``, ``"max_f1"``, ``"sensitivity:0.90"`` or ``"specificity:0.95"``."""
    match = _RULE.match(str(text).strip())
    if match is None:
        raise ValueError(
            f'threshold {text!r}: expected a number in (0, 1) such as "0.5", "max_f1", '
            '"sensitivity:0.90" or "specificity:0.95"'
        )
    if match["fixed"]:
        value = float(match["fixed"])
        if not 0.0 < value < 1.0:
            raise ValueError(f"threshold {text!r}: a fixed threshold lies in (0, 1)")
        return ThresholdRule("fixed", value)
    if match["max_f1"]:
        return ThresholdRule("max_f1")
    value = float(match["target"])
    if not 0.0 < value <= 1.0:
        raise ValueError(f"threshold {text!r}: the target lies in (0, 1]")
    return ThresholdRule(match["kind"], value)


def indicator(targets: np.ndarray, num_classes: int, single_label: bool) -> np.ndarray:
    """Targets as a 0/1 matrix ``[N, C]`` (class indices become one-hot rows)."""
    if not single_label:
        return np.asarray(targets).astype(np.int64)
    out = np.zeros((len(targets), num_classes), dtype=np.int64)
    out[np.arange(len(targets)), np.asarray(targets).astype(np.int64)] = 1
    return out


def _candidates(scores: np.ndarray) -> np.ndarray:
    """Midpoints between neighbouring distinct scores, one below the lowest, one above the
    highest."""
    distinct = np.unique(scores)
    mids = (distinct[:-1] + distinct[1:]) / 2.0
    low = distinct[0] / 2.0 if distinct[0] > 0 else distinct[0] - 1e-9  # every score above
    high = (distinct[-1] + 1.0) / 2.0 if distinct[-1] < 1 else distinct[-1] + 1e-9  # none
    return np.concatenate([[low], mids, [high]])


def _one_class(outcomes: np.ndarray, scores: np.ndarray, rule: ThresholdRule) -> float:
    if outcomes.min() == outcomes.max():
        return THRESHOLD
    cuts = _candidates(scores)
    predicted = scores[None, :] > cuts[:, None]  # [T, N]
    positives = outcomes.astype(bool)
    tp = (predicted & positives).sum(axis=1)
    fp = (predicted & ~positives).sum(axis=1)
    fn = positives.sum() - tp
    tn = (~positives).sum() - fp
    if rule.kind == "max_f1":
        f1 = np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
        best = np.flatnonzero(f1 == f1.max())
        return float(cuts[best[np.argmin(np.abs(cuts[best] - THRESHOLD))]])
    if rule.kind == "sensitivity":
        ok = np.flatnonzero(tp / positives.sum() >= rule.value - 1e-12)
        return float(cuts[ok].max())
    ok = np.flatnonzero(tn / (~positives).sum() >= rule.value - 1e-12)
    return float(cuts[ok].min())


def choose_thresholds(
    rule: ThresholdRule, targets: np.ndarray, probs: np.ndarray, *, single_label: bool
) -> np.ndarray | None:
    """One threshold per class, chosen on validation ``targets`` and ``probs``.

    ``None`` means "argmax" (a single-label task under a fixed 0.5, or with
    more than two classes, where a threshold has no meaning).

    ``targets`` class indices ``[N]`` or 0/1 ``[N, C]``, ``probs`` ``[N, C]``; returns ``[C]``."""
    probs = np.asarray(probs, dtype=np.float64)
    n_classes = probs.shape[1]
    if single_label:
        if n_classes != 2 or (rule.fixed and rule.value == THRESHOLD):
            return None
        if rule.fixed:
            return np.array([np.nan, rule.value])
        outcomes = indicator(targets, n_classes, single_label)[:, 1]
        return np.array([np.nan, _one_class(outcomes, probs[:, 1], rule)])
    if rule.fixed:
        return np.full(n_classes, rule.value)
    y = indicator(targets, n_classes, single_label)
    return np.array([_one_class(y[:, c], probs[:, c], rule) for c in range(n_classes)])
