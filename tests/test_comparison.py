"""Comparing variants (odirkit/comparison.py) on run folders written here: which runs pair,
what is compared, what is refused, and what the verdicts and summaries say."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from odirkit import bootstrap
from odirkit.comparison import (
    FinishedRun,
    PairTest,
    VariantTest,
    compare_variants,
    group_summary,
    metric_name,
    metric_value,
    parse_run_name,
)
from odirkit.errors import RunError
from odirkit.runs.records import Scores

#: patients whose IDs sort differently as text and as numbers
PATIENTS = [str(i) for i in (10, 9, 100, 2, 33, 4, 27, 5, 61, 8, 12, 71, 3, 40, 6, 18)]


def _truth(patients: list[str] = PATIENTS) -> np.ndarray:
    return np.array([int(p.rstrip("x")) % 2 for p in patients])  # D for odd IDs


def write_run(
    root: Path,
    name: str,
    probs_d: np.ndarray,
    *,
    patients: list[str] = PATIENTS,
    truth: np.ndarray | None = None,
    thresholds: dict[str, float] | None = None,
    learned: bool | None = True,
    labels: tuple[str, ...] = ("N", "D"),
    level: str = "image",
    reverse: bool = False,
    final: dict | None = None,
) -> FinishedRun:
    """A finished single-label N/D run: metrics.json and predictions.csv (one image per
    patient); ``reverse`` writes the rows in the opposite order."""
    folder = root / name
    folder.mkdir(parents=True)
    truth = _truth(patients) if truth is None else truth
    p = np.asarray(probs_d, dtype=float)
    rows = pd.DataFrame(
        {
            "patient_id": patients,
            "eye": "left",
            "path": [f"{pid}_left.jpg" for pid in patients],
            "target": [labels[int(t)] for t in truth],
            "predicted": [labels[int(v > 0.5)] for v in p],
            f"prob_{labels[0]}": (1 - p).round(6),
            f"prob_{labels[1]}": p.round(6),
        }
    )
    if reverse:
        rows = rows.iloc[::-1]
    rows.to_csv(folder / "predictions.csv", index=False)
    decided = p > (thresholds or {}).get(labels[1], 0.5)
    accuracy = float(np.mean(decided == truth.astype(bool)))
    recall = float(decided[truth == 1].mean())
    document = {
        "experiment": "exp",
        "variant": name,
        "task": "single_label",
        "labels": list(labels),
        "level": level,
        "final": final
        or {
            "f1_micro": accuracy,
            "auc_macro": 0.5,
            "per_class": {labels[1]: {"recall": recall}},
            "thresholds": thresholds or {},
        },
    }
    if learned is not None:
        document["learning"] = {
            "learned": learned,
            "reasons": [] if learned else ["every test patient called N"],
            "one_answer": None if learned else "N",
        }
    (folder / "metrics.json").write_text(json.dumps(document))
    return FinishedRun(name, document, folder)


def _scores(seed: int, skill: float) -> np.ndarray:
    """Probabilities of D that separate the classes by ``skill`` (0: chance)."""
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + skill * (_truth() - 0.5) + rng.normal(0, 0.2, len(PATIENTS)), 0, 1)


# -- names and values -----------------------------------------------------------------------------


def test_metrics_are_named_in_words_and_unknown_names_left_as_they_are():
    assert metric_name("f1_micro", single_label=True) == "accuracy"
    assert metric_name("f1_micro", single_label=False) == "micro F1"
    assert metric_name("auc_macro", single_label=True) == "macro AUC"
    assert metric_name("recall_macro", single_label=False) == "macro recall"
    assert metric_name("f1_D", single_label=True) == "F1 of D"
    assert metric_name("specificity_G", single_label=False) == "specificity of G"
    assert metric_name("auc_N", single_label=False) == "AUC of N"
    for unknown in ("odir_patient_kappa", "recall_DG", "brier_D", "specificity_macro"):
        assert metric_name(unknown, single_label=False) == unknown


def test_a_metric_value_is_a_headline_or_a_class_figure_and_nan_when_absent():
    scores = Scores(f1_micro=0.7, per_class={"D": {"recall": 0.4}})
    assert metric_value(scores, "f1_micro") == 0.7
    assert metric_value(scores, "recall_D") == 0.4
    assert math.isnan(metric_value(scores, "recall_G"))
    assert math.isnan(metric_value(scores, "auc_macro"))


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("gan-seed1-fold0", ("gan", 1, 0)),
        ("gan-fold2", ("gan", None, 2)),
        ("my-net-seed10", ("my-net", 10, None)),
        ("default", ("default", None, None)),
        ("seed-seed0", ("seed", 0, None)),
    ],
)
def test_a_run_name_gives_its_variant_seed_and_fold(name, parts):
    assert parse_run_name(name) == parts


# -- one run --------------------------------------------------------------------------------------


def test_a_finished_run_reads_its_result_and_predictions_and_refuses_a_foreign_one(tmp_path):
    run = write_run(tmp_path, "a-seed3", _scores(0, 0.6))
    assert run.metrics.labels == ["N", "D"] and run.base == "a" and run.pair_key == (3, None)
    assert list(run.predictions()["patient_id"]) == PATIENTS
    with pytest.raises(RunError, match="a-seed3"):
        FinishedRun("a-seed3", {"final": "not scores"}, tmp_path)
    assert FinishedRun("b", run.metrics).predictions() is None  # no folder: no predictions
    (run.directory / "predictions.csv").unlink()
    assert run.predictions() is None and run.scored() is None


def test_a_runs_decisions_are_taken_at_its_own_thresholds(tmp_path):
    p = np.array([0.2, 0.35, 0.45, 0.6] * 4)
    plain = write_run(tmp_path, "plain", p).scored()
    cut = write_run(tmp_path, "cut", p, thresholds={"D": 0.3}).scored()
    assert plain.labels == cut.labels == ("N", "D")
    assert plain.decisions[:, 1].tolist() == [0, 0, 0, 1] * 4
    assert cut.decisions[:, 1].tolist() == [0, 1, 1, 1] * 4
    assert cut.outcomes[:, 1].tolist() == _truth().tolist()
    assert cut.scores[:, 1] == pytest.approx(p)


# -- pairing --------------------------------------------------------------------------------------


def test_each_variant_is_paired_seed_by_seed_with_the_baseline_on_the_same_patients(tmp_path):
    runs = []
    for seed in range(3):
        runs.append(write_run(tmp_path, f"base-seed{seed}", _scores(seed, 0.1)))
        # the candidate's rows are written in the opposite order: pairing goes by patient
        runs.append(
            write_run(tmp_path, f"better-seed{seed}", _scores(10 + seed, 0.8), reverse=True)
        )
    runs.append(write_run(tmp_path, "lone-seed7", _scores(7, 0.5)))  # no seed in common
    tests = compare_variants(runs, metrics=("f1_micro", "recall_D"), resamples=200)
    by_name = {t.candidate: t for t in tests}
    assert set(by_name) == {"better", "lone"} and all(t.baseline == "base" for t in tests)
    lone = by_name["lone"]
    assert not lone.pairs and "nothing to pair" in lone.note
    better = by_name["better"]
    assert [(p.seed, p.fold, p.patients) for p in better.pairs] == [(s, None, 16) for s in range(3)]
    for pair, seed in zip(better.pairs, range(3), strict=True):
        a, b = runs[2 * seed].metrics.final, runs[2 * seed + 1].metrics.final
        assert [d.metric for d in pair.differences] == ["f1_micro", "recall_D"]
        assert pair.differences[0].difference == pytest.approx(b.f1_micro - a.f1_micro)
        recall = b.per_class["D"]["recall"] - a.per_class["D"]["recall"]
        assert pair.differences[1].difference == pytest.approx(recall)
    expected = bootstrap.paired_over_runs([p.differences[0].difference for p in better.pairs])
    assert better.over_runs["f1_micro"] == pytest.approx(expected)
    assert better.over_runs["f1_micro"]["mean"] > 0.2
    document = better.to_dict()
    assert document["candidate"] == "better" and document["baseline"] == "base"
    assert [p["seed"] for p in document["pairs"]] == [0, 1, 2]
    assert document["pairs"][0]["patients"] == 16
    assert document["pairs"][0]["differences"][0]["metric"] == "f1_micro"
    assert document["over_runs"] == better.over_runs and document["not_learned"] == {}
    # the baseline named, not the first variant
    named = compare_variants(runs, baseline="better", metrics=("f1_micro",), resamples=50)
    assert {(t.candidate, t.baseline) for t in named} == {("base", "better"), ("lone", "better")}
    assert compare_variants(runs, baseline="absent", resamples=50)[0].baseline == "base"
    assert compare_variants(runs[:1]) == []


def test_a_single_pair_is_tested_by_its_bootstrap_alone(tmp_path):
    runs = [
        write_run(tmp_path, "base", _scores(0, 0.1)),
        write_run(tmp_path, "better", _scores(1, 0.8)),
    ]
    (test,) = compare_variants(runs, metrics=("f1_micro",), resamples=300, seed=4)
    assert len(test.pairs) == 1 and test.over_runs == {}
    a, b = (r.scored() for r in runs)
    (expected,) = bootstrap.paired_bootstrap(a, b, ("f1_micro",), resamples=300, seed=4)
    (found,) = test.pairs[0].differences
    assert found.interval == pytest.approx(expected.interval)
    assert found.p_value == pytest.approx(expected.p_value)
    (line,) = test.verdicts(0.95)
    low, high = found.interval
    assert line == (
        f"better vs base: accuracy {found.difference:+.3f} (95% CI {low:+.3f} to {high:+.3f}, "
        f"{'p < 0.001' if found.p_value < 0.001 else f'p = {found.p_value:.3f}'}, paired "
        "bootstrap over 16 test patients): distinguishable from noise."
    )
    assert "(90% CI" in test.verdicts(0.90)[0]


@pytest.mark.parametrize(
    ("change", "note"),
    [
        ({"labels": ("N", "G")}, "they differ in labels"),
        ({"level": "patient"}, "they differ in level"),
        ({"truth": 1 - _truth()}, "the same patients carry different labels"),
        ({"patients": [p + "x" for p in PATIENTS]}, "tested on different patients"),
        ({"patients": PATIENTS[:-1], "probs": 15}, "tested on different patients"),
        ({"base_patients": PATIENTS[:-1]}, "tested on different patients"),  # the other has more
    ],
)
def test_runs_that_cannot_be_paired_get_a_note_not_a_test(tmp_path, change, note):
    change = dict(change)  # the parameter's own dict stays as pytest holds it
    probs = _scores(1, 0.5)[: change.pop("probs", 16)]
    if "base_patients" in change:
        short = change.pop("base_patients")
        base = write_run(tmp_path, "base", _scores(0, 0.5)[: len(short)], patients=short)
    else:
        base = write_run(tmp_path, "base", _scores(0, 0.5))
    other = write_run(tmp_path, "other", probs, **change)
    (test,) = compare_variants([base, other], resamples=50)
    assert not test.pairs and note in test.note
    assert test.verdicts(0.95) == [f"other vs base: {test.note}"]


def test_a_missing_prediction_file_is_a_note(tmp_path):
    base = write_run(tmp_path, "base", _scores(0, 0.5))
    other = write_run(tmp_path, "other", _scores(1, 0.5))
    (other.directory / "predictions.csv").unlink()
    (test,) = compare_variants([base, other], resamples=50)
    assert test.note == "a prediction file is missing: no paired test"


# -- verdicts -------------------------------------------------------------------------------------


def test_no_verdict_when_a_run_of_either_side_did_not_learn(tmp_path):
    runs = [
        write_run(tmp_path, "base-seed0", _scores(0, 0.5)),
        write_run(tmp_path, "base-seed1", _scores(1, 0.5), learned=False),
        write_run(tmp_path, "gan-seed0", _scores(2, 0.5)),
        write_run(tmp_path, "gan-seed1", _scores(3, 0.5), learned=None),  # made before checks
    ]
    (test,) = compare_variants(runs, metrics=("f1_micro",), resamples=50)
    assert test.not_learned == {"base-seed1": "did not learn: every test patient called N"}
    (line,) = test.verdicts(0.95)
    assert line.startswith("gan vs base: no verdict, 1 run(s) did not learn (base-seed1 did not")
    assert line.endswith("says nothing about the method.")
    (asked,) = (
        compare_variants(runs, metrics=("f1_micro",), resamples=50, require_learning=False)
        .pop()
        .verdicts(0.95)
    )
    assert "on average over 2 paired runs" in asked
    assert asked.endswith("(caution: base-seed1 did not learn).")


def test_over_several_runs_the_verdict_is_the_t_tests(tmp_path):
    runs = []
    for seed in range(4):
        runs.append(write_run(tmp_path, f"base-seed{seed}", _scores(seed, 0.1)))
        runs.append(write_run(tmp_path, f"better-seed{seed}", _scores(20 + seed, 0.9)))
    (test,) = compare_variants(runs, metrics=("f1_micro", "recall_D"), resamples=200)
    lines = test.verdicts(0.95)
    assert len(lines) == 2
    alone = sum(p.differences[0].distinguishable for p in test.pairs)
    p = test.over_runs["f1_micro"]["p_value"]
    assert lines[0] == (
        f"better vs base: accuracy {test.over_runs['f1_micro']['mean']:+.3f} on average over 4 "
        f"paired runs (paired t-test {'p < 0.001' if p < 0.001 else f'p = {p:.3f}'}; "
        f"{alone} of 4 runs distinguishable alone): distinguishable from noise."
    )
    assert lines[1].startswith("better vs base: recall of D ")


# -- summaries over seeds -------------------------------------------------------------------------


def test_a_variants_runs_are_summarised_by_their_mean_and_a_two_level_interval(tmp_path):
    runs = [write_run(tmp_path, f"a-seed{s}", _scores(s, 0.3 + 0.2 * s)) for s in range(3)]
    runs += [write_run(tmp_path, f"b-fold{f}", _scores(5 + f, 0.5)) for f in range(2)]
    runs += [
        write_run(tmp_path, f"c-seed{s}-fold{f}", _scores(s, 0.5)) for s in (0, 1) for f in (0, 1)
    ]
    runs.append(write_run(tmp_path, "alone", _scores(9, 0.5)))
    table = group_summary(runs, ["f1_micro"], resamples=300, seed=2).set_index("variant")
    assert list(table.index) == ["a", "b", "c"]  # a variant of one run has no spread
    assert table.loc["a", "runs"] == 3 and table.loc["a", "unit"] == "seeds"
    assert table.loc["b", "unit"] == "folds" and table.loc["c", "unit"] == "runs"
    values = [r.metrics.final.f1_micro for r in runs[:3]]
    assert table.loc["a", "f1_micro"] == pytest.approx(np.mean(values))
    assert table.loc["a", "f1_micro_std"] == pytest.approx(np.std(values, ddof=1))
    low, high = bootstrap.runs_interval(
        [r.scored() for r in runs[:3]], "f1_micro", resamples=300, seed=2
    )
    assert (table.loc["a", "f1_micro_low"], table.loc["a", "f1_micro_high"]) == (low, high)
    # without prediction files: the t-interval of the mean on the logit scale
    for run in runs[:3]:
        (run.directory / "predictions.csv").unlink()
    fallback = group_summary(runs[:3], ["f1_micro"], resamples=300).iloc[0]
    expected = bootstrap.mean_interval(values, bounded=True)
    assert (fallback["f1_micro_low"], fallback["f1_micro_high"]) == pytest.approx(
        (expected["low"], expected["high"])
    )


# -- the wording's edges --------------------------------------------------------------------------


def _manual(p_value: float, runs: int = 3) -> VariantTest:
    test = VariantTest("gan", "base", single_label=False)
    for seed in range(runs):
        diff = bootstrap.PairedDifference("f1_micro", 0.04, [-0.01, 0.09], 0.2)
        test.pairs.append(PairTest(seed, 1, 30, [diff]))
    if runs > 1:
        test.over_runs = {"f1_micro": {"mean": 0.04, "p_value": p_value}}
    return test


def test_the_verdict_reads_at_the_level_asked_for_and_says_when_p_is_tiny_or_undefined():
    (at90,) = _manual(0.07).verdicts(0.90)
    (at95,) = _manual(0.07).verdicts(0.95)
    assert at90.endswith(
        "p = 0.070; 0 of 3 runs distinguishable alone): distinguishable from noise."
    )
    assert at95.endswith("): not distinguishable from noise.")
    assert "micro F1 +0.040 on average over 3 paired runs" in at90
    assert "(paired t-test p = 0.001;" in _manual(0.001).verdicts(0.95)[0]
    assert "(paired t-test p < 0.001;" in _manual(0.0009).verdicts(0.95)[0]
    assert "(paired t-test p not defined;" in _manual(float("nan")).verdicts(0.95)[0]
    undefined = _manual(0.2, runs=1)
    undefined.pairs[0].differences[0] = bootstrap.PairedDifference(
        "f1_micro", 0.0, [float("nan")] * 2, float("nan")
    )
    assert "p not defined, paired bootstrap over 30" in undefined.verdicts(0.95)[0]
    assert VariantTest("gan", "base").verdicts(0.95) == []  # nothing paired, nothing said
    document = _manual(0.07).to_dict()
    assert document["note"] == "" and document["pairs"][2]["fold"] == 1


def test_every_run_that_did_not_learn_is_named(tmp_path):
    test = _manual(0.07)
    test.not_learned = {"gan-seed0": "did not learn: x", "base-seed2": "did not learn: y"}
    (line,) = test.verdicts(0.95)
    assert "2 run(s) did not learn (gan-seed0 did not learn: x; base-seed2 did not learn: y)" in (
        line
    )
    test.require_learning = False
    (line,) = test.verdicts(0.95)
    assert line.endswith("(caution: gan-seed0, base-seed2 did not learn).")


def test_two_runs_each_are_tested_over_the_runs_and_folds_pair_too(tmp_path):
    runs = [write_run(tmp_path, f"base-fold{f}", _scores(f, 0.1)) for f in range(2)]
    runs += [write_run(tmp_path, f"new-fold{f}", _scores(5 + f, 0.8)) for f in range(2)]
    (test,) = compare_variants(runs, metrics=("f1_micro", "recall_D"), resamples=100)
    assert [(p.seed, p.fold) for p in test.pairs] == [(None, 0), (None, 1)]
    assert set(test.over_runs) == {"f1_micro", "recall_D"}
    lines = test.verdicts(0.95)
    assert len(lines) == 2 and all(
        "on average over 2 paired runs (paired t-test p" in x for x in lines
    )
    assert "p not defined" not in lines[0]


def test_a_pair_is_scored_at_each_runs_own_thresholds_and_at_the_level_asked_for(tmp_path):
    p = np.array([0.2, 0.35, 0.45, 0.6] * 4)
    base = write_run(tmp_path, "base", _scores(0, 0.3))
    cut = write_run(tmp_path, "cut", p, thresholds={"D": 0.3})
    both = compare_variants([base, cut], metrics=("f1_micro", "recall_D"), resamples=300, seed=1)
    (pair,) = both[0].pairs
    expected = cut.metrics.final.f1_micro - base.metrics.final.f1_micro
    assert pair.differences[0].difference == pytest.approx(expected)
    recall = (
        cut.metrics.final.per_class["D"]["recall"] - base.metrics.final.per_class["D"]["recall"]
    )
    assert pair.differences[1].difference == pytest.approx(recall)
    (narrow,) = compare_variants(
        [base, cut], metrics=("f1_micro",), resamples=300, seed=1, confidence=0.5
    )
    (expected_50,) = bootstrap.paired_bootstrap(
        base.scored(), cut.scored(), ("f1_micro",), resamples=300, seed=1, confidence=0.5
    )
    assert narrow.pairs[0].differences[0].interval == pytest.approx(expected_50.interval)
    assert "(50% CI" in narrow.verdicts(0.5)[0]


def test_a_summary_skips_variants_of_one_run_wherever_they_are_listed(tmp_path):
    runs = [write_run(tmp_path, "alone", _scores(9, 0.5))]
    runs += [write_run(tmp_path, f"a-seed{s}", _scores(s, 0.3 + 0.2 * s)) for s in range(3)]
    table = group_summary(runs, ["f1_micro"], resamples=200, confidence=0.8)
    assert list(table["variant"]) == ["a"]
    low, high = bootstrap.runs_interval(
        [r.scored() for r in runs[1:]], "f1_micro", resamples=200, confidence=0.8
    )
    assert (table["f1_micro_low"][0], table["f1_micro_high"][0]) == (low, high)
    for run in runs[1:]:
        (run.directory / "predictions.csv").unlink()
    fallback = group_summary(runs, ["f1_micro"], confidence=0.8).iloc[0]
    values = [r.metrics.final.f1_micro for r in runs[1:]]
    expected = bootstrap.mean_interval(values, 0.8, bounded=True)
    assert fallback["f1_micro_low"] == pytest.approx(expected["low"])


def test_a_comparison_is_reproducible_from_its_seed(tmp_path):
    # two runs of equal skill: the p-value is a share of resamples that the seed decides
    runs = [
        write_run(tmp_path, "base", _scores(0, 0.4)),
        write_run(tmp_path, "same", _scores(1, 0.4)),
    ]
    found = [
        compare_variants(runs, metrics=("recall_D", "f1_micro"), resamples=400, seed=s)[0]
        for s in (4, 4, 5)
    ]
    a, b = (r.scored() for r in runs)
    expected = bootstrap.paired_bootstrap(a, b, ("recall_D", "f1_micro"), resamples=400, seed=4)
    for got, want in zip(found[0].pairs[0].differences, expected, strict=True):
        assert (got.p_value, got.interval) == (want.p_value, want.interval)
    assert found[0].to_dict() == found[1].to_dict()
    assert found[0].to_dict() != found[2].to_dict()
    assert len(found[0].verdicts(0.95)) == 2  # one sentence per metric of the single pair


def test_a_candidate_run_that_did_not_learn_is_named_too(tmp_path):
    runs = [
        write_run(tmp_path, "base-seed0", _scores(0, 0.5)),
        write_run(tmp_path, "gan-seed0", _scores(2, 0.5), learned=False),
    ]
    (test,) = compare_variants(runs, metrics=("f1_micro",), resamples=50)
    assert test.not_learned == {"gan-seed0": "did not learn: every test patient called N"}


def test_a_pair_counts_patients_not_photographs(tmp_path):
    runs = [
        write_run(tmp_path, "base-seed0", _scores(0, 0.5)),
        write_run(tmp_path, "gan-seed0", _scores(2, 0.8)),
    ]
    for run in runs:  # both eyes of every patient, scored alike
        path = run.directory / "predictions.csv"
        left = pd.read_csv(path, dtype={"patient_id": str})
        right = left.assign(eye="right", path=left["path"].str.replace("left", "right"))
        pd.concat([left, right]).to_csv(path, index=False)
    (test,) = compare_variants(runs, metrics=("f1_micro",), resamples=50)
    assert test.pairs[0].patients == len(PATIENTS)
    (line,) = test.verdicts(0.95)
    assert f"paired bootstrap over {len(PATIENTS)} test patients" in line
