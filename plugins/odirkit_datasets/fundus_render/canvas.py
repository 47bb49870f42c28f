"""Where a photograph is drawn: a float RGB picture with one lesion mask per label, and the
low-frequency noise its textures are made of."""

from __future__ import annotations

import numpy as np
from PIL import Image

from odirkit import LABELS

Colour = tuple[float, float, float]


class Canvas:
    """A float RGB picture in [0, 1] plus one boolean lesion mask per label."""

    def __init__(self, height: int, width: int) -> None:
        self.h, self.w = height, width
        self.rgb = np.zeros((height, width, 3), dtype=np.float32)
        self.masks = {label: np.zeros((height, width), dtype=bool) for label in LABELS}
        self.yy, self.xx = np.mgrid[0:height, 0:width].astype(np.float32)

    def blend(self, alpha: np.ndarray, colour: Colour, box: tuple[int, int, int, int]) -> None:
        y0, y1, x0, x1 = box
        a = alpha[..., None]
        region = self.rgb[y0:y1, x0:x1]
        region *= 1.0 - a
        region += a * np.asarray(colour, dtype=np.float32)

    def spot(
        self,
        x: float,
        y: float,
        r: float,
        colour: Colour,
        *,
        opacity: float = 1.0,
        soft: float = 0.6,
        label: str | None = None,
        ring: Colour | None = None,
    ) -> None:
        """An anti-aliased disc (with an optional darker rim), marking ``label``'s mask."""
        pad = r + 2.0 + soft * r
        y0, y1 = max(0, int(y - pad)), min(self.h, int(y + pad) + 1)
        x0, x1 = max(0, int(x - pad)), min(self.w, int(x + pad) + 1)
        if y0 >= y1 or x0 >= x1:
            return
        d = np.hypot(self.xx[y0:y1, x0:x1] - x, self.yy[y0:y1, x0:x1] - y)
        edge = max(0.75, soft * r)
        alpha = np.clip((r - d) / edge + 0.5, 0.0, 1.0) * opacity
        if ring is not None:
            rim = np.clip(1.0 - np.abs(d - r * 0.85) / max(0.75, 0.25 * r), 0.0, 1.0) * opacity
            self.blend(rim, ring, (y0, y1, x0, x1))
            alpha = np.clip((r * 0.7 - d) / edge + 0.5, 0.0, 1.0) * opacity
        self.blend(alpha, colour, (y0, y1, x0, x1))
        if label is not None:
            self.masks[label][y0:y1, x0:x1] |= d <= r + 1.0


def smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in [-1, 1], upsampled bicubically from a coarse grid."""
    coarse = rng.uniform(0, 255, size=(cells, max(2, int(cells * w / h)))).astype(np.uint8)
    img = Image.fromarray(coarse, mode="L").resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 127.5 - 1.0
