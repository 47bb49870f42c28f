"""Splits by patient, saved splits, folds, class weights and undersampling's edges
(odirkit/data/split.py). Properties over random inputs are in test_data.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from odirkit.data.split import (
    carve_validation,
    class_weights,
    patient_folds,
    patient_level_split,
    split_file_assignment,
    undersample,
    undersample_multilabel,
    write_split_file,
)
from odirkit.errors import ConfigError, DataError


def _table(sets: list[str], eyes: int = 2) -> pd.DataFrame:
    """``eyes`` images per patient; patient ``i`` carries the labels in ``sets[i]`` (N/D/G);
    IDs that sort differently as text and as numbers."""
    rows = []
    for i, labels in enumerate(sets):
        for eye in range(eyes):
            rows.append(
                {
                    "patient_id": str(1000 - 7 * i),
                    "eye": ("left", "right")[eye],
                    **{x: int(x in labels) for x in "NDG"},
                }
            )
    return pd.DataFrame(rows)


# -- folds ----------------------------------------------------------------------------------------


def test_folds_place_every_patient_once_stratified_and_reproducibly():
    table = _table(["N"] * 20 + ["D"] * 10 + ["G"] * 5 + ["DG"])  # DG alone: pooled as rare
    folds = patient_folds(table, labels=["N", "D", "G"], folds=5, seed=3)
    assert folds.name == "fold" and folds.dtype == np.int64
    assert sorted(folds.index) == sorted(table["patient_id"].unique())
    assert sorted(folds.unique()) == [0, 1, 2, 3, 4]
    sizes = folds.value_counts()
    assert sizes.max() - sizes.min() <= 1
    by_set = table.groupby("patient_id")[["N", "D", "G"]].max()
    for label, per_fold in (("N", 4), ("D", 2), ("G", 1)):
        only = by_set[(by_set[label] == 1) & (by_set.sum(axis=1) == 1)].index
        assert folds[only].value_counts().tolist() == [per_fold] * 5, label  # spread evenly
    assert folds.equals(patient_folds(table, labels=["N", "D", "G"], folds=5, seed=3))
    assert not folds.equals(patient_folds(table, labels=["N", "D", "G"], folds=5, seed=4))


def test_folds_of_patients_too_varied_to_stratify_are_a_seeded_shuffle():
    # every label set held by one patient: all pooled as "rare", one stratum of seven
    table = _table(["N", "D", "G", "ND", "NG", "DG", "NDG"])
    folds = patient_folds(table, labels=["N", "D", "G"], folds=3, seed=1)
    assert sorted(folds.value_counts().tolist()) == [2, 2, 3]
    assert folds.equals(patient_folds(table, labels=["N", "D", "G"], folds=3, seed=1))
    others = [patient_folds(table, labels=["N", "D", "G"], folds=3, seed=s) for s in range(2, 6)]
    assert any(not folds.equals(o) for o in others)
    exactly = patient_folds(_table(["N", "D", "N"]), labels=["N", "D", "G"], folds=3, seed=0)
    assert sorted(exactly.tolist()) == [0, 1, 2]  # as many patients as folds: one each
    with pytest.raises(DataError, match="4 folds need at least 4 patients; the data has 3"):
        patient_folds(_table(["N", "D", "N"]), labels=["N", "D", "G"], folds=4, seed=0)


# -- train, validation, test ----------------------------------------------------------------------


def test_a_split_keeps_patients_whole_pools_rare_sets_and_names_its_key():
    # D twice and G twice can be stratified; DG once is pooled with nothing else: 'rare'
    table = _table(["N"] * 12 + ["D", "D", "G", "G", "DG"])
    train, test = patient_level_split(table, labels=["N", "D", "G"], test_fraction=0.25, seed=2)
    assert len(set(table.loc[train, "patient_id"]) & set(table.loc[test, "patient_id"])) == 0
    assert len(train) + len(test) == len(table) and table.loc[test, "patient_id"].nunique() == 4
    again = patient_level_split(table, labels=["N", "D", "G"], test_fraction=0.25, seed=2)
    assert np.array_equal(again[1], test)
    two = patient_level_split(_table(["N", "D"]), labels=["N", "D"], test_fraction=0.1, seed=0)
    assert len(two[0]) == len(two[1]) == 2  # at least one test patient, one left to train
    with pytest.raises(DataError, match="at least two patients; the data has 1"):
        patient_level_split(_table(["N"]), labels=["N"], test_fraction=0.5, seed=0)
    with pytest.raises(ConfigError, match=r"data.test_fraction = 0.9 leaves no training"):
        patient_level_split(_table(["N", "D"]), labels=["N", "D"], test_fraction=0.9, seed=0)


def test_an_unstratifiable_split_is_still_seeded():
    table = _table(["N", "D", "G", "ND", "NG", "DG", "NDG", "N"])
    splits = [
        patient_level_split(table, labels=["N", "D", "G"], test_fraction=0.5, seed=s)[1]
        for s in (7, 7, 8, 9, 10)
    ]
    assert np.array_equal(splits[0], splits[1])
    assert any(not np.array_equal(splits[0], other) for other in splits[2:])


def test_validation_is_carved_from_training_patients_only():
    table = _table(["N"] * 10 + ["D"] * 6)
    patients = table["patient_id"].unique()
    sides = pd.Series("train", index=patients)
    sides[patients[:4]] = "test"
    carved = carve_validation(table, sides, labels=["N", "D"], fraction=0.25, seed=5)
    assert (carved[patients[:4]] == "test").all()
    assert (carved == "val").sum() == 3  # a quarter of the 12 training patients
    assert carved.equals(carve_validation(table, sides, labels=["N", "D"], fraction=0.25, seed=5))
    varied = [
        carve_validation(table, sides, labels=["N", "D"], fraction=0.25, seed=s)
        for s in range(6, 10)
    ]
    assert any(not carved.equals(v) for v in varied)
    assert carve_validation(table, sides, labels=["N", "D"], fraction=0.0, seed=5) is sides
    few = pd.Series("test", index=patients)
    few[patients[:3]] = "train"
    assert (
        carve_validation(table, few, labels=["N", "D"], fraction=0.34, seed=0) == "val"
    ).sum() == 1
    few[patients[2]] = "test"
    with pytest.raises(DataError, match="at least three training patients; there are 2"):
        carve_validation(table, few, labels=["N", "D"], fraction=0.5, seed=0)
    with pytest.raises(ConfigError, match=r"data\.val_fraction = 0\.99 leaves no training"):
        carve_validation(table, sides, labels=["N", "D"], fraction=0.99, seed=0)


# -- saved splits ---------------------------------------------------------------------------------


def test_a_saved_split_reads_back_with_its_patient_ids_as_written(tmp_path):
    table = pd.DataFrame({"patient_id": ["007", "NA", "12"], "N": [1, 0, 1]})
    sides = pd.Series(["train", "val", "test"], index=["007", "NA", "12"])
    path = tmp_path / "split.csv"
    write_split_file(path, sides)
    assert path.read_text().splitlines()[0] == "patient_id,0"
    frame = pd.DataFrame({"patient_id": sides.index, "split": sides.to_numpy()})
    frame.to_csv(path, index=False)
    read = split_file_assignment(path, table)
    assert read.to_dict() == {"007": "train", "NA": "val", "12": "test"}
    pd.DataFrame({"patient_id": ["007", "NA", "12"], "fold": [0, 2, 1]}).to_csv(path, index=False)
    assert split_file_assignment(path, table).to_dict() == {"007": 0, "NA": 2, "12": 1}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("patient_id,side\n007,train\n", "the columns patient_id and split (or fold)"),
        ("id,split\n007,train\n", "the columns patient_id and split (or fold)"),
        ("patient_id,split\n007,train\nNA,tune\n12,test\n", "found tune"),
        (
            "patient_id,split\n007,train\n12,test\n",
            "does not place 1 patient(s) of this dataset (e.g. NA)",
        ),
        (
            "patient_id,split\n12,test\n",
            "does not place 2 patient(s) of this dataset (e.g. 007, NA);",
        ),
        ('patient_id,split\n"007,train\n', "cannot read the split file"),
    ],
)
def test_a_saved_split_that_does_not_fit_is_refused_naming_the_file(tmp_path, text, message):
    table = pd.DataFrame({"patient_id": ["007", "NA", "12"], "N": [1, 0, 1]})
    path = tmp_path / "split.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=r"split\.csv") as caught:
        split_file_assignment(path, table)
    assert message in str(caught.value)


# -- class balance --------------------------------------------------------------------------------


def test_class_weights_balance_counts_and_absent_classes_count_as_one():
    single = class_weights(np.array([0, 0, 0, 1]), 3, single_label=True)
    assert single == pytest.approx([4 / (3 * 3), 4 / (3 * 1), 4 / (3 * 1)])  # class 2: absent
    targets = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=float)
    shares = class_weights(targets, 3, single_label=False, shares=True)
    assert shares == pytest.approx([4 / (3 * 3), 4 / (3 * 2), 4 / (3 * 1)])
    positive = class_weights(targets, 3, single_label=False)
    assert positive == pytest.approx([1 / 3, 2 / 2, 4 / 1])


def test_undersampling_draws_without_replacement_from_a_seed():
    indices = np.arange(100, 130)
    classes = np.array([0] * 20 + [1] * 10)
    kept = undersample(indices, classes, seed=1)
    assert len(kept) == len(set(kept)) == 20
    assert np.array_equal(kept, undersample(indices, classes, seed=1))
    assert any(not np.array_equal(kept, undersample(indices, classes, seed=s)) for s in (2, 3))


def test_multilabel_undersampling_reads_a_half_as_absent_and_stops_at_the_median():
    # labels N (6 images), D (3), G (1): the median count is 3, so only N is common
    targets = np.array([[1, 0, 0]] * 5 + [[1, 1, 0]] + [[0, 1, 0]] * 2 + [[0.5, 0, 1]], float)
    kept = undersample_multilabel(np.arange(9), targets, seed=0)
    after = (targets[kept] > 0.5).sum(axis=0)
    assert after.tolist() == [3, 3, 1]  # N cut to the median; the 0.5 is not an N
    assert 8 in kept and 5 in kept  # G's image; N with D, whose D is not common
    assert np.array_equal(kept, undersample_multilabel(np.arange(9), targets, seed=0))
    # an image without any label is no common label's: it stays
    bare = np.array([[1, 0, 0]] * 6 + [[0, 1, 0]] * 2 + [[0, 0, 1]] + [[0, 0, 0]], float)
    assert 9 in undersample_multilabel(np.arange(10), bare, seed=0)
    # a label at the median exactly is not common: nothing of it goes
    even = np.array([[1, 0]] * 2 + [[0, 1]] * 2, float)
    assert undersample_multilabel(np.arange(4), even, seed=0).tolist() == [0, 1, 2, 3]
    # one image per label left at most: never below one
    lone = np.array([[1, 0, 0]] * 3 + [[0, 1, 0], [0, 0, 1]], float)
    assert (targets_after := lone[undersample_multilabel(np.arange(5), lone, seed=2)]).sum(
        axis=0
    ).tolist() == [1, 1, 1], targets_after


def test_two_label_sets_held_by_one_patient_each_are_pooled_and_the_rest_stay_stratified():
    # DG and NG once each: pooled as one 'rare' stratum of two, so stratification holds;
    # left apart, a stratum of one would stop it and the split would fall back to a shuffle
    table = _table(["N"] * 12 + ["D"] * 8 + ["G"] * 4 + ["DG", "NG"])
    for seed in range(5):
        _, test = patient_level_split(table, labels=["N", "D", "G"], test_fraction=0.25, seed=seed)
        held = table.loc[test].groupby("patient_id").first()
        single = held[held[["N", "D", "G"]].sum(axis=1) == 1]
        assert single[["N", "D", "G"]].sum().tolist() == [3, 2, 1], seed  # a quarter of each
