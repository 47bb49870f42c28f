"""Drawing synthetic colour fundus photographs, with a lesion mask per label.

Everything is drawn from one :class:`numpy.random.Generator`, so the same
generator state gives the same image. The anatomy follows a 45-degree fundus
photograph: a round field of view on black, an orange-red background that
darkens towards the rim, the optic disc on the nasal side (the right of the
picture for a right eye, mirrored for a left eye), the macula about two and a
half disc diameters temporal to it, and a vessel tree leaving the disc in four
arcades. Lesions are drawn where the disease puts them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from odirkit import LABELS

Colour = tuple[float, float, float]


@dataclass
class Anatomy:
    """Positions and sizes of one eye's landmarks, in pixels."""

    cx: float
    cy: float
    radius: float
    disc_x: float
    disc_y: float
    disc_r: float
    macula_x: float
    macula_y: float
    nasal: int  # +1 when the disc is right of the centre, -1 when left
    vessels: list[list[tuple[float, float, float]]] = field(default_factory=list)


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


def _walk(
    rng: np.random.Generator,
    anatomy: Anatomy,
    x: float,
    y: float,
    angle: float,
    bend: float,
    width: float,
    steps: int,
) -> list[tuple[float, float, float]]:
    """A vessel as a smooth random walk: (x, y, width) points, tapering."""
    step = anatomy.radius * 0.025
    points = [(x, y, width)]
    for i in range(steps):
        angle += bend + rng.normal(0, 0.06)
        x += step * math.cos(angle)
        y += step * math.sin(angle)
        w = width * (1.0 - 0.55 * i / steps)
        if math.hypot(x - anatomy.cx, y - anatomy.cy) > anatomy.radius * 1.02:
            break
        points.append((x, y, w))
    return points


def _vessel_tree(rng: np.random.Generator, a: Anatomy) -> list[list[tuple[float, float, float]]]:
    """Four arcades from the disc, each with a few branches."""
    temporal = math.pi if a.nasal > 0 else 0.0  # direction from the disc towards the macula
    base_w = a.radius * 0.018
    vessels: list[list[tuple[float, float, float]]] = []
    # (start angle relative to temporal, bend per step, length in steps, width scale)
    arcades = [
        (1.2, -0.022, 48, 1.0),
        (-1.2, 0.022, 48, 1.0),
        (2.3, 0.01, 24, 0.7),
        (-2.3, -0.01, 24, 0.7),
    ]
    for offset, bend, steps, scale in arcades:
        mirror = 1 if a.nasal > 0 else -1
        angle = temporal + offset * mirror
        trunk = _walk(
            rng,
            a,
            a.disc_x,
            a.disc_y,
            angle + rng.normal(0, 0.12),
            bend * mirror,
            base_w * scale,
            steps,
        )
        vessels.append(trunk)
        for _ in range(3):
            if len(trunk) < 8:
                break
            k = int(rng.integers(4, len(trunk) - 3))
            x0, y0, w0 = trunk[k]
            x1, y1, _ = trunk[k + 1]
            heading = math.atan2(y1 - y0, x1 - x0)
            side = rng.choice([-1.0, 1.0])
            vessels.append(
                _walk(
                    rng,
                    a,
                    x0,
                    y0,
                    heading + side * rng.uniform(0.5, 0.9),
                    0.0,
                    w0 * 0.6,
                    int(rng.integers(10, 22)),
                )
            )
    return vessels


def _draw_vessels(canvas: Canvas, a: Anatomy, thin_arteries: bool) -> None:
    """Veins dark red and wide; arteries lighter and thinner, drawn beside them."""
    for kind, colour, scale in (
        ("vein", (0.42, 0.05, 0.04), 1.0),
        ("artery", (0.62, 0.12, 0.06), 0.7),
    ):
        if kind == "artery" and thin_arteries:
            scale *= 0.45
        layer = Image.new("L", (canvas.w, canvas.h), 0)
        draw = ImageDraw.Draw(layer)
        for vessel in a.vessels:
            shift = a.radius * 0.012 if kind == "artery" else 0.0
            for (x0, y0, w0), (x1, y1, _) in itertools.pairwise(vessel):
                draw.line(
                    [(x0 + shift, y0 + shift), (x1 + shift, y1 + shift)],
                    fill=255,
                    width=max(1, round(w0 * scale)),
                )
        alpha = np.asarray(layer.filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float32) / 255.0
        canvas.blend(alpha * 0.85, colour, (0, canvas.h, 0, canvas.w))


def _points_on_vessels(rng: np.random.Generator, a: Anatomy, n: int, near: float):
    """Random points on the vessels within ``near`` radii of the disc, with their heading."""
    candidates = []
    for vessel in a.vessels:
        for (x0, y0, _), (x1, y1, _) in itertools.pairwise(vessel):
            if math.hypot(x0 - a.disc_x, y0 - a.disc_y) < near * a.radius:
                candidates.append((x0, y0, math.atan2(y1 - y0, x1 - x0)))
    if not candidates:
        return []
    picks = rng.integers(0, len(candidates), size=n)
    return [candidates[i] for i in picks]


def _posterior_pole_point(
    rng: np.random.Generator, a: Anatomy, spread: float
) -> tuple[float, float]:
    """A point around the macula and the arcades, where diabetic lesions sit."""
    while True:
        r = a.radius * spread * math.sqrt(rng.uniform(0, 1))
        t = rng.uniform(0, 2 * math.pi)
        x = (a.macula_x + a.disc_x) / 2 + r * math.cos(t) * 1.2
        y = a.macula_y + r * math.sin(t)
        if math.hypot(x - a.cx, y - a.cy) < a.radius * 0.9:
            return x, y


def render_eye(
    rng: np.random.Generator,
    height: int,
    *,
    eye: str,
    labels: set[str],
    lens_dust: bool = False,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw one fundus photograph: ``uint8 [H, W, 3]`` and a bool mask per label.

    ``labels`` are the diseases of this eye (an empty set draws a normal eye).
    """
    width = round(height * 1.25)
    canvas = Canvas(height, width)
    radius = height * rng.uniform(0.455, 0.49)
    cx = width / 2 + rng.normal(0, height * 0.01)
    cy = height / 2 + rng.normal(0, height * 0.01)
    nasal = 1 if eye == "right" else -1
    disc_r = radius * rng.uniform(0.105, 0.125)
    disc_x = cx + nasal * radius * rng.uniform(0.36, 0.42)
    disc_y = cy + rng.normal(0, radius * 0.03)
    a = Anatomy(
        cx=cx,
        cy=cy,
        radius=radius,
        disc_x=disc_x,
        disc_y=disc_y,
        disc_r=disc_r,
        macula_x=cx - nasal * radius * rng.uniform(0.16, 0.22),
        macula_y=cy + radius * rng.uniform(0.0, 0.06),
        nasal=nasal,
    )
    a.vessels = _vessel_tree(rng, a)

    # Background: orange-red, darker towards the rim, with a faint mottling.
    r = np.hypot(canvas.xx - cx, canvas.yy - cy) / radius
    fov = r <= 1.0
    shade = rng.uniform(0.85, 1.08)
    base = np.array([0.80, 0.34, 0.12], dtype=np.float32) * shade
    base[1] *= rng.uniform(0.85, 1.15)
    vignette = 1.0 - 0.55 * np.clip(r, 0, 1) ** 2.5
    mottle = 1.0 + 0.05 * smooth_noise(rng, height, width, 7)
    canvas.rgb[:] = base * (vignette * mottle)[..., None]

    if "M" in labels:  # tessellation: the choroidal vessels show through a thin retina
        pattern = np.zeros((height, width), dtype=np.float32)
        for _ in range(2):
            theta = rng.uniform(0, math.pi)
            warp = 4.0 * smooth_noise(rng, height, width, 6)
            along = canvas.xx * math.cos(theta) + canvas.yy * math.sin(theta)
            pattern += np.sin(along / (radius * 0.022) + warp)
        canvas.rgb *= (1.0 - 0.07 * (pattern > 0.8))[..., None]
        canvas.rgb[..., 0] *= 1.04

    # Macula: a darker, slightly brown area with a small foveal reflex.
    dm = np.hypot(canvas.xx - a.macula_x, canvas.yy - a.macula_y) / (radius * 0.1)
    canvas.rgb *= (1.0 - 0.38 * np.exp(-(dm**2) / 2))[..., None]
    canvas.spot(a.macula_x, a.macula_y, radius * 0.008, (0.9, 0.55, 0.35), opacity=0.6)

    # Optic disc: yellow-pink rim around a paler cup.
    canvas.spot(disc_x, disc_y, disc_r, (0.96, 0.74, 0.50), soft=0.25)
    cup_ratio = rng.uniform(0.72, 0.88) if "G" in labels else rng.uniform(0.25, 0.42)
    canvas.spot(
        disc_x + nasal * disc_r * 0.05,
        disc_y,
        disc_r * cup_ratio,
        (1.0, 0.94, 0.82),
        soft=0.35,
        opacity=0.95,
    )
    if "G" in labels:
        canvas.masks["G"] |= np.hypot(canvas.xx - disc_x, canvas.yy - disc_y) <= disc_r * 1.1

    if "M" in labels:  # peripapillary atrophy: a pale crescent on the disc's temporal side
        dd = np.hypot(canvas.xx - disc_x, canvas.yy - disc_y)
        towards_macula = (canvas.xx - disc_x) * -nasal
        crescent = (
            (dd > disc_r * 0.95)
            & (dd < disc_r * rng.uniform(1.5, 1.9))
            & (towards_macula > disc_r * 0.2)
        )
        soft = (
            np.asarray(
                Image.fromarray((crescent * 255).astype(np.uint8)).filter(
                    ImageFilter.GaussianBlur(1.2)
                ),
                dtype=np.float32,
            )
            / 255.0
        )
        canvas.blend(soft * 0.9, (0.93, 0.80, 0.62), (0, height, 0, width))
        canvas.masks["M"] |= crescent

    _draw_vessels(canvas, a, thin_arteries="H" in labels)

    if "D" in labels:
        severity = rng.uniform(0.5, 1.0)
        for _ in range(int(12 + 28 * severity)):  # micro-aneurysms and dot haemorrhages
            x, y = _posterior_pole_point(rng, a, 0.55)
            canvas.spot(x, y, radius * rng.uniform(0.008, 0.016), (0.35, 0.02, 0.02), label="D")
        for _ in range(int(3 + 7 * severity)):  # blot haemorrhages
            x, y = _posterior_pole_point(rng, a, 0.6)
            canvas.spot(
                x,
                y,
                radius * rng.uniform(0.022, 0.04),
                (0.40, 0.03, 0.03),
                soft=0.5,
                opacity=0.9,
                label="D",
            )
        for _ in range(int(2 + 4 * severity)):  # hard exudates, in small clusters
            x, y = _posterior_pole_point(rng, a, 0.45)
            for _ in range(int(rng.integers(3, 7))):
                canvas.spot(
                    x + rng.normal(0, radius * 0.025),
                    y + rng.normal(0, radius * 0.025),
                    radius * rng.uniform(0.008, 0.015),
                    (0.98, 0.90, 0.45),
                    label="D",
                )

    if "H" in labels:  # flame haemorrhages along the vessels near the disc
        for x, y, heading in _points_on_vessels(rng, a, int(rng.integers(5, 10)), near=0.45):
            length = radius * rng.uniform(0.05, 0.09)
            layer = Image.new("L", (width, height), 0)
            off = radius * 0.02 * rng.choice([-1.0, 1.0])
            px, py = x - off * math.sin(heading), y + off * math.cos(heading)
            ImageDraw.Draw(layer).line(
                [(px, py), (px + length * math.cos(heading), py + length * math.sin(heading))],
                fill=255,
                width=max(2, round(radius * 0.022)),
            )
            alpha = np.asarray(layer.filter(ImageFilter.GaussianBlur(1.0)), dtype=np.float32) / 255
            canvas.blend(alpha * 0.95, (0.45, 0.03, 0.03), (0, height, 0, width))
            canvas.masks["H"] |= alpha > 0.2

    if "A" in labels:  # drusen around the macula
        for _ in range(int(rng.integers(18, 40))):
            rr = radius * 0.2 * math.sqrt(rng.uniform(0, 1))
            t = rng.uniform(0, 2 * math.pi)
            canvas.spot(
                a.macula_x + rr * math.cos(t),
                a.macula_y + rr * math.sin(t),
                radius * rng.uniform(0.01, 0.024),
                (0.95, 0.85, 0.40),
                soft=0.8,
                opacity=0.9,
                label="A",
            )

    if "O" in labels:  # laser scars (pale with pigmented rims) or pigment clumps
        if rng.uniform() < 0.6:
            for _ in range(int(rng.integers(25, 50))):
                rr = radius * rng.uniform(0.45, 0.85)
                t = rng.uniform(0, 2 * math.pi)
                canvas.spot(
                    cx + rr * math.cos(t),
                    cy + rr * math.sin(t),
                    radius * rng.uniform(0.018, 0.028),
                    (0.93, 0.86, 0.70),
                    ring=(0.18, 0.10, 0.06),
                    label="O",
                )
        else:
            for _ in range(int(rng.integers(6, 14))):
                rr = radius * rng.uniform(0.3, 0.85)
                t = rng.uniform(0, 2 * math.pi)
                x, y = cx + rr * math.cos(t), cy + rr * math.sin(t)
                for _ in range(4):
                    canvas.spot(
                        x + rng.normal(0, radius * 0.015),
                        y + rng.normal(0, radius * 0.015),
                        radius * rng.uniform(0.01, 0.022),
                        (0.12, 0.07, 0.05),
                        label="O",
                    )

    if lens_dust:  # faint grey smudges: not a disease
        for _ in range(int(rng.integers(2, 5))):
            rr = radius * rng.uniform(0.1, 0.8)
            t = rng.uniform(0, 2 * math.pi)
            canvas.spot(
                cx + rr * math.cos(t),
                cy + rr * math.sin(t),
                radius * 0.03,
                (0.3, 0.25, 0.22),
                soft=1.0,
                opacity=0.35,
            )

    rgb = canvas.rgb
    if "C" in labels:  # cataract: a blurred, hazy, washed-out view of the whole fundus
        img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
        blurred = np.asarray(img.filter(ImageFilter.GaussianBlur(radius * 0.03)), dtype=np.float32)
        veil = rng.uniform(0.3, 0.45)
        rgb = (1 - veil) * blurred / 255.0 + veil * np.array([0.75, 0.6, 0.5], dtype=np.float32)
        canvas.masks["C"] |= fov

    rgb = rgb + rng.normal(0, 0.012, size=rgb.shape).astype(np.float32)
    rgb = np.where(fov[..., None], np.clip(rgb, 0.0, 1.0), 0.0)
    image = (rgb * 255.0 + 0.5).astype(np.uint8)
    masks = {label: canvas.masks[label] & fov for label in labels}
    return image, masks
