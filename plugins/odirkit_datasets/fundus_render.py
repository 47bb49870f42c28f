"""Drawing synthetic colour fundus photographs, with a lesion mask per label.

Everything is drawn from one :class:`numpy.random.Generator`, so the same
generator state gives the same image. How hard the pictures are is a
:class:`Look`: ``EASY`` (every lesion severe, classes apart, one camera) or
``REALISTIC`` (disease severity a continuum where mild cases are the most
common, class features that overlap, benign look-alikes in normal eyes, and
the variation of real acquisition: illumination, colour cast, exposure,
defocus, a turned or off-centre field, frames that crop the field, JPEG
quality). The anatomy follows a 45-degree fundus
photograph: a round field of view on black, an orange-red background that
darkens towards the rim, the optic disc on the nasal side (the right of the
picture for a right eye, mirrored for a left eye), the macula about two and a
half disc diameters temporal to it, and a vessel tree leaving the disc in four
arcades. Lesions are drawn where the disease puts them.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from odirkit import LABELS

Colour = tuple[float, float, float]
Range = tuple[float, float]


@dataclass(frozen=True)
class Look:
    """Every parameter of how the photographs are drawn (recorded in ``phantom.json``).

    Counts are ``base + per_severity * s`` for a lesion of severity ``s`` in [0, 1];
    sizes are shares of the field-of-view radius.
    """

    name: str
    severity: tuple[str, float, float]  # ("uniform", lo, hi) or ("beta", a, b)
    microaneurysms: Range  # base, per severity
    microaneurysm_radius: Range
    blots: Range
    exudate_clusters: Range
    cup_normal: tuple[float, float, float, float]  # mean, sd, lo, hi
    cup_glaucoma: tuple[float, float, float, float]  # at severity 0; + cup_per_severity * s
    cup_per_severity: float
    artery_scale_normal: Range
    artery_narrowing: float  # hypertension narrows arteries by this share at severity 1
    flames: Range
    drusen: Range
    drusen_radius: Range  # lo, hi at severity 1
    tessellation: Range  # contrast: base, per severity
    cataract_veil: Range
    cataract_blur: Range  # share of the radius
    laser_spots: Range
    pigment_clumps: Range
    # benign look-alikes in eyes without the disease: probability per eye
    normal_drusen: float = 0.0
    normal_pigment: float = 0.0
    normal_tessellation: float = 0.0
    vessel_reflex: float = 0.0
    dust: float = 0.0
    # acquisition
    rotation_sd: float = 0.0  # radians
    shift_sd: float = 0.0  # share of the image height
    radius: Range = (0.455, 0.49)  # share of the image height (above 0.5 the frame clips)
    frame_crop: float = 0.0  # probability of a frame cropping the field top and bottom
    gradient: Range = (0.0, 0.0)
    vignette: Range = (0.55, 0.55)
    colour_cast_sd: float = 0.0
    exposure_sd: float = 0.0
    gamma: Range = (1.0, 1.0)
    defocus: Range = (0.0, 0.0)  # Gaussian sigma in pixels at 256 px
    noise: Range = (0.012, 0.012)
    jpeg_quality: tuple[int, int] = (92, 92)

    def to_dict(self) -> dict:
        return asdict(self)

    def draw_severity(self, rng: np.random.Generator) -> float:
        kind, a, b = self.severity
        return float(rng.uniform(a, b) if kind == "uniform" else rng.beta(a, b))


#: today's look: every lesion florid, the classes apart, one camera
EASY = Look(
    name="easy",
    severity=("uniform", 0.5, 1.0),
    microaneurysms=(12, 28),
    microaneurysm_radius=(0.008, 0.016),
    blots=(3, 7),
    exudate_clusters=(2, 4),
    cup_normal=(0.335, 0.05, 0.25, 0.42),
    cup_glaucoma=(0.72, 0.0, 0.72, 0.88),
    cup_per_severity=0.16,
    artery_scale_normal=(1.0, 1.0),
    artery_narrowing=0.55,
    flames=(5, 5),
    drusen=(18, 22),
    drusen_radius=(0.01, 0.024),
    tessellation=(0.07, 0.0),
    cataract_veil=(0.3, 0.15),
    cataract_blur=(0.03, 0.0),
    laser_spots=(25, 25),
    pigment_clumps=(6, 8),
    dust=0.0,
)

#: a screening population: mostly mild disease, overlapping classes, many cameras
REALISTIC = Look(
    name="realistic",
    severity=("beta", 1.1, 3.0),
    microaneurysms=(1, 22),
    microaneurysm_radius=(0.006, 0.012),
    blots=(0, 5),
    exudate_clusters=(0, 4),
    cup_normal=(0.40, 0.09, 0.2, 0.7),
    cup_glaucoma=(0.52, 0.06, 0.35, 0.92),
    cup_per_severity=0.3,
    artery_scale_normal=(0.75, 1.05),
    artery_narrowing=0.5,
    flames=(0, 7),
    drusen=(2, 30),
    drusen_radius=(0.008, 0.024),
    tessellation=(0.025, 0.08),
    cataract_veil=(0.08, 0.35),
    cataract_blur=(0.006, 0.03),
    laser_spots=(6, 40),
    pigment_clumps=(2, 12),
    normal_drusen=0.3,
    normal_pigment=0.12,
    normal_tessellation=0.2,
    vessel_reflex=0.5,
    dust=0.12,
    rotation_sd=0.1,
    shift_sd=0.03,
    radius=(0.43, 0.54),
    frame_crop=0.3,
    gradient=(0.0, 0.3),
    vignette=(0.35, 0.75),
    colour_cast_sd=0.07,
    exposure_sd=0.15,
    gamma=(0.8, 1.25),
    defocus=(0.0, 1.0),
    noise=(0.006, 0.02),
    jpeg_quality=(60, 95),
)

LOOKS = {"easy": EASY, "realistic": REALISTIC}


@dataclass(frozen=True)
class Camera:
    """What one camera does to every photograph it takes (``camera_shift``)."""

    gains: Colour = (1.0, 1.0, 1.0)
    vignette: float = 0.0  # added to the drawn vignette strength
    crop: float = 0.0  # added to the frame-crop probability


CAMERAS = (
    Camera(),
    Camera(gains=(1.06, 0.94, 0.9), vignette=0.1),
    Camera(gains=(0.92, 1.04, 1.1), vignette=-0.1, crop=0.4),
)


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
    rotation: float = 0.0  # radians: the camera held slightly turned
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
        angle = temporal + offset * mirror + a.rotation
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


def _draw_vessels(canvas: Canvas, a: Anatomy, artery_scale: float = 1.0) -> None:
    """Veins dark red and wide; arteries lighter and thinner (``artery_scale`` of their usual
    calibre: hypertension narrows them), drawn beside them."""
    for kind, colour, scale in (
        ("vein", (0.42, 0.05, 0.04), 1.0),
        ("artery", (0.62, 0.12, 0.06), 0.7 * artery_scale),
    ):
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
    look: Look = EASY,
    camera: Camera | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Draw one fundus photograph: ``uint8 [H, W, 3]`` and a bool mask per label.

    ``labels`` are the diseases drawn in this eye (an empty set draws a normal
    eye). Every drawn lesion is in its label's mask; what a frame crops away
    is in no mask.
    """
    realistic = look is not EASY
    camera = camera or Camera()
    width = round(height * 1.25)
    canvas = Canvas(height, width)
    radius = height * rng.uniform(*look.radius)
    shift = look.shift_sd * height
    cx = width / 2 + rng.normal(0, height * 0.01 + shift)
    cy = height / 2 + rng.normal(0, height * 0.01 + shift)
    rotation = float(rng.normal(0, look.rotation_sd)) if look.rotation_sd else 0.0
    nasal = 1 if eye == "right" else -1

    def turned(dx: float, dy: float) -> tuple[float, float]:
        c, s_ = math.cos(rotation), math.sin(rotation)
        return cx + dx * c - dy * s_, cy + dx * s_ + dy * c

    disc_r = radius * rng.uniform(0.105, 0.125)
    disc_x, disc_y = turned(nasal * radius * rng.uniform(0.36, 0.42), rng.normal(0, radius * 0.03))
    macula_x, macula_y = turned(
        -nasal * radius * rng.uniform(0.16, 0.22), radius * rng.uniform(0.0, 0.06)
    )
    a = Anatomy(
        cx=cx,
        cy=cy,
        radius=radius,
        disc_x=disc_x,
        disc_y=disc_y,
        disc_r=disc_r,
        macula_x=macula_x,
        macula_y=macula_y,
        nasal=nasal,
        rotation=rotation,
    )
    a.vessels = _vessel_tree(rng, a)
    severity = {label: look.draw_severity(rng) for label in sorted(labels)}

    def count(spec: Range, s: float) -> int:
        return round(spec[0] + spec[1] * s) if realistic else int(spec[0] + spec[1] * s)

    # Background: orange-red, darker towards the rim, with a faint mottling.
    r = np.hypot(canvas.xx - cx, canvas.yy - cy) / radius
    fov = r <= 1.0
    shade = rng.uniform(0.85, 1.08)
    base = np.array([0.80, 0.34, 0.12], dtype=np.float32) * shade
    base[1] *= rng.uniform(0.85, 1.15)
    strength = float(np.clip(rng.uniform(*look.vignette) + camera.vignette, 0.1, 0.9))
    vignette = 1.0 - strength * np.clip(r, 0, 1) ** 2.5
    mottle = 1.0 + 0.05 * smooth_noise(rng, height, width, 7)
    canvas.rgb[:] = base * (vignette * mottle)[..., None]

    tessellation = 0.0
    if "M" in labels:
        tessellation = look.tessellation[0] + look.tessellation[1] * severity["M"]
    elif realistic and rng.uniform() < look.normal_tessellation:  # a blond fundus
        tessellation = rng.uniform(0.015, 0.045)
    if tessellation:  # the choroidal vessels show through a thin retina
        pattern = np.zeros((height, width), dtype=np.float32)
        for _ in range(2):
            theta = rng.uniform(0, math.pi)
            warp = 4.0 * smooth_noise(rng, height, width, 6)
            along = canvas.xx * math.cos(theta) + canvas.yy * math.sin(theta)
            pattern += np.sin(along / (radius * 0.022) + warp)
        canvas.rgb *= (1.0 - tessellation * (pattern > 0.8))[..., None]
        if "M" in labels:
            canvas.rgb[..., 0] *= 1.04

    # Macula: a darker, slightly brown area with a small foveal reflex.
    dm = np.hypot(canvas.xx - a.macula_x, canvas.yy - a.macula_y) / (radius * 0.1)
    canvas.rgb *= (1.0 - 0.38 * np.exp(-(dm**2) / 2))[..., None]
    canvas.spot(a.macula_x, a.macula_y, radius * 0.008, (0.9, 0.55, 0.35), opacity=0.6)

    # Optic disc: yellow-pink rim around a paler cup.
    canvas.spot(disc_x, disc_y, disc_r, (0.96, 0.74, 0.50), soft=0.25)
    if realistic:
        mean, sd, lo, hi = look.cup_glaucoma if "G" in labels else look.cup_normal
        if "G" in labels:
            mean += look.cup_per_severity * severity["G"]
        cup_ratio = float(np.clip(rng.normal(mean, sd), lo, hi))
    else:
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

    if "M" in labels and (not realistic or severity["M"] > 0.25):  # peripapillary atrophy
        dd = np.hypot(canvas.xx - disc_x, canvas.yy - disc_y)
        towards_macula = (canvas.xx - disc_x) * (macula_x - disc_x) + (canvas.yy - disc_y) * (
            macula_y - disc_y
        )
        towards_macula /= max(math.hypot(macula_x - disc_x, macula_y - disc_y), 1e-6)
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

    artery = rng.uniform(*look.artery_scale_normal) if realistic else 1.0
    if "H" in labels:
        narrowing = look.artery_narrowing * (severity["H"] if realistic else 1.0)
        artery *= 1.0 - narrowing
    _draw_vessels(canvas, a, artery_scale=artery)
    if realistic and rng.uniform() < look.vessel_reflex:  # a young retina's light reflex
        _vessel_reflex(canvas, a, rng)

    if "D" in labels:
        s_d = severity["D"]
        for _ in range(count(look.microaneurysms, s_d)):  # micro-aneurysms and dot haemorrhages
            x, y = _posterior_pole_point(rng, a, 0.55)
            colour = (0.35, 0.02, 0.02) if not realistic else (rng.uniform(0.3, 0.45), 0.03, 0.03)
            canvas.spot(x, y, radius * rng.uniform(*look.microaneurysm_radius), colour, label="D")
        for _ in range(count(look.blots, s_d)):  # blot haemorrhages
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
        for _ in range(count(look.exudate_clusters, s_d)):  # hard exudates, in small clusters
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
        flames = count(look.flames, severity["H"]) if realistic else int(rng.integers(5, 10))
        for x, y, heading in _points_on_vessels(rng, a, flames, near=0.45):
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
        s_a = severity["A"]
        n = count(look.drusen, s_a) if realistic else int(rng.integers(18, 40))
        low, high = look.drusen_radius
        top = low + (high - low) * s_a if realistic else high
        _drusen(canvas, a, rng, n, (low, max(top, low * 1.2)), label="A")
    elif realistic and rng.uniform() < look.normal_drusen:  # a few small hard drusen of age
        _drusen(canvas, a, rng, int(rng.integers(1, 6)), (0.006, 0.012), label=None)

    if "O" in labels:  # laser scars (pale with pigmented rims) or pigment clumps
        s_o = severity["O"]
        if rng.uniform() < 0.6:
            n = count(look.laser_spots, s_o) if realistic else int(rng.integers(25, 50))
            for _ in range(n):
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
            n = count(look.pigment_clumps, s_o) if realistic else int(rng.integers(6, 14))
            _pigment(canvas, a, rng, n, label="O")
    elif realistic and rng.uniform() < look.normal_pigment:  # a benign naevus
        _pigment(canvas, a, rng, int(rng.integers(1, 3)), label=None)

    if lens_dust or (realistic and rng.uniform() < look.dust):  # faint grey smudges
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
        s_c = severity["C"]
        img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
        blur = radius * (look.cataract_blur[0] + look.cataract_blur[1] * s_c)
        blurred = np.asarray(img.filter(ImageFilter.GaussianBlur(blur)), dtype=np.float32)
        if realistic:
            veil = look.cataract_veil[0] + look.cataract_veil[1] * s_c
        else:
            veil = rng.uniform(0.3, 0.45)
        rgb = (1 - veil) * blurred / 255.0 + veil * np.array([0.75, 0.6, 0.5], dtype=np.float32)
        canvas.masks["C"] |= fov

    visible = fov
    if realistic:
        rgb, visible = _acquire(rgb, fov, canvas, a, rng, look, camera)
    rgb = rgb + rng.normal(0, rng.uniform(*look.noise), size=rgb.shape).astype(np.float32)
    rgb = np.where(visible[..., None], np.clip(rgb, 0.0, 1.0), 0.0)
    image = (rgb * 255.0 + 0.5).astype(np.uint8)
    masks = {label: canvas.masks[label] & visible for label in labels}
    return image, masks


def jpeg_quality(rng: np.random.Generator, look: Look) -> int:
    """The JPEG quality a photograph is saved with."""
    low, high = look.jpeg_quality
    return int(rng.integers(low, high + 1)) if high > low else int(low)


def _acquire(
    rgb: np.ndarray,
    fov: np.ndarray,
    canvas: Canvas,
    a: Anatomy,
    rng: np.random.Generator,
    look: Look,
    camera: Camera,
) -> tuple[np.ndarray, np.ndarray]:
    """What the camera does: illumination gradient, cast, exposure, gamma, defocus, the
    frame's crop. Returns the picture and the visible field."""
    h = fov.shape[0]
    phi = rng.uniform(0, 2 * math.pi)
    along = ((canvas.xx - a.cx) * math.cos(phi) + (canvas.yy - a.cy) * math.sin(phi)) / a.radius
    gradient = 1.0 + rng.uniform(*look.gradient) * np.clip(along, -1, 1)
    gains = np.array(camera.gains, dtype=np.float32) * rng.normal(1.0, look.colour_cast_sd, 3)
    exposure = math.exp(rng.normal(0, look.exposure_sd))
    out = np.clip(rgb * (gradient[..., None] * gains * exposure), 0.0, 1.0) ** rng.uniform(
        *look.gamma
    )
    sigma = rng.uniform(*look.defocus) * h / 256
    if sigma > 0.2:
        img = Image.fromarray((np.clip(out, 0, 1) * 255).astype(np.uint8))
        out = np.asarray(img.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32) / 255.0
    visible = fov  # a field larger than the frame is already clipped by it
    if rng.uniform() < look.frame_crop + camera.crop:  # the frame cuts the field's top and bottom
        half = a.radius * rng.uniform(0.78, 0.95)
        visible = visible & (np.abs(canvas.yy - a.cy) <= half)
    return out.astype(np.float32), visible


def _vessel_reflex(canvas: Canvas, a: Anatomy, rng: np.random.Generator) -> None:
    """A thin bright line along the main arcades: the light reflex of a young retina."""
    layer = Image.new("L", (canvas.w, canvas.h), 0)
    draw = ImageDraw.Draw(layer)
    for vessel in a.vessels[:2]:
        for (x0, y0, _), (x1, y1, _) in itertools.pairwise(vessel[: len(vessel) // 2]):
            draw.line([(x0, y0), (x1, y1)], fill=255, width=1)
    alpha = np.asarray(layer.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32) / 255.0
    canvas.blend(alpha * rng.uniform(0.15, 0.35), (0.95, 0.85, 0.75), (0, canvas.h, 0, canvas.w))


def _drusen(
    canvas: Canvas,
    a: Anatomy,
    rng: np.random.Generator,
    n: int,
    size: Range,
    *,
    label: str | None,
) -> None:
    for _ in range(n):
        rr = a.radius * 0.2 * math.sqrt(rng.uniform(0, 1))
        t = rng.uniform(0, 2 * math.pi)
        canvas.spot(
            a.macula_x + rr * math.cos(t),
            a.macula_y + rr * math.sin(t),
            a.radius * rng.uniform(*size),
            (0.95, 0.85, 0.40),
            soft=0.8,
            opacity=0.9,
            label=label,
        )


def _pigment(
    canvas: Canvas, a: Anatomy, rng: np.random.Generator, n: int, *, label: str | None
) -> None:
    for _ in range(n):
        rr = a.radius * rng.uniform(0.3, 0.85)
        t = rng.uniform(0, 2 * math.pi)
        x, y = a.cx + rr * math.cos(t), a.cy + rr * math.sin(t)
        for _ in range(4):
            canvas.spot(
                x + rng.normal(0, a.radius * 0.015),
                y + rng.normal(0, a.radius * 0.015),
                a.radius * rng.uniform(0.01, 0.022),
                (0.12, 0.07, 0.05),
                label=label,
            )
