"""The plugin author's toolkit: everything of odirkit's a plugin may use besides ``odirkit``.

A plugin, built-in or third-party, imports ``odirkit`` (``hookimpl``, the
errors, ``LABELS``) and this module, and nothing else of odirkit: the rest is
internal and may change. odirkit's own plugins are held to the same rule (a
test enforces it)::

    import odirkit
    from odirkit.api import ExpandContext, ExtraSamples, derive_seed, progress_bar
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from odirkit.params import model_key
    from odirkit.seeding import derive_seed, generator_for
    from odirkit.tracking import RunInfo, flatten

#: where each name lives; imported on first use, so that loading the plugins (which
#: ``odirkit list-plugins`` does) pays for what they use, not for matplotlib and the rest
_HOMES = {
    "ExpandContext": "odirkit.augment",
    "ExtraSamples": "odirkit.augment",
    "images_to_uint8": "odirkit.augment",
    "info": "odirkit.console",
    "progress_bar": "odirkit.console",
    "warn": "odirkit.console",
    "IMAGE_SUFFIXES": "odirkit.data.images",
    "Preprocessing": "odirkit.data.images",
    "preprocess": "odirkit.data.images",
    "BothEyes": "odirkit.eyes",
    "backbone_meta": "odirkit.eyes",
    "backbone_params": "odirkit.eyes",
    "build_backbone": "odirkit.eyes",
    "prepare_backbone": "odirkit.eyes",
    "save_figure": "odirkit.figures",
    "atomic_write": "odirkit.files",
    "write_json": "odirkit.files",
    "write_text": "odirkit.files",
    "model_key": "odirkit.params",
    "derive_seed": "odirkit.seeding",
    "generator_for": "odirkit.seeding",
    "RunInfo": "odirkit.tracking",
    "flatten": "odirkit.tracking",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'odirkit.api' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # once
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
    "model_key",
    "prepare_backbone",
    "preprocess",
    "progress_bar",
    "save_figure",
    "warn",
    "write_json",
    "write_text",
]
