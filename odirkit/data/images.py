"""Fundus image preprocessing and its on-disk cache.

Preprocessing crops the black border to the field of view, pads the crop to a
square (black, centred), resizes it to ``size`` and, optionally, blacks out
what lies outside the inscribed circle (``circle_crop``). JPEGs are decoded in
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from odirkit.errors import DataError, RunError
from odirkit.files import atomic_write, exclusive_lock

CACHE_FORMAT = 1
DRAFT_MARGIN = 1.15
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"})
FOV_THRESHOLD = 20  # grey level (of 255) above which a pixel belongs to the field of view


@dataclass(frozen=True)
class Preprocessing:
    """How a photograph becomes a training image."""

    size: int
    crop_to_fov: bool = True
    circle_crop: bool = False

    def key(self) -> str:
        circle = "-circle" if self.circle_crop else ""
        return f"v{CACHE_FORMAT}-s{self.size}-fov{int(self.crop_to_fov)}{circle}"


def fov_box(gray: np.ndarray, threshold: int = FOV_THRESHOLD) -> tuple[int, int, int, int] | None:
    """Bounding box ``(left, top, right, bottom)`` of the pixels brighter than the border."""
    bright = gray > threshold
    rows = np.flatnonzero(bright.mean(axis=1) > 0.01)
    cols = np.flatnonzero(bright.mean(axis=0) > 0.01)
    if rows.size == 0 or cols.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def crop_to_square(img: Image.Image, box: tuple[int, int, int, int] | None) -> Image.Image:
    """Crop to ``box`` (when given), then pad with black, centred, to a square."""
    if box is not None:
        img = img.crop(box)
    w, h = img.size
    if w == h:
        return img
    side = max(w, h)
    square = Image.new(img.mode, (side, side))
    square.paste(img, ((side - w) // 2, (side - h) // 2))
    return square


def open_photograph(path: str | Path, *, draft: int | None = None) -> Image.Image:
    """Any photograph as 8-bit RGB: JPEG, PNG, TIFF or BMP, 8- or 16-bit, grey, palette
    or colour, turned upright by its EXIF orientation. ``draft`` lets a JPEG decode
    at a reduced scale (libjpeg's DCT-domain reduction) no smaller than that side.

    Raises :class:`DataError` naming the file when it is missing or unreadable.
    """
    try:
        with Image.open(path) as img:
            if draft is not None:
                img.draft("RGB", (draft, draft))
            img = ImageOps.exif_transpose(img)
            img = _eight_bit_rgb(img)
            img.load()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read image ({type(exc).__name__}: {exc})") from None
    return img


def _eight_bit_rgb(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer images scaled to 8 bits (not clipped), then RGB."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(img, dtype=np.float64)
        top = 65535.0 if values.max() > 255 else 255.0
        img = Image.fromarray(np.clip(values * 255.0 / top + 0.5, 0, 255).astype(np.uint8))
    elif img.mode == "F":
        values = np.asarray(img, dtype=np.float64)
        top = values.max() if values.max() > 1.0 else 1.0
        img = Image.fromarray(np.clip(values * 255.0 / top + 0.5, 0, 255).astype(np.uint8))
    return img if img.mode == "RGB" else img.convert("RGB")


def preprocess(path: str | Path, prep: Preprocessing) -> np.ndarray:
    """Read one photograph and return it preprocessed: ``uint8 [size, size, 3]``.

    Raises :class:`DataError` naming the file when it is missing or unreadable.
    """
    # Reduce in the DCT domain, keeping the field of view (about 0.9 of the shorter
    # side) at least as large as the output.
    img = open_photograph(path, draft=math.ceil(prep.size * DRAFT_MARGIN))
    box = fov_box(np.asarray(img.convert("L"))) if prep.crop_to_fov else None
    img = crop_to_square(img, box)
    img = img.resize((prep.size, prep.size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    array = np.asarray(img, dtype=np.uint8)
    if prep.circle_crop:
        array = array * circle_mask(prep.size)[..., None]
    return array


def preprocess_mask(
    mask_path: str | Path, image_path: str | Path, prep: Preprocessing
) -> np.ndarray:
    """A lesion mask brought into the same frame as its preprocessed image: ``bool [S, S]``.

    The field-of-view box is found on the full-resolution photograph, applied to
    the mask, which is then padded and resized (nearest neighbour) the same way.
    """
    gray = np.asarray(open_photograph(image_path).convert("L"))
    try:
        with Image.open(mask_path) as m:
            mask = m.convert("L")
            mask.load()
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{mask_path}: cannot read the lesion mask ({exc})") from None
    if mask.size != (gray.shape[1], gray.shape[0]):
        mask = mask.resize((gray.shape[1], gray.shape[0]), Image.Resampling.NEAREST)
    mask = crop_to_square(mask, fov_box(gray) if prep.crop_to_fov else None)
    mask = mask.resize((prep.size, prep.size), Image.Resampling.NEAREST)
    return np.asarray(mask) > 127


def circle_mask(size: int) -> np.ndarray:
    """The disc inscribed in a ``size`` x ``size`` square, as 0/1 ``uint8``."""
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
        """The preprocessed image, from the cache or made now (and cached)."""
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
