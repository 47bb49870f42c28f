"""odirkit: plugin-based experiments for ocular disease recognition from fundus photographs.

The public surface for plugin authors and scripts::

    import odirkit

    @odirkit.hookimpl
    def odirkit_register_models(register):
        register("tinynet", build_tinynet, summary="A two-layer CNN", cam_layer="features.3")
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from odirkit.errors import (
    ConfigError,
    DataError,
    NotApplicable,
    OdirkitError,
    PluginConflictError,
    PluginError,
    RunError,
    TrainingDiverged,
)
from odirkit.hookspecs import hookimpl, hookspec
from odirkit.labels import LABEL_NAMES, LABELS
from odirkit.plugins import BrokenPlugin, PluginSpec, Registry, get_registry

try:
    __version__ = version("odirkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = [
    "LABELS",
    "LABEL_NAMES",
    "BrokenPlugin",
    "ConfigError",
    "DataError",
    "NotApplicable",
    "OdirkitError",
    "PluginConflictError",
    "PluginError",
    "PluginSpec",
    "Registry",
    "RunError",
    "TrainingDiverged",
    "__version__",
    "get_registry",
    "hookimpl",
    "hookspec",
]
