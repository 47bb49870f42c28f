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

One job per module: ``looks`` (the parameters: :class:`Look`, :class:`Camera`),
``canvas`` (the picture and its lesion masks), ``anatomy`` (landmarks, vessels, where
lesions sit) and ``eye`` (:func:`render_eye`, one photograph drawn whole).
"""

from odirkit_datasets.fundus_render.anatomy import Anatomy
from odirkit_datasets.fundus_render.canvas import Canvas, Colour, smooth_noise
from odirkit_datasets.fundus_render.eye import render_eye
from odirkit_datasets.fundus_render.looks import (
    CAMERAS,
    EASY,
    LOOKS,
    REALISTIC,
    Camera,
    Look,
    Range,
    jpeg_quality,
)

__all__ = [
    "CAMERAS",
    "EASY",
    "LOOKS",
    "REALISTIC",
    "Anatomy",
    "Camera",
    "Canvas",
    "Colour",
    "Look",
    "Range",
    "jpeg_quality",
    "render_eye",
    "smooth_noise",
]
