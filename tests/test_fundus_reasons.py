"""The fundus check's early verdicts on pictures built pixel by pixel at its own size
(128 px, which it reads unscaled): blank and dark frames, a surround that is not plain,
washed-out and colourless fields, each with the statistics the verdict rests on (which
`odirkit check` and `odirkit predict` report). test_fundus_check.py runs whole
photographs through preprocessing and the check.
"""

from __future__ import annotations

import numpy as np
import pytest

from odirkit.data.fundus_check import CHECK_SIZE, check_fundus

MIDDLE = (CHECK_SIZE - 1) / 2
YY, XX = np.mgrid[0:CHECK_SIZE, 0:CHECK_SIZE]
DISC = np.hypot(XX - MIDDLE, YY - MIDDLE) <= 55


def picture(field_colour, surround=(2, 2, 2), field: np.ndarray = DISC) -> np.ndarray:
    """``uint8 [128, 128, 3]``: a field of one colour on a plain surround (not exactly
    black, which the check would take for preprocessing's padding and cut off)."""
    image = np.empty((CHECK_SIZE, CHECK_SIZE, 3), dtype=np.uint8)
    image[:] = surround
    image[field] = field_colour
    return image


@pytest.mark.parametrize(
    ("level", "reason"),
    [(128, "blank"), (250, "blank"), (5, "too_dark"), (20, "too_dark"), (21, "blank")],
)
def test_a_plain_picture_is_blank_or_too_dark_by_its_level(level, reason):
    # too dark: its 99th centile under 0.08 (20.4 of 255)
    verdict = check_fundus(np.full((CHECK_SIZE, CHECK_SIZE, 3), level, dtype=np.uint8))
    assert (verdict.usable, verdict.reason) == (False, reason)
    assert verdict.brightness == pytest.approx(level / 255, abs=1e-6)  # the median level


def test_a_dim_field_whose_bright_end_is_under_008_is_too_dark():
    verdict = check_fundus(picture((19, 9, 4)))  # a field at 0.075 on black
    assert (verdict.usable, verdict.reason) == (False, "too_dark")
    assert verdict.brightness == pytest.approx(19 / 255, abs=1e-6)  # the 99th centile


def test_a_few_bright_pixels_do_not_make_a_black_frame_a_picture():
    # a burned-in label on 0.6% of a near-black frame: the 99th centile is still dark
    image = np.full((CHECK_SIZE, CHECK_SIZE, 3), 3, dtype=np.uint8)
    image[4:14, 4:14] = 255
    verdict = check_fundus(image)
    assert verdict.reason == "too_dark"
    assert verdict.brightness == pytest.approx(3 / 255, abs=1e-6)


def test_a_speck_over_15_percent_of_a_plain_picture_is_no_blank():
    # its 1st centile is the speck's: the spread is the picture's, not a blank frame's
    image = np.full((CHECK_SIZE, CHECK_SIZE, 3), 128, dtype=np.uint8)
    image[:16, 60:76] = 0  # 256 of 16,384 pixels: 1.6%
    assert check_fundus(image).reason == "no_dark_surround"


def test_a_field_that_is_dim_but_not_black_is_judged_on_its_field():
    # its bright end (0.09) is above the dark frame's 0.08 but no pixel is lit (0.1):
    # nothing is saturated, and the field is found and judged (featureless: out of focus)
    verdict = check_fundus(picture((23, 12, 6)))
    assert verdict.reason == "out_of_focus"
    assert verdict.field > 0.5


def test_a_field_saturated_in_most_of_its_pixels_is_washed_out_with_its_share():
    below = DISC & (YY > 90)  # a strip of fundus below a saturated field
    for level, washed in ((248, True), (247, False)):  # 248 is 0.973, above 0.97; 247 not
        image = picture((level, level, level))
        image[below] = (200, 80, 30)
        verdict = check_fundus(image)
        assert (verdict.reason == "washed_out") is washed, level
    image = picture((250, 250, 250))
    image[below] = (200, 80, 30)
    verdict = check_fundus(image)
    assert (verdict.reason, verdict.surround) == ("washed_out", "dark")
    assert verdict.saturated == pytest.approx(1 - below.sum() / DISC.sum(), abs=1e-6)


def test_exactly_half_of_the_lit_pixels_saturated_is_not_washed_out():
    image = picture((250, 250, 250))
    image[DISC & (XX > MIDDLE)] = (200, 80, 30)  # the right half is a fundus: half of it
    assert (DISC & (XX > MIDDLE)).sum() * 2 == DISC.sum()
    assert check_fundus(image).reason != "washed_out"


@pytest.mark.parametrize(
    "colour",
    [(128, 255, 255), (255, 128, 255)],  # one channel well below 0.97: cyan, magenta
)
def test_a_field_saturated_in_two_channels_only_is_not_washed_out(colour):
    verdict = check_fundus(picture(colour))
    assert verdict.reason == "not_fundus_colour", verdict  # no red above the blue
    assert verdict.redness < 0.02 and verdict.coverage > 0.9  # with what it was judged on


def test_corners_dark_in_two_channels_but_red_in_the_third_are_no_dark_surround():
    # a red channel at 0.25 over the whole frame: the corners are part of a field that
    # fills the picture, however dark its green and blue
    verdict = check_fundus(picture((220, 90, 40), surround=(64, 5, 5)))
    assert verdict.reason == "no_dark_surround"


def test_integer_arrays_of_8_bit_levels_are_read_as_8_bit_pictures():
    image = picture((250, 250, 250))
    assert check_fundus(image.astype(np.int64)) == check_fundus(image)


def test_redness_is_the_median_over_the_field_of_red_above_blue_of_the_brightest():
    # (R - B) / max(R, G, B): a yellowish-green cast has little red above green but
    # plenty above blue, and is a fundus's colour
    verdict = check_fundus(picture((150, 150, 60)))
    assert verdict.reason != "not_fundus_colour"
    assert verdict.redness == pytest.approx(90 / 150, abs=1e-3)
    # the median: 70% of the field at 0.8, 30% grey at 0; a mean would say 0.56
    image = picture((200, 80, 40))
    image[DISC & (YY > 85)] = (100, 100, 100)
    share = (DISC & (YY > 85)).sum() / DISC.sum()
    assert 0.2 < share < 0.4
    assert check_fundus(image).redness == pytest.approx(0.8, abs=1e-3)


def test_only_the_exactly_black_rows_and_columns_round_the_picture_are_padding():
    from odirkit.data.fundus_check import _strip_padding

    image = np.zeros((64, 64, 3), dtype=np.uint8)
    image[10:51, 5:61] = 1  # the darkest grey is still picture
    image[30, 20] = 0  # and so is black inside it
    stripped = _strip_padding(image)
    assert stripped.shape == (41, 56, 3)
    assert (stripped == image[10:51, 5:61]).all()
    assert _strip_padding(np.zeros((8, 8, 3), dtype=np.uint8)) is None


def test_a_colourless_picture_is_refused_with_its_surround():
    verdict = check_fundus(picture((120, 120, 120)))
    assert (verdict.reason, verdict.surround) == ("not_colour", "dark")


@pytest.mark.parametrize(
    ("colour", "surround", "reason"),
    [
        ((80, 30, 10), (2, 2, 2), "too_dark"),  # small and dim (under 0.4): too dark
        ((101, 30, 10), (2, 2, 2), "too_dark"),  # 0.396 and 0.4: either side of 2 x 0.2
        ((102, 30, 10), (2, 2, 2), "no_field_of_view"),
        ((130, 30, 10), (2, 2, 2), "no_field_of_view"),  # small but bright: no field
        ((60, 20, 5), (250, 250, 250), "no_field_of_view"),  # dim, on white: no field
    ],
)
def test_a_field_under_a_fifth_of_the_picture_is_too_dark_or_no_field(colour, surround, reason):
    small = np.hypot(XX - MIDDLE, YY - MIDDLE) <= 25  # 12% of the picture
    verdict = check_fundus(picture(colour, surround, small))
    assert verdict.reason == reason, verdict
    assert verdict.field == pytest.approx(small.mean(), abs=0.02)  # (smoothing widens it)
    assert verdict.surround == ("dark" if surround[0] < 100 else "white")


def test_a_field_whose_outline_is_no_ellipse_is_refused_with_its_coverage_and_leak():
    square = (np.abs(XX - MIDDLE) <= 45) & (np.abs(YY - MIDDLE) <= 45)
    verdict = check_fundus(picture((200, 80, 30), field=square))
    assert verdict.reason == "no_field_of_view"
    assert verdict.surround == "dark"
    assert 0.0 < verdict.coverage < 0.4 and verdict.leak == 0.0  # the corners' arcs only
    assert verdict.field == pytest.approx(square.mean(), abs=0.03)
    tab = np.hypot(XX - MIDDLE, YY - MIDDLE) <= 45
    tab[56:72, 100:128] = True  # a label 16 px high joined to the field, out to the frame
    verdict = check_fundus(picture((200, 80, 30), field=tab))
    assert verdict.reason == "no_field_of_view"
    assert verdict.leak > 0.05 and 0.4 < verdict.coverage < 1.0


def test_a_field_mostly_saturated_within_a_lit_surround_is_washed_out():
    # a surround at 0.15 (dark, yet lit above 0.1): over everything lit under half is
    # saturated, over the field 70%
    image = picture((250, 250, 250), surround=(38, 38, 38))
    below = DISC & (YY > 85)
    image[below] = (200, 80, 30)
    verdict = check_fundus(image)
    assert (verdict.usable, verdict.reason) == (False, "washed_out")
    assert verdict.saturated == pytest.approx(1 - below.sum() / DISC.sum(), abs=0.05)
    assert verdict.redness == pytest.approx(0.0, abs=1e-3)  # the median: saturated white
    assert verdict.brightness == pytest.approx(250 / 255, abs=1e-3)


def textured(colour, field: np.ndarray = DISC, seed: int = 0) -> np.ndarray:
    """A field of ``colour`` with a fine texture (vessels' worth of detail) on a dark
    surround."""
    image = picture(colour, field=field).astype(np.int16)
    grain = np.random.default_rng(seed).integers(-12, 13, size=(CHECK_SIZE, CHECK_SIZE, 1))
    image[field] += grain[field]
    return np.clip(image, 0, 255).astype(np.uint8)


def test_a_fundus_passes_with_every_statistic_it_was_judged_on():
    verdict = check_fundus(textured((190, 80, 30)))
    assert (verdict.usable, verdict.reason, verdict.message) == (True, "", "")
    assert verdict.surround == "dark"
    assert verdict.field == pytest.approx(DISC.mean(), abs=0.03)
    assert verdict.coverage > 0.9 and verdict.leak == 0.0
    assert verdict.redness == pytest.approx(160 / 190, abs=0.05)
    assert verdict.brightness == pytest.approx(190 / 255, abs=0.03)
    assert verdict.saturated == 0.0 and verdict.sharpness > 0.0015


def test_a_field_found_but_darker_than_005_at_its_median_is_too_dark():
    # most of the field at 0.047, a sliver of it at 0.19: bright enough to be a picture,
    # too dark to judge
    image = picture((12, 5, 2))
    image[DISC & (XX > 95)] = (48, 16, 8)
    verdict = check_fundus(image)
    assert (verdict.usable, verdict.reason) == (False, "too_dark")
    assert verdict.field > 0.5 and verdict.coverage > 0.9  # judged on its field
    assert verdict.brightness == pytest.approx(12 / 255, abs=1e-4)


def test_the_front_of_an_eye_is_refused_with_the_statistics_of_its_field():
    sclera = textured((235, 228, 222))
    sclera[np.hypot(XX - MIDDLE, YY - MIDDLE) <= 12] = (4, 4, 4)  # the pupil
    verdict = check_fundus(sclera)
    assert (verdict.usable, verdict.reason) == (False, "anterior_segment")
    assert verdict.coverage > 0.9 and verdict.brightness > 0.8


def test_each_reason_is_said_in_words_that_match_it():
    from odirkit.data.fundus_check import REASONS, FundusCheck

    assert "underexposed" in FundusCheck(False, "too_dark").message
    assert "overexposed" in FundusCheck(False, "washed_out").message
    assert "grey" in REASONS["not_colour"] and "focus" in REASONS["out_of_focus"]
    assert "front of the eye" in REASONS["anterior_segment"]
    assert FundusCheck(True, "").message == ""
