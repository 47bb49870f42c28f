"""Experiment files: TOML loading, schema validation, ``--set`` overrides, variants.

An experiment is one TOML file. Its core tables (``[data]``, ``[model]``,
``[train]``) are validated by the pydantic models below; the keys of a table
that are not core keys are the parameters of the plugin the table names, and
are validated against that plugin's factory signature. ``[variants.NAME]``
tables are merged onto the base, one resolved configuration per variant.

A TOML file names registered plugins only, never an import path or an
expression: opening an experiment cannot run code.
"""

from __future__ import annotations

from odirkit.config.evaluation import (
    COMPARED_METRICS,
    PER_LABEL_METRIC,
    CompareConfig,
    EvalConfig,
    EvaluateOptions,
)
from odirkit.config.experiment import (
    ENTRY_OPTIONS,
    PLUGIN_TABLES,
    ExperimentConfig,
    ExternalData,
    LauncherConfig,
    PluginCall,
    ResolvedVariant,
    TuneConfig,
    TuneRange,
    split_plugin_params,
)
from odirkit.config.external import (
    TRAINING_DATA_KEYS,
    resolve_external,
)
from odirkit.config.loading import (
    load_experiment,
    resolve_document,
)
from odirkit.config.messages import (
    describe_tables,
)
from odirkit.config.overrides import (
    apply_override,
    deep_merge,
    parse_override,
    read_toml,
)
from odirkit.config.schema import (
    DEFAULT_IMAGE_SIZE,
    MONITORS,
    NAME_PATTERN,
    DataConfig,
    ExplainOptions,
    ModelConfig,
    TrainConfig,
)
from odirkit.errors import OdirkitError

__all__ = [
    "COMPARED_METRICS",
    "DEFAULT_IMAGE_SIZE",
    "ENTRY_OPTIONS",
    "MONITORS",
    "NAME_PATTERN",
    "PER_LABEL_METRIC",
    "PLUGIN_TABLES",
    "TRAINING_DATA_KEYS",
    "CompareConfig",
    "DataConfig",
    "EvalConfig",
    "EvaluateOptions",
    "ExperimentConfig",
    "ExplainOptions",
    "ExternalData",
    "LauncherConfig",
    "ModelConfig",
    "OdirkitError",
    "PluginCall",
    "ResolvedVariant",
    "TrainConfig",
    "TuneConfig",
    "TuneRange",
    "apply_override",
    "deep_merge",
    "describe_tables",
    "load_experiment",
    "parse_override",
    "read_toml",
    "resolve_document",
    "resolve_external",
    "split_plugin_params",
]
