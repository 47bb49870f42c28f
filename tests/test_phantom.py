"""The phantom: synthetic fundus photographs in the ODIR-5K layout."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import OFFICIAL_COLUMNS, file_digests
from PIL import Image

from odirkit.errors import DataError


def test_same_seed_same_bytes_and_another_seed_other_bytes(registry, tmp_path):
    spec = registry.get("dataset", "phantom")
    spec.build(root=str(tmp_path / "a"), patients=5, size=64, seed=3)
    spec.build(root=str(tmp_path / "b"), patients=5, size=64, seed=3)
    spec.build(root=str(tmp_path / "c"), patients=5, size=64, seed=4)
    assert file_digests(tmp_path / "a") == file_digests(tmp_path / "b")
    assert file_digests(tmp_path / "a") != file_digests(tmp_path / "c")


def test_official_layout_and_columns(phantom_root):
    workbook = pd.read_excel(phantom_root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx")
    assert list(workbook.columns) == OFFICIAL_COLUMNS
    assert len(workbook) == 40
    for _, row in workbook.iterrows():
        for side in ("Left", "Right"):
            image = phantom_root / "ODIR-5K_Training_Dataset" / row[f"{side}-Fundus"]
            assert image.exists()
    # A patient is N exactly when neither eye has a disease.
    diseases = workbook[list("DGCAHMO")].sum(axis=1)
    assert ((workbook["N"] == 1) == (diseases == 0)).all()


def test_keywords_use_the_real_vocabulary_and_the_fullwidth_comma(registry, tmp_path):
    root = tmp_path / "p"
    registry.get("dataset", "phantom").build(root=str(root), patients=120, size=48, seed=0)
    workbook = pd.read_excel(root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx")
    words = pd.concat([workbook["Left-Diagnostic Keywords"], workbook["Right-Diagnostic Keywords"]])
    assert words.str.contains("，").any()
    vocabulary = set(words.str.split("，").explode())
    assert "normal fundus" in vocabulary
    assert vocabulary & {
        "moderate non proliferative retinopathy",
        "mild nonproliferative retinopathy",
        "severe nonproliferative retinopathy",
        "proliferative diabetic retinopathy",
    }
    assert "lens dust" in vocabulary


#: ODIR-5K's training set: share of its 3,500 patients carrying each label
ODIR5K_SHARE = {
    label: count / 3500
    for label, count in zip("NDGCAHMO", (1138, 1128, 215, 212, 164, 103, 174, 979), strict=True)
}


def test_label_shares_are_odir5ks_within_a_tenth(registry, tmp_path):
    from odirkit_datasets.phantom import LABEL_SET_P, LABEL_SETS, NORMAL_RATE, draw_patient

    # exactly, in the distribution the generator draws from ...
    diseased = 1.0 - NORMAL_RATE
    for label in "DGCAHMO":
        share = diseased * sum(
            p for s, p in zip(LABEL_SETS, LABEL_SET_P, strict=True) if label in s
        )
        assert share == pytest.approx(ODIR5K_SHARE[label], rel=0.01), label
    # ... and in the labels it writes, label noise included (the realistic default)
    patients = [draw_patient(4, pid, label_noise=0.07) for pid in range(20_000)]
    for label in "NDGCAHMO":
        share = np.mean([label in p.labels for p in patients])
        assert share == pytest.approx(ODIR5K_SHARE[label], rel=0.1), label
    assert np.mean([len(p.labels) for p in patients]) == pytest.approx(4113 / 3500, rel=0.05)


def test_age_carries_the_labels_signal(registry, tmp_path):
    root = tmp_path / "p"
    registry.get("dataset", "phantom").build(
        root=str(root), patients=400, size=32, seed=1, label_noise=0.0
    )
    workbook = pd.read_excel(root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx")
    # Older patients for AMD and cataract, younger for myopia.
    age = workbook["Patient Age"]
    assert age[workbook["A"] == 1].mean() > age[workbook["N"] == 1].mean() + 5
    assert age[workbook["M"] == 1].mean() < age[workbook["N"] == 1].mean()


def test_each_purpose_draws_from_a_stream_of_its_own():
    from odirkit_datasets.phantom import GENERATOR_VERSION, Stream, stream

    # NumPy drops trailing zeros of a seed list: a zero key would alias the shorter one
    # (version 2 rendered the right eye from the numbers that drew the diseases).
    alias = np.random.default_rng([7, 3, GENERATOR_VERSION, 0]).random(4)
    assert np.array_equal(alias, np.random.default_rng([7, 3, GENERATOR_VERSION]).random(4))
    for pid in range(50):
        draws = {p: tuple(stream(7, pid, p).random(4)) for p in Stream}
        assert len(set(draws.values())) == len(Stream), pid
    assert tuple(stream(7, 1, Stream.DRAW).random(4)) != tuple(stream(7, 2, Stream.DRAW).random(4))


@pytest.mark.slow
def test_acquisition_alone_predicts_no_label_of_the_patient(registry, tmp_path):
    from odirkit_datasets.difficulty import acquisition_shortcuts

    root = tmp_path / "p"
    registry.get("dataset", "phantom").build(root=str(root), patients=500, size=96, seed=0)
    found = acquisition_shortcuts(root, labels=["N", "D", "O"])
    assert set(found) == {"N", "D", "O"}
    assert max(found.values()) < 0.6, found


def test_masks_mark_lesions_inside_the_field_of_view(phantom_root):
    table = pd.read_csv(phantom_root / "phantom_images.csv", keep_default_na=False)
    diabetic = table[table["D"] == 1].iloc[0]
    mask = np.asarray(Image.open(phantom_root / diabetic["mask_path_D"])) > 0
    image = np.asarray(Image.open(phantom_root / diabetic["path"]).convert("L"))
    assert mask.shape == image.shape
    assert 0 < mask.mean() < 0.3
    assert (image[mask] > 20).mean() > 0.95  # lesions lie on the fundus, not the black border
    normal = table[table["N"] == 1].iloc[0]
    assert all(normal[f"mask_path_{label}"] == "" for label in "DGCAHMO")


def test_optic_disc_is_on_the_nasal_side_mirrored_between_eyes():
    from odirkit_datasets.fundus_render import render_eye

    def brightest_column(eye: str) -> float:
        image, _ = render_eye(np.random.default_rng(0), 128, eye=eye, labels=set())
        luminance = image.astype(float).mean(axis=2)
        return np.unravel_index(luminance.argmax(), luminance.shape)[1] / image.shape[1]

    assert brightest_column("right") > 0.55  # the disc is right of centre in a right eye
    assert brightest_column("left") < 0.45


def test_refuses_to_write_into_a_foreign_folder(registry, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(DataError, match="not a phantom dataset"):
        registry.get("dataset", "phantom").build(root=str(tmp_path), patients=2, size=32)
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_phantom_command_writes_a_dataset(cli, tmp_path):
    result = cli("phantom", tmp_path / "ph", "--patients", "3", "--size", "48", "--seed", "2")
    assert result.exit_code == 0, result.output
    assert "3 patients, 6 images" in result.stdout
    assert (tmp_path / "ph" / "phantom.json").exists()


# -- the realistic look ---------------------------------------------------------------------


@pytest.mark.parametrize("difficulty", ["realistic", "easy"])
def test_each_difficulty_is_deterministic_and_recorded(registry, tmp_path, difficulty):
    import json

    spec = registry.get("dataset", "phantom")
    for name in ("a", "b"):
        spec.build(root=str(tmp_path / name), patients=4, size=64, seed=5, difficulty=difficulty)
    assert file_digests(tmp_path / "a") == file_digests(tmp_path / "b")
    manifest = json.loads((tmp_path / "a" / "phantom.json").read_text())
    assert manifest["difficulty"] == difficulty and manifest["look"]["name"] == difficulty
    assert manifest["label_noise"] == (0.07 if difficulty == "realistic" else 0.0)
    assert {"severity", "microaneurysms", "jpeg_quality", "colour_cast_sd"} <= set(manifest["look"])


def test_the_two_difficulties_draw_different_photographs(registry, tmp_path):
    spec = registry.get("dataset", "phantom")
    spec.build(root=str(tmp_path / "r"), patients=3, size=64, seed=5, difficulty="realistic")
    spec.build(root=str(tmp_path / "e"), patients=3, size=64, seed=5, difficulty="easy")
    name = "ODIR-5K_Training_Dataset/0_left.jpg"
    assert (tmp_path / "r" / name).read_bytes() != (tmp_path / "e" / name).read_bytes()


@pytest.mark.parametrize("look_name", ["REALISTIC", "EASY"])
def test_masks_cover_every_drawn_lesion(look_name, monkeypatch):
    import odirkit_datasets.fundus_render as render

    look = getattr(render, look_name)
    spots: list[tuple[float, float, str | None]] = []
    original = render.Canvas.spot

    def recording(self, x, y, r, colour, **kw):
        original(self, x, y, r, colour, **kw)
        if kw.get("label") is not None:
            spots.append((x, y, kw["label"]))

    monkeypatch.setattr(render.Canvas, "spot", recording)
    checked = 0
    for seed in range(12):
        spots.clear()
        image, masks = render.render_eye(
            np.random.default_rng(seed), 128, eye="left", labels={"D", "A", "O"}, look=look
        )
        visible = image.astype(int).sum(axis=2) > 0
        for x, y, label in spots:
            row, col = round(y), round(x)
            if 0 <= row < image.shape[0] and 0 <= col < image.shape[1] and visible[row, col]:
                assert masks[label][row, col], (seed, label, x, y)
                checked += 1
    assert checked > 50


def test_label_noise_redraws_the_stated_share_of_patients_and_keeps_the_label_shares():
    from odirkit_datasets.phantom import draw_patient

    clean = [draw_patient(3, pid) for pid in range(6000)]
    noisy = [draw_patient(3, pid, label_noise=0.3) for pid in range(6000)]
    # the drawn patients are those of a phantom without noise ...
    assert all(n.left_drawn == c.left_drawn == c.left for n, c in zip(noisy, clean, strict=True))
    # ... a redrawn patient's keywords disagree with the photographs unless the new draw
    # happens to match (often for a normal patient): most of the 30%, not more
    changed = np.mean([n.left != n.left_drawn or n.right != n.right_drawn for n in noisy])
    assert 0.18 < changed < 0.3
    # ... and every label keeps its share of patients
    for label in "NDOG":
        before = np.mean([label in p.labels for p in clean])
        after = np.mean([label in p.labels for p in noisy])
        assert after == pytest.approx(before, rel=0.12, abs=0.01), label


def test_noisy_labels_are_recorded_per_eye(registry, tmp_path):
    root = tmp_path / "p"
    registry.get("dataset", "phantom").build(
        root=str(root), patients=60, size=32, seed=2, label_noise=0.3
    )
    table = pd.read_csv(root / "phantom_images.csv", keep_default_na=False)
    drawn = table[[f"drawn_{label}" for label in "NDGCAHMO"]].to_numpy()
    labels = table[list("NDGCAHMO")].to_numpy()
    disagree = (drawn != labels).any(axis=1)
    assert disagree.any() and (table["label_noise"].astype(bool) == disagree).all()


def test_a_colour_histogram_cannot_separate_normal_from_diabetic_on_the_realistic_look(
    registry, tmp_path
):
    from odirkit_datasets.difficulty import measure

    spec = registry.get("dataset", "phantom")
    found = {}
    for difficulty in ("realistic", "easy"):
        root = tmp_path / difficulty
        spec.build(root=str(root), patients=90, size=64, seed=0, difficulty=difficulty)
        found[difficulty] = measure(root)
    assert found["realistic"]["histogram_logistic_auc"] < 0.85, found
    assert found["easy"]["histogram_logistic_auc"] > 0.95, found  # the check can tell
    assert found["realistic"]["oracle_lesion_area_auc"] > 0.9, found  # the lesions are there
