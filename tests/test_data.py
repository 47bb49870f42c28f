"""Sample tables, patient-level splits, balance, preprocessing and the image cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from odirkit.data.images import ImageCache, Preprocessing, prepare_images, preprocess
from odirkit.data.split import class_weights, patient_level_split, undersample
from odirkit.data.table import check_sample_table, select_task
from odirkit.errors import DataError, PluginError


@pytest.fixture
def table(phantom_root):
    raw = pd.read_csv(phantom_root / "phantom_images.csv", keep_default_na=False)
    return check_sample_table(raw, dataset="phantom", root=phantom_root)


def test_no_patient_in_both_splits(table):
    train, test = patient_level_split(table, labels=list("NDGCAHMO"), test_fraction=0.3, seed=0)
    assert len(train) + len(test) == len(table)
    train_patients = set(table.loc[train, "patient_id"])
    test_patients = set(table.loc[test, "patient_id"])
    assert not train_patients & test_patients
    assert abs(len(test_patients) / table["patient_id"].nunique() - 0.3) < 0.05


def test_split_is_reproducible_by_seed(table):
    a = patient_level_split(table, labels=["N", "D"], test_fraction=0.2, seed=5)
    b = patient_level_split(table, labels=["N", "D"], test_fraction=0.2, seed=5)
    c = patient_level_split(table, labels=["N", "D"], test_fraction=0.2, seed=6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[1], c[1])


def test_two_exclusive_labels_make_a_single_label_task(table):
    selection = select_task(table, ["N", "D"], "auto")
    assert selection.task.kind == "single_label"
    assert set(np.unique(selection.targets)) <= {0, 1}
    kept = selection.table
    assert ((kept["N"] + kept["D"]) == 1).all()  # images with neither label are left out
    assert selection.dropped_none == len(table) - len(kept)


def test_all_labels_make_a_multi_label_task(table):
    selection = select_task(table, list("NDGCAHMO"), "auto")
    assert selection.task.kind == "multi_label"
    assert selection.targets.shape == (len(table), 8)


def test_undersample_equalises_the_classes():
    indices = np.arange(10)
    classes = np.array([0] * 7 + [1] * 3)
    kept = undersample(indices, classes, seed=0)
    assert sorted(np.bincount(classes[kept])) == [3, 3]


def test_class_weights_favour_the_rare_class():
    single = class_weights(np.array([0, 0, 0, 1]), 2, single_label=True)
    assert single[1] > single[0]
    multi = class_weights(np.array([[1, 0], [1, 0], [1, 1], [0, 0]]), 2, single_label=False)
    assert multi.tolist() == [1 / 3, 3.0]


def test_sample_table_is_checked(phantom_root, table):
    with pytest.raises(PluginError, match="lacks column"):
        check_sample_table(table.drop(columns=["age"]), dataset="x", root=phantom_root)
    with pytest.raises(PluginError, match="expected a pandas DataFrame"):
        check_sample_table([1, 2], dataset="x", root=phantom_root)
    bad = table.copy()
    bad.loc[0, "D"] = 2
    with pytest.raises(DataError, match="label column 'D' must hold 0 or 1"):
        check_sample_table(bad, dataset="x", root=phantom_root)
    with pytest.raises(DataError, match="no images"):
        check_sample_table(table.iloc[:0], dataset="x", root=phantom_root)


def test_preprocessing_crops_the_black_border_to_the_field_of_view(tmp_path):
    canvas = np.zeros((100, 160, 3), dtype=np.uint8)
    yy, xx = np.mgrid[0:100, 0:160]
    canvas[(yy - 50) ** 2 + (xx - 80) ** 2 <= 45**2] = (200, 90, 40)
    path = tmp_path / "eye.png"
    Image.fromarray(canvas).save(path)
    cropped = preprocess(path, Preprocessing(size=64, crop_to_fov=True))
    uncropped = preprocess(path, Preprocessing(size=64, crop_to_fov=False))
    assert cropped.shape == (64, 64, 3)
    # Cropped, the disc touches all four sides; uncropped, black bands remain left and right.
    assert cropped[32, 1].sum() > 100 and cropped[1, 32].sum() > 100
    assert uncropped[32, 1].sum() == 0


def test_cache_is_reused_and_keyed_by_parameters(phantom_root, tmp_path):
    source = sorted((phantom_root / "ODIR-5K_Training_Dataset").glob("*.jpg"))[0]
    cache = ImageCache(tmp_path / "cache", Preprocessing(size=32))
    first = cache.get(source)
    entry = cache.entry(source)
    assert entry.exists()
    np.save(entry, np.full_like(first, 7))  # a cache hit returns what the cache holds
    assert (cache.get(source) == 7).all()
    other = ImageCache(tmp_path / "cache", Preprocessing(size=48))
    assert other.entry(source) != entry
    assert other.get(source).shape == (48, 48, 3)


def test_corrupt_and_missing_images_are_reported_by_name(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.full((20, 20, 3), 128, np.uint8)).save(good)
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(good.read_bytes()[:40])
    missing = tmp_path / "missing.jpg"
    cache = ImageCache(tmp_path / "cache", Preprocessing(size=16))
    prepared = prepare_images([str(good), str(corrupt), str(missing)], cache)
    assert prepared.images[0] is not None
    assert set(prepared.failures) == {1, 2}
    assert "corrupt.jpg" in prepared.failures[1]
    assert "missing.jpg: image file not found" in prepared.failures[2]


def test_multilabel_undersampling_caps_the_common_labels_and_keeps_every_rare_one():
    from odirkit.data.split import undersample_multilabel

    rng = np.random.default_rng(0)
    # N alone is common, D common, G and A rare, some images carry D and A together.
    rows = (
        [[1, 0, 0, 0]] * 400
        + [[0, 1, 0, 0]] * 250
        + [[0, 0, 1, 0]] * 40
        + [[0, 0, 0, 1]] * 30
        + [[0, 1, 0, 1]] * 20
    )
    targets = np.array(rows, dtype=np.float32)[rng.permutation(len(rows))]
    indices = np.arange(len(targets))
    kept = undersample_multilabel(indices, targets, seed=1)
    before = targets.sum(axis=0)
    after = targets[kept].sum(axis=0)
    median = int(np.median(before))  # 145: N and D are the majority labels
    assert after[0] == median and after[1] == median  # the common labels capped
    assert after[2] == before[2] and after[3] == before[3]  # no rare image removed
    assert np.array_equal(kept, undersample_multilabel(indices, targets, seed=1))
    assert not np.array_equal(kept, undersample_multilabel(indices, targets, seed=2))
