"""Loading an experiment: one resolved configuration per variant, seed and fold, its plugins'
parameters validated.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydantic

from odirkit.config.calls import (
    _resolve_entry,
    _resolve_plugin,
)
from odirkit.config.evaluation import (
    PER_LABEL_METRIC,
)
from odirkit.config.experiment import (
    PLUGIN_TABLES,
    ExperimentConfig,
    PluginCall,
    ResolvedVariant,
    split_plugin_params,
)
from odirkit.config.external import (
    _resolve_external,
)
from odirkit.config.messages import (
    _core_message,
    _fields,
    _matches_name,
    _Origin,
)
from odirkit.config.overrides import (
    apply_override,
    deep_merge,
    parse_override,
    read_toml,
)
from odirkit.config.schema import (
    DEFAULT_IMAGE_SIZE,
    DataConfig,
    ModelConfig,
)
from odirkit.errors import ConfigError, closest
from odirkit.plugins import Registry


def load_experiment(
    path: str | Path,
    registry: Registry,
    *,
    overrides: Iterable[str] = (),
    variants: Iterable[str] | None = None,
) -> list[ResolvedVariant]:
    """Read, override, merge and validate an experiment file: one result per variant."""
    doc = read_toml(path)
    doc.setdefault("name", Path(path).stem)
    return resolve_document(doc, registry, source=str(path), overrides=overrides, variants=variants)


def resolve_document(
    doc: dict[str, Any],
    registry: Registry,
    *,
    source: str | None,
    overrides: Iterable[str] = (),
    variants: Iterable[str] | None = None,
) -> list[ResolvedVariant]:
    """Validate a parsed experiment document (see :func:`load_experiment`).

    Raises :class:`ConfigError` naming the source and the table: malformed or unknown
    variants, a ``[compare]`` baseline or metric that does not fit, and every error of the
    tables' validation."""
    doc = copy.deepcopy(doc)
    parsed = [(text, *parse_override(text)) for text in overrides]
    # "--set variants.gan.x=1" edits one variant; any other key edits every variant.
    for text, key, value in parsed:
        if key[0] == "variants":
            apply_override(doc, key, value, text)
    later = [(text, key, value) for text, key, value in parsed if key[0] != "variants"]

    variant_tables = doc.pop("variants", {})
    if not isinstance(variant_tables, dict):
        raise ConfigError(
            f"{source}: 'variants' must be a table of tables, e.g. [variants.augmented]"
        )
    for vname, table in variant_tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [variants.{vname}] must be a table")
        if not _matches_name(vname):
            raise ConfigError(
                f"{source}: [variants.{vname}] variant names use letters, digits, '_', '-', '.'"
            )
        for forbidden in ("name", "variants"):
            if forbidden in table:
                raise ConfigError(f"{source}: [variants.{vname}] cannot set {forbidden!r}")

    names = list(variant_tables) or ["default"]
    if variants is not None:
        wanted = list(variants)
        for v in wanted:
            if v not in names:
                raise ConfigError(
                    f"{source}: no variant {v!r}{closest(v, names)}; variants: {', '.join(names)}"
                )
        names = [n for n in names if n in wanted]

    resolved = []
    for vname in names:
        vtable = variant_tables.get(vname, {})
        merged = deep_merge(doc, vtable)
        for text, key, value in later:
            apply_override(merged, key, value, text)
        origin = _Origin(
            source, vname if variant_tables else None, vtable, [k for _, k, _ in later]
        )
        for exp in _expand_seeds(_resolve_variant(merged, registry, vname, origin)):
            resolved.extend(_expand_folds(exp))
    every = list(variant_tables) or ["default"]
    for exp in resolved[:1]:
        labels = exp.config.data.labels
        for metric in exp.config.compare.metrics:
            if PER_LABEL_METRIC.fullmatch(metric) and metric[-1] not in labels:
                raise ConfigError(
                    f"{source}: [compare] metrics names {metric!r}, but the experiment's "
                    f"labels are {', '.join(labels)}"
                )
    baseline = resolved[0].config.compare.baseline if resolved else None
    if baseline is not None and baseline not in every:
        raise ConfigError(
            f"{source}: [compare] baseline = {baseline!r} is not a variant"
            f"{closest(baseline, every)}; variants: {', '.join(every)}"
        )
    return resolved


def _expand_seeds(exp: ResolvedVariant) -> list[ResolvedVariant]:
    """``seeds = [...]`` or ``repeats = N``: one resolved variant per seed,
    ``<variant>-seed<k>``."""
    seeds = exp.config.run_seeds
    if seeds is None:
        return [exp]
    expanded = []
    for seed in seeds:
        config = exp.config.model_copy(deep=True)
        config.seed = seed
        config.seeds = config.repeats = None  # the expanded run is one seed (and resumes as one)
        expanded.append(replace(exp, config=config, variant=f"{exp.variant}-seed{seed}"))
    return expanded


def _expand_folds(exp: ResolvedVariant) -> list[ResolvedVariant]:
    """``data.folds = k`` without ``data.fold``: one experiment per held-out fold."""
    data = exp.config.data
    if not data.folds or data.fold is not None:
        return [exp]
    expanded = []
    for fold in range(data.folds):
        config = exp.config.model_copy(deep=True)
        config.data.fold = fold
        expanded.append(replace(exp, config=config, variant=f"{exp.variant}-fold{fold}"))
    return expanded


def _resolve_variant(
    doc: dict[str, Any], registry: Registry, variant: str, origin: _Origin
) -> ResolvedVariant:
    for table in PLUGIN_TABLES:
        value = doc.get(table, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{origin.where('')} {table!r} must be a table, got {value!r}")
    core_doc, plugin_params = split_plugin_params(copy.deepcopy(doc))
    try:
        config = ExperimentConfig(**core_doc)
    except pydantic.ValidationError as exc:
        raise ConfigError(_core_message(exc, origin)) from None

    dataset = _resolve_plugin(
        registry,
        "dataset",
        config.data.dataset,
        plugin_params["data"],
        origin,
        "data",
        core_keys=_fields(DataConfig),
        name_key="dataset",
    )
    model = _resolve_plugin(
        registry,
        "model",
        config.model.name,
        plugin_params["model"],
        origin,
        "model",
        core_keys=_fields(ModelConfig),
        name_key="name",
    )
    augmenters = [
        _resolve_entry(registry, "augmenter", entry, origin, f"augment.{i}")
        for i, entry in enumerate(config.augment)
    ]
    explainers = [
        _resolve_entry(registry, "explainer", entry, origin, f"explain.{i}")
        for i, entry in enumerate(config.explain)
    ]
    loggers = [
        _resolve_entry(registry, "logger", entry, origin, f"log.{i}")
        for i, entry in enumerate(config.log)
    ]
    tta_augmenters = []
    for i, entry in enumerate(config.eval.tta):
        if not isinstance(entry, dict):
            continue
        call = _resolve_entry(registry, "augmenter", entry, origin, f"eval.tta.{i}")
        if not call.spec.meta.get("deterministic", False):
            raise ConfigError(
                f"{origin.where('eval', 'tta')} augmenter {call.name!r} does not declare itself "
                "deterministic per call (register(..., deterministic=True)), so it cannot be "
                'a test-time view; use "rotate:DEG"'
            )
        tta_augmenters.append(call)
    _settle_image_size(config, model, plugin_params["model"])
    if model.meta.get("eyes", 1) == 2 and config.data.level != "patient":
        raise ConfigError(
            f"{origin.where('model', 'name')} {model.name!r} sees both eyes of a patient and "
            'predicts the patient\'s labels: set data.level = "patient"'
        )
    external = [
        _resolve_external(registry, entry, origin, f"evaluate.{i}")
        for i, entry in enumerate(config.evaluate)
    ]
    names = [e.name for e in external]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"{origin.where('evaluate')} two [[evaluate]] entries are named {name!r}; give "
                'each its own name = "..."'
            )
    return ResolvedVariant(
        config=config,
        variant=variant,
        dataset=dataset,
        model=model,
        augmenters=augmenters,
        explainers=explainers,
        source=origin.file,
        loggers=loggers,
        tta_augmenters=tta_augmenters,
        external=external,
    )


def _settle_image_size(config: ExperimentConfig, model: PluginCall, model_table: dict) -> None:
    """One image size for data and model: data.image_size, else the model's own."""
    takes_size = any(p.name == "input_size" for p in model.spec.params)
    if config.data.image_size is None:
        if takes_size and "input_size" in model_table:
            size = model.params["input_size"]
        else:
            size = model.meta.get("input_size") or (
                model.params.get("input_size") if takes_size else None
            )
        config.data.image_size = int(size or DEFAULT_IMAGE_SIZE)
    if takes_size and "input_size" not in model_table:
        model.params["input_size"] = config.data.image_size
