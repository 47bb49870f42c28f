"""Preprocessing of one photograph, piece by piece: the field-of-view box, what lies apart
from the field, a light surround, the square crop, 16-bit files, the circle, lesion masks,
and the cache.

The pictures are built here with known geometry (a field whose rows and columns are known,
a speck at a known distance), so each assertion names the pixel a wrong formula would move.
test_data.py and test_fundus_check.py test the same code through whole photographs.
"""

from __future__ import annotations

import errno

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from PIL import Image

import odirkit.data.images as images
from odirkit.data.images import (
    ImageCache,
    Preprocessing,
    _without_specks,
    blacken_light_surround,
    brightest_channel,
    circle_mask,
    crop_to_square,
    fov_box,
    luma,
    open_photograph,
    prepare_images,
    preprocess,
    preprocess_mask,
)
from odirkit.errors import DataError, RunError


def grey(height: int, width: int, level: int = 0) -> np.ndarray:
    return np.full((height, width), level, dtype=np.uint8)


# -- the field-of-view box -------------------------------------------------------------


def test_the_box_is_the_fields_first_and_one_past_its_last_row_and_column():
    picture = grey(90, 120)
    picture[10:71, 25:101] = 180  # rows 10..70, columns 25..100
    assert fov_box(picture) == (25, 10, 101, 71)
    rgb = np.repeat(picture[..., None], 3, axis=2)
    assert fov_box(rgb) == (25, 10, 101, 71)


def test_luma_weighs_the_channels_as_itu_r_601_does():
    # Y = 0.299 R + 0.587 G + 0.114 B, rounded: pure red, green and blue differ widely
    primaries = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [150, 70, 30]]], np.uint8)
    assert luma(primaries)[0].tolist() == [76, 150, 29, 89]


def test_a_colour_photograph_is_boxed_by_its_luma_not_its_brightest_channel():
    # on a bright field (luma 209: the threshold is 20), a deep blue margin (luma 17) is not
    # field though its blue is 150; a deep red one (luma 45) is
    picture = np.zeros((100, 100, 3), dtype=np.uint8)
    picture[30:70, 30:70] = (250, 200, 150)
    picture[20:30, 30:70] = (0, 0, 150)
    assert fov_box(picture) == (30, 30, 70, 70)
    picture[20:30, 30:70] = (150, 0, 0)
    assert fov_box(picture) == (30, 20, 70, 70)


def test_a_row_or_column_counts_only_when_more_than_one_percent_of_it_is_field():
    picture = grey(100, 100)
    picture[20:80, 20:80] = 200
    picture[19, 50] = 200  # 1 pixel of 100 in row 19: exactly 1%, not more
    picture[50, 80] = 200  # likewise column 80
    assert fov_box(picture) == (20, 20, 80, 80)
    picture[19, 51] = 200  # 2% of row 19: it counts now
    assert fov_box(picture) == (20, 19, 80, 80)


@pytest.mark.parametrize(
    ("field", "band", "inside"),
    [
        (255, 20, False),  # bright photograph: the threshold is FOV_THRESHOLD (20), strictly above
        (255, 21, True),
        (255, 25, True),  # an eighth of 255 would be 31: the threshold never rises above 20
        (120, 14, False),  # dim: an eighth of 120 is 15; 14 is margin
        (120, 16, True),
        (40, 6, False),  # very dim: an eighth is 5, but never below MIN_FOV_THRESHOLD (8)
        (40, 9, True),
    ],
)
def test_the_threshold_follows_the_bright_end_of_a_dark_photograph(field, band, inside):
    picture = grey(100, 100)
    picture[30:70, 30:70] = field
    picture[20:30, 30:70] = band  # a dim band above the field, touching it
    top = fov_box(picture)[1]
    assert top == (20 if inside else 30)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(40, 300),
    st.integers(40, 300),
    st.floats(0.05, 0.95),
    st.floats(0.05, 0.95),
    st.floats(0.05, 0.95),
    st.floats(0.05, 0.95),
    st.integers(30, 255),
)
def test_the_crop_keeps_the_whole_field_and_nothing_but_it(h, w, top, left, bottom, right, level):
    """Any field (a rectangle at least 5% of each side, at any level a camera gives) on a
    black surround: the box is exactly the field, and the square crop keeps all of it."""
    y0, y1 = sorted((round(top * h), round(bottom * h)))
    x0, x1 = sorted((round(left * w), round(right * w)))
    assume(y1 - y0 >= 0.05 * h and x1 - x0 >= 0.05 * w)
    picture = grey(h, w)
    picture[y0:y1, x0:x1] = level
    assert fov_box(picture) == (x0, y0, x1, y1)
    rgb = Image.fromarray(np.repeat(picture[..., None], 3, axis=2))
    out = np.asarray(crop_to_square(rgb, fov_box(picture), 64, Image.Resampling.NEAREST))
    lit = out.max(axis=2) > 0
    rows, cols = np.flatnonzero(lit.any(axis=1)), np.flatnonzero(lit.any(axis=0))
    # the field's longer side fills the square; the other is centred
    assert max(rows[-1] - rows[0], cols[-1] - cols[0]) + 1 == 64
    assert abs(rows[0] - (63 - rows[-1])) <= 1 and abs(cols[0] - (63 - cols[-1])) <= 1
    assert lit[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].all()


def test_an_explicit_threshold_is_used_as_given():
    picture = grey(60, 60)
    picture[10:50, 10:50] = 100
    picture[5:10, 10:50] = 60
    assert fov_box(picture, threshold=50)[1] == 5
    assert fov_box(picture, threshold=60)[1] == 10


def test_no_box_when_no_row_or_no_column_is_one_percent_field():
    assert fov_box(grey(50, 50)) is None
    assert fov_box(grey(0, 0)) is None
    vertical = grey(300, 300)
    vertical[:, 150] = 255  # every row 1/300 field: no row counts, one column does
    assert fov_box(vertical) is None
    assert fov_box(vertical.T.copy()) is None


# -- what lies apart from the field ------------------------------------------------------


def test_a_speck_apart_from_the_field_is_dropped_and_the_field_is_untouched():
    bright = np.zeros((100, 100), dtype=bool)
    bright[20:80, 15:80] = True  # the field: 3900 pixels
    bright[40:43, 10:13] = True  # a label 2 columns left of the field (columns 13, 14 dark)
    kept = _without_specks(bright)
    expected = bright.copy()
    expected[40:43, 10:13] = False
    np.testing.assert_array_equal(kept, expected)
    assert fov_box(np.where(bright, 200, 0).astype(np.uint8)) == (15, 20, 80, 80)


def test_a_field_cut_in_two_keeps_both_parts_of_at_least_a_tenth_of_the_largest():
    bright = np.zeros((100, 100), dtype=bool)
    bright[10:20, 10:20] = True  # 100 pixels
    bright[50:52, 50:55] = True  # 10 pixels: exactly a tenth, kept
    bright[80:83, 80:83] = True  # 9 pixels: dropped
    kept = _without_specks(bright)
    assert kept[10:20, 10:20].all() and kept[50:52, 50:55].all()
    assert not kept[80:83, 80:83].any()
    assert kept.sum() == 110


def test_a_mask_with_one_region_or_none_is_returned_as_it_is():
    bright = np.zeros((40, 30), dtype=bool)
    bright[5:20, 3:9] = True  # one region, however small against the picture
    bright[30, 25] = True  # ... and a single pixel beside it: a speck, dropped
    one = bright.copy()
    one[30, 25] = False
    np.testing.assert_array_equal(_without_specks(bright), one)
    np.testing.assert_array_equal(_without_specks(one), one)
    lone = np.zeros((40, 30), dtype=bool)
    lone[30, 25] = True  # a single pixel alone is the largest region: kept
    np.testing.assert_array_equal(_without_specks(lone), lone)


def test_on_a_large_photograph_the_speck_goes_and_nothing_else_changes():
    # 601 x 700: reduced by 2 to find the regions, 601 not a multiple of it
    yy, xx = np.mgrid[0:601, 0:700]
    bright = (yy - 300) ** 2 + (xx - 350) ** 2 <= 250**2
    bright[580:590, 20:30] = True  # a camera's mark in the bottom-left margin
    bright[5:9, 660:668] = True  # and one at the top right
    kept = _without_specks(bright)
    assert kept.shape == bright.shape
    assert not kept[580:590, 20:30].any() and not kept[5:9, 660:668].any()
    field = (yy - 300) ** 2 + (xx - 350) ** 2 <= 250**2
    np.testing.assert_array_equal(kept, field)


def test_the_brightest_channel_is_the_per_pixel_maximum():
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, size=(17, 23, 3), dtype=np.uint8)
    np.testing.assert_array_equal(brightest_channel(pixels), pixels.max(axis=2))


# -- a light surround --------------------------------------------------------------------


def field_on_light(size: int = 300, colour=(250, 250, 250), dark_corner: str | None = None):
    """A field that touches all four sides, so its light corners are four separate regions."""
    yy, xx = np.mgrid[0:size, 0:size]
    field = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= (0.6 * size) ** 2
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:] = colour
    pixels[field] = (150, 70, 30)
    if dark_corner:  # that corner's whole region dark (a camera's label, say)
        half = size // 2
        rows = slice(0, half) if dark_corner[0] == "t" else slice(half, size)
        cols = slice(0, half) if dark_corner[1] == "l" else slice(half, size)
        quadrant = np.zeros_like(field)
        quadrant[rows, cols] = True
        pixels[quadrant & ~field] = (5, 5, 5)
    return pixels, field


def test_three_light_corners_are_enough_and_each_corners_surround_is_made_black():
    for corner in ("tl", "tr", "bl", "br"):
        pixels, field = field_on_light(dark_corner=corner)
        out = blacken_light_surround(pixels)
        light = (pixels == 250).all(axis=2)
        assert (out[light] == 0).all(), corner  # every light corner, each its own region
        np.testing.assert_array_equal(out[field], pixels[field])
        assert (out[~light & ~field] == 5).all(), corner  # the dark corner is left as it is


def test_two_light_corners_are_not_a_surround():
    pixels, _ = field_on_light(dark_corner="tl")
    pixels[-20:, -20:] = 5
    np.testing.assert_array_equal(blacken_light_surround(pixels), pixels)


def test_a_corner_counts_as_light_from_a_level_of_200_in_every_channel():
    pixels, field = field_on_light(colour=(200, 200, 200))
    assert (blacken_light_surround(pixels)[~field] == 0).all()
    pixels, _ = field_on_light(colour=(255, 199, 255))
    np.testing.assert_array_equal(blacken_light_surround(pixels), pixels)


def test_the_whole_corner_patch_must_be_light():
    # the patch is a hundredth of the shorter side: 3 x 3 at 300 px, 1 x 1 below 200 px
    pixels, _ = field_on_light(size=300, dark_corner="br")
    pixels[2, 2] = (250, 250, 10)  # inside the top-left 3 x 3 patch: two light corners left
    np.testing.assert_array_equal(blacken_light_surround(pixels), pixels)
    pixels, _ = field_on_light(size=300, dark_corner="br")
    pixels[3, 3] = (250, 250, 10)  # just outside it: three light corners
    out = blacken_light_surround(pixels)
    assert (out[0, 0] == 0).all() and (out[3, 3] == (250, 250, 10)).all()
    small, _ = field_on_light(size=150, dark_corner="br")
    small[1, 1] = (250, 250, 10)  # outside the 1 x 1 patch of a 150 px picture
    assert (blacken_light_surround(small)[0, 0] == 0).all()


def disc_on(colour, size: int = 100, radius: int = 40):
    """A field (a centred disc) on a surround of ``colour`` connected all round it: under
    200 px, each corner patch is its corner pixel."""
    yy, xx = np.mgrid[0:size, 0:size]
    field = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius**2
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:] = colour
    pixels[field] = (150, 70, 30)
    return pixels, field


def test_only_pixels_within_40_levels_of_the_corners_colour_in_every_channel_are_surround():
    # a tinted surround: one colour for all channels (their median, 255, or their mean,
    # 238) would leave it all, or take the pixels 41 levels off
    pixels, field = disc_on((255, 205, 255))
    edges = [  # strips on the surround, touching the frame's edge: colour, surround or not
        (slice(45, 55), slice(0, 6), (215, 205, 255), True),  # red 40 below
        (slice(45, 55), slice(94, 100), (214, 205, 255), False),  # red 41 below
        (slice(0, 6), slice(45, 55), (255, 245, 255), True),  # green 40 above
        (slice(94, 100), slice(45, 55), (255, 246, 255), False),  # green 41 above
    ]
    for rows, cols, colour, _ in edges:
        assert not field[rows, cols].any()
        pixels[rows, cols] = colour
    out = blacken_light_surround(pixels)
    for rows, cols, colour, surround in edges:
        assert (out[rows, cols] == (0 if surround else colour)).all(), colour
    assert (out[0, 0] == 0).all() and (out[50, 8] == 0).all()  # the rest of the surround
    np.testing.assert_array_equal(out[field], pixels[field])
    # a light field of another hue (near the corners' mean level, not their colour) stays
    pixels, field = field_on_light(colour=(255, 200, 255))
    pixels[field] = (205, 240, 205)
    np.testing.assert_array_equal(blacken_light_surround(pixels)[field], pixels[field])


def test_the_tolerance_is_measured_from_the_corners_exact_colour_not_a_truncated_one():
    pixels, field = disc_on((237, 237, 237))
    corners = ((0, 0), (0, 99), (99, 0), (99, 99))
    for (y, x), level in zip(corners, (240, 240, 235, 235), strict=True):
        pixels[y, x] = level  # the median of the four corners: 237.5 in every channel
    pixels[45:55, 0:6] = 198  # 39.5 below it: surround
    pixels[45:55, 94:100] = 197  # 40.5 below it: not surround
    out = blacken_light_surround(pixels)
    assert (out[45:55, 0:6] == 0).all() and (out[45:55, 94:100] == 197).all()
    assert (out[0, 0] == 0).all() and (out[99, 99] == 0).all()
    np.testing.assert_array_equal(out[field], pixels[field])


def test_the_corners_colour_is_their_median_so_one_odd_corner_does_not_move_it():
    pixels, field = disc_on((250, 250, 250))
    pixels[99, 99] = 210  # one corner darker: the median stays 250 (the mean would be 240)
    pixels[45:55, 0:6] = 205  # 45 below the median: not surround (35 below the mean)
    out = blacken_light_surround(pixels)
    assert (out[45:55, 0:6] == 205).all() and (out[0, 0] == 0).all()
    assert (out[99, 99] == 0).all()  # the odd corner itself is within 40 of 250
    np.testing.assert_array_equal(out[field], pixels[field])


def test_a_corner_whose_light_region_is_its_corner_pixel_alone_is_blackened():
    # a field cropped so tightly that each corner keeps one light pixel of the surround
    pixels = np.full((120, 150, 3), (150, 70, 30), dtype=np.uint8)
    corners = ((0, 0), (0, 149), (119, 0), (119, 149))
    for y, x in corners:
        pixels[y, x] = 250
    out = blacken_light_surround(pixels)
    for y, x in corners:
        assert (out[y, x] == 0).all(), (y, x)
    changed = (out != pixels).any(axis=2)
    assert changed.sum() == 4


def test_a_surround_of_exactly_60_percent_is_still_one_and_above_it_is_not():
    pixels = np.full((100, 100, 3), 240, dtype=np.uint8)
    pixels[30:70] = (150, 70, 30)  # field: 40% of the picture, the rest light
    out = blacken_light_surround(pixels)
    assert (out[:30] == 0).all() and (out[70:] == 0).all() and (out[30:70] == pixels[30:70]).all()
    pixels[30] = 240  # 61% light: a light picture, not a padded one
    np.testing.assert_array_equal(blacken_light_surround(pixels), pixels)


# -- the square crop ---------------------------------------------------------------------


@pytest.mark.parametrize(("width", "height"), [(200, 100), (100, 200), (1, 400), (400, 1)])
def test_the_crop_is_resized_by_its_longer_side_and_centred_on_black(width, height):
    img = Image.fromarray(np.full((height, width, 3), 200, dtype=np.uint8))
    out = np.asarray(crop_to_square(img, None, 100))
    assert out.shape == (100, 100, 3)
    rows = np.flatnonzero(out.max(axis=(1, 2)) > 0)
    cols = np.flatnonzero(out.max(axis=(0, 2)) > 0)
    fitted_w, fitted_h = (
        max(1, round(width * 100 / max(width, height))),
        max(1, round(height * 100 / max(width, height))),
    )
    assert (cols[0], cols[-1] + 1) == ((100 - fitted_w) // 2, (100 - fitted_w) // 2 + fitted_w)
    assert (rows[0], rows[-1] + 1) == ((100 - fitted_h) // 2, (100 - fitted_h) // 2 + fitted_h)
    assert {200} == set(np.unique(out[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]))


def test_the_crop_box_is_applied_before_resizing():
    pixels = np.zeros((100, 100, 3), dtype=np.uint8)
    pixels[10:30, 40:80] = 255
    out = np.asarray(crop_to_square(Image.fromarray(pixels), (40, 10, 80, 30), 40))
    assert (out[10:30] == 255).all() and (out[:10] == 0).all() and (out[30:] == 0).all()


def test_nearest_neighbour_resizing_invents_no_value():
    checker = (np.indices((97, 97)).sum(axis=0) % 2 * 255).astype(np.uint8)
    out = crop_to_square(Image.fromarray(checker), None, 40, Image.Resampling.NEAREST)
    assert set(np.unique(np.asarray(out))) <= {0, 255}
    smooth = crop_to_square(Image.fromarray(checker), None, 40)  # bicubic: greys between
    assert len(np.unique(np.asarray(smooth))) > 2


# -- files: 16-bit, the circle, lesion masks ---------------------------------------------


def test_a_16_bit_photograph_is_scaled_to_8_bits_not_clipped(tmp_path):
    values = np.array([[0, 32768, 65535, 1000]], dtype=np.uint16).repeat(4, axis=0)
    path = tmp_path / "deep.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    out = np.asarray(open_photograph(path))
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == [0, 128, 255, 4]


#: 16-bit values and their 8-bit levels: 51529 = 257 * 200 + 129 lies just past the middle
#: of level 200 and 201 (scaled by 255 / 65535, not 255 / 65536); a 16-bit file whose values
#: stay within 0..255 holds 8-bit levels
DEEP = {
    "wide": ([0, 256, 51529, 65535], [0, 1, 201, 255]),
    "narrow": ([0, 100, 200, 255], [0, 100, 200, 255]),
}


@pytest.mark.parametrize("dtype", ["<u2", ">u2", "=u2", "<i4"])
@pytest.mark.parametrize("kind", list(DEEP))
def test_16_and_32_bit_integer_pictures_of_any_byte_order_are_scaled_to_8_bits(dtype, kind):
    values, levels = DEEP[kind]
    img = Image.fromarray(np.array([values] * 2, dtype=dtype))
    assert img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I")
    out = np.asarray(images._eight_bit_rgb(img))
    assert out.shape == (2, 4, 3) and out.dtype == np.uint8
    assert out[0, :, 0].tolist() == levels and (out[..., 0] == out[..., 2]).all()


@pytest.mark.parametrize("mode", ["I;16L", "I;16N"])
def test_little_endian_and_native_16_bit_modes_are_scaled_too(mode):
    raw = np.array([[0, 256, 51529, 65535]], dtype="<u2").tobytes()
    img = Image.frombytes(mode, (4, 1), raw)
    assert img.mode == mode
    assert np.asarray(images._eight_bit_rgb(img))[0, :, 0].tolist() == [0, 1, 201, 255]


def test_16_bit_values_up_to_256_are_wide_and_32_bit_values_are_clipped():
    edge = Image.fromarray(np.array([[0, 128, 256]], dtype="<u2"))
    assert np.asarray(images._eight_bit_rgb(edge))[0, :, 0].tolist() == [0, 0, 1]
    wide = Image.fromarray(np.array([[-1000, 0, 65535, 70000]], dtype="<i4"))
    assert wide.mode == "I"
    assert np.asarray(images._eight_bit_rgb(wide))[0, :, 0].tolist() == [0, 0, 255, 255]


@pytest.mark.parametrize(
    ("values", "levels"),
    [
        ([-0.2, 0.0, 0.5, 1.0], [0, 0, 128, 255]),  # within 0..1: 1 is white
        ([0.0, 0.25, 0.5, 0.0], [0, 64, 128, 0]),  # a dim one: 1 is white, not its maximum
        ([0.0, 1.0, 1.5, 2.0], [0, 128, 191, 255]),  # beyond: the maximum is white
    ],
)
def test_a_floating_point_picture_is_scaled_by_one_or_its_maximum(values, levels):
    img = Image.fromarray(np.array([values] * 2, dtype=np.float32))
    assert img.mode == "F"
    assert np.asarray(images._eight_bit_rgb(img))[0, :, 1].tolist() == levels


#: per transparent mode: an opaque pixel, a transparent one and a half-transparent one, all
#: of one colour (PA: palette entry 1), and that colour's red or grey level
SEE_THROUGH = {
    "RGBA": ((200, 100, 50, 255), (200, 100, 50, 0), (200, 100, 50, 128), 200),
    "LA": ((180, 255), (180, 0), (180, 128), 180),
    # premultiplied; its transparent pixel keeps a colour behind alpha 0, as files can
    "RGBa": ((200, 100, 50, 255), (200, 100, 50, 0), (100, 50, 25, 128), 200),
    "PA": ((1, 255), (1, 0), (1, 128), 200),
}


@pytest.mark.parametrize("mode", list(SEE_THROUGH))
def test_transparent_pixels_of_every_transparent_mode_are_composited_onto_black(mode):
    opaque, clear, half, level = SEE_THROUGH[mode]
    img = Image.new(mode, (3, 2), opaque)
    if mode == "PA":
        img.putpalette([0, 0, 0, 200, 100, 50] + [0] * 762)
    for y in (0, 1):
        img.putpixel((1, y), clear)
        img.putpixel((2, y), half)
    rgb = images._eight_bit_rgb(img)
    assert rgb.mode == "RGB" and rgb.size == (3, 2)
    out = np.asarray(rgb).astype(int)
    assert (out[:, 0, 0] == level).all()  # opaque: its own colour
    assert (out[:, 1] == 0).all()  # transparent: black, whatever colour it hides
    assert (np.abs(out[:, 2, 0] - level * 128 / 255) <= 1).all()  # half: half as bright


@pytest.mark.parametrize(
    ("mode", "key", "colour"),
    [("RGB", (250, 250, 250), (150, 70, 30)), ("L", 250, 90)],
)
def test_a_colour_key_png_has_its_transparent_colour_black(tmp_path, mode, key, colour):
    img = Image.new(mode, (4, 3), key)
    for x in (1, 2):
        img.putpixel((x, 1), colour)
    img.save(tmp_path / "key.png", transparency=key)  # tRNS: this one colour is transparent
    out = np.asarray(open_photograph(tmp_path / "key.png"))
    assert (out[1, 1:3] == colour).all() and out.shape == (3, 4, 3)
    assert (out[0] == 0).all() and (out[:, 0] == 0).all() and (out[:, 3] == 0).all()


def test_a_palette_png_with_a_transparent_colour_has_it_black(tmp_path):
    img = Image.fromarray(np.array([[0, 1, 1], [1, 0, 1]], dtype=np.uint8), "P")
    img.putpalette([250, 250, 250, 150, 70, 30] + [0] * 762)
    img.save(tmp_path / "p.png", transparency=0)  # palette entry 0: a transparent white
    out = np.asarray(open_photograph(tmp_path / "p.png"))
    assert out[0, 0].tolist() == [0, 0, 0] and out[0, 1].tolist() == [150, 70, 30]


def test_an_8_bit_colour_photograph_is_read_unchanged(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(8, 9, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    np.testing.assert_array_equal(np.asarray(open_photograph(tmp_path / "p.png")), pixels)


def test_a_photograph_with_corrupt_exif_data_is_read_despite_pillows_warning(tmp_path):
    # an orientation entry cut short: Pillow warns "Corrupt EXIF data" and reads the picture
    pixels = np.full((6, 8, 3), (150, 70, 30), dtype=np.uint8)
    cut = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\x00\x05\x01\x12\x00\x03\x00\x00\x00\x01\x00\x06"
    Image.fromarray(pixels).save(tmp_path / "cut.jpg", exif=cut, quality=100)
    with pytest.warns(UserWarning, match="Corrupt EXIF"):
        out = np.asarray(open_photograph(tmp_path / "cut.jpg"))
    assert out.shape == (6, 8, 3) and np.abs(out.astype(int) - pixels).max() <= 3


def test_a_photograph_is_turned_upright_by_its_exif_orientation(tmp_path):
    pixels = np.zeros((40, 60, 3), dtype=np.uint8)
    pixels[:10, :10] = 255  # a mark at the stored picture's top left
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation 6: shown turned 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "turned.jpg", exif=exif, quality=100)
    out = np.asarray(open_photograph(tmp_path / "turned.jpg"))
    assert out.shape == (60, 40, 3)  # upright: taller than wide
    assert out[:10, -10:].min() > 200 and out[:10, :10].max() < 50  # the mark at top right


@pytest.mark.parametrize("side", [40, 50])  # between Pillow's limit and twice it; beyond
def test_a_picture_past_pillows_pixel_limit_is_refused_by_name(tmp_path, monkeypatch, side):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    Image.fromarray(np.zeros((side, side, 3), dtype=np.uint8)).save(tmp_path / "big.png")
    with pytest.raises(DataError, match=r"big\.png: refused: .* decompression bombs"):
        open_photograph(tmp_path / "big.png")


def test_an_unreadable_file_is_named_with_the_readers_complaint(tmp_path):
    (tmp_path / "no.jpg").write_bytes(b"not a photograph")
    with pytest.raises(DataError, match=r"no\.jpg: cannot read image \(UnidentifiedImageError: "):
        open_photograph(tmp_path / "no.jpg")


def jpeg(path, width: int, height: int) -> None:
    yy, xx = np.mgrid[0:height, 0:width]
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    field = (yy - height / 2) ** 2 + (xx - width / 2) ** 2 <= (0.45 * min(width, height)) ** 2
    pixels[field] = (150, 70, 30)
    Image.fromarray(pixels).save(path, quality=95)


def test_a_draft_decodes_a_jpeg_at_the_smallest_scale_no_smaller_than_asked(tmp_path):
    jpeg(tmp_path / "p.jpg", 800, 600)
    assert open_photograph(tmp_path / "p.jpg").size == (800, 600)
    assert open_photograph(tmp_path / "p.jpg", draft=150).size == (200, 150)  # a quarter
    assert open_photograph(tmp_path / "p.jpg", draft=151).size == (400, 300)  # a half
    assert open_photograph(tmp_path / "p.jpg", draft=70).size == (100, 75)  # an eighth
    centre = np.asarray(open_photograph(tmp_path / "p.jpg", draft=150))[75, 100].astype(int)
    assert np.abs(centre - (150, 70, 30)).max() <= 4  # in colour still, not decoded grey


def test_preprocessing_decodes_a_large_jpeg_reduced_but_above_the_output_size(
    tmp_path, monkeypatch
):
    jpeg(tmp_path / "p.jpg", 800, 800)
    decoded = []

    def spy(path, **kwargs):
        img = open_photograph(path, **kwargs)
        decoded.append(img.size)
        return img

    monkeypatch.setattr(images, "open_photograph", spy)
    out = preprocess(tmp_path / "p.jpg", Preprocessing(size=100))
    # a quarter (200 px) keeps the field (0.9 of it) above 100 px with a margin; an eighth
    # (100 px) would not
    assert decoded == [(200, 200)] and out.shape == (100, 100, 3)


def test_the_circle_is_the_disc_inscribed_in_the_square():
    mask = circle_mask(100)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) == {0, 1}
    assert abs(mask.sum() - np.pi * 50**2) < 0.01 * np.pi * 50**2
    np.testing.assert_array_equal(mask, mask[::-1])
    np.testing.assert_array_equal(mask, mask.T)
    assert mask[0, 0] == 0 and mask[50, 50] == 1 and mask[0, 49] == 1 and mask[49, 0] == 1
    assert circle_mask(8)[0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0]
    # odd sizes: the radius is half the side (2.5 here), not its whole half (2)
    assert circle_mask(5)[0].tolist() == [0, 1, 1, 1, 0]
    assert circle_mask(5)[2].tolist() == [1, 1, 1, 1, 1]


def test_a_circle_crop_blacks_out_the_corners_only(tmp_path):
    Image.fromarray(np.full((64, 64, 3), 180, dtype=np.uint8)).save(tmp_path / "p.png")
    out = preprocess(tmp_path / "p.png", Preprocessing(size=32, circle_crop=True))
    np.testing.assert_array_equal(out.max(axis=2) > 0, circle_mask(32).astype(bool))


@pytest.mark.parametrize("crop_to_fov", [True, False])
def test_a_lesion_mask_lands_on_its_lesion_after_crop_and_resize(tmp_path, crop_to_fov):
    pixels = np.zeros((200, 300, 3), dtype=np.uint8)
    pixels[20:180, 60:260] = (150, 70, 30)  # the field, off centre
    pixels[40:70, 196:240] = (250, 250, 200)  # an exudate
    mask = np.zeros((200, 300), dtype=np.uint8)
    mask[40:70, 196:240] = 255
    Image.fromarray(pixels).save(tmp_path / "photo.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    # the mask at half resolution, or stretched to a square, is brought to the photograph's
    # size first (nearest neighbour: the half-size mask gives the full one exactly); a
    # colour mask is read as grey
    Image.fromarray(mask[::2, ::2]).save(tmp_path / "half.png")
    Image.fromarray(mask).resize((300, 300), Image.Resampling.NEAREST).save(tmp_path / "sq.png")
    Image.fromarray(np.repeat(mask[..., None], 3, axis=2)).save(tmp_path / "rgb.png")
    prep = Preprocessing(size=100, crop_to_fov=crop_to_fov)
    image = preprocess(tmp_path / "photo.png", prep)
    lesion = image.min(axis=2) > 180
    full = preprocess_mask(tmp_path / "mask.png", tmp_path / "photo.png", prep)
    for name in ("mask.png", "half.png", "sq.png", "rgb.png"):
        lesion_mask = preprocess_mask(tmp_path / name, tmp_path / "photo.png", prep)
        assert lesion_mask.shape == (100, 100) and lesion_mask.dtype == bool
        assert (lesion_mask & lesion).sum() >= 0.8 * lesion_mask.sum() > 0, name
        assert (lesion_mask & lesion).sum() >= 0.8 * lesion.sum(), name
        if name != "sq.png":
            np.testing.assert_array_equal(lesion_mask, full, err_msg=name)
    grey_mask = np.zeros((200, 300), dtype=np.uint8)
    grey_mask[40:70, 196:218], grey_mask[40:70, 218:240] = 128, 127  # brighter than half: lesion
    Image.fromarray(grey_mask).save(tmp_path / "grey.png")
    halves = preprocess_mask(tmp_path / "grey.png", tmp_path / "photo.png", prep)
    assert halves.any() and halves.sum() < 0.6 * full.sum()
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"bad\.png: cannot read the lesion mask"):
        preprocess_mask(tmp_path / "bad.png", tmp_path / "photo.png", prep)


def test_a_mask_is_cropped_to_the_field_of_a_white_surround_photograph_as_of_a_black_one(
    tmp_path,
):
    mask = np.zeros((200, 300), dtype=np.uint8)
    mask[40:70, 196:240] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    for surround in (0, 250):
        pixels = np.full((200, 300, 3), surround, dtype=np.uint8)
        pixels[20:180, 60:260] = (150, 70, 30)  # the field, off centre
        Image.fromarray(pixels).save(tmp_path / f"photo{surround}.png")
    prep = Preprocessing(size=100)
    on_black = preprocess_mask(tmp_path / "mask.png", tmp_path / "photo0.png", prep)
    on_white = preprocess_mask(tmp_path / "mask.png", tmp_path / "photo250.png", prep)
    assert on_black.sum() > 50
    np.testing.assert_array_equal(on_white, on_black)


def red_on_black(lesion: np.ndarray) -> Image.Image:
    """IDRiD's form: a lesion red (255, 0, 0) on black, an RGB TIFF."""
    pixels = np.zeros((*lesion.shape, 3), dtype=np.uint8)
    pixels[lesion] = (255, 0, 0)
    return Image.fromarray(pixels)


def overlay(lesion: np.ndarray) -> Image.Image:
    """An overlay: the lesion opaque green, the rest transparent white."""
    pixels = np.zeros((*lesion.shape, 4), dtype=np.uint8)
    pixels[:] = (255, 255, 255, 0)
    pixels[lesion] = (0, 200, 0, 255)
    return Image.fromarray(pixels, "RGBA")


MASK_FORMS = {
    "grey 0/255": lambda lesion: Image.fromarray(lesion.astype(np.uint8) * 255),
    "grey 0/1": lambda lesion: Image.fromarray(lesion.astype(np.uint8)),
    "16-bit 0/65535": lambda lesion: Image.fromarray(lesion.astype("<u2") * 65535),
    "red on black (tif)": red_on_black,
    "transparent overlay": overlay,
}


@pytest.mark.parametrize("form", list(MASK_FORMS))
def test_a_lesion_mask_is_read_in_every_published_form(tmp_path, form):
    Image.fromarray(np.full((60, 80, 3), (150, 70, 30), dtype=np.uint8)).save(tmp_path / "p.png")
    lesion = np.zeros((60, 80), dtype=bool)
    lesion[10:25, 50:70] = True
    name = "mask.tif" if "tif" in form else "mask.png"
    MASK_FORMS[form](lesion).save(tmp_path / name)
    out = preprocess_mask(tmp_path / name, tmp_path / "p.png", Preprocessing(80, False))
    expected = np.zeros((80, 80), dtype=bool)
    expected[10:70] = lesion  # padded above and below, centred
    np.testing.assert_array_equal(out, expected)


def test_an_empty_mask_and_a_mask_of_faint_noise_have_no_lesion(tmp_path):
    Image.fromarray(np.full((60, 80, 3), (150, 70, 30), dtype=np.uint8)).save(tmp_path / "p.png")
    noise = np.random.default_rng(0).integers(0, 6, size=(60, 80)).astype(np.uint8)
    for name, levels in (("empty.png", np.zeros((60, 80), np.uint8)), ("noise.png", noise)):
        Image.fromarray(levels).save(tmp_path / name)
        out = preprocess_mask(tmp_path / name, tmp_path / "p.png", Preprocessing(80, False))
        assert out.shape == (80, 80) and not out.any(), name


def test_a_lesion_mask_is_resized_by_nearest_neighbour_only_never_blurred(tmp_path):
    # a one-pixel checkerboard mask at 0.4 of the photograph's size, brought up to it
    # (x 2.5) and down to the output (x 0.5): nearest neighbour keeps it a checkerboard of
    # whole pixels; a smoothing filter would make it grey, and the threshold would move
    # its edges
    Image.fromarray(np.full((200, 300, 3), (150, 70, 30), dtype=np.uint8)).save(
        tmp_path / "photo.png"
    )
    checker = Image.fromarray((np.indices((80, 120)).sum(axis=0) % 2 * 255).astype(np.uint8))
    checker.save(tmp_path / "mask.png")
    prep = Preprocessing(size=150, crop_to_fov=False)
    out = preprocess_mask(tmp_path / "mask.png", tmp_path / "photo.png", prep)
    nearest = Image.Resampling.NEAREST
    expected = np.zeros((150, 150), dtype=bool)
    expected[25:125] = np.asarray(checker.resize((300, 200), nearest).resize((150, 100), nearest))
    np.testing.assert_array_equal(out, expected)  # padded above and below, centred


# -- the cache ---------------------------------------------------------------------------


def test_the_cache_folder_names_the_format_the_size_and_the_crops():
    assert Preprocessing(size=224).key() == "v4-s224-fov1"
    assert Preprocessing(size=64, crop_to_fov=False, circle_crop=True).key() == "v4-s64-fov0-circle"


def photo(path, level: int) -> None:
    pixels = np.zeros((40, 40, 3), dtype=np.uint8)
    pixels[5:35, 5:35] = level
    Image.fromarray(pixels).save(path)


def test_a_cache_entry_holds_the_image_and_is_sharded_by_its_first_two_hex_digits(tmp_path):
    photo(tmp_path / "a.png", 120)
    cache = ImageCache(tmp_path / "cache", Preprocessing(size=16))
    image = cache.get(tmp_path / "a.png")
    entry = cache.entry(tmp_path / "a.png")
    np.testing.assert_array_equal(np.load(entry), image)
    assert entry.parent.parent == tmp_path / "cache" / "v4-s16-fov1"
    assert len(entry.stem) == 40 and entry.parent.name == entry.stem[:2]


def test_a_cached_image_is_read_back_not_preprocessed_again(tmp_path, monkeypatch):
    photo(tmp_path / "a.png", 120)
    cache = ImageCache(tmp_path / "cache", Preprocessing(size=16))
    first = cache.get(tmp_path / "a.png")

    def never(*args):
        raise AssertionError("preprocessed again")

    monkeypatch.setattr(images, "preprocess", never)
    np.testing.assert_array_equal(cache.get(tmp_path / "a.png"), first)
    # a later run (another cache object on the same folder) reads it as well
    again = ImageCache(tmp_path / "cache", Preprocessing(size=16)).get(tmp_path / "a.png")
    np.testing.assert_array_equal(again, first)


def test_a_damaged_cache_entry_is_made_again(tmp_path):
    photo(tmp_path / "a.png", 120)
    cache = ImageCache(tmp_path / "cache", Preprocessing(size=16))
    first = cache.get(tmp_path / "a.png")
    cache.entry(tmp_path / "a.png").write_bytes(b"\x93NUMPY cut short")
    np.testing.assert_array_equal(cache.get(tmp_path / "a.png"), first)
    np.testing.assert_array_equal(np.load(cache.entry(tmp_path / "a.png")), first)


def test_a_changed_photograph_is_preprocessed_again_not_read_from_the_cache(tmp_path):
    path = tmp_path / "a.png"
    photo(path, 120)
    cache = ImageCache(tmp_path / "cache", Preprocessing(size=16))
    first = cache.get(path)
    photo(path, 60)  # rewritten in place: another modification time
    second = cache.get(path)
    assert first.max() == 120 and second.max() == 60


@pytest.mark.parametrize(
    "failure", [OSError(errno.ENOSPC, "No space left on device"), RunError("x: cannot write")]
)
def test_a_cache_that_cannot_be_written_only_costs_speed(tmp_path, monkeypatch, failure):
    photo(tmp_path / "a.png", 90)

    def cannot(*args, **kwargs):
        raise failure

    monkeypatch.setattr(images, "atomic_write", cannot)
    cache = ImageCache(tmp_path / "cache", Preprocessing(size=16))
    assert cache.get(tmp_path / "a.png").max() == 90
    prepared = prepare_images([str(tmp_path / "a.png")], cache)
    assert prepared.failures == {} and prepared.images[0].max() == 90


def test_prepare_images_keeps_the_order_and_names_each_failure(tmp_path):
    for i, level in enumerate((30, 60, 90)):
        photo(tmp_path / f"{i}.png", level)
    (tmp_path / "1.png").write_bytes(b"broken")
    paths = [str(tmp_path / f"{i}.png") for i in range(3)] + [str(tmp_path / "none.png")]
    done = []
    prepared = prepare_images(
        paths, ImageCache(tmp_path / "c", Preprocessing(size=8)), workers=2, progress=done.append
    )
    assert [None if im is None else int(im.max()) for im in prepared.images] == [30, None, 90, None]
    assert set(prepared.failures) == {1, 3}
    assert "1.png: cannot read image" in prepared.failures[1]
    assert "none.png: image file not found" in prepared.failures[3]
    assert done == [1, 2, 3, 4]
