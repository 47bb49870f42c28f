"""The classic augmenter: noise, rotation, contrast stretch, no flips; offline copies."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from odirkit_augment.classic import contrast_stretch

OFF = {"noise_p": 0.0, "rotation_p": 0.0, "contrast_p": 0.0}


@pytest.fixture
def classic(registry):
    spec = registry.get("augmenter", "classic")

    def build(**params):
        return spec.build(**spec.validate(params, where=None))

    return build


def disc_image(size: int = 65) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    c = (size - 1) / 2
    disc = ((yy - c) ** 2 + (xx - c) ** 2 <= (size / 2 - 1) ** 2).float()
    return disc.expand(3, size, size).clone() * 0.6


def test_noise_has_the_asked_variance_at_its_reference_size(classic):
    aug = classic(**{**OFF, "noise_p": 1.0, "noise_reference_size": 64})
    images = torch.full((8, 3, 64, 64), 0.5)
    out = aug(images, torch.Generator().manual_seed(0))
    assert (out - images).var().item() == pytest.approx(0.01, rel=0.05)
    edges = torch.cat([torch.full((4, 3, 64, 64), 0.97), torch.full((4, 3, 64, 64), 0.03)])
    clipped = aug(edges, torch.Generator().manual_seed(0))  # kept within [0, 1]
    assert clipped.max() == 1.0 and clipped.min() == 0.0
    assert (clipped == 1.0).float().mean() > 0.1 and (clipped == 0.0).float().mean() > 0.1


@pytest.mark.parametrize("size", [32, 128])
def test_noise_averaged_down_to_the_reference_pixels_has_the_papers_variance(classic, size):
    # The paper's variance 0.01 refers to 512-pixel images: at the run's size each pixel
    # stands for (512 / size)^2 of the paper's, and the noise must scale with it.
    reference = 64
    aug = classic(**{**OFF, "noise_p": 1.0, "noise_variance": 0.004, "noise_reference_size": 64})
    images = torch.full((16, 3, size, size), 0.5)
    noise = aug(images, torch.Generator().manual_seed(3)) - images
    expected = 0.004 * (size / reference) ** 2  # per pixel at the run's size
    assert noise.var().item() == pytest.approx(expected, rel=0.06)
    if size > reference:  # averaged down to the reference grid: the stated variance
        pooled = torch.nn.functional.avg_pool2d(noise, size // reference)
        assert pooled.var().item() == pytest.approx(0.004, rel=0.1)


def test_the_default_noise_is_the_papers_at_512_pixels(classic):
    aug = classic(**{**OFF, "noise_p": 1.0})
    images = torch.full((4, 3, 112, 112), 0.5)
    noise = aug(images, torch.Generator().manual_seed(0)) - images
    # 0.01 at 512 px is a standard deviation of 0.1 there, 0.1 * 112 / 512 here
    assert noise.std().item() == pytest.approx(0.1 * 112 / 512, rel=0.05)


def test_rotation_stays_within_a_quarter_turn_and_keeps_the_field_round(classic):
    aug = classic(**{**OFF, "rotation_p": 1.0})
    base = disc_image()
    line = base.clone()
    line[:, 31:34, 8:57] = 1.0  # a horizontal bar through the centre
    images = line.expand(64, 3, 65, 65).clone()
    out = aug(images, torch.Generator().manual_seed(1))
    angles = []
    for image in out:
        ys, xs = torch.nonzero(image[0] > 0.8, as_tuple=True)
        coords = torch.stack([xs.float() - xs.float().mean(), ys.float() - ys.float().mean()])
        _, eigvecs = torch.linalg.eigh(coords @ coords.T)
        vx, vy = eigvecs[:, -1]
        angle = math.atan(vy / vx) if vx != 0 else math.pi / 2
        angles.append(angle)
        field = image[0] > 0.3
        expected = base[0] > 0.3
        iou = (field & expected).sum() / (field | expected).sum()
        assert iou > 0.95  # the round field of view stays round and in place
    assert max(abs(a) for a in angles) <= math.pi / 4 + 0.05
    # the whole range is used, in both directions
    assert max(angles) > math.pi / 6 and min(angles) < -math.pi / 6


def test_contrast_stretch_maps_the_percentiles_to_0_and_1(classic):
    aug = classic(**{**OFF, "contrast_p": 1.0})
    generator = torch.Generator().manual_seed(2)
    images = torch.rand(2, 3, 40, 40, generator=generator) * 0.5 + 0.2
    out = aug(images, torch.Generator().manual_seed(3))
    for before, after in zip(images, out, strict=True):
        lo, hi = np.percentile(before.numpy(), [0.2, 99.8])
        expected = np.clip((before.numpy() - lo) / (hi - lo), 0, 1)
        assert np.allclose(after.numpy(), expected, atol=1e-5)
        assert after.min() == 0 and after.max() == 1


def test_no_flip_unless_asked(classic, phantom_root):
    from PIL import Image

    left = next((phantom_root / "ODIR-5K_Training_Dataset").glob("*_left.jpg"))
    image = torch.from_numpy(np.array(Image.open(left).convert("RGB"))).permute(2, 0, 1)
    images = (image.float() / 255).unsqueeze(0).repeat(16, 1, 1, 1)
    untouched = classic(**OFF)(images, torch.Generator().manual_seed(0))
    assert torch.equal(untouched, images)
    flipped = classic(**OFF, hflip_p=1.0)(images, torch.Generator().manual_seed(0))
    assert torch.equal(flipped, images.flip(-1))


def _every_transform(**on: float) -> dict[str, float]:
    return {**OFF, "hflip_p": 0.0, "vflip_p": 0.0, **on}


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        ({"hflip_p": 1.0}, lambda x: x.flip(-1)),
        ({"vflip_p": 1.0}, lambda x: x.flip(-2)),
        ({"contrast_p": 1.0}, lambda x: contrast_stretch(x, 0.2, 99.8, inplace=False)),
        ({}, lambda x: x),
    ],
    ids=["hflip", "vflip", "contrast", "none"],
)
def test_each_transform_alone_is_exactly_itself_and_an_off_one_never_happens(classic, on, expected):
    # each transform's own probability decides it: with one at 1 and every other at 0, the
    # batch is that transform of the images, whatever the others' draws are (768 draws: an
    # off transform that fired once in a hundred would show)
    images = torch.rand(256, 3, 16, 16, generator=torch.Generator().manual_seed(4)) * 0.6 + 0.2
    for seed in range(3):
        out = classic(**_every_transform(**on))(images, torch.Generator().manual_seed(seed))
        assert torch.allclose(out, expected(images), atol=1e-6)


@pytest.mark.parametrize(
    ("enabled", "expected"),
    [
        ("hflip_p", lambda x: x.flip(-1)),
        ("contrast_p", lambda x: contrast_stretch(x, 0.2, 99.8, inplace=False)),
    ],
)
def test_an_offline_copy_gets_an_enabled_transform_never_a_disabled_one(enabled, expected):
    # offline copies must differ from their source: where no transform was drawn, one of
    # the *enabled* ones is applied (here the only one, at a small probability)
    from odirkit_augment.classic import ClassicAugment

    params = {**_every_transform(**{enabled: 0.05}), "max_angle": math.pi / 4}
    aug = ClassicAugment(
        **params, noise_variance=0.01, low_percentile=0.2, high_percentile=99.8, at_least_one=True
    )
    images = torch.rand(16, 3, 24, 24, generator=torch.Generator().manual_seed(5)) * 0.6 + 0.2
    out = aug(images, torch.Generator().manual_seed(0))
    assert torch.allclose(out, expected(images), atol=1e-6)
    nothing = ClassicAugment(
        **_every_transform(),
        max_angle=1.0,
        noise_variance=0.01,
        low_percentile=0.2,
        high_percentile=99.8,
        at_least_one=True,
    )
    assert torch.equal(nothing(images, torch.Generator().manual_seed(0)), images)


def test_same_generator_seed_same_batch(classic):
    aug = classic()
    images = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    a = aug(images, torch.Generator().manual_seed(5))
    b = aug(images, torch.Generator().manual_seed(5))
    c = aug(images, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_parameters_are_checked(registry):
    from odirkit.errors import ConfigError
    from odirkit.params import Where

    spec = registry.get("augmenter", "classic")
    with pytest.raises(ConfigError, match="noise_p: input should be less than or equal to 1"):
        spec.validate({"noise_p": 1.5}, where=Where("exp.toml", "augment.0"))
    with pytest.raises(Exception, match="low_percentile < high_percentile"):
        spec.build(low_percentile=50.0, high_percentile=10.0)


# -- offline augmenters: classic copies and the DCGAN --------------------------------------

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402
from conftest import tiny_experiment  # noqa: E402


def phantom_context(phantom_root: Path, tmp_path: Path, labels=("N", "D"), size: int = 32):
    """An expand() context over the phantom's images of two classes."""
    from odirkit.augment import ExpandContext
    from odirkit.data.images import ImageCache, Preprocessing
    from odirkit.data.table import Task, check_sample_table, select_task

    raw = pd.read_csv(phantom_root / "phantom_images.csv", keep_default_na=False)
    selection = select_task(
        check_sample_table(raw, dataset="phantom", root=phantom_root), list(labels), "single_label"
    )
    cache = ImageCache(tmp_path / "cache", Preprocessing(size))
    images = torch.from_numpy(
        np.stack([cache.get(p) for p in selection.table["image_path"]])
    ).permute(0, 3, 1, 2)
    ctx = ExpandContext(
        load=lambda positions: images[list(positions)],
        size=len(images),
        targets=selection.targets,
        task=Task(tuple(labels), "single_label"),
        image_size=size,
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(0),
        seed=0,
        run_dir=tmp_path / "run",
        cache_dir=tmp_path / "shared",
        log=lambda m: None,
    )
    return selection.table, ctx


def test_offline_classic_adds_labelled_copies(registry, phantom_root, tmp_path):
    spec = registry.get("augmenter", "classic")
    offline = spec.build(**spec.validate({"mode": "offline", "copies": 2}, where=None))
    assert not callable(offline)  # never applied per batch as well
    train, ctx = phantom_context(phantom_root, tmp_path)
    extra = offline.expand(train, ctx)
    assert len(extra.table) == 2 * len(train)
    assert extra.images.shape == (2 * len(train), 3, 32, 32)
    assert extra.images.dtype == torch.uint8
    assert (
        extra.table[["N", "D"]].to_numpy() == np.tile(train[["N", "D"]].to_numpy(), (2, 1))
    ).all()
    # Every copy carries at least one transform: none duplicates its source image.
    sources = ctx.images(list(range(len(train)))).repeat(2, 1, 1, 1)
    same = (extra.images == sources).flatten(1).all(dim=1)
    assert not same.any(), f"{int(same.sum())} copies equal their source"


DCGAN_SMALL = {
    "epochs": 2,
    "batch_size": 4,
    "width": 4,
    "gan_size": 16,
    "min_images": 4,
    "images_per_class": 5,
    "sample_epochs": [1],
}


@pytest.mark.slow
def test_dcgan_generates_labelled_images_and_saves_its_training(registry, phantom_root, tmp_path):
    spec = registry.get("augmenter", "dcgan")
    gan = spec.build(**spec.validate(DCGAN_SMALL, where=None))
    train, ctx = phantom_context(phantom_root, tmp_path)
    extra = gan.expand(train, ctx)
    assert extra.images.shape == (10, 3, 32, 32) and extra.images.dtype == torch.uint8
    assert extra.table["N"].tolist() == [1] * 5 + [0] * 5
    assert extra.table["D"].tolist() == [0] * 5 + [1] * 5
    for label in ("N", "D"):
        folder = ctx.run_dir / label
        losses = pd.read_csv(folder / "losses.csv")
        assert list(losses["epoch"]) == [1, 2]
        assert np.isfinite(losses[["loss_d", "loss_g"]].to_numpy()).all()
        for name in (
            "generator.pt",
            "losses.png",
            "samples_epoch_001.png",
            "samples_epoch_002.png",
            "training_images.csv",
        ):
            assert (folder / name).exists(), name
        used = pd.read_csv(folder / "training_images.csv")
        class_rows = train[train[label] == 1]
        assert len(used) == len(class_rows)


def test_dcgan_skips_a_class_with_too_few_images(registry, phantom_root, tmp_path, capsys):
    spec = registry.get("augmenter", "dcgan")
    gan = spec.build(**spec.validate({**DCGAN_SMALL, "min_images": 10_000}, where=None))
    train, ctx = phantom_context(phantom_root, tmp_path)
    extra = gan.expand(train, ctx)
    assert len(extra.table) == 0 and extra.images.shape[0] == 0
    assert "fewer than min_images" in capsys.readouterr().err


GAN_VARIANT = """
[[variants.gan.augment]]
name = "dcgan"
epochs = 2
batch_size = 4
width = 4
gan_size = 16
min_images = 4
ratio = 0.5
sample_epochs = [1]
[variants.augmented]
augment = [{ name = "classic" }]
"""


@pytest.mark.slow
def test_gan_variant_trains_on_training_patients_only_and_reuses_its_generators(
    cli, tmp_path, phantom_root
):
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=1) + GAN_VARIANT)
    first = cli("run", exp, "--out", tmp_path / "a")
    assert first.exit_code == 0, first.output
    (variant,) = (tmp_path / "a").glob("*/*/gan")
    split = pd.read_csv(variant / "split.csv", keep_default_na=False)
    test_patients = set(split.loc[split["split"] == "test", "patient_id"].astype(str))
    for label in ("N", "D"):
        used = pd.read_csv(variant / "augment/0-dcgan" / label / "training_images.csv")
        assert not set(used["patient_id"].astype(str)) & test_patients
    generated = split[split["source"].str.startswith("dcgan")]
    assert len(generated) > 0 and (generated["split"] == "train").all()
    data = pd.read_json(variant / "data.json", typ="series")
    assert data["extra_train_images"]["dcgan"] == len(generated)
    assert "reusing" not in first.stderr

    second = cli("run", exp, "--out", tmp_path / "b", "--variant", "gan")
    assert second.exit_code == 0, second.output
    assert "reusing the trained N generator" in second.stderr
    (again,) = (tmp_path / "b").glob("*/*/gan")
    for label in ("N", "D"):
        key = "augment/0-dcgan/" + label + "/cache_key.txt"
        assert (variant / key).read_text() == (again / key).read_text()
    a = pd.read_csv(variant / "metrics.csv").drop(columns=["seconds"])
    b = pd.read_csv(again / "metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)  # the reused generator gives the same images
