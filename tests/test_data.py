"""Sample tables, patient-level splits, balance, preprocessing and the image cache."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
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


@settings(max_examples=150, deadline=None)
@given(
    classes=st.lists(st.integers(0, 3), min_size=1, max_size=80),
    seed=st.integers(0, 2**32 - 1),
)
def test_undersampled_indices_are_unique_input_indices_balanced(classes, seed):
    classes = np.array(classes)
    indices = 1000 - 7 * np.arange(len(classes))  # not positions, and in falling order
    kept = undersample(indices, classes, seed=seed)
    assert len(set(kept.tolist())) == len(kept)  # each image at most once
    assert set(kept.tolist()) <= set(indices.tolist())
    assert np.array_equal(kept, np.sort(kept))
    of_class = dict(zip(indices.tolist(), classes.tolist(), strict=True))
    counts = np.bincount([of_class[i] for i in kept.tolist()], minlength=4)
    smallest = np.bincount(classes, minlength=4)
    smallest = smallest[smallest > 0].min()
    assert sorted(set(counts[counts > 0].tolist())) == [smallest]  # every class, as rare
    assert (counts > 0).sum() == len(np.unique(classes))


@settings(max_examples=150, deadline=None)
@given(
    rows=st.lists(st.lists(st.booleans(), min_size=4, max_size=4), min_size=1, max_size=60),
    seed=st.integers(0, 2**32 - 1),
)
def test_multilabel_undersampling_keeps_a_subset_and_every_image_of_a_rare_label(rows, seed):
    from odirkit.data.split import undersample_multilabel

    targets = np.array(rows, dtype=np.float32)
    indices = 3 * np.arange(len(rows))[::-1] + 5  # rows of a larger table, in falling order
    table = np.zeros((indices.max() + 1, 4), np.float32)
    table[indices] = targets
    kept = undersample_multilabel(indices, table, seed=seed)
    assert len(set(kept.tolist())) == len(kept)
    assert set(kept.tolist()) <= set(indices.tolist())
    before, after = table[indices].sum(axis=0), table[kept].sum(axis=0)
    median = np.median(before)
    rare = before <= median
    assert np.array_equal(after[rare], before[rare])  # no image of a rare label removed
    assert (after[~rare] >= np.floor(median)).all()  # the common ones cut to the median
    removed = np.setdiff1d(indices, kept)
    assert not table[removed][:, rare].any()  # what goes carries common labels only


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


def test_multilabel_undersampling_stops_at_the_median_rounded_up_and_empties_nothing():
    from odirkit.data.split import undersample_multilabel

    # label counts 5, 3, 2, 0: the median 2.5 falls between two counts
    rows = [[1, 0, 0, 0]] * 2 + [[1, 1, 0, 0]] * 3 + [[0, 0, 1, 0]] * 2
    targets = np.array(rows, dtype=np.float32)
    indices = np.arange(len(rows))
    for seed in range(5):
        kept = undersample_multilabel(indices, targets, seed=seed)
        after = targets[kept].sum(axis=0)
        assert after.tolist() == [3, 3, 2, 0]  # N down to 3 (not 2), D kept above 2.5
    lone = np.array([[1, 0, 0, 0]], dtype=np.float32)  # one image: its label's only one
    assert undersample_multilabel(np.array([0]), lone, seed=0).tolist() == [0]


def _fundus_disc(height: int = 120, width: int = 160, level: float = 1.0) -> np.ndarray:
    """A textured red-orange disc on black, clipped by nothing: ``uint8 [H, W, 3]``."""
    yy, xx = np.mgrid[0:height, 0:width]
    inside = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 <= (0.45 * height) ** 2
    texture = 30 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    rgb = np.stack([200 + texture, 100 + texture, 50 + 0 * texture], axis=-1) * level
    return (rgb * inside[..., None]).clip(0, 255).astype(np.uint8)


def test_a_white_or_transparent_surround_is_preprocessed_as_a_black_one(tmp_path):
    rgb = _fundus_disc()
    surround = rgb.max(axis=2) == 0
    white = rgb.copy()
    white[surround] = 255
    rgba = np.dstack([white, np.where(surround, 0, 255).astype(np.uint8)])
    paths = {}
    for name, picture in {"black": rgb, "white": white}.items():
        paths[name] = tmp_path / f"{name}.png"
        Image.fromarray(picture).save(paths[name])
    paths["rgba"] = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(paths["rgba"])
    prep = Preprocessing(size=64)
    reference = preprocess(paths["black"], prep).astype(int)
    assert reference[0, 0].sum() == 0  # the corners are surround
    for name in ("white", "rgba"):
        same = preprocess(paths[name], prep).astype(int)
        assert np.abs(same - reference).mean() < 1.0, name
        assert same[0, 0].sum() == 0, name  # black corners, not white ones


def test_a_bright_lesion_touching_nothing_is_not_taken_for_a_light_surround(tmp_path):
    rgb = _fundus_disc()
    white = rgb.copy()
    white[rgb.max(axis=2) == 0] = 255
    white[55:65, 75:85] = 255  # a white spot inside the field (an exudate, the disc)
    path = tmp_path / "spot.png"
    Image.fromarray(white).save(path)
    out = preprocess(path, Preprocessing(size=80, crop_to_fov=False))
    assert out[0, 0].sum() == 0 and out[40, 40].min() > 200


def test_a_dark_photograph_is_cropped_to_its_whole_field(tmp_path):
    bright, dark = tmp_path / "bright.png", tmp_path / "dark.png"
    Image.fromarray(_fundus_disc()).save(bright)
    Image.fromarray(_fundus_disc(level=0.12)).save(dark)  # the field's red channel near 24
    prep = Preprocessing(size=64)
    reached = [np.flatnonzero(preprocess(p, prep).max(axis=(0, 2)) > 0) for p in (bright, dark)]
    # both touch the left and right sides: the dim edge of the dark field is not cut off
    assert reached[0][0] == reached[1][0] == 0 and reached[0][-1] == reached[1][-1] == 63


def bomb_png(path, side: int = 40_000) -> None:
    """A PNG whose header claims ``side`` x ``side`` pixels (beyond Pillow's limit)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [12_000, 40_000])  # Pillow's limit is 89.5 MP; it errs at 2x
def test_a_decompression_bomb_is_an_unreadable_image_named_by_file(tmp_path, side):
    bomb = tmp_path / "huge.png"
    bomb_png(bomb, side)
    with pytest.raises(DataError, match=r"huge\.png: refused: its header claims more pixels"):
        preprocess(bomb, Preprocessing(size=32))
    prepared = prepare_images([str(bomb)], ImageCache(tmp_path / "cache", Preprocessing(size=32)))
    assert "decompression bombs" in prepared.failures[0]


def test_a_dataset_on_read_only_storage_is_cached_in_the_users_cache(
    cli, tmp_path, phantom_root, monkeypatch
):
    import shutil

    from conftest import file_digests, tiny_experiment

    root = tmp_path / "shared" / "phantom"
    shutil.copytree(phantom_root, root, ignore=shutil.ignore_patterns(".odirkit-cache"))
    for path in [root, *root.rglob("*")]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = file_digests(root)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "home-cache"))
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(root, epochs=1))
    try:
        result = cli("run", exp, "--out", tmp_path / "runs")
    finally:
        for path in [root, *root.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
    assert result.exit_code == 0, result.output
    assert f"{root} is not writable: preprocessed images are cached in" in result.stderr
    assert file_digests(root) == before and not (root / ".odirkit-cache").exists()
    (cached,) = (tmp_path / "home-cache" / "odirkit").glob("phantom-*")
    assert list(cached.rglob("*.npy"))
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    data = __import__("json").loads((variant / "data.json").read_text())
    assert data["cache"].startswith(str(cached))
