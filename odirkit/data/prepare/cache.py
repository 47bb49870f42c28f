"""Where a dataset's preprocessed images are cached: beside the data, or in the user's cache
when the data cannot be written.
"""

from __future__ import annotations

import functools
import hashlib
import tempfile
from pathlib import Path

import platformdirs

from odirkit.config import ResolvedVariant
from odirkit.console import info
from odirkit.data.images import Preprocessing

CACHE_FOLDER = ".odirkit-cache"


def preprocessing_of(exp: ResolvedVariant) -> Preprocessing:
    """How the experiment's photographs become its training images (``[data]``)."""
    cfg = exp.config.data
    return Preprocessing(
        size=exp.image_size, crop_to_fov=cfg.crop_to_fov, circle_crop=cfg.circle_crop
    )


def cache_root(exp: ResolvedVariant) -> Path:
    """The folder shared by runs for preprocessed images and other reusable work.

    ``data.cache_dir`` when given; else ``<data.root>/.odirkit-cache``, or, when the
    dataset lies on storage this user cannot write (read-only, shared), a folder of the
    user's cache directory (platformdirs) named after the dataset's path, said once.
    """
    cfg = exp.config.data
    return cache_for(cfg.root, cfg.cache_dir)


def cache_for(root: str | Path, cache_dir: str | None = None) -> Path:
    """The cache folder of the dataset in ``root``: ``cache_dir`` when given (see
    :func:`cache_root`)."""
    if cache_dir:
        return Path(cache_dir)
    return _default_cache(str(Path(root).resolve()))


@functools.cache
def _default_cache(root: str) -> Path:
    beside = Path(root) / CACHE_FOLDER
    if _writable(beside):
        return beside
    digest = hashlib.sha1(root.encode()).hexdigest()[:12]
    fallback = Path(platformdirs.user_cache_dir("odirkit")) / f"{Path(root).name}-{digest}"
    info(f"{root} is not writable: preprocessed images are cached in {fallback}")
    return fallback


def _writable(folder: Path) -> bool:
    """Whether this process may create ``folder`` (if need be) and write a file in it.

    A folder whose permissions grant no one write access is read-only storage, even to
    a process that could write there anyway (root).
    """
    existing = folder if folder.exists() else folder.parent
    try:
        if not existing.stat().st_mode & 0o222:
            return False
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True
