"""Did a run learn? Chance levels, the three signs, and no verdict on a run that did not."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from odirkit.engine.losses import make_loss
from odirkit.learning import LOSS_MARGIN, LearningCheck, chance_loss, check_learning

CPU = torch.device("cpu")


def test_chance_is_the_loss_of_the_best_constant_answer_under_the_runs_own_loss():
    labels = torch.tensor([0] * 70 + [1] * 30)
    prior = -(0.7 * math.log(0.7) + 0.3 * math.log(0.3))  # the entropy of 70:30
    assert chance_loss(make_loss(True, None, CPU), labels, 2) == pytest.approx(prior, abs=1e-5)
    balanced = np.array([0.5 / 0.7, 0.5 / 0.3])  # class weights that balance the classes
    weighted = chance_loss(make_loss(True, balanced, CPU), labels, 2)
    assert weighted == pytest.approx(math.log(2), abs=1e-5)
    rows = torch.tensor([[1, 0, 0]] * 50 + [[0, 1, 1]] * 30 + [[0, 0, 1]] * 20).float()
    per_label = [0.5, 0.3, 0.5]  # each label's share of images
    binary = np.mean([-(p * math.log(p) + (1 - p) * math.log(1 - p)) for p in per_label])
    assert chance_loss(make_loss(False, None, CPU), rows, 3) == pytest.approx(binary, abs=1e-5)


def check(**changes):
    values = {
        "train_loss": 0.5,
        "chance": math.log(2),
        "val_auc": 0.8,
        "val_auc_interval": (0.62, 0.93),
        "decisions": np.array([0, 1, 1, 0]),
        "labels": ("N", "D"),
        "single_label": True,
    }
    values.update(changes)
    return check_learning(**values)


def test_a_run_learned_when_loss_auc_and_answers_all_say_so():
    assert check().learned
    margin = (1 - LOSS_MARGIN) * math.log(2)
    assert check(train_loss=margin - 1e-6).learned
    stuck = check(train_loss=margin + 1e-3)  # 0.67 against ln 2 = 0.693: chance
    assert not stuck.learned and "not below chance" in stuck.summary()
    chance_auc = check(val_auc=0.6, val_auc_interval=(0.45, 0.74))
    assert not chance_auc.learned and "validation AUC 0.600 [0.450, 0.740]" in chance_auc.summary()
    assert check(val_auc_interval=(0.5001, 0.7)).learned
    one = check(decisions=np.array([0, 0, 0, 0]))
    assert (
        not one.learned
        and one.one_answer == "N"
        and "every test patient called N" in (one.summary())
    )
    multi = check(decisions=np.array([[1, 0, 1]] * 3), labels=("N", "D", "O"), single_label=False)
    assert multi.one_answer == "NO"
    # a validation set of one class has no AUC: not a sign either way
    assert check(val_auc=float("nan"), val_auc_interval=(float("nan"), float("nan"))).learned
    assert LearningCheck.from_dict(stuck.to_dict()).reasons == stuck.reasons


def verdict_lines(p_values: list[float], *, learned: bool = True, require: bool = True):
    from odirkit.bootstrap import PairedDifference
    from odirkit.comparison import PairTest, VariantTest

    test = VariantTest("gan", "default", require_learning=require, single_label=True)
    for seed, p in enumerate(p_values):
        diff = PairedDifference("recall_D", 0.05, [0.01, 0.09] if p < 0.05 else [-0.02, 0.1], p)
        test.pairs.append(PairTest(seed, None, 40, [diff]))
    if len(p_values) > 1:
        test.over_runs = {"recall_D": {"mean": 0.05, "p_value": p_values[0]}}
    if not learned:
        test.not_learned["gan-seed1"] = "did not learn: every test patient called N"
    return test.verdicts(0.95)


@pytest.mark.parametrize(
    ("p", "word"),
    [(0.3, "not distinguishable from noise"), (0.01, "distinguishable from noise")],
)
def test_a_verdict_says_distinguishable_exactly_when_p_is_below_the_level(p, word):
    (one,) = verdict_lines([p])
    assert one.endswith(f": {word}.") and "recall of D +0.050" in one
    (over,) = verdict_lines([p, p, p])
    assert over.endswith(f": {word}.") and "over 3 paired runs" in over


def test_a_p_value_of_exactly_the_level_is_not_below_it():
    # 1 - 0.95 is 0.050000000000000044 in floating point: p = 0.05 must not pass for below
    (over,) = verdict_lines([0.05, 0.05, 0.05])
    assert over.endswith(": not distinguishable from noise.") and "p = 0.050" in over


def test_no_verdict_when_a_run_did_not_learn_unless_asked_for():
    (line,) = verdict_lines([0.01], learned=False)
    assert line.startswith("gan vs default: no verdict, 1 run(s) did not learn (gan-seed1 did")
    assert "distinguishable" not in line
    (anyway,) = verdict_lines([0.01], learned=False, require=False)
    assert anyway.endswith(": distinguishable from noise (caution: gan-seed1 did not learn).")
    (unclear,) = verdict_lines([0.3], learned=False, require=False)
    assert unclear.endswith(": not distinguishable from noise (caution: gan-seed1 did not learn).")


def scored_run(seed: int, n: int = 60, skill: float = 1.2):
    from odirkit.bootstrap import Scored

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = 1 / (1 + np.exp(-(skill * (2 * y - 1) + rng.normal(0, 1, n))))
    outcomes = np.stack([1 - y, y], axis=1)
    scores = np.stack([1 - score, score], axis=1)
    decisions = np.stack([score < 0.5, score >= 0.5], axis=1).astype(int)
    return Scored.build(outcomes, decisions, scores, labels=("N", "D"), clusters=np.arange(n))


def test_the_interval_of_a_mean_over_seeds_stays_within_the_measures_range():
    from odirkit.bootstrap import mean_interval, runs_interval, weighted_metrics

    values = [0.99, 0.97, 0.80]
    plain = mean_interval(values)
    assert plain["high"] > 1  # a t-interval of a bounded measure runs past 1
    bounded = mean_interval(values, bounded=True)
    assert 0 < bounded["low"] < bounded["mean"] < bounded["high"] < 1
    runs = [scored_run(seed, skill=1.2) for seed in range(3)]
    point = np.mean([weighted_metrics(r, np.ones((1, 60)))["auc_macro"][0] for r in runs])
    low, high = runs_interval(runs, "auc_macro", resamples=400, seed=1)
    assert 0.5 < low < point < high <= 1.0
    # the seeds' spread is in it: runs of different skill widen the interval
    mixed = [scored_run(0, skill=0.2), scored_run(1, skill=2.5), scored_run(2, skill=1.2)]
    wide = runs_interval(mixed, "auc_macro", resamples=400, seed=1)
    assert wide[1] - wide[0] > high - low
    assert runs_interval(runs, "auc_macro", resamples=400, seed=1) == (low, high)  # seeded
