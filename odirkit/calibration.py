"""Calibration: do the probabilities mean what they say?

- **Brier score** per class: the mean squared difference between the
  probability and the 0/1 outcome (Brier, 1950). Lower is better; 0.25 is a
  constant 0.5.
- **Expected calibration error** (ECE) per class: the probabilities are put in
  ``bins`` equal-width bins over [0, 1]; ECE is the mean, weighted by the
  bins' shares, of ``|observed frequency - mean probability|`` (Naeini et al.,
  2015; Guo et al., 2017).
- **Reliability diagram**: the observed frequency against the mean
  probability, bin by bin.
- **Temperature scaling** (Guo et al., 2017): one scalar ``T`` divides every
  logit; it is fitted on the validation images by minimising their negative
  log-likelihood, and leaves the ranking (AUC) of every class unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

BINS = 15


def brier_score(outcomes: np.ndarray, probs: np.ndarray) -> float:
    """Mean squared error of probabilities ``[N]`` against 0/1 outcomes ``[N]`` (one
    class); NaN for no rows."""
    y = np.asarray(outcomes, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    return float(np.mean((p - y) ** 2)) if len(y) else float("nan")


@dataclass(frozen=True)
class Reliability:
    """Per bin: lower edge, count, mean probability and observed frequency."""

    edges: np.ndarray
    counts: np.ndarray
    mean_probability: np.ndarray
    frequency: np.ndarray


def reliability(outcomes: np.ndarray, probs: np.ndarray, bins: int = BINS) -> Reliability:
    """Outcomes ``[N]`` (0/1) against probabilities ``[N]`` of one class, in ``bins``
    equal-width bins over [0, 1] (each array of the result ``[bins]``, empty bins NaN); a
    probability of exactly 1 falls in the last bin."""
    y = np.asarray(outcomes, dtype=np.float64)
    p = np.clip(np.asarray(probs, dtype=np.float64), 0.0, 1.0)
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    counts = np.bincount(which, minlength=bins).astype(np.float64)
    sum_p = np.bincount(which, weights=p, minlength=bins)
    sum_y = np.bincount(which, weights=y, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(counts > 0, sum_p / counts, np.nan)
        freq = np.where(counts > 0, sum_y / counts, np.nan)
    return Reliability(np.arange(bins) / bins, counts, mean_p, freq)


def expected_calibration_error(outcomes: np.ndarray, probs: np.ndarray, bins: int = BINS) -> float:
    """ECE of one class's probabilities ``[N]`` against its 0/1 outcomes ``[N]`` (see the
    module docstring): a fraction in [0, 1], NaN for no rows."""
    table = reliability(outcomes, probs, bins)
    total = table.counts.sum()
    if total == 0:
        return float("nan")
    used = table.counts > 0
    gaps = np.abs(table.frequency[used] - table.mean_probability[used])
    return float(np.sum(table.counts[used] / total * gaps))


def probabilities(
    logits: np.ndarray, *, single_label: bool, temperature: float = 1.0
) -> np.ndarray:
    """Softmax (single-label) or sigmoid (multi-label) of ``logits / temperature``:
    ``[N, C]`` logits to ``float64 [N, C]`` probabilities."""
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64)) / temperature
    p = z.softmax(dim=1) if single_label else z.sigmoid()
    return p.numpy()


def fit_temperature(logits: np.ndarray, targets: np.ndarray, *, single_label: bool) -> float:
    """The temperature that minimises the negative log-likelihood of ``targets``.

    ``targets`` are class indices ``[N]`` (single-label) or a 0/1 matrix
    ``[N, C]`` (multi-label; with ``single_label`` the softmax is fitted to the
    labels as equal shares). Fitted on log T, so T stays positive.
    """
    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    if len(z) == 0:
        return 1.0
    y = torch.as_tensor(np.asarray(targets))
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.5, max_iter=100, line_search_fn="strong_wolfe")

    def nll() -> torch.Tensor:
        optimiser.zero_grad()
        scaled = z / log_t.exp()
        if single_label and y.ndim == 2:  # a softmax over multi-label targets: equal shares
            shares = y.double() / y.double().sum(dim=1, keepdim=True).clamp_min(1.0)
            loss = torch.nn.functional.cross_entropy(scaled, shares)
        elif single_label:
            loss = torch.nn.functional.cross_entropy(scaled, y.long())
        else:
            loss = torch.nn.functional.binary_cross_entropy_with_logits(scaled, y.double())
        loss.backward()
        return loss

    optimiser.step(nll)
    value = float(log_t.detach().exp())
    return value if np.isfinite(value) and value > 0 else 1.0
