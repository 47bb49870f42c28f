"""The fundus check's test for the front of an eye (an anterior-segment photograph, which
ODIR-5K ships among its fundus photographs and marks "anterior segment image"): a white,
nearly colourless sclera over at least 4% of the field, and a compact near-black pupil near
the field's centre.

The rule's inputs are built here at the check's own size (128 px), so each case sits on one
threshold of the rule; test_fundus_check.py runs whole photographs through the check.
"""

from __future__ import annotations

import numpy as np
import pytest

from odirkit.data.fundus_check import (
    CHECK_SIZE,
    PUPIL_BLACK,
    SCLERA_BRIGHT,
    Ellipse,
    _has_pupil,
)

WHITE = (0.9, 0.88, 0.87)
BLACK = (0.03, 0.03, 0.03)
ELLIPSE = Ellipse(cx=63.5, cy=63.5, a=60.0, b=60.0)


def eye(white: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A 100 x 100 field (10,000 pixels) of sclera, or of a dull red fundus, on black."""
    smooth = np.zeros((CHECK_SIZE, CHECK_SIZE, 3), dtype=np.float32)
    field = np.zeros((CHECK_SIZE, CHECK_SIZE), dtype=bool)
    field[14:114, 14:114] = True
    smooth[field] = WHITE if white else (0.6, 0.3, 0.15)
    return smooth, field


def paint(smooth: np.ndarray, rows: slice, cols: slice, colour=BLACK) -> np.ndarray:
    smooth[rows, cols] = colour
    return smooth


def pupil(smooth, field, brightness: float = 0.5) -> bool:
    return _has_pupil(smooth, field, ELLIPSE, brightness)


def disc(radius: float, cx: float = 63.5, cy: float = 63.5) -> np.ndarray:
    yy, xx = np.mgrid[0:CHECK_SIZE, 0:CHECK_SIZE]
    return np.hypot(xx - cx, yy - cy) <= radius


def test_a_round_black_pupil_in_a_white_sclera_is_the_front_of_an_eye():
    smooth, field = eye()
    smooth[disc(10)] = BLACK
    assert pupil(smooth, field)
    assert not pupil(eye()[0], field)  # sclera without a pupil
    bright = np.empty_like(smooth)
    bright[:] = WHITE
    assert not pupil(bright, field)  # nothing dark anywhere
    red, field = eye(white=False)
    red[disc(10)] = BLACK  # a dark lesion at a fundus's macula: no sclera round it
    assert not pupil(red, field)


def test_a_sclera_needs_4_percent_of_the_field():
    def with_white(pixels: int, extra=None):
        smooth, field = eye(white=False)
        smooth[disc(10)] = BLACK
        rows, cols = np.nonzero(field & ~disc(12))
        smooth[rows[:pixels], cols[:pixels]] = WHITE
        if extra is not None:
            smooth[rows[pixels], cols[pixels]] = extra
        # outside the field: a dim grey surround and a white label, neither is sclera
        smooth[:10, :10] = (0.05, 0.05, 0.05)
        smooth[118:, 118:] = (0.95, 0.95, 0.95)
        return smooth, field

    assert pupil(*with_white(400))  # 4% exactly
    assert not pupil(*with_white(399))
    exact_bright = np.float32(SCLERA_BRIGHT)
    for extra in [
        (exact_bright, exact_bright, exact_bright),  # not brighter than 0.55
        (0.625, 0.5, 0.5),  # (max - min) / max exactly 0.2: not colourless enough
        (0.9, 0.7, 0.7),
        (0.6, 0.9, 0.9),  # its colour in the red channel
        (0.9, 0.6, 0.9),  # ... the green
        (0.9, 0.9, 0.6),  # ... the blue
    ]:
        assert not pupil(*with_white(399, extra)), extra
    assert pupil(*with_white(399, (0.6, 0.6, 0.6)))  # a grey of 0.6 is white enough


def test_a_pupil_is_darker_than_012_and_than_03_of_the_fields_brightness():
    smooth, field = eye()
    smooth[disc(10)] = np.float32(PUPIL_BLACK)
    assert not pupil(smooth, field)  # not below 0.12
    smooth[disc(10)] = 0.1
    assert pupil(smooth, field, brightness=0.5)
    assert not pupil(smooth, field, brightness=0.2)  # 0.3 of 0.2 is 0.06


def test_a_dark_rim_round_the_field_does_not_hide_the_pupil():
    smooth, field = eye()
    smooth[disc(10)] = BLACK
    yy, xx = np.mgrid[0:CHECK_SIZE, 0:CHECK_SIZE]
    rho = np.hypot(xx - 63.5, yy - 63.5) / 60
    smooth[(rho > 0.9) & (rho <= 1.0)] = BLACK  # vignetting: a closed dark ring at the rim
    assert pupil(smooth, field)


@pytest.mark.parametrize(
    ("rows", "cols", "expected"),
    [
        (slice(60, 64), slice(60, 65), True),  # 20 pixels: 0.2% of the field exactly
        (slice(60, 64), slice(60, 64), False),  # 16: too small
        (slice(29, 99), slice(39, 89), True),  # 70 x 50 = 3,500: 35% exactly
        (slice(29, 99), slice(38, 89), False),  # 3,570: too large
        (slice(59, 65), slice(58, 68), True),  # 6 x 10: height / width 0.6 exactly
        (slice(59, 64), slice(58, 68), False),  # 5 x 10
        (slice(55, 71), slice(58, 68), True),  # 16 x 10: 1.6 exactly
        (slice(54, 71), slice(58, 68), False),  # 17 x 10
        (slice(53, 73), slice(58, 68), False),  # 20 x 10
        (slice(40, 60), slice(70, 86), True),  # off the diagonal: rows and columns differ
        (slice(59, 69), slice(89, 99), True),  # its centre 0.5 of the radius right
        (slice(89, 99), slice(59, 69), True),  # ... below
        (slice(59, 69), slice(90, 100), False),  # 0.517: too far
        (slice(90, 100), slice(59, 69), False),
    ],
)
def test_the_pupils_size_shape_and_place(rows, cols, expected):
    smooth, field = paint(*eye()[:1], rows, cols), eye()[1]
    assert pupil(smooth, field) == expected


def test_a_pupil_is_compact_at_least_60_percent_of_its_box():
    smooth, field = eye()
    smooth[54:59, 59:69] = BLACK  # an L: 5 full rows of 10 ...
    smooth[59:64, 59:61] = BLACK  # ... and 5 rows of 2: 60 of the 10 x 10 box
    assert pupil(smooth, field)
    smooth, field = eye()
    smooth[53:74, 62:65] = BLACK  # a cross, 21 x 21, arms 3 wide: 117 of 441
    smooth[62:65, 53:74] = BLACK
    assert not pupil(smooth, field)


def test_dark_shapes_that_are_no_pupil_do_not_stop_the_search():
    smooth, field = eye()
    smooth[30:32, 60:62] = BLACK  # a speck above: too small
    smooth[40, 45:85] = BLACK  # a line: not compact
    smooth[disc(8, cy=70)] = BLACK  # then the pupil
    assert pupil(smooth, field)


def test_the_rim_is_traced_all_round_and_only_where_it_is_visible():
    from odirkit.data.fundus_check import _traced

    yy, xx = np.mgrid[0:CHECK_SIZE, 0:CHECK_SIZE]
    angle = np.arctan2(yy - 63.5, xx - 63.5) % (2 * np.pi)
    near = np.full((CHECK_SIZE, CHECK_SIZE), 10.0)
    near[angle < 1.0] = 0.0  # the rim traced only between 0 and 1 radian
    assert _traced(ELLIPSE, near) == pytest.approx(1.0 / (2 * np.pi), abs=0.01)
    # an ellipse reaching the frame: points within 1.5 px of the left edge are not visible,
    # those 1.5 to 2.5 px from it are
    wide = Ellipse(cx=63.5, cy=63.5, a=62.0, b=40.0)
    band = np.full((CHECK_SIZE, CHECK_SIZE), 10.0)
    band[:, 2] = 0.0
    assert _traced(wide, band) > 0
    assert _traced(Ellipse(cx=500.0, cy=500.0, a=10.0, b=10.0), near) == 0.0  # none visible


def test_the_distance_to_an_ellipse_is_in_pixels_of_its_shorter_axis():
    ellipse = Ellipse(cx=60.0, cy=50.0, a=40.0, b=20.0)
    xs = np.array([60.0, 100.0, 60.0, 140.0, 60.0])
    ys = np.array([50.0, 50.0, 70.0, 50.0, 30.0])
    # the centre, on the rim right and below, twice the radius out, on the rim above
    np.testing.assert_allclose(ellipse.distance(xs, ys), [20.0, 0.0, 0.0, 20.0, 0.0])


def test_the_rim_counts_within_2_pixels_and_away_from_each_side_of_the_frame():
    from odirkit.data.fundus_check import _traced

    near = np.full((CHECK_SIZE, CHECK_SIZE), 2.0)  # every point exactly 2 px from the rim
    assert _traced(ELLIPSE, near) == 1.0
    near[:] = 2.01
    assert _traced(ELLIPSE, near) == 0.0
    last = CHECK_SIZE - 3  # rim points rounding to the third-last row or column are visible
    wide = Ellipse(cx=63.5, cy=63.5, a=62.5, b=40.0)
    tall = Ellipse(cx=63.5, cy=63.5, a=40.0, b=62.5)
    for ellipse, axis in ((wide, 1), (tall, 0)):
        band = np.full((CHECK_SIZE, CHECK_SIZE), 10.0)
        index = [slice(None), slice(None)]
        index[axis] = last
        band[tuple(index)] = 0.0
        assert _traced(ellipse, band) > 0, axis
        index[axis] = 2
        band[:] = 10.0
        band[tuple(index)] = 0.0
        assert _traced(ellipse, band) > 0, axis
