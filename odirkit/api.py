"""The plugin author's toolkit: everything of odirkit's a plugin may use besides ``odirkit``.

A plugin, built-in or third-party, imports ``odirkit`` (``hookimpl``, the
errors, ``LABELS``) and this module, and nothing else of odirkit: the rest is
internal and may change. odirkit's own plugins are held to the same rule (a
test enforces it)::

    import odirkit
    from odirkit.api import ExpandContext, ExtraSamples, derive_seed, progress_bar
"""

from __future__ import annotations

from odirkit.augment import ExpandContext, ExtraSamples, images_to_uint8
from odirkit.console import info, progress_bar, warn
from odirkit.data.images import IMAGE_SUFFIXES, Preprocessing, preprocess
from odirkit.eyes import (
    BothEyes,
    backbone_meta,
    backbone_params,
    build_backbone,
    prepare_backbone,
)
from odirkit.figures import save_figure
from odirkit.files import atomic_write, write_json, write_text
from odirkit.seeding import derive_seed, generator_for
from odirkit.tracking import RunInfo, flatten

__all__ = [
    "IMAGE_SUFFIXES",
    "BothEyes",
    "ExpandContext",
    "ExtraSamples",
    "Preprocessing",
    "RunInfo",
    "atomic_write",
    "backbone_meta",
    "backbone_params",
    "build_backbone",
    "derive_seed",
    "flatten",
    "generator_for",
    "images_to_uint8",
    "info",
    "prepare_backbone",
    "preprocess",
    "progress_bar",
    "save_figure",
    "warn",
    "write_json",
    "write_text",
]
