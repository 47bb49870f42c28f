"""An eye's anatomy: the landmarks' positions (:class:`Anatomy`), the vessel tree leaving
the disc in four arcades, the vessels drawn, and the places where lesions sit."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from odirkit_datasets.fundus_render.canvas import Canvas


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


def vessel_tree(rng: np.random.Generator, a: Anatomy) -> list[list[tuple[float, float, float]]]:
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


def draw_vessels(canvas: Canvas, a: Anatomy, artery_scale: float = 1.0) -> None:
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


def points_on_vessels(rng: np.random.Generator, a: Anatomy, n: int, near: float):
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


def posterior_pole_point(
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


def vessel_reflex(canvas: Canvas, a: Anatomy, rng: np.random.Generator) -> None:
    """A thin bright line along the main arcades: the light reflex of a young retina."""
    layer = Image.new("L", (canvas.w, canvas.h), 0)
    draw = ImageDraw.Draw(layer)
    for vessel in a.vessels[:2]:
        for (x0, y0, _), (x1, y1, _) in itertools.pairwise(vessel[: len(vessel) // 2]):
            draw.line([(x0, y0), (x1, y1)], fill=255, width=1)
    alpha = np.asarray(layer.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32) / 255.0
    canvas.blend(alpha * rng.uniform(0.15, 0.35), (0.95, 0.85, 0.75), (0, canvas.h, 0, canvas.w))
