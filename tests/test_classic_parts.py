"""The classic augmenter's parts: the paper's defaults, the rotation grid, the percentiles,
the noise bank, which transform an offline copy is forced to take, and the offline copies
(test_augment.py tests the transforms' statistics and the plugin through the registry).
"""

from __future__ import annotations

import math
import types

import pandas as pd
import pytest
import torch
from odirkit_augment.classic import (
    EXACT_PERCENTILE_LIMIT,
    ClassicAugment,
    OfflineClassic,
    build_classic,
    contrast_stretch,
    percentiles,
    rotate,
)

from odirkit.errors import ConfigError

NONE = {"noise_p": 0.0, "rotation_p": 0.0, "contrast_p": 0.0, "hflip_p": 0.0, "vflip_p": 0.0}


def augment(**on) -> ClassicAugment:
    params = {"noise_variance": 0.01, "max_angle": math.pi / 4}
    params |= {"low_percentile": 0.2, "high_percentile": 99.8}
    return ClassicAugment(**{**params, **NONE, **on})


def images(n: int = 4, size: int = 16, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 0.6 + 0.2


def test_the_defaults_are_the_papers():
    """Thiry et al. (2021): noise of variance 0.01 (at 512 px), rotations within ±π/4, the
    0.2 and 99.8 percentiles stretched to 0 and 1, no flips; each transform at one half."""
    aug = build_classic()
    assert isinstance(aug, ClassicAugment) and not aug.at_least_one
    assert aug.noise_std == pytest.approx(0.1) and aug.noise_reference_size == 512
    assert aug.max_angle == pytest.approx(math.pi / 4)
    assert (aug.low, aug.high) == (0.2, 99.8)
    assert (aug.noise_p, aug.rotation_p, aug.contrast_p) == (0.5, 0.5, 0.5)
    assert (aug.hflip_p, aug.vflip_p) == (0.0, 0.0)
    direct = ClassicAugment(
        **{**NONE, "noise_variance": 0.04, "max_angle": 1.0}, low_percentile=1, high_percentile=99
    )
    assert not direct.at_least_one and direct.noise_std_at(512) == pytest.approx(0.2)


def test_offline_mode_makes_one_copy_by_default_each_with_a_transform():
    offline = build_classic(mode="offline")
    assert isinstance(offline, OfflineClassic) and offline.copies == 1
    assert offline.augment.at_least_one
    assert build_classic(mode="offline", copies=3).copies == 3


@pytest.mark.parametrize(("low", "high"), [(50.0, 50.0), (60.0, 40.0)])
def test_the_low_percentile_must_lie_below_the_high_one(low, high):
    with pytest.raises(ConfigError, match=r"^classic: need low_percentile < high_percentile, got"):
        build_classic(low_percentile=low, high_percentile=high)


def test_a_rotation_by_nothing_is_the_image_and_a_quarter_turn_a_permutation():
    x = images(2, 9)
    assert torch.allclose(rotate(x, torch.zeros(2)), x, atol=1e-6)
    # a quarter turn counter-clockwise (as shown, row 0 on top): the top row to the left column
    quarter = rotate(x, torch.full((2,), math.pi / 2))
    assert torch.allclose(quarter, torch.rot90(x, k=1, dims=(-2, -1)), atol=1e-5)
    half = rotate(x, torch.full((2,), math.pi))
    assert torch.allclose(half, x.flip(-1).flip(-2), atol=1e-5)


def test_rotation_and_stretch_work_in_the_images_precision():
    x = images(2, 12).double()
    out = rotate(x, torch.tensor([0.3, -0.2], dtype=torch.float64))
    assert out.dtype == torch.float64
    lo, hi = percentiles(x, 0.2, 99.8)
    assert lo.dtype == torch.float64 and (lo < hi).all()
    assert contrast_stretch(x, 0.2, 99.8).dtype == torch.float64


def test_percentiles_of_a_large_image_come_from_a_subsample_close_to_the_exact_ones():
    side = 224  # 3 x 224 x 224 = 150,528 values: every second one is used
    assert 3 * side * side > 2 * EXACT_PERCENTILE_LIMIT
    x = images(2, side)
    lo, hi = percentiles(x, 0.2, 99.8)
    exact = torch.quantile(x.flatten(1), torch.tensor([0.002, 0.998]), dim=1)
    assert torch.allclose(lo, exact[0], atol=2e-3) and torch.allclose(hi, exact[1], atol=2e-3)


def test_the_stretch_leaves_its_input_alone_unless_asked_and_clips_to_0_and_1():
    x = images(3, 16)
    before = x.clone()
    out = contrast_stretch(x, 5.0, 95.0)
    assert torch.equal(x, before)  # not in place by default
    assert out.min() == 0.0 and out.max() == 1.0 and (out == 0).sum() > 1 and (out == 1).sum() > 1
    inplace = contrast_stretch(x, 5.0, 95.0, inplace=True)
    assert inplace.data_ptr() == x.data_ptr() and torch.allclose(inplace, out)
    assert inplace.min() == 0.0 and inplace.max() == 1.0


def test_noise_is_clipped_to_0_and_1_and_independent_per_channel_and_image():
    aug = augment(noise_p=1.0, noise_variance=4.0, noise_reference_size=16)
    x = torch.full((2, 3, 16, 16), 0.5)
    out = aug(x, torch.Generator().manual_seed(1))
    assert out.min() == 0.0 and out.max() == 1.0
    assert (out == 0).any() and (out == 1).any()
    assert not torch.equal(out[0, 0], out[0, 1])  # each channel its own noise
    assert not torch.equal(out[0], out[1])  # each image its own window of the bank


def test_one_noisy_image_gets_noise():
    aug = augment(noise_p=1.0, noise_reference_size=16)
    x = torch.full((1, 3, 16, 16), 0.5)
    assert not torch.equal(aug(x, torch.Generator().manual_seed(0)), x)


def test_noise_depends_only_on_the_runs_generator_not_on_global_state():
    x = torch.full((3, 3, 16, 16), 0.5)
    torch.manual_seed(1)
    a = augment(noise_p=1.0, noise_reference_size=16)(x, torch.Generator().manual_seed(7))
    torch.manual_seed(2)
    torch.rand(10)
    b = augment(noise_p=1.0, noise_reference_size=16)(x, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)


def test_a_large_image_after_a_small_one_still_gets_a_bank_large_enough():
    aug = augment(noise_p=1.0, noise_reference_size=16)
    aug(torch.full((1, 3, 16, 16), 0.5), torch.Generator().manual_seed(0))
    big = torch.full((2, 3, 1100, 1100), 0.5)  # 3.6 M values each: most of the small bank
    out = aug(big, torch.Generator().manual_seed(0))
    assert out.shape == big.shape and not torch.equal(out, big)


def test_a_forced_transform_is_drawn_evenly_among_the_enabled_ones():
    """Offline copies where nothing fired: each enabled transform about a third of the time."""
    aug = augment(rotation_p=1e-9, hflip_p=1e-9, vflip_p=1e-9, at_least_one=True)
    x = images(300, 8, seed=3)
    out = aug(x, torch.Generator().manual_seed(0))
    hflipped = (out == x.flip(-1)).flatten(1).all(dim=1)
    vflipped = (out == x.flip(-2)).flatten(1).all(dim=1)
    rotated = ~hflipped & ~vflipped
    for share in (hflipped, vflipped, rotated):
        assert 0.2 < share.float().mean() < 0.47


def offline_context(x: torch.Tensor, seed: int, log: list[str]):
    return types.SimpleNamespace(
        images=lambda positions: x[positions],
        device=torch.device("cpu"),
        generator=torch.Generator().manual_seed(seed),
        log=log.append,
    )


def test_offline_copies_are_labelled_numbered_reproducible_and_logged():
    x = (images(5, 16) * 255).to(torch.uint8)
    train = pd.DataFrame({"patient_id": list("abcde"), "D": [0, 1, 0, 1, 1]}, index=[7, 3, 9, 1, 4])
    offline = OfflineClassic(augment(hflip_p=1.0, at_least_one=True), copies=2, batch_size=2)
    log: list[str] = []
    torch.manual_seed(0)
    extra = offline.expand(train, offline_context(x, 1, log))
    assert list(extra.table["source"]) == ["classic copy 1"] * 5 + ["classic copy 2"] * 5
    assert list(extra.table["patient_id"]) == list("abcde") * 2
    assert list(extra.table.index) == list(range(10))  # numbered afresh
    assert torch.equal(extra.images[:5], x.flip(-1)) and torch.equal(extra.images[5:], x.flip(-1))
    assert log == ["classic (offline): 10 augmented copies added to the training set"]
    # the same generator seed gives the same copies, whatever the global generator did
    noisy = OfflineClassic(augment(noise_p=1.0, noise_reference_size=16, at_least_one=True), 1)
    torch.manual_seed(5)
    a = noisy.expand(train, offline_context(x, 2, [])).images
    torch.manual_seed(6)
    b = noisy.expand(train, offline_context(x, 2, [])).images
    assert torch.equal(a, b)


def test_a_copy_that_came_out_as_its_source_is_drawn_again():
    # full-range images: the stretch alone leaves them as they are; a flip drawn again
    # (one time in two) makes them differ
    x = torch.zeros(6, 3, 8, 8, dtype=torch.uint8)
    x[:, :, :, :4] = 255  # black and white halves: flipped, they differ
    offline = OfflineClassic(augment(contrast_p=1.0, hflip_p=0.5, at_least_one=True), 1)
    copy = offline._changed_copy(x, torch.Generator().manual_seed(0))
    assert not (copy == x).flatten(1).all(dim=1).any()
    assert torch.equal(copy, x.flip(-1))


def test_a_copy_drawn_again_draws_from_the_runs_generator():
    x = torch.zeros(6, 3, 8, 8, dtype=torch.uint8)
    x[:, :, :, :4] = 255
    offline = OfflineClassic(
        augment(contrast_p=1.0, noise_p=0.5, noise_reference_size=8, at_least_one=True), 1
    )
    copies = []
    for global_seed in (1, 2):
        torch.manual_seed(global_seed)
        copies.append(offline._changed_copy(x, torch.Generator().manual_seed(3)))
    assert torch.equal(*copies)


def test_describe_shows_online_as_the_default_mode():
    from odirkit.params import factory_params

    defaults = {p.name: p.default for p in factory_params(build_classic)}
    assert defaults["mode"] == "online" and defaults["copies"] == 1


def test_percentiles_asked_apart_are_each_their_own_as_numpy_computes_them():
    # low and high not symmetric about the median: each is its own order statistic
    import numpy as np

    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    lo, hi = percentiles(images, 1.0, 90.0)
    flat = images.flatten(1).numpy()
    assert lo.numpy() == pytest.approx(np.percentile(flat, 1.0, axis=1), abs=1e-6)
    assert hi.numpy() == pytest.approx(np.percentile(flat, 90.0, axis=1), abs=1e-6)
