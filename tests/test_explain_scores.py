"""How maps are scored: the pointing game and energy against a lesion mask with their random
baselines, rank correlations inside the field, and the two sanity checks of Adebayo et al.
(2018, "Sanity checks for saliency maps"): maps that barely change when the model is
re-initialised, or from image to image, fail.

Fast: a one-layer model and explainers written here stand in for a trained network and
Captum; test_explain.py runs the real ones end to end.
"""

from __future__ import annotations

import types

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn

from odirkit.data.images import Preprocessing, preprocess, preprocess_mask
from odirkit.explain.records import (
    INPUT_COMPARISONS,
    SANITY_IMAGE_CLASSES,
    ExplainInputs,
    Explanations,
    ImageClass,
)
from odirkit.explain.scores import (
    input_dependence,
    localisation_scores,
    pointing_and_energy,
    rank_correlation,
    sanity_checks,
)


def test_pointing_energy_and_their_baselines_are_fractions_of_the_field():
    heat = np.zeros((10, 10))
    heat[2, 3], heat[2, 4], heat[7, 7] = 3.0, 1.0, 4.0  # the peak is at (7, 7)
    mask = np.zeros((10, 10), bool)
    mask[2, 3:5] = True  # two pixels
    fov = np.zeros((10, 10), bool)
    fov[:, :5] = True  # half the picture is field
    hit, energy, chance, share = pointing_and_energy(heat, mask, fov, tolerance=0)
    assert hit == 0.0  # the peak misses
    assert energy == pytest.approx(4.0 / 8.0)  # half the energy is on the mask
    assert chance == pytest.approx(2 / 50) and share == pytest.approx(2 / 50)
    # one pixel of tolerance: the grown mask is the 2 pixels and their 6 neighbours, one
    # of which, (2, 5), lies outside the field
    heat[1, 3] = 2.0  # heat beside the mask, in the grown one: energy counts the mask's only
    hit, energy, chance, share = pointing_and_energy(heat, mask, fov, tolerance=1)
    assert hit == 0.0 and energy == pytest.approx(4.0 / 10.0)
    assert chance == pytest.approx(7 / 50) and share == pytest.approx(2 / 50)
    heat[7, 7] = heat[1, 3] = 0.0
    assert pointing_and_energy(heat, mask, fov, tolerance=0)[:2] == (1.0, 1.0)
    # a peak next to the mask hits within the tolerance only
    near = np.zeros((10, 10))
    near[3, 3] = 1.0
    assert pointing_and_energy(near, mask, fov, 0)[0] == 0.0
    assert pointing_and_energy(near, mask, fov, 1)[0] == 1.0
    assert pointing_and_energy(np.zeros((10, 10)), mask, fov, 0)[1] == 0.0  # no energy
    assert pointing_and_energy(near / 4, mask, fov, 0)[1] == 0.0  # a faint map: its energy
    assert pointing_and_energy(heat / 10, mask, fov, 0)[1] == pytest.approx(1.0)
    # two pixels of tolerance grow the mask twice: a peak 2 rows off still hits
    far = np.zeros((10, 10))
    far[4, 3] = 1.0
    assert pointing_and_energy(far, mask, fov, 1)[0] == 0.0
    assert pointing_and_energy(far, mask, fov, 2)[0] == 1.0
    # a field of one pixel, on the mask: a random point of it always hits
    one = np.zeros((10, 10), bool)
    one[2, 3] = True
    assert pointing_and_energy(heat, mask, one, 0)[2:] == (1.0, 1.0)


def test_rank_correlation_is_spearmans_on_any_map_size_and_undefined_on_too_little():
    rng = np.random.default_rng(1)
    a = np.kron(rng.random((56, 56)), np.ones((2, 2)))  # 112 px, constant in 2 x 2 cells
    assert rank_correlation(a, a**3) == pytest.approx(1.0)  # ranks, not values
    assert rank_correlation(a, 1 - a) == pytest.approx(-1.0)
    tiny = np.zeros((112, 112), bool)
    tiny[:4, :2] = True  # two cells of the 56 x 56 grid
    assert np.isnan(rank_correlation(a, 1 - a, tiny))
    tiny[:6, :2] = True  # three: enough
    assert rank_correlation(a, 1 - a, tiny) == pytest.approx(-1.0)
    # cells half inside the region are outside it
    agree = a.copy()
    agree[:, 2:4] = 1 - a[:, 2:4]  # grid column 1 disagrees
    half = np.zeros((112, 112), bool)
    half[:, :3] = True  # grid column 0 whole, column 1 half
    assert rank_correlation(a, agree, half) == pytest.approx(1.0)
    # maps spanning exactly 0..1 are not constant
    span = np.kron(np.linspace(0, 1, 56 * 56).reshape(56, 56), np.ones((2, 2)))
    assert rank_correlation(span, span[::-1]) < 0 and rank_correlation(a, span) == pytest.approx(
        rank_correlation(span, a)
    )
    flat_inside = a.copy()
    region = np.zeros((112, 112), bool)
    region[40:80, 40:80] = True
    flat_inside[region] = 0.5
    assert np.isnan(rank_correlation(flat_inside, a, region))
    assert np.isnan(rank_correlation(a, flat_inside, region))


def test_input_dependence_compares_shown_images_of_different_classes_only():
    rng = np.random.default_rng(2)
    base = rng.random((32, 32))
    maps = np.stack([base, base, 1 - base, 1 - base, rng.random((32, 32))])
    fov = np.ones((32, 32), bool)
    classes = [0, 0, 1, 1, 0]
    image_classes = [
        ImageClass(image=0, target=0, shown=True),
        ImageClass(image=1, target=0, shown=True),  # same class as image 0: not compared
        ImageClass(image=2, target=1, shown=True),  # opposite of image 0's map
        ImageClass(image=2, target=0, shown=True),  # the same image again: not compared
        ImageClass(image=4, target=0, shown=False),  # not shown: not compared
    ]
    # compared: image 0 and image 1 each against image 2's two maps, all -1
    got = input_dependence(maps, image_classes, classes, [fov] * 5)
    assert got == pytest.approx(-1.0)
    assert np.isnan(input_dependence(maps, image_classes[:2], classes, [fov] * 5))


def test_input_dependence_stops_after_its_comparisons_and_skips_undefined_ones():
    rng = np.random.default_rng(3)
    base = rng.random((16, 16))
    n = 20  # 10 of class 0 (base), 10 of class 1: 100 comparisons of different classes
    maps = np.stack([base] * 10 + [base] * 9 + [1 - base])
    classes = [0] * 10 + [1] * 10
    image_classes = [ImageClass(image=i, target=0, shown=True) for i in range(n)]
    fov = np.ones((16, 16), bool)
    # in order, image 0 meets images 10..19 (the last is the opposite), image 1 likewise...:
    # the first INPUT_COMPARISONS comparisons hold 64 // 10 = 6 opposites
    got = input_dependence(maps, image_classes, classes, [fov] * n)
    opposite = INPUT_COMPARISONS // 10
    assert got == pytest.approx((INPUT_COMPARISONS - 2 * opposite) / INPUT_COMPARISONS)
    flat = maps.copy()
    flat[10] = 0.0  # a constant map: its comparisons are undefined and left out of the mean
    # (they still count towards the comparisons made): images 0..6 meet image 10 in the
    # first 64, so 57 are defined, of which the 6 opposites
    assert input_dependence(flat, image_classes, classes, [fov] * n) == pytest.approx(45 / 57)


class Patterned(nn.Module):
    """A model whose explanation is its own spatial pattern (fixed at construction) plus
    ``image_weight`` times the image: a stand-in for a network whose weights shape the map."""

    def __init__(self, seed: int, image_weight: float, size: int = 32) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("pattern", torch.rand(size, size, generator=generator))
        self.image_weight = image_weight
        self.linear = nn.Linear(3, 2)

    def forward(self, x):
        return self.linear(x.mean(dim=(2, 3)))


def patterned_explainer(model, x, targets, layer):
    if model.image_weight is None:  # both: the sum wrapped round, which neither predicts
        return torch.remainder(model.pattern + 4 * x.mean(dim=1), 1.0)
    return model.pattern + model.image_weight * x.mean(dim=1)


def check(explainer, fresh, x, classes, trained, *, fovs=None, layer=None, extra=(), name="e"):
    """Both sanity checks of ``explainer`` on ``x`` (one image class per image, shown), the
    re-initialised model from ``fresh``; the one row, as a Series."""
    n = len(x)
    return sanity_checks(
        types.SimpleNamespace(name=name),
        explainer,
        fresh,
        lambda model: (model, extra),
        x,
        [ImageClass(image=i, target=classes[i], shown=True) for i in range(n)],
        layer,
        0,
        trained,
        torch.device("cpu"),
        classes,
        fovs or [np.ones((32, 32), bool)] * n,
    ).iloc[0]


def sanity(image_weight: float | None, *, random: bool = True, n: int = 20):
    torch.manual_seed(0)
    x = torch.rand(n, 3, 32, 32)
    classes = [i % 2 for i in range(n)]
    trained = patterned_explainer(Patterned(seed=1, image_weight=image_weight), x, None, None)
    fresh = (lambda: Patterned(seed=2, image_weight=image_weight)) if random else None
    return check(patterned_explainer, fresh, x, classes, trained.numpy(), name="patterned")


def test_a_map_made_by_the_model_not_the_image_fails_input_dependence_only():
    row = sanity(image_weight=0.001)
    assert row["rank_correlation_with_random_model"] < 0.3
    assert row["input_dependence"] > 0.9
    assert not row["fails_randomisation"] and row["fails_input_dependence"]
    assert not row["reliable"]
    assert row["pairs"] == SANITY_IMAGE_CLASSES and row["constant_maps"] == 0
    assert row["explainer"] == "patterned"


def test_a_map_made_by_the_image_not_the_model_fails_randomisation_only():
    row = sanity(image_weight=1000.0)
    assert row["rank_correlation_with_random_model"] > 0.9
    assert row["input_dependence"] < 0.3
    assert row["fails_randomisation"] and not row["fails_input_dependence"]
    assert not row["reliable"]


def test_a_map_of_both_passes_and_without_a_random_model_one_check_is_not_made():
    row = sanity(image_weight=None)
    assert row["rank_correlation_with_random_model"] < 0.5
    assert row["input_dependence"] < 0.5 and row["reliable"]
    row = sanity(image_weight=0.001, random=False)
    assert np.isnan(row["rank_correlation_with_random_model"]) and row["constant_maps"] == 0
    assert not row["fails_randomisation"] and row["fails_input_dependence"]


def test_constant_maps_of_the_random_model_are_counted_not_averaged():
    def half_flat(model, x, targets, layer):
        maps = model.pattern + 0.001 * x.mean(dim=1)
        if getattr(model, "flat", False):
            maps[::2] = 1.0  # every other image class: a constant map
        return maps

    n = 8
    x = torch.rand(n, 3, 32, 32)
    trained = half_flat(Patterned(1, 0.0), x, None, None).numpy()

    def fresh():
        model = Patterned(1, 0.0)  # the same pattern: correlation 1 where defined
        model.flat = True
        return model

    row = check(half_flat, fresh, x, [0] * n, trained)
    assert row["constant_maps"] == n // 2 and row["pairs"] == n
    assert row["rank_correlation_with_random_model"] == pytest.approx(1.0)


def lesion_photograph(tmp_path, name: str, lesion: tuple[slice, slice] | None):
    pixels = np.zeros((64, 64, 3), dtype=np.uint8)
    pixels[4:60, 4:60] = (150, 70, 30)
    mask = np.zeros((64, 64), dtype=np.uint8)
    if lesion is not None:
        pixels[lesion] = (250, 240, 200)
        mask[lesion] = 255
    Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    Image.fromarray(mask).save(tmp_path / f"{name}-mask.png")
    return str(tmp_path / f"{name}.png"), str(tmp_path / f"{name}-mask.png")


def test_localisation_scores_each_explainer_and_class_against_its_random_baseline(tmp_path):
    prep = Preprocessing(size=32)
    photos = [
        lesion_photograph(tmp_path, "c", None),  # an empty mask: not scored
        lesion_photograph(tmp_path, "a", (slice(10, 20), slice(10, 20))),
        lesion_photograph(tmp_path, "b", (slice(40, 50), slice(30, 45))),
        lesion_photograph(tmp_path, "d", (slice(25, 35), slice(40, 52))),
    ]
    images = torch.from_numpy(
        np.stack([preprocess(path, prep) for path, _ in photos]).transpose(0, 3, 1, 2).copy()
    )
    rows = pd.DataFrame(
        {
            "patient_id": ["1", "2", "3", "4"],
            "eye": ["left"] * 4,
            "image_path": [p for p, _ in photos],
            "mask_path_D": [m for _, m in photos],
        }
    )
    inputs = ExplainInputs(images=images, rows=rows, true=[[1], [1], [1], [1]])
    lesions = [(images[i].float().mean(0) > 200).numpy() for i in range(4)]
    masks = [preprocess_mask(m, p, prep) for p, m in photos]
    on_lesion = np.stack([lesion.astype(np.float32) + 0.01 for lesion in lesions])
    elsewhere = np.stack([np.roll(m, 12, axis=(0, 1)) for m in on_lesion])
    mixed = np.stack([on_lesion[0], on_lesion[1], elsewhere[2], elsewhere[3]])
    result = Explanations(
        image_classes=[ImageClass(image=i, target=1, lesion=True) for i in range(4)],
        maps={"good": on_lesion, "bad": elsewhere, "mixed": mixed},
    )
    view = types.SimpleNamespace(preprocessing=prep)
    table = localisation_scores(inputs, result, ["N", "D"], view).set_index("explainer")
    assert list(table.index) == ["good", "bad", "mixed"]
    assert (table["label"] == "D").all() and (table["images"] == 3).all()
    assert table.loc["good", "pointing_game"] == 1.0 and table.loc["bad", "pointing_game"] == 0.0
    assert table.loc["good", "energy_in_mask"] > 0.5 > table.loc["bad", "energy_in_mask"]
    # averaged over the images (a hit on one of three: 1/3, where a median would say 0)
    assert table.loc["mixed", "pointing_game"] == pytest.approx(1 / 3)
    energy = [table.loc[name, "energy_in_mask"] for name in ("good", "bad")]
    everywhere = np.ones((32, 32), bool)  # the energy's share does not depend on the field
    per_image = [pointing_and_energy(mixed[i], masks[i], everywhere, 1)[1] for i in (1, 2, 3)]
    assert energy[1] < table.loc["mixed", "energy_in_mask"] < energy[0]
    assert table.loc["mixed", "energy_in_mask"] == pytest.approx(np.mean(per_image))
    # the baselines depend on the masks and the field only, not on the maps
    assert table.loc["good", "random_point"] == table.loc["bad", "random_point"]
    field = images[0].float().mean(0).numpy() > 20
    share = np.mean([(masks[i] & field).sum() / field.sum() for i in (1, 2, 3)])
    assert table.loc["good", "uniform_map"] == pytest.approx(share)
    # a random point hits within the tolerance: 3% of the side, at least a pixel (1 at 32 px)
    from scipy.ndimage import binary_dilation

    near = [(binary_dilation(masks[i]) & field).sum() / field.sum() for i in (1, 2, 3)]
    assert table.loc["good", "random_point"] == pytest.approx(np.mean(near))
    no_paths = ExplainInputs(images=images, rows=rows.drop(columns="image_path"), true=[])
    assert localisation_scores(no_paths, result, ["N", "D"], view) is None
    # no lesion image class: nothing to score
    result.image_classes = [ImageClass(image=i, target=1) for i in range(4)]
    assert localisation_scores(inputs, result, ["N", "D"], view) is None


def test_the_re_initialised_model_is_explained_at_the_named_layer_with_its_extra_inputs():
    n = 6
    x = torch.rand(n, 3, 32, 32)
    age = torch.arange(n, dtype=torch.float32)[:, None]
    seen = {}

    def layered(model, images, targets, layer, additional_forward_args=None):
        seen["layer"], seen["extra"] = layer, additional_forward_args
        assert layer is model.linear  # the layer named, in the model explained
        return model.pattern + 0.001 * images.mean(dim=1)

    trained = Patterned(1, 0.001)
    maps = layered(trained, x, None, trained.linear).numpy()

    # the same pattern in the re-initialised model: its maps are the trained ones
    def fresh():
        return Patterned(1, 0.001)

    row = check(layered, fresh, x, [i % 2 for i in range(n)], maps, layer="linear", extra=(age,))
    assert row["rank_correlation_with_random_model"] == pytest.approx(1.0)
    assert isinstance(seen["layer"], nn.Linear) and torch.equal(seen["extra"][0], age)


def test_sanity_correlations_are_taken_inside_each_images_field_of_view():
    n = 4
    x = torch.rand(n, 3, 32, 32)
    inside = np.zeros((32, 32), bool)
    inside[4:28, 4:28] = True

    def bordered(model, images, targets, layer):
        maps = model.pattern.clone().expand(len(images), 32, 32).clone()
        if getattr(model, "flipped", False):  # the random model's maps differ on the border
            maps[:, ~torch.from_numpy(inside)] = 1 - maps[:, ~torch.from_numpy(inside)]
        return maps

    def fresh():
        model = Patterned(1, 0.0)
        model.flipped = True
        return model

    trained = bordered(Patterned(1, 0.0), x, None, None).numpy()
    row = check(bordered, fresh, x, [0, 1, 0, 1], trained, fovs=[inside] * n)
    assert row["rank_correlation_with_random_model"] == pytest.approx(1.0)
    # maps of different images that agree inside the fields, not outside: dependence 1
    assert row["input_dependence"] == pytest.approx(1.0)


def test_a_random_model_whose_maps_are_all_flat_has_no_randomisation_score():
    n = 4
    x = torch.rand(n, 3, 32, 32)

    def flat_when_random(model, images, targets, layer):
        if getattr(model, "flat", False):
            return torch.ones(len(images), 32, 32)
        return model.pattern + images.mean(dim=1)

    def fresh():
        model = Patterned(1, 1.0)
        model.flat = True
        return model

    trained = flat_when_random(Patterned(1, 1.0), x, None, None).numpy()
    row = check(flat_when_random, fresh, x, [0, 1, 0, 1], trained)
    assert np.isnan(row["rank_correlation_with_random_model"]) and row["constant_maps"] == n
    assert not row["fails_randomisation"]


def test_input_dependence_compares_maps_inside_both_images_fields():
    rng = np.random.default_rng(4)
    base = rng.random((32, 32))
    own = np.zeros((32, 32), bool)
    own[:, :20] = True
    other = np.zeros((32, 32), bool)
    other[:, 12:] = True
    second = base.copy()
    second[:, :12] = rng.random((32, 12))  # differs where only the first image has field
    second[:, 20:] = rng.random((32, 12))  # ... and where only the second has
    maps = np.stack([base, second])
    image_classes = [ImageClass(image=0, target=0, shown=True), ImageClass(1, 1, shown=True)]
    got = input_dependence(maps, image_classes, [0, 1], [own, other])
    assert got == pytest.approx(1.0)  # equal where both are field


def test_a_lesion_mask_is_read_only_when_the_image_has_one(tmp_path):
    from odirkit.explain.scores import lesion_mask

    photo, mask = lesion_photograph(tmp_path, "c", (slice(20, 40), slice(20, 40)))
    rows = pd.DataFrame(
        {
            "patient_id": ["1", "2", "3"],
            "image_path": ["a.png", "b.png", photo],
            "mask_path_D": ["", float("nan"), mask],
        }
    )
    inputs = ExplainInputs(images=torch.zeros(3, 3, 8, 8, dtype=torch.uint8), rows=rows, true=[])
    view = types.SimpleNamespace(preprocessing=Preprocessing(size=8))
    assert lesion_mask(inputs, 0, "D", view) is None  # an empty cell
    assert lesion_mask(inputs, 1, "D", view) is None  # no mask for this image
    assert lesion_mask(inputs, 2, "G", view) is None  # no column for this class
    assert lesion_mask(inputs, 2, "D", None) is None  # no view to preprocess it with
    no_paths = ExplainInputs(images=inputs.images, rows=rows.drop(columns="image_path"), true=[])
    assert lesion_mask(no_paths, 2, "D", view) is None
    found = lesion_mask(inputs, 2, "D", view)
    assert found.shape == (8, 8) and found.dtype == bool and 0 < found.sum() < 64
