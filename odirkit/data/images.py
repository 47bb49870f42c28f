"""Fundus image preprocessing and its on-disk cache.

Preprocessing makes a light (white) or transparent surround black, crops the
black border to the field of view, resizes the crop so that its longer side is
``size``, pads it to a square (black, centred) and, optionally, blacks out what
lies outside the inscribed circle (``circle_crop``). JPEGs are decoded in
Pillow's ``draft`` mode, which lets libjpeg reduce a large photograph in the
DCT domain (by 1/2, 1/4 or 1/8) to the smallest scale that still leaves the
field of view at least as large as the output — much faster than decoding it
whole.

The cache keeps each preprocessed image as a ``.npy`` file keyed by the source
file (path, size, modification time) and the preprocessing parameters. It is
written atomically, so processes that build it at the same time never see a
half-written entry, and every later run and experiment reuses it.
"""

from __future__ import annotations

import hashlib
import math
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

from odirkit.errors import DataError, RunError
from odirkit.files import atomic_write, exclusive_lock

CACHE_FORMAT = 4  # 3: field box without text; light surrounds and transparency made black
# 4: a light surround's tolerance measured from the corners' exact colour, not truncated
DRAFT_MARGIN = 1.15
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
FOV_THRESHOLD = 20  # level (of 255) above which a pixel belongs to the field of view ...
MIN_FOV_THRESHOLD = 8  # ... lowered for a dark photograph, down to this
LIGHT_SURROUND = 200  # corners at least this bright in every channel are a light surround
SURROUND_TOLERANCE = 40  # a surround pixel differs from the corners' colour by at most this
MAX_SURROUND = 0.6  # a light region covering more of the picture than this is no surround
FIELD_PIECE = 0.1  # a bright region apart from the field's largest is dropped below this share
SPECK_SIDE = 256  # the side the bright mask is reduced to, to find what lies apart


@dataclass(frozen=True)
class Preprocessing:
    """How a photograph becomes a training image."""

    size: int
    crop_to_fov: bool = True
    circle_crop: bool = False

    def key(self) -> str:
        """The cache's folder name for these settings (format version, size, crop)."""
        circle = "-circle" if self.circle_crop else ""
        return f"v{CACHE_FORMAT}-s{self.size}-fov{int(self.crop_to_fov)}{circle}"


def fov_box(pixels: np.ndarray, threshold: int | None = None) -> tuple[int, int, int, int] | None:
    """Bounding box ``(left, top, right, bottom)`` of the field of view.

    ``pixels`` is ``uint8 [H, W]`` (grey levels) or ``[H, W, 3]`` (then its luma). A
    pixel belongs to the field when it exceeds ``threshold``: by default
    ``FOV_THRESHOLD``, lowered for a dark photograph to an eighth of its bright end
    (never below ``MIN_FOV_THRESHOLD``), so that cropping does not cut into a dim
    field. Rows and columns count when 1% of them is field.
    """
    level = luma(pixels) if pixels.ndim == 3 else pixels
    if not level.size:
        return None
    if threshold is None:
        bright_end = float(np.percentile(level[::4, ::4], 99.5))
        threshold = int(np.clip(bright_end / 8, MIN_FOV_THRESHOLD, FOV_THRESHOLD))
    bright = _without_specks(level > threshold)
    rows = np.flatnonzero(bright.mean(axis=1) > 0.01)
    cols = np.flatnonzero(bright.mean(axis=0) > 0.01)
    if rows.size == 0 or cols.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _without_specks(bright: np.ndarray) -> np.ndarray:
    """The bright mask without what lies apart from the field: burned-in text, labels, a
    camera's marks in the dark margin. Kept: the largest connected region and any other at
    least ``FIELD_PIECE`` of it (a field a shadow cut in two). Found on a mask reduced by
    an integer factor to at most ``SPECK_SIDE`` pixels, so it costs a few milliseconds."""
    step = max(1, max(bright.shape) // SPECK_SIDE)
    small = bright[::step, ::step]
    labels, count = ndimage.label(small)
    if count <= 1:
        return bright
    sizes = ndimage.sum(small, labels, range(1, count + 1))
    apart = np.isin(labels, 1 + np.flatnonzero(sizes < FIELD_PIECE * sizes.max()))
    if not apart.any():
        return bright
    grown = ndimage.binary_dilation(apart)  # the reduced mask's pixels stand for step x step
    drop = np.repeat(np.repeat(grown, step, axis=0), step, axis=1)[
        : bright.shape[0], : bright.shape[1]
    ]
    return bright & ~drop


def luma(pixels: np.ndarray) -> np.ndarray:
    """Grey levels of ``uint8 [H, W, 3]`` as Pillow's ``convert("L")`` gives them (ITU-R 601)."""
    return np.asarray(Image.fromarray(pixels).convert("L"))


def brightest_channel(pixels: np.ndarray) -> np.ndarray:
    """``max(R, G, B)`` per pixel of ``[H, W, 3]`` (``pixels.max(axis=2)``, 20 times faster)."""
    return np.maximum(np.maximum(pixels[..., 0], pixels[..., 1]), pixels[..., 2])


def blacken_light_surround(pixels: np.ndarray) -> np.ndarray:
    """The photograph with a white (or light grey) surround made black, as a fundus
    camera's own surround is; unchanged unless at least three of its corners are light.

    The surround is the near-uniform light region connected to those corners (every
    channel within ``SURROUND_TOLERANCE`` levels of the light corners' median colour), so a
    bright optic disc or lesion inside the field is never touched; a light region over
    ``MAX_SURROUND`` of the picture is no surround. ``uint8 [H, W, 3]``.
    """
    h, w = pixels.shape[:2]
    k = max(1, min(h, w) // 100)
    patches = [pixels[:k, :k], pixels[:k, -k:], pixels[-k:, :k], pixels[-k:, -k:]]
    light = [p.reshape(-1, 3).min(axis=0).min() >= LIGHT_SURROUND for p in patches]
    if sum(light) < 3:
        return pixels
    colour = np.median(
        np.stack(
            [
                p.reshape(-1, 3).mean(axis=0)
                for p, is_light in zip(patches, light, strict=True)
                if is_light
            ]
        ),
        axis=0,
    )
    distance = np.abs(pixels.astype(np.float32) - colour.astype(np.float32))
    near = (distance <= SURROUND_TOLERANCE).all(axis=2)
    labels, _ = ndimage.label(near)
    seeds = {labels[y, x] for y, x in ((0, 0), (0, w - 1), (h - 1, 0), (h - 1, w - 1))}
    surround = np.isin(labels, [s for s in seeds if s > 0])
    if surround.mean() > MAX_SURROUND:  # no field left: a light picture, not a padded one
        return pixels
    out = pixels.copy()
    out[surround] = 0
    return out


def crop_to_square(
    img: Image.Image,
    box: tuple[int, int, int, int] | None,
    size: int,
    resample: Image.Resampling = Image.Resampling.BICUBIC,
) -> Image.Image:
    """Crop to ``box`` (when given), resize so that the longer side is ``size``, and pad
    with black, centred, to ``size`` x ``size``.

    Resizing before padding keeps the padding exactly black (a filter never blurs the
    picture into it), which is how the fundus check tells padding from picture.
    """
    if box is not None:
        img = img.crop(box)
    w, h = img.size
    scale = size / max(w, h)
    fitted = (max(1, round(w * scale)), max(1, round(h * scale)))
    if fitted != (w, h):
        img = img.resize(fitted, resample, reducing_gap=2.0 if resample != 0 else None)
    if fitted == (size, size):
        return img
    square = Image.new(img.mode, (size, size))
    square.paste(img, ((size - fitted[0]) // 2, (size - fitted[1]) // 2))
    return square


def open_photograph(path: str | Path, *, draft: int | None = None) -> Image.Image:
    """Any photograph as 8-bit RGB: JPEG, PNG, TIFF or BMP, 8- or 16-bit, grey, palette
    or colour, turned upright by its EXIF orientation; transparent pixels (an RGBA or
    palette PNG's surround) are black, as a camera's surround is. ``draft`` lets a JPEG
    decode at a reduced scale (libjpeg's DCT-domain reduction) no smaller than that side.

    Raises :class:`DataError` naming the file when it is missing, unreadable, or larger
    than Pillow's decompression-bomb limit (``PIL.Image.MAX_IMAGE_PIXELS`` pixels, twice
    over).
    """
    try:
        with warnings.catch_warnings():
            # Pillow only warns between its limit and twice it, then decodes gigabytes
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                if draft is not None:
                    img.draft("RGB", (draft, draft))
                img = ImageOps.exif_transpose(img)
                img = _eight_bit_rgb(img)
                img.load()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise DataError(
            f"{path}: refused: its header claims more pixels than any photograph has "
            f"(Pillow's limit against decompression bombs: {exc})"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    return img


def _eight_bit_rgb(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer images scaled to 8 bits (not clipped); transparency
    composited onto black; then RGB."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        img = Image.fromarray(np.clip(values * 255.0 / top + 0.5, 0, 255).astype(np.uint8))
    elif img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        top = values.max() if values.max() > 1.0 else 1.0
        img = Image.fromarray(np.clip(values * 255.0 / top + 0.5, 0, 255).astype(np.uint8))
    if "transparency" in img.info or img.mode == "PA":  # a palette or colour-key PNG
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa"):  # (no file opens as "La", which has no RGBA)
        rgba = img.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        img = Image.alpha_composite(black, rgba)
    return img if img.mode == "RGB" else img.convert("RGB")


def preprocess(path: str | Path, prep: Preprocessing) -> np.ndarray:
    """Read one photograph and return it preprocessed: ``uint8 [size, size, 3]``.

    A light surround becomes black (:func:`blacken_light_surround`), the photograph is
    cropped to its field of view (:func:`fov_box`), padded with black to a square,
    centred, and resized. Raises :class:`DataError` naming the file when it is missing
    or unreadable.
    """
    # Reduce in the DCT domain, keeping the field of view (about 0.9 of the shorter
    # side) at least as large as the output.
    img = open_photograph(path, draft=math.ceil(prep.size * DRAFT_MARGIN))
    pixels = blacken_light_surround(np.asarray(img))
    box = fov_box(pixels) if prep.crop_to_fov else None
    img = crop_to_square(Image.fromarray(pixels), box, prep.size)
    array = np.asarray(img, dtype=np.uint8)
    if prep.circle_crop:
        array = array * circle_mask(prep.size)[..., None]
    return array


def preprocess_mask(
    mask_path: str | Path, image_path: str | Path, prep: Preprocessing
) -> np.ndarray:
    """A lesion mask brought into the same frame as its preprocessed image: ``bool [S, S]``.

    A pixel is lesion where the mask's brightest channel is above half of 255, in any
    of the forms masks are published in: grey 0/255, a colour on black (IDRiD's
    segmentation ground truths are red, 255/0/0, on black TIFFs: 76 once made grey),
    16-bit, or an overlay whose background is transparent. A mask whose only levels
    are 0 and 1 is read as 0/1.

    The field-of-view box is found on the full-resolution photograph, applied to
    the mask, which is then padded and resized (nearest neighbour) the same way.

    Raises :class:`DataError` naming the mask file when it cannot be read."""
    pixels = blacken_light_surround(np.asarray(open_photograph(image_path)))
    try:
        with Image.open(mask_path) as m:
            rgb = _eight_bit_rgb(m)
            rgb.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{mask_path}: cannot read the lesion mask ({exc})") from None
    levels = brightest_channel(np.asarray(rgb))
    lesion = levels > (0 if levels.max() == 1 else 127)
    mask = Image.fromarray(lesion.astype(np.uint8) * 255)
    if mask.size != (pixels.shape[1], pixels.shape[0]):
        mask = mask.resize((pixels.shape[1], pixels.shape[0]), Image.Resampling.NEAREST)
    box = fov_box(pixels) if prep.crop_to_fov else None
    mask = crop_to_square(mask, box, prep.size, Image.Resampling.NEAREST)
    return np.asarray(mask) > 127


def circle_mask(size: int) -> np.ndarray:
    """The disc inscribed in a ``size`` x ``size`` square, as 0/1 ``uint8 [size, size]``."""
    centre = (size - 1) / 2
    yy, xx = np.mgrid[0:size, 0:size]
    return (((yy - centre) ** 2 + (xx - centre) ** 2) <= (size / 2) ** 2).astype(np.uint8)


class ImageCache:
    """Preprocessed images on disk, one ``.npy`` per source file and preprocessing."""

    def __init__(self, directory: str | Path, prep: Preprocessing) -> None:
        self.directory = Path(directory) / prep.key()
        self.prep = prep

    @contextmanager
    def building(self) -> Iterator[None]:
        """Hold the cache's lock while building it: when several processes prepare the
        same images, one builds each entry and the others then read it."""
        with exclusive_lock(self.directory / ".lock"):  # a read-only cache: no lock, no writes
            yield

    def entry(self, source: str | Path) -> Path:
        """Where the preprocessed copy of ``source`` lives."""
        path = Path(source).resolve()
        try:
            stat = path.stat()
            stamp = f"{stat.st_size}-{stat.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest = hashlib.sha1(f"{path}|{stamp}".encode()).hexdigest()
        return self.directory / digest[:2] / f"{digest}.npy"

    def get(self, source: str | Path) -> np.ndarray:
        """The preprocessed image, ``uint8 [S, S, 3]``, from the cache or made now (and
        cached; a damaged entry is made again)."""
        entry = self.entry(source)
        if entry.exists():
            try:
                return np.load(entry)
            except (OSError, ValueError):
                pass  # a damaged entry is rebuilt below
        image = preprocess(source, self.prep)
        self._write(entry, image)
        return image

    def _write(self, entry: Path, image: np.ndarray) -> None:
        with suppress(OSError, RunError):  # a read-only cache folder only costs speed
            atomic_write(entry, lambda fh: np.save(fh, image))


@dataclass
class PreparedImages:
    """The preprocessed images of a set of paths, and the paths that failed."""

    images: list[np.ndarray | None]
    failures: dict[int, str]


def prepare_images(
    paths: Sequence[str],
    cache: ImageCache,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> PreparedImages:
    """Preprocess (or read from the cache) every path, in parallel threads.

    Pillow releases the GIL while it decodes and resizes, so threads scale.
    Failures are collected, not raised, so the caller can skip or report them.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    images: list[np.ndarray | None] = [None] * len(paths)
    failures: dict[int, str] = {}

    def work(i: int) -> None:
        try:
            images[i] = cache.get(paths[i])
        except DataError as exc:
            failures[i] = str(exc)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for done, _ in enumerate(pool.map(work, range(len(paths))), start=1):
            if progress:
                progress(done)
    return PreparedImages(images, failures)
