"""Is this a usable fundus photograph? Plain image statistics, no trained model.

The check reads a photograph as odirkit prepares it (cropped to its bright
region and padded to a square: ``data.images.preprocess``), reduced to
``CHECK_SIZE`` pixels, in grey levels from 0 to 1. A colour fundus photograph
is a bright, roughly round field of view on a dark surround; so, in order:

1. **A field of view** (``no_field_of_view``, or ``too_dark`` when nothing is
   bright): the pixels brighter than ``FIELD`` cover between ``MIN_FIELD`` and
   ``MAX_FIELD`` of the square.
2. **Dark surround** (``no_dark_surround``): the four corners of the field's
   bounding box (each ``CORNER`` of its side) must be dark: their mean below
   ``DARK``. A round field, whole or clipped top and bottom by the camera's
   frame, leaves them black; a frame, a scene, a document or noise fills them.
   And the field must fill between ``MIN_ROUND`` and ``MAX_ROUND`` of the disc
   (or disc clipped top and bottom) its extent describes (``no_field_of_view``).
3. **Exposure**: the field's median brightness lies between ``TOO_DARK``
   (``too_dark``) and ``WASHED_OUT`` (``washed_out``), and at most
   ``MAX_SATURATED`` of it is saturated.
4. **Focus** (``out_of_focus``): the field's mean absolute Laplacian (an edge
   measure, at ``CHECK_SIZE``) is at least ``MIN_SHARPNESS``: a hopelessly
   blurred picture has no vessels left. Cataract and mild defocus pass.

Each threshold is deliberately loose: the check is meant to stop pictures that
are not fundus photographs at all, or that carry nothing, not to grade quality.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

CHECK_SIZE = 128
CORNER = 0.08
DARK = 0.12
FIELD = 0.12
MIN_FIELD, MAX_FIELD = 0.25, 0.97
MIN_ROUND, MAX_ROUND = 0.8, 1.08
TOO_DARK = 0.12
WASHED_OUT = 0.9
MAX_SATURATED = 0.3
MIN_SHARPNESS = 0.006

REASONS = {
    "no_dark_surround": "no dark surround: not the round field of view of a fundus photograph",
    "no_field_of_view": "no round field of view found",
    "too_dark": "too dark: the field of view is underexposed",
    "washed_out": "washed out: the field of view is overexposed",
    "out_of_focus": "out of focus: no detail left in the field of view",
}


@dataclass(frozen=True)
class FundusCheck:
    """The verdict on one photograph, and the statistics it rests on."""

    usable: bool
    reason: str  # "" when usable, else a key of REASONS
    corners: float = 0.0
    field: float = 0.0
    roundness: float = 0.0
    brightness: float = 0.0
    saturated: float = 0.0
    sharpness: float = 0.0

    @property
    def message(self) -> str:
        return REASONS.get(self.reason, "")


def check_fundus(image: np.ndarray) -> FundusCheck:
    """Check a preprocessed photograph (``uint8 [S, S, 3]``, square)."""
    grey = (
        np.asarray(
            Image.fromarray(np.asarray(image, dtype=np.uint8))
            .convert("L")
            .resize((CHECK_SIZE, CHECK_SIZE), Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
        / 255.0
    )
    inside = grey > FIELD
    field = float(inside.mean())
    stats = {"field": field}
    if field < MIN_FIELD and grey.max() < 2 * FIELD:
        return FundusCheck(False, "too_dark", **stats)
    if not MIN_FIELD <= field <= MAX_FIELD:
        return FundusCheck(False, "no_field_of_view", **stats)
    rows = np.flatnonzero(inside.mean(axis=1) > 0.02)
    cols = np.flatnonzero(inside.mean(axis=0) > 0.02)
    box = grey[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = box.shape
    k = max(2, round(CORNER * min(height, width)))
    corners = float(
        np.mean(
            [box[:k, :k].mean(), box[:k, -k:].mean(), box[-k:, :k].mean(), box[-k:, -k:].mean()]
        )
    )
    stats["corners"] = corners
    if corners > DARK:
        return FundusCheck(False, "no_dark_surround", **stats)
    roundness = float(inside.sum() / _clipped_disc_area(width, height))
    stats["roundness"] = roundness
    if not MIN_ROUND <= roundness <= MAX_ROUND:
        return FundusCheck(False, "no_field_of_view", **stats)
    values = grey[inside]
    brightness = float(np.median(values))
    saturated = float((values > 0.98).mean())
    stats.update(brightness=brightness, saturated=saturated)
    if brightness < TOO_DARK:
        return FundusCheck(False, "too_dark", **stats)
    if brightness > WASHED_OUT or saturated > MAX_SATURATED:
        return FundusCheck(False, "washed_out", **stats)
    laplacian = np.abs(
        4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1] - grey[1:-1, :-2] - grey[1:-1, 2:]
    )
    core = inside[1:-1, 1:-1]
    sharpness = float(laplacian[core].mean()) if core.any() else 0.0
    stats["sharpness"] = sharpness
    if sharpness < MIN_SHARPNESS:
        return FundusCheck(False, "out_of_focus", **stats)
    return FundusCheck(True, "", **stats)


def _clipped_disc_area(width: int, height: int) -> float:
    """The area of a disc of diameter ``width`` clipped top and bottom to ``height``."""
    r = width / 2.0
    half = min(height / 2.0, r)
    # area of a circle of radius r between -half and +half: 2 * integral of 2*sqrt(r^2 - y^2)
    theta = np.arcsin(half / r)
    return float(2 * r * r * (theta + np.sin(theta) * np.cos(theta)))
