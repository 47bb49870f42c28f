"""The bootstrap's edges: what an interval, a paired difference and a mean over runs are when
the data are small, degenerate or undefined (odirkit/bootstrap.py). The central behaviour
(coverage, patients as the unit, agreement with scikit-learn and SciPy) is tested in
test_evaluation.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from odirkit.bootstrap import (
    Scored,
    cluster_weights,
    intervals,
    mean_interval,
    paired_bootstrap,
    paired_over_runs,
    percentile_interval,
    row_weights,
    runs_interval,
    weighted_metrics,
)


def _binary(y, p, *, clusters=None, challenge=False):
    """Two-class (N, D) scores of probabilities ``p`` of D, decided at 0.5."""
    y, p = np.asarray(y), np.asarray(p, dtype=float)
    return Scored.build(
        np.c_[1 - y, y],
        np.c_[p <= 0.5, p > 0.5].astype(int),
        np.c_[1 - p, p],
        labels=["N", "D"],
        clusters=clusters,
        challenge=challenge,
    )


def _noisy(n=80, seed=0, strength=0.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p = np.clip(0.5 + (y - 0.5) * strength + rng.normal(0, 0.25, n), 0, 1)
    return y, p


# -- percentiles ----------------------------------------------------------------------------------


def test_the_percentile_interval_cuts_the_tails_evenly_and_ignores_what_is_undefined():
    values = np.r_[np.arange(101.0), np.nan, np.inf]  # 0..100: percentile k is k
    assert percentile_interval(values, 0.9) == pytest.approx([5.0, 95.0])
    assert percentile_interval(values, 0.5) == pytest.approx([25.0, 75.0])
    assert percentile_interval(np.array([0.4, np.nan]), 0.95) == [0.4, 0.4]
    assert all(math.isnan(v) for v in percentile_interval(np.array([np.nan, np.nan]), 0.95))


# -- patient resampling ---------------------------------------------------------------------------


def test_each_resample_draws_as_many_patients_as_there_are_and_every_patient_can_be_drawn():
    weights = cluster_weights(7, 500, seed=3)
    assert weights.shape == (500, 7) and weights.dtype == np.float64
    assert np.all(weights.sum(axis=1) == 7)
    assert np.all(weights.sum(axis=0) > 0)  # the first and the last patient too
    assert weights.mean() == pytest.approx(1.0)
    assert np.array_equal(weights, cluster_weights(7, 500, seed=3))
    assert not np.array_equal(weights, cluster_weights(7, 500, seed=4))


def test_scores_may_be_boolean_and_the_challenge_figures_come_only_when_asked_for():
    y, p = _noisy(30)
    as_bool = Scored.build(
        np.c_[y == 0, y == 1], np.c_[p <= 0.5, p > 0.5], np.c_[1 - p, p], labels=["N", "D"]
    )
    as_int = _binary(y, p)
    one = np.ones((1, 30))
    got, expected = weighted_metrics(as_bool, one), weighted_metrics(as_int, one)
    assert got.keys() == expected.keys()
    assert all(got[k] == pytest.approx(expected[k]) for k in got)
    assert not any(k.startswith("odir_") for k in got)
    assert "odir_patient_final" in weighted_metrics(_binary(y, p, challenge=True), one)


def test_a_measure_with_no_case_to_count_is_undefined_not_zero():
    # no patient has D: recall and AUC of D are undefined in every resample, specificity is not
    y = np.zeros(20, dtype=int)
    p = np.linspace(0.1, 0.9, 20)
    ci = intervals(_binary(y, p), resamples=50)
    assert all(math.isnan(v) for v in ci["recall_D"] + ci["auc_D"])
    assert ci["specificity_D"][0] < ci["specificity_D"][1] <= 1.0


def test_intervals_of_one_resample_and_of_one_patient_are_points():
    y, p = _noisy(40)
    scored = _binary(y, p)
    assert intervals(scored, resamples=0) == {}
    one = intervals(scored, resamples=1, seed=5)
    assert one and all(low == high for low, high in one.values() if not math.isnan(low))
    # one patient with both eyes: every resample is that patient, the interval its values
    single = _binary([1, 0], [0.8, 0.3], clusters=["P1", "P1"])
    point = weighted_metrics(single, np.ones((1, 2)))
    ci = intervals(single, resamples=20)
    assert ci["f1_micro"] == [point["f1_micro"][0]] * 2 == [1.0, 1.0]


# -- paired differences ---------------------------------------------------------------------------


def test_a_paired_comparison_refuses_different_patients_or_targets():
    y, p = _noisy(40)
    a = _binary(y, p)
    with pytest.raises(ValueError, match="same patients and targets"):
        paired_bootstrap(a, _binary(y[:30], p[:30]))
    flipped = y.copy()
    flipped[0] = 1 - flipped[0]
    with pytest.raises(ValueError, match="same patients and targets"):
        paired_bootstrap(a, _binary(flipped, p))


def test_the_paired_p_value_is_twice_the_share_of_differences_beyond_zero():
    y, weak = _noisy(60, seed=1, strength=0.2)
    _, strong = _noisy(60, seed=1, strength=0.28)
    a, b = _binary(y, weak), _binary(y, strong)
    (result,) = paired_bootstrap(a, b, ("f1_micro",), resamples=300, seed=9)
    weights = row_weights(a, 300, 9)
    diff = weighted_metrics(b, weights)["f1_micro"] - weighted_metrics(a, weights)["f1_micro"]
    share = min(np.mean(diff <= 0), np.mean(diff >= 0))
    assert 0.01 < share < 0.4  # neither certain nor hopeless, so the factor 2 shows
    assert result.p_value == pytest.approx(2 * share)
    assert result.interval == pytest.approx(list(np.percentile(diff, [2.5, 97.5])))
    assert result.metric == "f1_micro"
    assert result.to_dict() == {
        "metric": "f1_micro",
        "difference": result.difference,
        "interval": result.interval,
        "p_value": result.p_value,
        "distinguishable": result.distinguishable,
    }
    one = paired_bootstrap(a, b, ("f1_micro",), resamples=1, seed=9)[0]
    assert one.interval[0] == one.interval[1] and one.p_value in (0.0, 1.0)


def test_a_paired_difference_of_an_undefined_measure_has_no_p_value_and_no_verdict():
    y = np.zeros(20, dtype=int)  # no D: recall of D is undefined on both sides
    a, b = _binary(y, np.linspace(0.1, 0.9, 20)), _binary(y, np.linspace(0.2, 0.6, 20))
    (result,) = paired_bootstrap(a, b, ("recall_D",), resamples=50)
    assert math.isnan(result.p_value) and math.isnan(result.interval[0])
    assert not result.distinguishable and result.to_dict()["distinguishable"] is False


# -- over runs ------------------------------------------------------------------------------------


def test_the_t_test_over_runs_reports_the_same_fields_in_every_case():
    keys = {"runs", "mean", "t", "p_value"}
    for differences in ([], [0.03], [0.02, 0.02], [0.02, 0.05, -0.01]):
        assert set(paired_over_runs(differences)) == keys, differences
    constant = paired_over_runs([0.02, 0.02, 0.02])
    assert constant["runs"] == 3 and constant["mean"] == pytest.approx(0.02)
    assert math.isnan(constant["t"])
    # differences that are zero up to rounding: no difference, p = 1
    assert paired_over_runs([0.0, 1e-12, 0.0])["p_value"] == 1.0
    assert paired_over_runs([np.float32(0.25), np.float32(0.5)])["mean"] == pytest.approx(0.375)


def test_a_mean_over_two_runs_has_an_interval_and_a_bounded_one_holds_values_of_one():
    two = mean_interval([0.6, 0.7])
    low, high = stats.t.interval(0.95, 1, loc=0.65, scale=stats.sem([0.6, 0.7]))
    assert two["n"] == 2 and (two["low"], two["high"]) == pytest.approx((low, high))
    # a perfect run (1.0) is held a hair inside 1 on the logit scale, not sent to infinity
    perfect = mean_interval([1.0, 0.9, 0.95], bounded=True)
    held = np.array([1 - 1e-6, 0.9, 0.95])
    logits = np.log(held / (1 - held))
    low, high = stats.t.interval(0.95, 2, loc=logits.mean(), scale=stats.sem(logits))
    assert (perfect["low"], perfect["high"]) == pytest.approx(
        (1 / (1 + np.exp(-low)), 1 / (1 + np.exp(-high))), rel=1e-9
    )
    assert 0.0 < perfect["low"] < perfect["high"] < 1.0
    assert mean_interval([np.float32(0.5), np.float32(0.75)])["mean"] == pytest.approx(0.625)


def test_the_interval_over_runs_carries_the_spread_between_runs():
    y = np.array([0, 1] * 10)
    right = _binary(y, np.where(y == 1, 0.9, 0.1))  # F1 1.0 in every resample
    wrong = _binary(y, np.where(y == 1, 0.1, 0.9))  # F1 0.0 in every resample
    low, high = runs_interval([right, wrong], "f1_micro", resamples=400)
    assert (low, high) == (0.0, 1.0)  # some resamples draw the right run twice, some the wrong
    assert runs_interval([right, right], "f1_micro", resamples=50) == (1.0, 1.0)
    one = runs_interval([right, wrong], "f1_micro", resamples=1)
    assert one[0] == one[1] and one[0] in (0.0, 0.5, 1.0)
    for empty in (runs_interval([], "f1_micro"), runs_interval([right], "f1_micro", resamples=0)):
        assert all(math.isnan(v) for v in empty)


def test_each_runs_patients_are_resampled_independently_of_the_other_runs():
    # three runs that happen to decide alike are still three samples of the patients:
    # their mean varies less than one run's (about sqrt(5/9) as wide, as the runs are
    # drawn with replacement too), where it would be exactly one run's if every run drew
    # the same patients in each resample (0.71 to 0.78 over seeds 0 to 7)
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, size=400)
    p = np.where(rng.random(400) < 0.75, y, 1 - y) * 0.8 + 0.1  # right on about 3 in 4
    run = _binary(y, p)
    one = runs_interval([run], "f1_micro", resamples=2000)
    three = runs_interval([run] * 3, "f1_micro", resamples=2000)
    assert three[1] - three[0] < 0.9 * (one[1] - one[0])
    assert one[0] < three[0] < three[1] < one[1]


def test_a_p_value_is_below_the_level_only_strictly_and_nan_never():
    from odirkit.bootstrap import below_level

    assert below_level(0.0499, 0.95) and not below_level(0.05, 0.95)  # p = 0.05 is not
    assert below_level(0.0099, 0.99) and not below_level(0.01, 0.99)
    assert not below_level(float("nan"), 0.95) and not below_level(float("inf"), 0.95)
    assert below_level(0.0, 0.95)
