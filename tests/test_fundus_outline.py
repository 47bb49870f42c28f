"""The fundus check's field of view (the pixels that differ from the dark surround) and its
outline: the ellipse fitted to the field's rim,
the share of that ellipse the rim traces (coverage) and the share of the field outside it
(leak). A fundus camera's field is a disc, or an ellipse once the photograph is resized,
that cropping may cut on one or more sides; anything else (a rectangle, a line, nothing)
has no outline.

The fields are drawn here at the check's own size (128 px) with known centres and axes,
so the fitted ellipse can be compared with the one drawn; test_fundus_check.py runs whole
photographs through the check.
"""

from __future__ import annotations

import numpy as np
import pytest

from odirkit.data.fundus_check import (
    CHECK_SIZE,
    FIELD_STEP,
    MAX_LEAK,
    MIN_COVERAGE,
    MIN_FIELD_STEP,
    Ellipse,
    _across_a_corner,
    _curved_points,
    _field,
    _outline,
    _plausible,
    _surround,
    _traced,
)

MIDDLE = (CHECK_SIZE - 1) / 2
YY, XX = np.mgrid[0:CHECK_SIZE, 0:CHECK_SIZE]
NO_OUTLINE = (None, 0.0, 1.0)


def field(a: float, b: float | None = None, cx: float = MIDDLE, cy: float = MIDDLE) -> np.ndarray:
    """An elliptic field of view of half-axes ``a`` (across) and ``b`` (down), in pixels."""
    b = a if b is None else b
    return ((XX - cx) / a) ** 2 + ((YY - cy) / b) ** 2 <= 1.0


@pytest.mark.parametrize(
    ("a", "b", "cx", "cy"),
    [
        (40.0, 40.0, MIDDLE, MIDDLE),  # a small disc (0.3 of the side, 38.4 px, is the least)
        (50.0, 50.0, MIDDLE, MIDDLE),
        (60.0, 45.0, MIDDLE, MIDDLE),  # wider than high: a resized photograph
        (44.0, 58.0, MIDDLE, MIDDLE),  # higher than wide
        (70.0, 40.0, MIDDLE, MIDDLE),  # 1.75 times as wide as high, cut left and right
        (70.0, 70.0, MIDDLE, MIDDLE),  # a tight crop: only the four corners' arcs show
        (60.0, 60.0, 85.0, MIDDLE),  # cut by the frame on the right: off the middle
        (52.0, 60.0, MIDDLE, 40.0),  # cut at the top
    ],
)
def test_the_ellipse_fitted_to_the_rim_is_the_field_drawn(a, b, cx, cy):
    ellipse, coverage, leak = _outline(field(a, b, cx, cy))
    assert (ellipse.cx, ellipse.cy) == pytest.approx((cx, cy), abs=0.3)
    assert (ellipse.a, ellipse.b) == pytest.approx((a, b), abs=0.8)
    assert coverage > 0.97  # the rim follows the whole visible ellipse
    assert leak == 0.0  # and nothing of the field lies outside it


@pytest.mark.parametrize(
    "name",
    ["nothing", "one pixel", "a line", "the whole frame", "a square", "a band across"],
)
def test_a_field_without_a_curved_rim_has_no_outline(name):
    shape = np.zeros((CHECK_SIZE, CHECK_SIZE), dtype=bool)
    if name == "one pixel":
        shape[60, 60] = True
    elif name == "a line":
        shape[60, 10:100] = True
    elif name == "the whole frame":
        shape[:] = True
    elif name == "a square":  # its four edges are long and straight: chords, not an arc
        shape[20:108, 20:108] = True
    elif name == "a band across":
        shape[40:90, :] = True
    assert _outline(shape) == NO_OUTLINE


@pytest.mark.parametrize(
    ("a", "b"),
    [(37.0, 37.0), (60.0, 30.0), (30.0, 60.0), (72.0, 39.0)],
)
def test_an_ellipse_too_small_or_too_narrow_for_a_field_of_view_is_no_outline(a, b):
    # the shorter axis at least MIN_AXIS of the side (37 px is below 0.3 x 128), the
    # longer at most MAX_ASPECT times it (72 / 39 = 1.85 > 1.8)
    assert _outline(field(a, b)) == NO_OUTLINE


def test_leak_is_the_share_of_the_field_outside_its_ellipse_and_grows_with_it():
    disc = field(45.0)
    leaks = []
    for length in (16, 24, 30):  # a tab (a burned-in label joined to the field) ever longer
        shape = disc.copy()
        shape[60:68, 100 : 100 + length] = True
        ellipse, coverage, leak = _outline(shape)
        assert (ellipse.cx, ellipse.cy, ellipse.a) == pytest.approx((MIDDLE, MIDDLE, 45.0), abs=1)
        outside = shape & (np.hypot(XX - MIDDLE, YY - MIDDLE) > 45.0 + 2.5)
        # at least the tab's own pixels beyond the margin (the hull adds the gaps beside it)
        assert leak >= outside.sum() / shape.sum()
        assert coverage < 1.0  # the tab's edges are no part of the ellipse
        leaks.append(leak)
    assert leaks[0] < leaks[1] < leaks[2]
    assert leaks[0] < MAX_LEAK < leaks[2]  # a short tab passes, a long one does not


def test_a_bulge_counts_as_leak_from_2_and_a_half_pixels_beyond_the_ellipse():
    # the disc's rim is fitted at 44.8 px; a bulge out to column 110 (46.5 px from the
    # centre) is within the margin, one out to column 111 (47.5 px) is beyond it
    for last, leaks in ((109, False), (110, False), (111, True), (113, True)):
        shape = field(45.0)
        shape[60:68, 100 : last + 1] = True
        assert (_outline(shape)[2] > 0) is leaks, last


def test_coverage_is_the_share_of_the_ellipse_the_rim_follows():
    # a disc with a straight cut (a camera's clip or a shadow's chord) across a quarter
    # of it: the cut is no arc, so the fit follows the rest and coverage drops by the
    # share of the ellipse the cut replaced
    disc = field(50.0)
    cut = disc & (YY < MIDDLE + 25)  # the chord at 25 px below the centre
    ellipse, coverage, leak = _outline(cut)
    assert (ellipse.cx, ellipse.cy, ellipse.a) == pytest.approx((MIDDLE, MIDDLE, 50.0), abs=1)
    missing = 2 * np.arccos(25 / 50) / (2 * np.pi)  # the arc below the chord: 1/3 of it
    assert coverage == pytest.approx(1 - missing, abs=0.03)
    assert coverage > MIN_COVERAGE
    assert leak == 0.0


@pytest.mark.parametrize("shift", [20.0, 30.0, 40.0])
def test_the_better_traced_of_the_centred_and_free_fits_is_kept(shift):
    # a field cut on the right by the frame: its centre is right of the middle, which a
    # fit with the centre fixed in the middle cannot follow (from 30 px its ellipse is
    # too long to be a field's, from 40 px there is none)
    ellipse, coverage, _ = _outline(field(45.0, cx=MIDDLE + shift))
    assert ellipse.cx == pytest.approx(MIDDLE + shift, abs=0.3)
    assert coverage > 0.97


# -- the field of view ----------------------------------------------------------------------

FUNDUS = (0.6, 0.3, 0.1)
BLACK = np.zeros(3, dtype=np.float32)


def alike(found: np.ndarray, expected: np.ndarray) -> bool:
    """The same region but for the corners an opening rounds (under 0.5% of it)."""
    return not (found & ~expected).any() and (expected & ~found).sum() < 0.005 * expected.sum()


def picture(shape: np.ndarray, colour=FUNDUS) -> np.ndarray:
    smooth = np.zeros((CHECK_SIZE, CHECK_SIZE, 3), dtype=np.float32)
    smooth[shape] = colour
    return smooth


def test_the_field_is_the_largest_region_with_its_holes_and_without_labels():
    disc = field(50.0)
    smooth = picture(disc)
    smooth[field(8.0)] = 0.0  # a black hole in it (a shadow, a dark macula)
    smooth[4:16, 4:30] = 0.9  # a burned-in label in the corner, apart from the field
    assert (_field(smooth, BLACK) == disc).all()


def test_pieces_of_a_field_cut_by_a_shadow_are_kept_and_small_blobs_are_not():
    disc = field(50.0)
    smooth = picture(disc)
    smooth[:, 75:82] = 0.0  # a shadow across: the right piece is a sixth of the left one
    blob = (slice(2, 22), slice(100, 120))  # 400 px: a twentieth of the field
    smooth[blob] = FUNDUS
    found = _field(smooth, BLACK)
    assert alike(found, disc & ((XX < 75) | (XX >= 82)))  # both pieces
    assert not found[blob].any()


def test_a_dark_photographs_field_is_found_down_to_a_step_of_0015():
    # a fifth of the field's level above the surround, never below MIN_FIELD_STEP
    disc = field(50.0)
    dark = picture(disc, (0.03, 0.02, 0.01))  # a step of 0.2 x 0.03 = 0.006: 0.015 is used
    assert (_field(dark, BLACK) == disc).all()
    assert not _field(picture(disc, (0.014, 0.01, 0.0)), BLACK).any()  # below 0.015
    halo = picture(field(58.0), (0.013, 0.013, 0.013))  # a faint glow round the field
    halo[disc] = (0.05, 0.03, 0.01)
    assert (_field(halo, BLACK) == disc).all()
    assert MIN_FIELD_STEP == 0.015


def test_a_bright_photographs_field_differs_by_at_most_004():
    disc = field(50.0)
    smooth = picture(disc, (0.9, 0.5, 0.2))  # a fifth of 0.9 would be 0.18: 0.04 is used
    smooth[field(58.0) & ~disc] = 0.05  # a glow above FIELD_STEP is part of the field
    assert alike(_field(smooth, BLACK), field(58.0))
    assert FIELD_STEP == 0.04


def test_a_piece_of_a_tenth_of_the_largest_is_kept_but_none_under_1_percent_of_the_picture():
    # rectangles, whose opening cuts 6 px off each corner: sizes known to the pixel
    largest = (slice(5, 73), slice(5, 123))  # 68 x 118 - 24 = 8000 px
    tenth = (slice(100, 108), slice(10, 113))  # 8 x 103 - 24 = 800 px: exactly a tenth
    found = _field(picture(largest) + picture(tenth), BLACK)
    assert found[tenth].sum() == 800
    small = (slice(5, 45), slice(5, 45))  # 1576 px
    piece = (slice(100, 108), slice(10, 33))  # 160 px: a tenth of it, but under 1% (164 px)
    found = _field(picture(small) + picture(piece), BLACK)
    assert found[small].sum() == 1576
    assert not found[piece].any()


@pytest.mark.parametrize(("thickness", "kept"), [(3, False), (5, False), (8, True), (10, True)])
def test_strokes_thinner_than_7_pixels_touching_the_rim_are_cut_off(thickness, kept):
    disc = field(45.0)
    smooth = picture(disc)
    bar = (slice(60, 60 + thickness), slice(100, 125))  # from inside the rim out to the frame
    smooth[bar] = 0.9  # burned-in text or a ruler's stroke
    outside = np.zeros_like(disc)
    outside[bar] = True
    outside &= ~field(47.0)
    share = _field(smooth, BLACK)[outside].mean()  # of the stroke beyond the rim
    assert share > 0.8 if kept else share < 0.05


# -- the outline's parts ---------------------------------------------------------------------


def corners(*colours) -> np.ndarray:
    """A picture whose four corners (top left, top right, bottom left, bottom right) are
    the colours given, its middle a fundus."""
    smooth = picture(np.ones((CHECK_SIZE, CHECK_SIZE), dtype=bool))
    half = CHECK_SIZE // 2
    top, bottom, left, right = slice(0, 8), slice(-8, None), slice(0, 8), slice(-8, None)
    patches = [(top, left), (top, right), (bottom, left), (bottom, right)]
    for (rows, cols), colour in zip(patches, colours, strict=True):
        smooth[rows, cols] = colour
    smooth[half, half] = 1.0
    return smooth


def test_a_surround_is_plain_in_every_channel_of_three_corners_or_two_on_one_side():
    black, dim, reddish = (0.0, 0.0, 0.0), (0.1, 0.08, 0.05), (0.3, 0.05, 0.05)
    kind, colour = _surround(corners(black, dim, black, black))
    assert kind == "dark"
    assert colour.shape == (3,)  # one value per channel: the plain corners' median
    assert colour == pytest.approx((0.0, 0.0, 0.0))
    assert _surround(corners(dim, dim, reddish, reddish))[0] == "dark"  # two on top
    assert _surround(corners(reddish, reddish, dim, dim))[0] == "dark"  # at the bottom
    assert _surround(corners(dim, reddish, dim, reddish))[0] == "dark"  # on the left
    assert _surround(corners(reddish, dim, reddish, dim))[0] == "dark"  # on the right
    assert _surround(corners(dim, reddish, reddish, dim))[0] == ""  # two on a diagonal
    # a corner dark in two channels but red in the third is part of a field, not the surround
    assert _surround(corners(reddish, reddish, reddish, black))[0] == ""
    white, cream = (0.9, 0.92, 0.95), (0.95, 0.9, 0.6)  # cream: its blue is not white
    kind, colour = _surround(corners(white, white, white, cream))
    assert (kind, colour.shape) == ("white", (3,))
    assert colour == pytest.approx(white)
    assert _surround(corners(cream, cream, cream, white))[0] == ""
    edge = (0.8, 0.8, 0.8)  # exactly LIGHT: white is above it
    assert _surround(corners(edge, edge, edge, white))[0] == ""


def test_a_dark_corner_is_below_02_and_below_half_the_pictures_bright_end():
    # a darkened scene (its bright end, the 95th centile, at 0.25): a corner at 0.15 is
    # under 0.2 but not under half the bright end (0.125), so it is no surround
    dim = picture(np.ones((CHECK_SIZE, CHECK_SIZE), dtype=bool), (0.25, 0.1, 0.05))
    for colour, kind in (((0.15,) * 3, ""), ((0.125,) * 3, ""), ((0.12,) * 3, "dark")):
        smooth = dim.copy()
        for rows in (slice(0, 8), slice(-8, None)):
            for cols in (slice(0, 8), slice(-8, None)):
                smooth[rows, cols] = colour
        assert _surround(smooth)[0] == kind, colour


def test_inside_an_ellipse_includes_its_own_outline_and_the_margin():
    ellipse = Ellipse(cx=40.0, cy=50.0, a=20.0, b=10.0)
    inside = ellipse.inside(0.0)
    assert inside[50, 60] and inside[60, 40] and inside[50, 20]  # on the ellipse
    assert not inside[50, 61] and not inside[61, 40]
    grown = ellipse.inside(2.0)  # grown by 2 px of the shorter axis: rho up to 1.2
    assert grown[50, 64] and not grown[50, 65]  # 24 / 20 = 1.2 along the longer axis
    assert grown[62, 40] and not grown[63, 40]


def test_rim_points_exactly_1_and_a_half_pixels_from_the_frames_outer_lines_are_not_visible():
    # a circle of radius 62 about the middle: of its 720 rim points, the leftmost,
    # rightmost, top and bottom lie exactly at 1.5 and 125.5, just off what is visible
    ellipse = Ellipse(MIDDLE, MIDDLE, 62.0, 62.0)
    near = np.full((CHECK_SIZE, CHECK_SIZE), 10.0)  # the rim only near the bottom point
    near[120:, 56:72] = 0.0
    coverage = _traced(ellipse, near)
    traced = coverage * 716  # the points traced, of the 716 visible
    assert 0 < coverage < 0.1
    assert traced == pytest.approx(round(traced), abs=1e-9)


def test_an_ellipse_is_plausible_up_to_each_of_its_limits_inclusive():
    side = CHECK_SIZE
    assert _plausible(Ellipse(MIDDLE, MIDDLE, 0.3 * side, 0.3 * side))  # MIN_AXIS
    assert not _plausible(Ellipse(MIDDLE, MIDDLE, 0.29 * side, 0.3 * side))
    assert _plausible(Ellipse(MIDDLE, MIDDLE, 1.2 * side, 1.2 * side / 1.5))  # MAX_AXIS
    assert not _plausible(Ellipse(MIDDLE, MIDDLE, 1.21 * side, 1.2 * side / 1.5))
    assert _plausible(Ellipse(MIDDLE, MIDDLE, 72.0, 40.0))  # MAX_ASPECT: 1.8
    assert _plausible(Ellipse(MIDDLE, MIDDLE, 40.0, 72.0))
    assert not _plausible(Ellipse(MIDDLE, MIDDLE, 72.5, 40.0))


N = CHECK_SIZE - 1  # the last pixel's coordinate


@pytest.mark.parametrize(
    ("start", "end", "across"),
    [
        ((0.0, 30.0), (30.0, 0.0), True),  # left side to top: a tight crop's corner
        ((30.0, 0.0), (0.0, 30.0), True),  # and back
        ((1.0, 30.0), (30.0, 1.0), True),  # within a pixel of the frame counts as on it
        ((N, 90.0), (90.0, N), True),
        ((N - 1.0, 90.0), (90.0, N - 1.0), True),
        ((1.5, 30.0), (30.0, 0.0), False),  # half a pixel further in: off the frame
        ((0.0, 30.0), (30.0, 1.5), False),
        ((30.0, 1.5), (0.0, 30.0), False),
        ((30.0, 0.0), (1.5, 30.0), False),
        ((N - 1.5, 90.0), (90.0, N), False),
        ((90.0, N), (N - 1.5, 90.0), False),
        ((N, 90.0), (90.0, N - 1.5), False),
        ((90.0, N - 1.5), (N, 90.0), False),
        ((0.0, 30.0), (0.0, 90.0), False),  # along one side
        ((30.0, 0.0), (90.0, 0.0), False),
        ((0.0, 30.0), (N, 90.0), False),  # from one side to the opposite one
        ((0.0, 0.0), (30.0, 0.0), False),  # from the frame's corner along the top
        ((0.0, 0.0), (0.0, 30.0), False),
    ],
)
def test_an_edge_across_a_corner_joins_a_vertical_side_of_the_frame_to_a_horizontal_one(
    start, end, across
):
    assert _across_a_corner(np.array(start), np.array(end)) is across


def test_rim_points_within_a_pixel_of_the_frame_are_left_out():
    # a triangle of short edges (each under ARC_EDGE) with corners on, near and off the frame
    for corner, kept in (((1.0, 20.0), False), ((1.5, 20.0), True), ((N - 1.0, 20.0), False)):
        x = corner[0]
        inward = 8.0 if x < MIDDLE else -8.0
        corners = np.array([corner, (x + inward, 14.0), (x + inward, 26.0)])
        points = _curved_points(corners)
        assert any(np.allclose(p, corner) for p in points) is kept, corner
        assert len(points) >= 8  # the rest of the rim, one point per pixel
