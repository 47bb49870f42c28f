"""One fundus photograph drawn whole (:func:`render_eye`): the background, the macula and
the disc, the vessels, each label's lesions where the disease puts them (and benign
look-alikes), a cataract's haze, then what the camera does (:func:`acquire`)."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from odirkit_datasets.fundus_render.anatomy import (
    Anatomy,
    draw_vessels,
    points_on_vessels,
    posterior_pole_point,
    vessel_reflex,
    vessel_tree,
)
from odirkit_datasets.fundus_render.canvas import Canvas, smooth_noise
from odirkit_datasets.fundus_render.looks import EASY, Camera, Look, Range


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
    a.vessels = vessel_tree(rng, a)
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
    draw_vessels(canvas, a, artery_scale=artery)
    if realistic and rng.uniform() < look.vessel_reflex:  # a young retina's light reflex
        vessel_reflex(canvas, a, rng)

    if "D" in labels:
        s_d = severity["D"]
        for _ in range(count(look.microaneurysms, s_d)):  # micro-aneurysms and dot haemorrhages
            x, y = posterior_pole_point(rng, a, 0.55)
            colour = (0.35, 0.02, 0.02) if not realistic else (rng.uniform(0.3, 0.45), 0.03, 0.03)
            canvas.spot(x, y, radius * rng.uniform(*look.microaneurysm_radius), colour, label="D")
        for _ in range(count(look.blots, s_d)):  # blot haemorrhages
            x, y = posterior_pole_point(rng, a, 0.6)
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
            x, y = posterior_pole_point(rng, a, 0.45)
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
        for x, y, heading in points_on_vessels(rng, a, flames, near=0.45):
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
        rgb, visible = acquire(rgb, fov, canvas, a, rng, look, camera)
    rgb = rgb + rng.normal(0, rng.uniform(*look.noise), size=rgb.shape).astype(np.float32)
    rgb = np.where(visible[..., None], np.clip(rgb, 0.0, 1.0), 0.0)
    image = (rgb * 255.0 + 0.5).astype(np.uint8)
    masks = {label: canvas.masks[label] & visible for label in labels}
    return image, masks


def acquire(
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
