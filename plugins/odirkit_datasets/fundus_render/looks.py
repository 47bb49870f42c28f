"""How hard the pictures are: a :class:`Look` (``EASY``, ``REALISTIC``), every parameter of
how lesions and acquisition are drawn, and the :class:`Camera` of each photograph."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from odirkit_datasets.fundus_render.canvas import Colour

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


def jpeg_quality(rng: np.random.Generator, look: Look) -> int:
    """The JPEG quality a photograph is saved with."""
    low, high = look.jpeg_quality
    return int(rng.integers(low, high + 1)) if high > low else int(low)
