"""Is this a colour fundus photograph? Plain image statistics, no trained model.

The check reads a photograph as odirkit prepares it (``data.images.preprocess``:
cropped to its field of view and padded with exact black to a square). It
strips that padding again, so that a rectangular picture is judged by its own
corners, reduces the rest to ``CHECK_SIZE`` pixels and asks, in order:

1. **Anything there**: a frame whose brightness barely varies
   (``BLANK_SPREAD``) holds no picture (``blank``); one that is all but black
   (``DARK_FRAME``) shows nothing (``too_dark``).
2. **A plain surround** (``no_dark_surround``): the corners of the picture
   (each the median of a ``CORNER_PATCH`` square, so burned-in text does not
   count) are dark (below ``DARK`` and below ``SURROUND_CONTRAST`` of the
   picture's bright end) or white (``LIGHT``) padding: three or four of them,
   or the two on one side of a field the frame cut on the other. Tight crops
   keep dark corners; scenes, documents and slit-lamp photographs of the eye
   fill them. A field on a dark surround that is mostly white where lit
   (``MAX_SATURATED``) is overexposed (``washed_out``).
3. **Colour** (``not_colour``): a colour fundus photograph has colour; a grey
   picture (mean chroma below ``MIN_CHROMA``), a red-free one among them, is not
   one.
4. **A field of view** (``no_field_of_view``): the pixels that differ from the
   surround (``FIELD_STEP``), opened to cut text touching the rim, their largest
   region (and pieces at least ``FIELD_PIECE`` of it), cover at least
   ``MIN_FIELD`` of the picture, and their outline is an ellipse (a circle, or
   the circle a re-release stretched to a square) clipped by the frame: the
   outline's curved parts are fitted, and at least ``MIN_COVERAGE`` of the
   visible ellipse must be traced by the field with at most ``MAX_LEAK`` of the
   field outside it. Shadows and black crescents inside the field are allowed:
   they leave the rest of the rim.
5. **Fundus colour** (``not_fundus_colour``): the retina is red-orange, so red
   exceeds blue; the median of ``(R - B) / max(R, G, B)`` over the field is at
   least ``MIN_REDNESS``.
6. **No pupil** (``anterior_segment``): a photograph of the front of the eye
   taken through a fundus camera has a round field too, but a near-black
   pupil near its middle (a compact dark blob enclosed by the field, covering
   ``PUPIL_AREA`` of it) and a white sclera (``SCLERA_SHARE`` of the field
   bright and colourless). A dark lesion at a fundus's macula has no sclera.
7. **Exposure**: the field's median brightness (the largest channel) is at
   least ``TOO_DARK`` (``too_dark``); at most ``MAX_SATURATED`` of it is white
   (``washed_out``).
8. **Detail** (``out_of_focus``): the mean absolute Laplacian inside the field
   is at least ``MIN_SHARPNESS``; a field with no structure at all fails.

The check refuses what is not a colour fundus photograph, or carries nothing;
it does not grade quality. Dark, hazy (cataract), shadowed, tightly cropped,
clipped, stretched, frame-cut, white-padded and labelled photographs pass.

Thresholds were set on 66 real photographs of two public collections (the
512-pixel ODIR-5K re-release, with fields clipped, stretched, dark and hazy;
EyePACS at 400 pixels with fields filling the square), the fundus photograph
of scikit-image's data, and 24 non-fundus pictures (scikit-image's data:
scenes, documents, textures, microscopy, a colour wheel, astronomy), then
checked on variants of the real photographs and on about 1,700 more made by an
independent review. Measured with ``benchmarks/fundus_check.py`` (224 px):

- the 67 real photographs: none refused;
- their variants darkened to a fifth, blended half with white, blurred,
  clipped, stretched, padded white or made transparent: none refused but 2 of
  56 ODIR-5K photographs darkened below a median of 13/255 and 1 of 10 EyePACS
  ones blurred;
- the review's variants (gamma 2.2, JPEG at quality 10 and 30, 64 and 3,000
  pixels, rotated, flipped, a notch, a date stamp in the field, text and labels
  in the margin or the corners, grey or noisy surrounds, a field cut by the
  frame on one side, vignetting, brightened, Optos-like pseudo-colour): at most
  2 of 67 of each kind refused, except gamma 2.2 (6 of 67) and a strong cold
  colour cast (9 of 67, ``not_fundus_colour``);
- refused as they should be: scenes, documents, textures, grey pictures,
  blank, black, white, noise and saturated frames, the colour wheel,
  photographs of a monitor, anterior-segment photographs showing pupil and
  sclera (``tests/test_fundus_check.py`` keeps each kind).

Limits, by design: a picture cropped inside the field, with no corner left, is
refused (no surround to tell it by); and a round, red-orange, structured
picture on a plain surround passes — a red ball or an orange on black, a scene
in a round vignette, some microscopy, a circular logo, an anterior-segment
photograph whose pupil glows with the red reflex. The check stops mistakes of
input, not adversaries.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage
from scipy.spatial import ConvexHull, QhullError

from odirkit.data.images import brightest_channel

CHECK_VERSION = 4  # the rules and thresholds; runs remember verdicts per version
CHECK_SIZE = 128
BLANK_SPREAD = 0.015  # p99 - p1 of the brightest channel, of 1
DARK_FRAME = 0.08  # a picture whose 99th centile is below this holds nothing visible
MIN_CHROMA = 0.02  # mean of max(R, G, B) - min(R, G, B), of 1
DARK = 0.2  # a dark corner: its brightest channel below this ...
SURROUND_CONTRAST = 0.5  # ... and below this share of the picture's bright end (95th centile)
CORNER_PATCH = 4  # a corner: the median of this many pixels square (of CHECK_SIZE)
LIGHT = 0.8  # a white corner: its darkest channel above this
FIELD_STEP = 0.04  # a field pixel differs from the surround by more than this ...
MIN_FIELD_STEP = 0.015  # ... or less, down to this, in a dark photograph
MIN_FIELD = 0.2  # share of the picture
FIELD_PIECE = 0.1  # a piece of the field: at least this share of its largest piece
MIN_COVERAGE = 0.4  # share of the visible ellipse traced by the field's outline
MAX_LEAK = 0.05  # share of the field outside its ellipse
MIN_AXIS, MAX_AXIS = 0.3, 1.2  # the ellipse's semi-axes, in picture sides
MAX_ASPECT = 1.8
MIN_REDNESS = 0.02
PUPIL_DARK = 0.3  # pupil pixels: below this share of the field's median brightness ...
PUPIL_BLACK = 0.12  # ... and below this brightness
PUPIL_AREA = (0.002, 0.35)  # share of the field
SCLERA_SHARE = 0.04  # a visible sclera: this share of the field ...
SCLERA_BRIGHT = 0.55  # ... brighter than this (brightest channel) ...
SCLERA_CHROMA = 0.2  # ... and nearly colourless: (max - min) / max below this
TOO_DARK = 0.05
MAX_SATURATED = 0.5
MIN_SHARPNESS = 0.0015
ARC_EDGE = 0.12  # hull edges longer than this (in sides) are straight: chords, clips, frames

REASONS = {
    "blank": "blank: nothing in the picture",
    "not_colour": "not a colour photograph (a grey picture)",
    "no_dark_surround": "no dark surround: not the round field of view of a fundus photograph",
    "no_field_of_view": "no round field of view found",
    "not_fundus_colour": "not the red-orange colour of a retina",
    "anterior_segment": "a photograph of the front of the eye (a pupil in the field), "
    "not of the fundus",
    "too_dark": "too dark: the field of view is underexposed",
    "washed_out": "washed out: the field of view is overexposed",
    "out_of_focus": "out of focus: no detail left in the field of view",
}


@dataclass(frozen=True)
class FundusCheck:
    """The verdict on one photograph, and the statistics it rests on (each of 1)."""

    usable: bool
    reason: str  # "" when usable, else a key of REASONS
    surround: str = ""  # "dark", "white" or "" (none found)
    field: float = 0.0  # share of the picture that differs from the surround
    coverage: float = 0.0  # share of the fitted ellipse traced by the field
    leak: float = 0.0  # share of the field outside the ellipse
    redness: float = 0.0  # median (R - B) / max(R, G, B) over the field
    brightness: float = 0.0  # median brightest channel over the field
    saturated: float = 0.0  # share of the field that is white
    sharpness: float = 0.0  # mean absolute Laplacian inside the field

    @property
    def message(self) -> str:
        """Why the photograph was refused, in words (empty when it passed)."""
        return REASONS.get(self.reason, "")


@dataclass(frozen=True)
class Ellipse:
    """An axis-aligned ellipse, in pixels of the check's square."""

    cx: float
    cy: float
    a: float  # horizontal semi-axis
    b: float  # vertical semi-axis

    def distance(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """Approximate distance, in pixels, of the points ``(xs, ys)`` (arrays of one shape,
        ``[N]`` or ``[H, W]``) to the ellipse, in their shape."""
        rho = np.hypot((xs - self.cx) / self.a, (ys - self.cy) / self.b)
        return np.abs(rho - 1.0) * min(self.a, self.b)

    def inside(self, margin: float) -> np.ndarray:
        """``bool [CHECK_SIZE, CHECK_SIZE]``: the square's pixels inside the ellipse grown by
        ``margin`` pixels."""
        yy, xx = np.mgrid[0:CHECK_SIZE, 0:CHECK_SIZE]
        rho = np.hypot((xx - self.cx) / self.a, (yy - self.cy) / self.b)
        return rho <= 1.0 + margin / min(self.a, self.b)


def check_fundus(image: np.ndarray) -> FundusCheck:
    """Check a preprocessed photograph: ``uint8 [S, S, 3]``, square, black padding."""
    picture = _strip_padding(np.asarray(image, dtype=np.uint8))
    if picture is None:
        return FundusCheck(False, "blank")
    x = (
        np.asarray(
            Image.fromarray(picture).resize((CHECK_SIZE, CHECK_SIZE), Image.Resampling.BOX),
            dtype=np.float32,
        )
        / 255.0
    )
    brightest = brightest_channel(x)
    darkest = np.minimum(np.minimum(x[..., 0], x[..., 1]), x[..., 2])
    low, high = np.percentile(brightest, [1, 99])
    if high - low < BLANK_SPREAD:
        reason = "too_dark" if high < DARK_FRAME else "blank"
        return FundusCheck(False, reason, brightness=float(np.median(brightest)))
    if high < DARK_FRAME:
        return FundusCheck(False, "too_dark", brightness=float(high))
    smooth = ndimage.uniform_filter(x, size=(3, 3, 1))
    surround, colour = _surround(smooth)
    if not surround:
        return FundusCheck(False, "no_dark_surround")
    lit = brightest > 0.1
    saturated = float((darkest[lit] > 0.97).mean()) if lit.any() else 0.0
    if surround == "dark" and saturated > MAX_SATURATED:
        return FundusCheck(False, "washed_out", surround=surround, saturated=saturated)
    if float((brightest - darkest).mean()) < MIN_CHROMA:
        return FundusCheck(False, "not_colour", surround=surround)
    field = _field(smooth, colour)
    share = float(field.mean())
    stats: dict = {"surround": surround, "field": share}
    if share < MIN_FIELD:
        reason = "too_dark" if surround == "dark" and high < 2 * DARK else "no_field_of_view"
        return FundusCheck(False, reason, **stats)
    ellipse, coverage, leak = _outline(field)
    stats.update(coverage=coverage, leak=leak)
    if ellipse is None or coverage < MIN_COVERAGE or leak > MAX_LEAK:
        return FundusCheck(False, "no_field_of_view", **stats)
    red, green, blue = (x[..., c][field] for c in range(3))
    top = np.maximum(np.maximum(red, green), blue)
    redness = float(np.median((red - blue) / np.maximum(top, 1e-3)))
    brightness = float(np.median(top))
    saturated = float((np.minimum(np.minimum(red, green), blue) > 0.97).mean())
    stats.update(redness=redness, brightness=brightness, saturated=saturated)
    if brightness < TOO_DARK:
        return FundusCheck(False, "too_dark", **stats)
    if saturated > MAX_SATURATED:
        return FundusCheck(False, "washed_out", **stats)
    if redness < MIN_REDNESS:
        return FundusCheck(False, "not_fundus_colour", **stats)
    if _has_pupil(smooth, field, ellipse, brightness):
        return FundusCheck(False, "anterior_segment", **stats)
    grey = x.mean(axis=2)
    laplacian = np.abs(
        4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    )
    core = ndimage.binary_erosion(field, iterations=3)[1:-1, 1:-1]
    sharpness = float(laplacian[core].mean()) if core.any() else 0.0
    stats["sharpness"] = sharpness
    if sharpness < MIN_SHARPNESS:
        return FundusCheck(False, "out_of_focus", **stats)
    return FundusCheck(True, "", **stats)


def _strip_padding(image: np.ndarray) -> np.ndarray | None:
    """The picture without the exact-black rows and columns preprocessing padded it with.

    Preprocessing crops to the field's bounding box, so the first and last rows and
    columns of the crop hold part of the field: rows or columns that are exactly
    black from edge to edge can only be the padding.
    """
    lit = brightest_channel(image) > 0
    rows = np.flatnonzero(lit.any(axis=1))
    cols = np.flatnonzero(lit.any(axis=0))
    if rows.size == 0:
        return None
    return image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _surround(smooth: np.ndarray) -> tuple[str, np.ndarray]:
    """``("dark" | "white" | "", colour)``: what the corners show.

    Each corner is the median of a ``CORNER_PATCH`` square (a thin stroke of burned-in
    text there does not change it). A surround is three or four plain corners, or two
    on one side of the picture (a field the frame cut on the other side).
    """
    n, k = CHECK_SIZE, CORNER_PATCH
    patches = [smooth[:k, :k], smooth[:k, n - k :], smooth[n - k :, :k], smooth[n - k :, n - k :]]
    corners = [np.median(p.reshape(-1, 3), axis=0) for p in patches]
    # dark in absolute terms, and against the picture's own bright end (a darkened
    # scene has dim corners, but so is everything else in it)
    dark = min(DARK, SURROUND_CONTRAST * float(np.percentile(brightest_channel(smooth), 95)))
    for kind, plain in (
        ("dark", [c.max() < dark for c in corners]),
        ("white", [c.min() > LIGHT for c in corners]),
    ):
        top_left, top_right, bottom_left, bottom_right = plain
        one_side = (
            (top_left and top_right)
            or (bottom_left and bottom_right)
            or (top_left and bottom_left)
            or (top_right and bottom_right)
        )
        if sum(plain) >= 3 or (sum(plain) == 2 and one_side):
            colour = np.median(np.stack([c for c, p in zip(corners, plain, strict=True) if p]), 0)
            return kind, colour
    return "", np.zeros(3, np.float32)


def _field(smooth: np.ndarray, colour: np.ndarray) -> np.ndarray:
    """The field of view: the pixels that differ from the surround, without specks, as
    the largest connected region (and any at least ``FIELD_PIECE`` of it: a field a
    shadow cut in two); burned-in text and labels are small and left out.
    ``bool [C, C]``."""
    difference = brightest_channel(np.abs(smooth - colour))
    # a dark photograph's field differs little from a black surround: a step of a fifth
    # of its bright end, between MIN_FIELD_STEP and FIELD_STEP
    step = float(np.clip(0.2 * np.percentile(difference, 95), MIN_FIELD_STEP, FIELD_STEP))
    differs = difference > step
    differs = ndimage.binary_opening(differs, iterations=3)  # cuts text touching the rim
    labels, count = ndimage.label(differs)
    if count == 0:
        return differs
    sizes = ndimage.sum(differs, labels, range(1, count + 1))
    keep = sizes >= max(0.01 * differs.size, FIELD_PIECE * sizes.max())
    return ndimage.binary_fill_holes(np.isin(labels, 1 + np.flatnonzero(keep)))


def _outline(field: np.ndarray) -> tuple[Ellipse | None, float, float]:
    """The ellipse of the field's rim, the share of it the rim traces, and the leak.

    The rim is the convex hull of the field (so dark shadows inside do not bend
    it); its long straight edges (chords across a shadow, a camera's clipping,
    the picture's own frame) are left out and the curved rest is fitted, once
    with the centre fixed at the picture's middle (where cropping to the field
    puts it; enough for a tight crop's four corner arcs) and once free (for a
    field that cropping cut on one side); the better-traced ellipse is kept.
    """
    ys, xs = np.nonzero(field & ~ndimage.binary_erosion(field))  # the hull of the rim is
    try:  # the hull of the field, from a tenth of the points
        hull = ConvexHull(np.c_[xs, ys].astype(float))
    except (QhullError, ValueError):
        return None, 0.0, 1.0
    arc = _curved_points(hull.points[hull.vertices])
    if len(arc) < 4:
        return None, 0.0, 1.0
    rim = _hull_mask(hull)
    inside = rim.copy()
    rim &= ~ndimage.binary_erosion(rim, border_value=1)
    near = ndimage.distance_transform_edt(~rim)
    best: tuple[Ellipse | None, float, float] = (None, 0.0, 1.0)
    for centred in (True, False):
        ellipse = _fit_ellipse(arc[:, 0], arc[:, 1], centred=centred)
        if ellipse is None or not _plausible(ellipse):
            continue
        coverage = _traced(ellipse, near)
        if coverage > best[1]:
            leak = float((inside & ~ellipse.inside(2.5)).sum() / max(inside.sum(), 1))
            best = (ellipse, coverage, leak)
    return best


def _plausible(ellipse: Ellipse) -> bool:
    a, b = ellipse.a / CHECK_SIZE, ellipse.b / CHECK_SIZE
    return min(a, b) >= MIN_AXIS and max(a, b) <= MAX_AXIS and max(a, b) / min(a, b) <= MAX_ASPECT


def _traced(ellipse: Ellipse, near: np.ndarray) -> float:
    """The share of the ellipse's visible part (away from the frame) within 2 px of the rim."""
    side = CHECK_SIZE
    t = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    px, py = ellipse.cx + ellipse.a * np.cos(t), ellipse.cy + ellipse.b * np.sin(t)
    visible = (px > 1.5) & (px < side - 2.5) & (py > 1.5) & (py < side - 2.5)
    if not visible.any():
        return 0.0
    distance = near[py[visible].round().astype(int), px[visible].round().astype(int)]
    return float((distance <= 2.0).mean())


def _curved_points(corners: np.ndarray) -> np.ndarray:
    """Points every pixel along the hull's curved rim, off the frame.

    The rim is the hull's short edges, and the edges across a corner of the
    picture (from one side of the frame to the next): a crop so tight that the
    corner's arc bends less than a pixel leaves it as one long chord.
    """
    limit = ARC_EDGE * CHECK_SIZE
    out = []
    for start, end in zip(corners, np.roll(corners, -1, axis=0), strict=True):
        length = float(np.hypot(*(end - start)))
        if length > limit and not _across_a_corner(start, end):
            continue
        for f in np.linspace(0.0, 1.0, max(1, int(length)), endpoint=False):
            out.append(start + f * (end - start))
    points = np.asarray(out, dtype=float).reshape(-1, 2)
    n = CHECK_SIZE - 1
    on_frame = (points <= 1.0).any(axis=1) | (points >= n - 1.0).any(axis=1)
    return points[~on_frame]


def _across_a_corner(start: np.ndarray, end: np.ndarray) -> bool:
    """Whether an edge joins a vertical side of the frame to a horizontal one."""
    n = CHECK_SIZE - 1

    def sides(point: np.ndarray) -> tuple[bool, bool]:
        x, y = point
        return bool(x <= 1.0 or x >= n - 1.0), bool(y <= 1.0 or y >= n - 1.0)

    (x0, y0), (x1, y1) = sides(start), sides(end)
    return (x0 and y1 and not y0) or (y0 and x1 and not x0)


def _fit_ellipse(xs: np.ndarray, ys: np.ndarray, *, centred: bool) -> Ellipse | None:
    """A least-squares axis-aligned ellipse, refitted without its worst points.

    Solves ``p u^2 + q v^2 (+ d u + e v) = 1`` in coordinates about the square's
    middle, which a field's ellipse encloses (the normalisation to 1 needs the
    origin inside); ``centred`` fixes the centre there (``d = e = 0``).
    """
    middle = (CHECK_SIZE - 1) / 2
    us, vs = xs - middle, ys - middle
    keep = np.ones(len(xs), bool)
    ellipse = None
    for _ in range(5):
        if keep.sum() < (3 if centred else 6):
            break
        columns = [us[keep] ** 2, vs[keep] ** 2]
        if not centred:
            columns += [us[keep], vs[keep]]
        solution, *_ = np.linalg.lstsq(np.c_[tuple(columns)], np.ones(keep.sum()), rcond=None)
        p, q = solution[:2]
        d, e = solution[2:] if not centred else (0.0, 0.0)
        if p <= 0 or q <= 0:
            return ellipse
        cu, cv = -d / (2 * p), -e / (2 * q)
        scale = 1 + p * cu**2 + q * cv**2
        ellipse = Ellipse(
            middle + cu, middle + cv, float(np.sqrt(scale / p)), float(np.sqrt(scale / q))
        )
        residual = ellipse.distance(xs, ys)
        keep = residual <= max(1.5, 2.5 * float(np.median(residual[keep])))
    return ellipse


def _hull_mask(hull: ConvexHull) -> np.ndarray:
    """The square's pixels inside the hull (drawn as a polygon)."""
    canvas = Image.new("1", (CHECK_SIZE, CHECK_SIZE))
    ImageDraw.Draw(canvas).polygon([tuple(p) for p in hull.points[hull.vertices]], fill=1)
    return np.array(canvas, dtype=bool)


def _has_pupil(smooth: np.ndarray, field: np.ndarray, ellipse: Ellipse, brightness: float) -> bool:
    """The front of an eye: a compact near-black blob (the pupil) near the field's centre,
    enclosed by it, and a white sclera (at least ``SCLERA_SHARE`` of the field bright
    and colourless). A dark lesion at a fundus's macula has no sclera around it."""
    top = brightest_channel(smooth)
    bottom = np.minimum(np.minimum(smooth[..., 0], smooth[..., 1]), smooth[..., 2])
    white = field & (top > SCLERA_BRIGHT) & ((top - bottom) < SCLERA_CHROMA * top)
    if white.sum() < SCLERA_SHARE * field.sum():
        return False
    dark = (top < min(PUPIL_BLACK, PUPIL_DARK * brightness)) & ellipse.inside(
        -0.15 * min(ellipse.a, ellipse.b)
    )
    labels, count = ndimage.label(ndimage.binary_fill_holes(dark))  # a reflex is no hole
    if count == 0:
        return False
    area = float(field.sum())
    for index, blob in enumerate(ndimage.find_objects(labels), start=1):
        mask = labels[blob] == index
        size = float(mask.sum())
        if not PUPIL_AREA[0] * area <= size <= PUPIL_AREA[1] * area:
            continue
        height = blob[0].stop - blob[0].start
        width = blob[1].stop - blob[1].start
        if size / (height * width) < 0.6 or not 0.6 <= height / width <= 1.6:
            continue
        cy = (blob[0].start + blob[0].stop - 1) / 2
        cx = (blob[1].start + blob[1].stop - 1) / 2
        offset = np.hypot((cx - ellipse.cx) / ellipse.a, (cy - ellipse.cy) / ellipse.b)
        if offset <= 0.5:
            return True
    return False
