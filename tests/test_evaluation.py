"""The evaluation protocol: patient fusion and truth, choices made on validation only,
operating points, calibration, bootstrap intervals and paired tests."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_experiment
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw
from scipy.optimize import minimize_scalar
from sklearn.metrics import f1_score, roc_auc_score

from odirkit.bootstrap import Scored, intervals, paired_bootstrap, paired_over_runs
from odirkit.calibration import (
    brier_score,
    expected_calibration_error,
    fit_temperature,
    probabilities,
    reliability,
)
from odirkit.data.prepare import DataBundle, patient_truth
from odirkit.data.split import carve_validation, patient_level_split
from odirkit.data.table import Task
from odirkit.engine.evaluate import at_level, metrics_of
from odirkit.engine.trainer import Evaluation
from odirkit.labels import LABELS
from odirkit.metrics import (
    classification_metrics,
    odir_score,
    predictions,
    sensitivity_at_specificity,
)
from odirkit.thresholds import choose_thresholds, parse_rule

WORKBOOK = "ODIR-5K_Training_Annotations(Updated)_V2.xlsx"


def eight_label_experiment(root: Path, *, epochs: int = 1, extra: str = "") -> str:
    """The tiny experiment on the odir5k reader, all eight labels, scored per patient."""
    text = tiny_experiment(root, epochs=epochs, extra=extra).replace(
        'labels = ["N", "D"]',
        'labels = ["N", "D", "G", "C", "A", "H", "M", "O"]\nlevel = "patient"',
    )
    text = text.replace('dataset = "phantom"', 'dataset = "odir5k"')
    return "\n".join(
        line
        for line in text.splitlines()
        if not line.startswith(("patients =", "size =", "difficulty ="))
    )


def run_folder(cli, tmp_path: Path, text: str, *args: str) -> Path:
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    out = tmp_path / "runs"
    before = set(out.glob("*/*"))
    result = cli("run", exp, "--out", out, *args)
    assert result.exit_code == 0, result.output
    (new,) = set(out.glob("*/*")) - before
    return new


# -- patient fusion ------------------------------------------------------------------------


def one_diseased_eye_bundle() -> tuple[DataBundle, Evaluation]:
    """Three patients (IDs that sort differently as text and as numbers) and a perfect
    per-eye classifier: patient 2 has a diabetic left eye and a normal right eye, patient 10
    two normal eyes, patient 100 a normal left eye and a glaucomatous right eye."""
    eyes = {
        ("2", "left"): "D",
        ("2", "right"): "N",
        ("10", "left"): "N",
        ("10", "right"): "N",
        ("100", "left"): "N",
        ("100", "right"): "G",
    }
    rows = []
    for (pid, eye), label in eyes.items():
        rows.append(
            {
                "patient_id": pid,
                "eye": eye,
                "path": f"{pid}_{eye}.jpg",
                **{lab: int(lab == label) for lab in LABELS},
            }
        )
    table = pd.DataFrame(rows)
    targets = table[list(LABELS)].to_numpy(dtype=np.float32)
    probs = np.where(targets == 1, 0.99, 0.01)
    index = np.arange(len(table))
    truth, _ = patient_truth(table)
    bundle = DataBundle(
        table, Task(tuple(LABELS), "multi_label"), targets, index[:0], index[:0], index, None
    )
    bundle.patients = truth
    return bundle, Evaluation(index, probs, targets, 0.0)


def test_a_patient_with_one_diseased_eye_is_not_normal_under_either_fusion():
    data, evaluation = one_diseased_eye_bundle()
    truth = data.patients
    fused = at_level(data, evaluation, level="patient", fusion="max")
    ids = list(fused.keys["ID"])
    assert np.array_equal(fused.targets, truth.loc[ids].to_numpy())
    # Max fusion: the patient's true labels at the challenge's threshold.
    assert np.array_equal(predictions(fused.probs, single_label=False), fused.targets)
    assert fused.probs[ids.index("2"), LABELS.index("N")] == pytest.approx(0.01)

    mean = at_level(data, evaluation, level="patient", fusion="mean")
    n = LABELS.index("N")
    assert mean.probs[ids.index("2"), n] == pytest.approx(0.01)  # N: the least normal eye
    assert mean.probs[ids.index("10"), n] == pytest.approx(0.99)
    assert mean.probs[ids.index("2"), LABELS.index("D")] == pytest.approx(0.5)  # D: the mean
    # The mean halves a one-eyed disease, but ranks patients perfectly: thresholds chosen at
    # patient level (max_f1) give every true label.
    for c in (n, LABELS.index("D"), LABELS.index("G")):
        assert roc_auc_score(mean.targets[:, c], mean.probs[:, c]) == 1.0
    chosen = choose_thresholds(parse_rule("max_f1"), mean.targets, mean.probs, single_label=False)
    assert np.array_equal(
        predictions(mean.probs, single_label=False, thresholds=chosen), mean.targets
    )


def test_a_patient_with_two_photographs_of_one_eye_fuses_all_three():
    # patient 10 has two photographs of the left eye: three values per label, whose mean
    # (0.4) is neither their median (0.2) nor their maximum. Listed 10, 9, 100: neither text
    # nor numeric order.
    from odirkit.fusion import fuse_eyes

    probs = np.array([[0.8, 0.1], [0.6, 0.2], [0.5, 0.7], [0.3, 0.9], [0.9, 0.05], [0.4, 0.6]])
    ids = ["10", "10", "9", "10", "9", "100"]
    fused = fuse_eyes(probs, ids, ["N", "D"], fusion="max")
    assert list(fused.index) == ["10", "9", "100"]  # in order of first appearance
    assert fused.loc["10"].tolist() == pytest.approx([0.3, 0.9])  # N: min, D: max
    assert fused.loc["9"].tolist() == pytest.approx([0.5, 0.7])
    mean = fuse_eyes(probs, ids, ["N", "D"], fusion="mean")
    assert mean.loc["10"].tolist() == pytest.approx([0.3, 0.4])  # N still the minimum
    assert mean.loc["9", "D"] == pytest.approx(0.375)
    assert fuse_eyes(probs, ids, ["N", "D"]).equals(fused)  # max unless told otherwise
    with pytest.raises(ValueError, match=r"one of max, mean, got 'median'"):
        fuse_eyes(probs, ids, ["N", "D"], fusion="median")


@settings(max_examples=100, deadline=None)
@given(
    eyes=st.lists(
        st.tuples(
            st.sampled_from(["7", "10", "100"]),
            st.floats(0, 1),
            st.floats(0, 1),
        ),
        min_size=1,
        max_size=8,
    ),
    which=st.integers(0, 7),
    raised=st.floats(0, 1),
    fusion=st.sampled_from(["max", "mean"]),
)
def test_fusion_stays_within_the_eyes_and_never_falls_when_an_eye_rises(
    eyes, which, raised, fusion
):
    from odirkit.fusion import fuse_eyes

    ids = [pid for pid, _, _ in eyes]
    probs = np.array([[n, d] for _, n, d in eyes])
    fused = fuse_eyes(probs, ids, ["N", "D"], fusion=fusion)
    for pid in fused.index:
        own = probs[[i == pid for i in ids]]
        assert fused.loc[pid, "N"] == pytest.approx(own[:, 0].min())  # the least normal eye
        assert own[:, 1].min() - 1e-12 <= fused.loc[pid, "D"] <= own[:, 1].max() + 1e-12
    # one eye's probabilities rise: its patient's fused probabilities do not fall
    row = which % len(eyes)
    higher = probs.copy()
    higher[row] = np.maximum(higher[row], raised)
    after = fuse_eyes(higher, ids, ["N", "D"], fusion=fusion)
    assert (after.to_numpy() >= fused.to_numpy() - 1e-12).all()


def disc_image(path: Path, colour: tuple[int, int, int]) -> None:
    """A bright disc on black, like a fundus photograph, in one colour."""
    image = Image.new("RGB", (80, 64))
    ImageDraw.Draw(image).ellipse((10, 2, 70, 62), fill=colour)
    image.save(path)


class ColourModel(torch.nn.Module):
    """A perfect classifier for disc_image photographs: red is diabetic, green is normal."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        redness = (x[:, 0] - x[:, 1]).mean(dim=(1, 2))
        logits = torch.full((len(x), len(LABELS)), -20.0)
        logits[:, LABELS.index("D")] = 20 * redness
        logits[:, LABELS.index("N")] = -20 * redness
        return logits


@pytest.fixture(scope="module")
def patient_run(tmp_path_factory, phantom_root) -> Path:
    """One finished eight-label, patient-level run on the odir5k reader."""
    from typer.testing import CliRunner

    from odirkit.cli import app

    work = tmp_path_factory.mktemp("patient-run")
    exp = work / "exp.toml"
    exp.write_text(eight_label_experiment(phantom_root, epochs=2))
    result = CliRunner().invoke(app, ["run", str(exp), "--out", str(work / "runs")])
    assert result.exit_code == 0, result.output
    (variant,) = (work / "runs").glob("*/*/default")
    return variant


@pytest.mark.slow
@pytest.mark.parametrize("fusion", ["max", "mean"])
def test_predict_fuses_a_one_diseased_eye_patient_as_not_normal(
    cli, tmp_path, patient_run, monkeypatch, fusion
):
    import odirkit.predict as predict_module

    folder = tmp_path / "photos"
    folder.mkdir()
    disc_image(folder / "7_left.png", (220, 30, 30))  # diabetic
    disc_image(folder / "7_right.png", (30, 220, 30))  # normal
    disc_image(folder / "12_left.png", (30, 220, 30))
    disc_image(folder / "12_right.png", (30, 220, 30))
    real = predict_module.load_trained

    def perfect(variant_dir, registry, checkpoint=None):
        exp, _, view = real(variant_dir, registry, checkpoint)
        return exp, ColourModel(), dataclasses.replace(view, fusion=fusion)

    monkeypatch.setattr(predict_module, "load_trained", perfect)
    out = tmp_path / "submission.csv"
    result = cli("predict", patient_run, folder, "--out", out, "--force")  # flat drawn discs
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out, dtype={"ID": str}).set_index("ID")
    assert list(frame.index) == ["7", "12"]  # numeric order, as the challenge lists patients
    assert frame.loc["7", "N"] < 0.01 and frame.loc["12", "N"] > 0.99
    if fusion == "max":
        assert frame.loc["7", "D"] > 0.99
    else:
        assert frame.loc["7", "D"] == pytest.approx(0.5, abs=0.01)


# -- patient truth and the challenge's score ------------------------------------------------


@pytest.fixture
def odir_with_workbook_truth(phantom_root, tmp_path) -> tuple[Path, list[str]]:
    """The phantom read as ODIR-5K, with a workbook whose patient labels disagree with the
    eyes' keywords for a few patients (as real ODIR-5K's do)."""
    root = tmp_path / "odir"
    shutil.copytree(phantom_root, root, ignore=shutil.ignore_patterns(".odirkit-cache"))
    book = pd.read_excel(root / WORKBOOK)
    changed = []
    labels = book[list(LABELS)]
    # four patients the workbook will contradict: any whose labels are not "O" alone
    chosen = [int(pid) for pid in book["ID"][labels["O"].eq(0) | labels.sum(axis=1).gt(1)][3:7]]
    for pid in chosen:
        row = book.index[book["ID"] == pid][0]
        book.loc[row, list(LABELS)] = 0
        book.loc[row, "O"] = 1  # the workbook says "other disease" whatever the keywords say
        changed.append(str(pid))
    book.to_excel(root / WORKBOOK, index=False)
    return root, changed


@pytest.mark.slow
def test_patient_truth_is_the_workbooks_and_the_challenge_score_matches_odirkit_score(
    cli, tmp_path, odir_with_workbook_truth
):
    root, changed = odir_with_workbook_truth
    variant = run_folder(cli, tmp_path, eight_label_experiment(root)) / "default"
    data = json.loads((variant / "data.json").read_text())
    assert data["patient_truth"]["disagree_with_eye_labels"] == len(changed)

    book = pd.read_excel(root / WORKBOOK).assign(ID=lambda b: b["ID"].astype(str))
    book = book.set_index("ID")
    patients = pd.read_csv(variant / "patient_predictions.csv", dtype={"ID": str})
    targets = patients.set_index("ID")[[f"target_{label}" for label in LABELS]]
    assert np.array_equal(targets.to_numpy(), book.loc[targets.index, list(LABELS)].to_numpy())

    # The run's challenge score is `odirkit score` of the same predictions as a submission.
    truth_file, submission = tmp_path / "truth.csv", tmp_path / "submission.csv"
    test_ids = sorted(patients["ID"], key=int)
    book.loc[test_ids, list(LABELS)].reset_index().to_csv(truth_file, index=False)
    patients[["ID", *LABELS]].to_csv(submission, index=False)
    scored = cli("score", truth_file, submission, "--sort", "--json")
    assert scored.exit_code == 0, scored.output
    odir = json.loads((variant / "metrics.json").read_text())["final"]["odir_patient"]
    assert json.loads(scored.stdout)["odir"] == pytest.approx(odir, abs=1e-6)


def test_an_image_level_run_never_shows_the_challenge_score(cli, tmp_path, phantom_root):
    text = eight_label_experiment(phantom_root).replace('level = "patient"', 'level = "image"')
    variant = run_folder(cli, tmp_path, text) / "default"
    assert not [c for c in pd.read_csv(variant / "metrics.csv").columns if "odir" in c]
    final = json.loads((variant / "metrics.json").read_text())
    assert "odir" not in json.dumps(final["final"]) and "odir" not in json.dumps(
        final["checkpoints"]
    )
    assert "odir" not in (variant.parent / "comparison.csv").read_text()


# -- splits ----------------------------------------------------------------------------------


def test_no_patient_is_in_two_of_train_val_test_in_one_split_or_across_folds(
    registry, tmp_path, phantom_root
):
    from odirkit.config import load_experiment
    from odirkit.data.prepare import assign_split, load_samples

    path = tmp_path / "exp.toml"
    path.write_text(tiny_experiment(phantom_root))
    (exp,) = load_experiment(path, registry)
    table = load_samples(exp).table
    sides = assign_split(exp, table)
    assert set(sides) == {"train", "val", "test"} and sides.index.is_unique
    assert set(sides.index) == set(table["patient_id"])
    assert (sides == "val").sum() == round(0.15 * (sides != "test").sum())

    path.write_text(tiny_experiment(phantom_root).replace("test_fraction = 0.25", "folds = 3"))
    folds = load_experiment(path, registry)
    assignments = [assign_split(e, table) for e in folds]
    tests = [set(a.index[a == "test"]) for a in assignments]
    for a, test in zip(assignments, tests, strict=True):
        val, train = set(a.index[a == "val"]), set(a.index[a == "train"])
        assert val and not val & test and not val & train and not train & test
    assert set().union(*tests) == set(table["patient_id"]) and sum(map(len, tests)) == 40


def test_train_val_and_test_keep_the_label_set_shares():
    rng = np.random.default_rng(0)
    sets = ["N", "D", "DH", "G", "C", "A", "M", "O", "DO"]
    weights = np.array([0.32, 0.22, 0.08, 0.07, 0.07, 0.06, 0.06, 0.07, 0.05])
    drawn = rng.choice(sets, size=3000, p=weights)
    table = pd.DataFrame(
        [
            {"patient_id": str(i), **{lab: int(lab in s) for lab in LABELS}}
            for i, s in enumerate(drawn)
            for _ in range(2)
        ]
    )
    train_idx, test_idx = patient_level_split(
        table, labels=list(LABELS), test_fraction=0.15, seed=3
    )
    sides = pd.Series("train", index=table.loc[train_idx, "patient_id"].unique())
    sides = pd.concat([sides, pd.Series("test", index=table.loc[test_idx, "patient_id"].unique())])
    sides = carve_validation(table, sides, labels=list(LABELS), fraction=0.15, seed=3)
    overall = pd.Series(drawn).value_counts(normalize=True)
    by_patient = pd.Series(drawn, index=[str(i) for i in range(3000)])
    for side in ("train", "val", "test"):
        shares = by_patient[sides.index[sides == side]].value_counts(normalize=True)
        gap = (shares.reindex(overall.index, fill_value=0) - overall).abs().max()
        assert gap < 0.006, (side, gap)


# -- choices read the validation patients only ---------------------------------------------------


@pytest.mark.slow
def test_scrambled_test_labels_change_no_choice(cli, tmp_path, phantom_root):
    extra = (
        'test_every_epoch = true\n\n[eval]\nthreshold = "max_f1"\ncalibrate = true\n'
        "bootstrap = 200\n"
    )
    text = eight_label_experiment(phantom_root, epochs=4, extra=extra)
    plain = run_folder(cli, tmp_path, text) / "default"
    scrambled = run_folder(cli, tmp_path, text, "--set", "data.shuffle_test_labels=true")
    scrambled = scrambled / "default"

    a = json.loads((plain / "metrics.json").read_text())
    b = json.loads((scrambled / "metrics.json").read_text())
    assert a["best"] == b["best"] and a["checkpoint_epoch"] == b["checkpoint_epoch"]
    assert a["final"]["thresholds"] == b["final"]["thresholds"]
    assert a["final"]["temperature"] == b["final"]["temperature"]
    best_a = torch.load(plain / "checkpoints/best.pt", weights_only=True)["model"]
    best_b = torch.load(scrambled / "checkpoints/best.pt", weights_only=True)["model"]
    assert all(torch.equal(best_a[k], best_b[k]) for k in best_a)
    history_a = pd.read_csv(plain / "metrics.csv")
    history_b = pd.read_csv(scrambled / "metrics.csv")
    val_columns = [c for c in history_a.columns if c.startswith(("val_", "train_"))]
    pd.testing.assert_frame_equal(history_a[val_columns], history_b[val_columns])
    # ... while the scrambling did reach the test scores.
    assert not history_a["test_loss"].equals(history_b["test_loss"])
    assert a["final"]["auc_macro"] != b["final"]["auc_macro"]


@pytest.mark.slow
def test_patience_stops_training_when_validation_stops_improving(cli, tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=6, extra="patience = 1\n").replace(
        "lr = 0.003", "lr = 1e-12"
    )
    variant = run_folder(cli, tmp_path, text) / "default"
    final = json.loads((variant / "metrics.json").read_text())
    assert final["stopped_early"] and final["epochs_trained"] == 2
    assert final["best"]["epoch"] == 1 and final["checkpoint_epoch"] == 1
    assert len(pd.read_csv(variant / "metrics.csv")) == 2
    # reporting the last epoch of a run stopped early: the last one trained, not the 6th
    (tmp_path / "last").mkdir()
    last = run_folder(cli, tmp_path / "last", text + '\n[eval]\ncheckpoint = "last"\n')
    final = json.loads((last / "default" / "metrics.json").read_text())
    assert (final["checkpoint"], final["checkpoint_epoch"], final["epochs"]) == ("last", 2, 6)


def test_without_validation_patients_the_last_epoch_is_the_result(cli, tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=2).replace(
        "test_fraction = 0.25", "test_fraction = 0.25\nval_fraction = 0.0"
    )
    variant = run_folder(cli, tmp_path, text) / "default"
    final = json.loads((variant / "metrics.json").read_text())
    assert final["checkpoint"] == "last" and final["checkpoint_epoch"] == 2
    assert final["best"] is None and not (variant / "checkpoints/best.pt").exists()
    assert "val" not in set(pd.read_csv(variant / "split.csv")["split"])

    exp = tmp_path / "bad.toml"
    exp.write_text(text + '\n[eval]\nthreshold = "max_f1"\n')
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 2 and "data.val_fraction > 0" in result.stderr


# -- metrics at the threshold ----------------------------------------------------------------------


def test_a_probability_of_exactly_one_half_is_not_a_positive():
    targets = np.array([[1, 0], [1, 1], [0, 1], [0, 0]])
    probs = np.array([[0.5, 0.2], [0.9, 0.5], [0.1, 0.8], [0.1, 0.3]])  # as a rounded file has
    m = classification_metrics(targets, probs, labels=["N", "D"], single_label=False)
    assert m["per_class"]["N"]["recall"] == pytest.approx(0.5)  # 0.5 is not above 0.5
    assert m["per_class"]["D"]["recall"] == pytest.approx(0.5)
    odir = odir_score(targets, probs)
    assert odir["f1"] == pytest.approx(6 / 8) and odir["kappa"] == pytest.approx(0.5)


def test_multi_label_micro_f1_pools_the_labels():
    targets = np.array([[1, 0, 0], [1, 0, 0], [1, 1, 0], [1, 0, 1], [0, 0, 1], [1, 0, 0]])
    probs = np.array(
        [
            [0.9, 0.1, 0.1],
            [0.8, 0.1, 0.2],
            [0.7, 0.2, 0.1],
            [0.6, 0.3, 0.9],
            [0.2, 0.9, 0.8],
            [0.9, 0.1, 0.1],
        ]
    )
    m = classification_metrics(targets, probs, labels=["N", "D", "G"], single_label=False)
    pred = (probs > 0.5).astype(int)
    micro = f1_score(targets, pred, average="micro")
    assert m["f1_micro"] == pytest.approx(micro)
    assert m["f1_macro"] == pytest.approx(f1_score(targets, pred, average="macro"))
    assert abs(m["f1_micro"] - m["f1_macro"]) > 0.1  # the two differ on this data


def test_score_sort_matches_ids_numerically(cli, tmp_path):
    ids = [1, 2, 10, 100, 21, 3]  # text order 1, 10, 100, 2, 21, 3 is not numeric order
    truth = pd.DataFrame(np.eye(8, dtype=int)[np.arange(6)], columns=list(LABELS)).assign(ID=ids)
    truth[["ID", *LABELS]].sort_values("ID").to_csv(tmp_path / "truth.csv", index=False)
    shuffled = truth.astype({label: float for label in LABELS}).sample(frac=1, random_state=1)
    shuffled["ID"] = shuffled["ID"].astype(str)
    shuffled[["ID", *LABELS]].to_csv(tmp_path / "preds.csv", index=False)
    result = cli("score", tmp_path / "truth.csv", tmp_path / "preds.csv", "--sort", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["odir"]["final"] == pytest.approx(1.0)


# -- operating points and calibration ------------------------------------------------------


def test_max_f1_and_sensitivity_thresholds_are_chosen_as_documented():
    y = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1, 1])
    p = np.array([0.05, 0.1, 0.2, 0.3, 0.35, 0.4, 0.6, 0.7, 0.8, 0.9])
    targets, probs = y[:, None], p[:, None]
    (best,) = choose_thresholds(parse_rule("max_f1"), targets, probs, single_label=False)
    f1 = {t: f1_score(y, p > t) for t in np.unique(np.r_[p - 1e-6, p + 1e-6])}
    assert f1_score(y, p > best) == pytest.approx(max(f1.values()))
    assert best == pytest.approx((0.3 + 0.35) / 2)  # halfway between neighbouring scores
    # On a plateau of equal F1 (2/3 at 0.1 and at 0.7), the threshold nearest 0.5.
    plateau_y, plateau_p = np.array([[1], [0], [0], [1]]), np.array([[0.2], [0.4], [0.6], [0.8]])
    (tie,) = choose_thresholds(parse_rule("max_f1"), plateau_y, plateau_p, single_label=False)
    assert tie == pytest.approx(0.7)
    (sens,) = choose_thresholds(parse_rule("sensitivity:1.0"), targets, probs, single_label=False)
    assert (p[y == 1] > sens).all() and sens == pytest.approx((0.3 + 0.35) / 2)
    (spec,) = choose_thresholds(parse_rule("specificity:1.0"), targets, probs, single_label=False)
    assert not (p[y == 0] > spec).any() and spec == pytest.approx((0.4 + 0.6) / 2)
    assert choose_thresholds(parse_rule("0.3"), targets, probs, single_label=False)[0] == 0.3
    with pytest.raises(ValueError, match="max_f1"):
        parse_rule("best")


def test_a_threshold_beyond_every_score_keeps_its_promise_at_the_ends():
    # sensitivity 1.0 when the lowest score is a positive's: below it, halfway to 0; and
    # specificity 1.0 when the highest is a negative's: above it, halfway to 1
    y = np.array([1, 0, 1, 0])
    p = np.array([0.2, 0.4, 0.6, 0.8])
    (sens,) = choose_thresholds(
        parse_rule("sensitivity:1.0"), y[:, None], p[:, None], single_label=False
    )
    assert sens == pytest.approx(0.1) and (p[y == 1] > sens).all()
    (spec,) = choose_thresholds(
        parse_rule("specificity:1.0"), y[:, None], p[:, None], single_label=False
    )
    assert spec == pytest.approx(0.9) and not (p[y == 0] > spec).any()
    # scores at the very ends (a saturated sigmoid): a positive at exactly 0 is still found,
    # a negative at exactly 1 still left out; a score equal to its threshold is not above it
    ends = np.array([0.0, 0.5, 1.0, 0.7])
    y_ends = np.array([1, 0, 0, 1])
    (low,) = choose_thresholds(
        parse_rule("sensitivity:1.0"), y_ends[:, None], ends[:, None], single_label=False
    )
    assert low < 0.0 and low == pytest.approx(0.0, abs=1e-6) and (ends[y_ends == 1] > low).all()
    (high,) = choose_thresholds(
        parse_rule("specificity:1.0"), y_ends[:, None], ends[:, None], single_label=False
    )
    assert (
        high > 1.0 and high == pytest.approx(1.0, abs=1e-6) and not (ends[y_ends == 0] > high).any()
    )


def test_a_single_label_task_thresholds_its_disease_only_when_it_has_two_classes():
    # N vs D: the rule moves the threshold on D's probability; N has none (NaN)
    y = np.array([1, 0, 1, 0, 0, 0])  # two D, four N: specificity counts the four
    p_d = np.array([0.2, 0.4, 0.6, 0.8, 0.3, 0.1])
    probs = np.c_[1 - p_d, p_d]
    (none, sens) = choose_thresholds(parse_rule("sensitivity:1.0"), y, probs, single_label=True)
    assert np.isnan(none) and sens == pytest.approx(0.15) and (p_d[y == 1] > sens).all()
    spec = choose_thresholds(parse_rule("specificity:0.75"), y, probs, single_label=True)[1]
    assert spec == pytest.approx(0.5)  # 3 of the 4 N at or below: 0.4 -> 0.6
    assert ((p_d[y == 0] <= spec).mean()) == 0.75
    fixed = choose_thresholds(parse_rule("0.3"), y, probs, single_label=True)
    assert np.isnan(fixed[0]) and fixed[1] == 0.3
    assert choose_thresholds(parse_rule("0.5"), y, probs, single_label=True) is None  # argmax
    three = np.c_[probs * 0.5, np.full(6, 0.5)]  # three classes: argmax, whatever the rule
    assert choose_thresholds(parse_rule("max_f1"), y, three, single_label=True) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0.0", "a fixed threshold lies in (0, 1)"),
        ("1.0", "expected a number in (0, 1)"),
        (".999", None),
        ("sensitivity:0.0", "the target lies in (0, 1]"),
        ("specificity:0.0", "the target lies in (0, 1]"),
        ("sensitivity:1", None),
        ("specificity:1.0", None),
        ("sensitivity:1.5", "expected a number in (0, 1)"),
        ("best", 'such as "0.5", "max_f1", "sensitivity:0.90" or "specificity:0.95"'),
    ],
)
def test_a_threshold_rule_outside_its_range_is_refused_saying_the_range(text, message):
    if message is None:  # the ends a rule may reach
        assert parse_rule(text).value == float(text.rpartition(":")[2])
        return
    with pytest.raises(ValueError) as caught:
        parse_rule(text)
    assert message in str(caught.value) and repr(text) in str(caught.value)


def test_operating_points_read_off_the_roc_curve():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 400)
    s = rng.normal(y * 1.5, 1.0)
    got = sensitivity_at_specificity(y, s, 0.9)
    best = 0.0
    for t in np.unique(s):  # brute force: every threshold keeping specificity >= 0.9
        if ((s[y == 0] < t).mean()) >= 0.9:
            best = max(best, (s[y == 1] >= t).mean())
    assert got == pytest.approx(best)
    m = classification_metrics(
        y,
        np.c_[1 - 1 / (1 + np.exp(-s)), 1 / (1 + np.exp(-s))],
        labels=["N", "D"],
        single_label=True,
    )
    assert m["per_class"]["D"]["sens_at_spec_90"] == pytest.approx(best)
    assert m["per_class"]["D"]["sens_at_spec_95"] <= best


def test_calibration_error_and_temperature_scaling():
    outcomes = np.array([0, 0, 1, 1, 1, 0, 1, 1])
    probs = np.array([0.1, 0.1, 0.1, 0.1, 0.9, 0.9, 0.9, 0.9])
    # two used bins: mean 0.1 with frequency 0.5, mean 0.9 with frequency 0.75
    assert expected_calibration_error(outcomes, probs) == pytest.approx(0.5 * 0.4 + 0.5 * 0.15)
    # five bins, two used with unequal counts (2 and 6 of 8 images): the gaps |frequency -
    # mean probability| (0.4 and |5/6 - 0.85|) are weighted by the bins' shares, 0.1125, not
    # averaged, 0.208; a probability of exactly 1 falls in the last bin, not a bin of its own
    outcomes = np.array([0, 1, 1, 1, 1, 1, 1, 0])
    probs = np.array([0.05, 0.15, 0.8, 0.8, 0.8, 0.8, 0.9, 1.0])
    assert expected_calibration_error(outcomes, probs, bins=5) == pytest.approx(0.1125)
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, size=(5000, 3))
    labels = np.array(
        [rng.choice(3, p=p) for p in probabilities(logits, single_label=True, temperature=2.0)]
    )
    assert fit_temperature(logits, labels, single_label=True) == pytest.approx(2.0, rel=0.1)
    binary = (
        rng.uniform(size=(5000, 2))
        < probabilities(logits[:, :2], single_label=False, temperature=0.5)
    ).astype(float)
    assert fit_temperature(logits[:, :2], binary, single_label=False) == pytest.approx(0.5, rel=0.1)


def test_calibration_reliability_bins_brier_and_the_empty_cases():
    # five bins: one image in bin 0 (its frequency counts, not a missing bin), none in
    # bins 1 and 2, two in bin 3, two in bin 4; probabilities outside [0, 1] are clipped
    outcomes = np.array([1, 0, 1, 1, 0])
    probs = np.array([-0.2, 0.65, 0.75, 0.95, 1.3])
    table = reliability(outcomes, probs, bins=5)
    assert table.edges.tolist() == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])
    assert table.counts.tolist() == [1, 0, 0, 2, 2]
    assert table.mean_probability[[0, 3, 4]].tolist() == pytest.approx([0.0, 0.7, 0.975])
    assert table.frequency[[0, 3, 4]].tolist() == pytest.approx([1.0, 0.5, 0.5])
    assert np.isnan(table.mean_probability[1:3]).all() and np.isnan(table.frequency[1:3]).all()
    # the lone image of bin 0 weighs 1/5: (1 * |1 - 0| + 2 * |0.5 - 0.7| + 2 * 0.475) / 5
    assert expected_calibration_error(outcomes, probs, bins=5) == pytest.approx(0.47)
    assert np.isnan(expected_calibration_error(np.array([]), np.array([])))
    # Brier: the mean squared distance of probability and outcome; nothing to score: nan
    assert brier_score(np.array([0, 1, 1]), np.array([0.2, 0.6, 0.9])) == pytest.approx(0.07)
    assert np.isnan(brier_score(np.array([]), np.array([])))


def test_temperature_divides_the_logits_and_a_softmax_fits_multi_label_shares():
    logits = np.array([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]], dtype=np.float32)
    plain = probabilities(logits, single_label=True)  # temperature 1 by default
    assert plain.dtype == np.float64
    expected = np.exp(logits / 2.0) / np.exp(logits / 2.0).sum(axis=1, keepdims=True)
    assert probabilities(logits, single_label=True, temperature=2.0) == pytest.approx(expected)
    assert plain == pytest.approx(np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True))
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0), single_label=True) == 1.0
    # logits that are not numbers fit nothing: the temperature stays 1
    nan = np.array([[np.nan, 0.0, 1.0], [0.0, 1.0, 2.0]])
    assert fit_temperature(nan, np.array([0, 2]), single_label=True) == 1.0
    # one confidently right image: sharper is always better, T falls below 1
    assert fit_temperature(np.array([[2.0, 0.0]]), np.array([0]), single_label=True) < 0.5
    # one-hot targets as a 0/1 matrix under a softmax: fitted as the class indices are
    rng = np.random.default_rng(3)
    logits = rng.normal(0, 4, size=(3000, 3))
    truth = probabilities(logits, single_label=True, temperature=0.5)
    labels = np.array([rng.choice(3, p=p) for p in truth])
    as_indices = fit_temperature(logits, labels, single_label=True)
    as_matrix = fit_temperature(logits, np.eye(3)[labels], single_label=True)
    assert as_indices == pytest.approx(0.5, rel=0.1) and as_matrix == pytest.approx(as_indices)
    # two labels of one image under a softmax are half a label each: the temperature that
    # minimises the cross-entropy against those shares (found here by scipy, on a grid of T)
    both = np.eye(3)[labels]
    both[:1500, 2] = 1.0
    shares = both / both.sum(axis=1, keepdims=True)

    def shares_nll(log_t: float) -> float:
        z = logits / np.exp(log_t)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return float(-(shares * log_p).sum(axis=1).mean())

    best = minimize_scalar(shares_nll, bounds=(-3, 3), method="bounded", options={"xatol": 1e-8})
    assert fit_temperature(logits, both, single_label=True) == pytest.approx(
        np.exp(best.x), rel=1e-4
    )
    assert fit_temperature(logits.astype(np.float32), labels, single_label=True) == pytest.approx(
        as_indices, rel=1e-4
    )


# -- intervals and paired tests -------------------------------------------------------------------


def test_bootstrap_weights_are_repeated_patients_and_unit_weights_the_point_metrics():
    # 40 patients, 3 labels, ties among the scores; a weight row of counts must score as the
    # data with each patient repeated that many times, a row of ones as the data itself
    from sklearn.metrics import cohen_kappa_score, recall_score

    from odirkit.bootstrap import weighted_metrics
    from odirkit.metrics import odir_score

    rng = np.random.default_rng(5)
    y = (rng.uniform(size=(40, 3)) < [0.5, 0.3, 0.2]).astype(int)
    s = np.clip(y * 0.3 + rng.uniform(size=(40, 3)) * 0.7, 0, 1).round(1)
    d = (s > 0.5).astype(int)
    counts = rng.integers(0, 4, size=40).astype(float)
    scored = Scored.build(y, d, s, labels=["N", "D", "G"], challenge=True)
    unit, repeated = (
        {k: v[i] for k, v in weighted_metrics(scored, np.stack([np.ones(40), counts])).items()}
        for i in (0, 1)
    )
    for figures, rows in (
        (unit, np.arange(40)),
        (repeated, np.repeat(np.arange(40), counts.astype(int))),
    ):
        yy, dd, ss = y[rows], d[rows], s[rows]
        assert figures["f1_micro"] == pytest.approx(f1_score(yy, dd, average="micro"))
        assert figures["f1_macro"] == pytest.approx(f1_score(yy, dd, average="macro"))
        assert figures["recall_macro"] == pytest.approx(recall_score(yy, dd, average="macro"))
        assert figures["auc_macro"] == pytest.approx(roc_auc_score(yy, ss, average="macro"))
        specificity = [
            ((1 - yy[:, c]) * (1 - dd[:, c])).sum() / (1 - yy[:, c]).sum() for c in range(3)
        ]
        assert figures["specificity_macro"] == pytest.approx(np.mean(specificity))
        for c, label in enumerate("NDG"):
            assert figures[f"recall_{label}"] == pytest.approx(recall_score(yy[:, c], dd[:, c]))
            assert figures[f"auc_{label}"] == pytest.approx(roc_auc_score(yy[:, c], ss[:, c]))
            assert figures[f"specificity_{label}"] == pytest.approx(specificity[c])
        odir = odir_score(yy, ss)
        assert figures["odir_patient_kappa"] == pytest.approx(
            cohen_kappa_score(yy.ravel(), dd.ravel())
        )
        assert figures["odir_patient_kappa"] == pytest.approx(odir["kappa"])
        assert figures["odir_patient_f1"] == pytest.approx(odir["f1"])
        assert figures["odir_patient_auc"] == pytest.approx(odir["auc"])
        assert figures["odir_patient_final"] == pytest.approx(odir["final"])


def test_interval_of_a_mean_and_paired_t_test_over_runs_match_scipy():
    from scipy import stats

    from odirkit.bootstrap import mean_interval

    values = [0.61, 0.64, 0.70, 0.58, float("nan")]  # a NaN run is left out
    seen = np.array(values[:4])
    plain = mean_interval(values, 0.9)
    low, high = stats.t.interval(0.9, 3, loc=seen.mean(), scale=stats.sem(seen))
    assert plain == pytest.approx(
        {"n": 4, "mean": seen.mean(), "std": seen.std(ddof=1), "low": low, "high": high}
    )
    logits = np.log(seen / (1 - seen))
    low, high = stats.t.interval(0.9, 3, loc=logits.mean(), scale=stats.sem(logits))
    bounded = mean_interval(values, 0.9, bounded=True)
    assert (bounded["low"], bounded["high"]) == pytest.approx(
        (1 / (1 + np.exp(-low)), 1 / (1 + np.exp(-high)))
    )
    assert bounded["mean"] == pytest.approx(seen.mean()) and bounded["n"] == 4
    edge = mean_interval([0.0, 0.5, 0.6], bounded=True)  # 0 is held at 1e-6, inside
    clipped = np.log(np.array([1e-6, 0.5, 0.6]) / (1 - np.array([1e-6, 0.5, 0.6])))
    low, high = stats.t.interval(0.95, 2, loc=clipped.mean(), scale=stats.sem(clipped))
    assert (edge["low"], edge["high"]) == pytest.approx(
        (1 / (1 + np.exp(-low)), 1 / (1 + np.exp(-high))), rel=1e-6
    )
    one = mean_interval([0.7])
    assert one["n"] == 1 and one["mean"] == 0.7
    assert all(np.isnan(one[k]) for k in ("std", "low", "high"))
    none = mean_interval([float("nan")])
    assert none["n"] == 0 and all(np.isnan(none[k]) for k in ("mean", "std", "low", "high"))

    differences = [0.02, 0.05, -0.01, 0.04, float("nan")]
    test = paired_over_runs(differences)
    expected = stats.ttest_1samp(np.array(differences[:4]), 0.0)
    assert test == pytest.approx(
        {"runs": 4, "mean": 0.025, "t": expected.statistic, "p_value": expected.pvalue}
    )
    alone = paired_over_runs([0.03])
    assert alone["runs"] == 1 and alone["mean"] == 0.03 and np.isnan(alone["p_value"])
    assert np.isnan(paired_over_runs([])["mean"])
    # every run the same difference: no spread to test, certain either way
    assert paired_over_runs([0.02, 0.02, 0.02])["p_value"] == 0.0
    assert paired_over_runs([0.0, 0.0])["p_value"] == 1.0


def test_bootstrap_intervals_cover_the_true_metric_at_their_level():
    rng = np.random.default_rng(11)
    recall_hits = auc_hits = 0
    # scores N(1, 1) for positives and N(0, 1) for negatives: AUC = Phi(1 / sqrt(2))
    from scipy.stats import norm

    true_auc = float(norm.cdf(1 / np.sqrt(2)))
    for sim in range(200):
        y = (rng.uniform(size=300) < 0.5).astype(int)
        found = np.where(y == 1, rng.uniform(size=300) < 0.8, rng.uniform(size=300) < 0.1)
        scores = rng.normal(y.astype(float), 1.0)
        scored = Scored.build(
            np.c_[1 - y, y],
            np.c_[1 - found, found].astype(int),
            np.c_[-scores, scores],
            labels=["N", "D"],
        )
        ci = intervals(scored, resamples=400, seed=sim)
        recall_hits += ci["recall_D"][0] <= 0.8 <= ci["recall_D"][1]
        auc_hits += ci["auc_D"][0] <= true_auc <= ci["auc_D"][1]
    assert 0.90 <= recall_hits / 200 <= 0.99, recall_hits
    assert 0.90 <= auc_hits / 200 <= 0.99, auc_hits


def test_the_bootstrap_resamples_patients_not_images():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 2, 60)
    p = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, 0.25, 60), 0, 1)
    decided = (p > 0.5).astype(int)

    def build(rows, clusters):
        return Scored.build(
            np.c_[1 - y[rows], y[rows]],
            np.c_[1 - decided[rows], decided[rows]],
            np.c_[1 - p[rows], p[rows]],
            labels=["N", "D"],
            clusters=clusters,
        )

    per_patient = intervals(build(np.arange(60), np.arange(60)), resamples=300, seed=1)
    # both eyes of each patient, identical: resampling patients gives the very same interval
    both_eyes = np.repeat(np.arange(60), 2)
    per_eye = intervals(build(both_eyes, both_eyes), resamples=300, seed=1)
    for metric in ("f1_micro", "recall_D", "auc_D"):
        assert per_eye[metric] == pytest.approx(per_patient[metric]), metric


def test_paired_bootstrap_finds_no_difference_in_identical_predictions_and_a_clear_one():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 200)
    weak = np.clip(0.5 + rng.normal(0, 0.3, 200), 0, 1)
    strong = np.clip(0.5 + (y - 0.5) * 0.8 + rng.normal(0, 0.1, 200), 0, 1)

    def scored(p):
        return Scored.build(
            np.c_[1 - y, y],
            np.c_[p <= 0.5, p > 0.5].astype(int),
            np.c_[1 - p, p],
            labels=["N", "D"],
        )

    same = paired_bootstrap(scored(weak), scored(weak), ("f1_micro", "auc_macro"))
    assert all(d.difference == 0 and not d.distinguishable and d.p_value == 1 for d in same)
    better = paired_bootstrap(scored(weak), scored(strong), ("f1_micro", "auc_macro"))
    assert all(d.difference > 0.2 and d.distinguishable and d.p_value < 0.01 for d in better)
    worse = paired_bootstrap(scored(strong), scored(weak), ("f1_micro",))[0]
    assert worse.difference < 0 and worse.interval[1] < 0
    assert paired_over_runs([0.05, 0.06, 0.04, 0.05])["p_value"] < 0.01
    assert paired_over_runs([0.05, -0.06, 0.01, -0.01])["p_value"] > 0.3


@pytest.mark.slow
def test_seeds_are_compared_pair_by_pair_and_over_runs(cli, tmp_path, phantom_root):
    # one epoch on 40 patients learns nothing: the statistics are asked for anyway
    extra = (
        "\n[compare]\nrequire_learning = false\n[variants.a]\n[variants.b]\ntrain = { lr = 0.03 }\n"
    )
    text = tiny_experiment(phantom_root, epochs=1, extra=extra).replace(
        "seed = 0", "seeds = [0, 1]"
    )
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (run,) = (tmp_path / "runs").glob("*/*")
    names = sorted(p.name for p in run.iterdir() if p.is_dir())
    assert names == ["a-seed0", "a-seed1", "b-seed0", "b-seed1"]
    seeds = [json.loads((run / n / "config.json").read_text())["seed"] for n in names]
    assert seeds == [0, 1, 0, 1]
    table = pd.read_csv(run / "comparison.csv")
    assert {"a (mean of 2 seeds)", "b (mean of 2 seeds)"} <= set(table["run"])
    comparison = json.loads((run / "comparison.json").read_text())
    (test,) = comparison["tests"]
    assert test["candidate"] == "b" and test["baseline"] == "a" and len(test["pairs"]) == 2
    assert test["over_runs"]["f1_micro"]["runs"] == 2
    report = (run / "report.md").read_text()
    assert "## Is the difference real?" in report and "paired runs" in report
    assert "Operating points per disease: D: sensitivity" in report
    assert "b vs a: accuracy" in report  # a single-label micro F1 is accuracy
    assert "(caution: " in report and "did not learn" in report
    # the console ends with the answer: the verdict in words, the runs that did not learn
    assert "On this data, b " in result.stdout and " the accuracy: " in result.stdout
    assert "Caution: " in result.stdout and "report.html" in result.stdout
    # by default a comparison with a run that did not learn gives no verdict
    plain = cli("compare", run, "--out", tmp_path / "again", "--baseline", "a")
    assert plain.exit_code == 0, plain.output
    assert "tiny/b vs tiny/a: no verdict, 4 run(s) did not learn" in plain.stdout
    assert "not below chance" in plain.stdout


def test_metrics_of_names_the_challenge_score_only_for_patients():
    data, evaluation = one_diseased_eye_bundle()
    assert "odir_patient" in metrics_of(at_level(data, evaluation, level="patient", fusion="max"))
    assert not [
        k
        for k in metrics_of(at_level(data, evaluation, level="image", fusion="max"))
        if "odir" in k
    ]


def test_an_operating_point_says_the_specificity_it_reached_on_test_beside_its_target():
    from odirkit.report import RunSummary
    from odirkit.report.lines import _screening

    final = {
        "threshold_rule": "specificity:0.9",
        "thresholds": {"N": 0.5, "D": 0.431},
        "per_class": {"N": {"recall": 0.9}, "D": {"recall": 0.812, "specificity": 0.795}},
        "intervals": {"recall_D": [0.7, 0.91], "specificity_D": [0.7, 0.88]},
    }
    run = RunSummary("default", pd.DataFrame(), {"final": final}, ["N", "D"])
    assert _screening(run) == (
        "Operating points per disease: D: sensitivity 0.812 [0.700, 0.910] at specificity "
        "0.795 [0.700, 0.880] on test (target specificity 0.90 on validation, threshold 0.431)."
    )
    run.metrics.final.threshold_rule = "0.5"
    assert "(fixed threshold 0.5, threshold 0.431)" in _screening(run)


def test_calibration_uses_15_equal_width_bins_unless_told():
    # ECE's customary 15 bins (Guo et al. 2017, "On Calibration of Modern Neural
    # Networks"); a probability of 0.3 and one of 0.34 share a bin of 10, not of 15
    from odirkit.calibration import expected_calibration_error, reliability

    probs = np.array([0.3, 0.34, 0.9, 0.95])
    outcomes = np.array([0, 1, 1, 1])
    assert len(reliability(outcomes, probs).edges) == 15
    assert reliability(outcomes, probs).edges[1] == pytest.approx(1 / 15)
    ece = expected_calibration_error(outcomes, probs)
    assert ece == expected_calibration_error(outcomes, probs, bins=15)
    assert ece != pytest.approx(expected_calibration_error(outcomes, probs, bins=10))
