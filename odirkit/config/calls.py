"""A plugin's table resolved into a PluginCall: the plugin found, its parameters validated
against its signature.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pydantic

from odirkit.config.experiment import (
    ENTRY_OPTIONS,
    PluginCall,
)
from odirkit.config.messages import (
    _Origin,
)
from odirkit.errors import ConfigError, closest
from odirkit.params import Where, describe_error
from odirkit.plugins import Registry


def _resolve_plugin(
    registry: Registry,
    kind: str,
    name: str,
    params: dict[str, Any],
    origin: _Origin,
    table: str,
    *,
    core_keys: Iterable[str],
    name_key: str,
) -> PluginCall:
    spec = registry.get(kind, name, where=origin.where(table, name_key))
    plugin_keys = [p.name for p in spec.params]
    valid = sorted({*core_keys, *plugin_keys})
    for key in params:
        if key not in plugin_keys:
            raise ConfigError(
                f"{origin.where(table, key)} unknown key {key!r} for {spec.label}"
                f"{closest(key, valid)}; valid keys: {', '.join(valid)}"
            )
    validated = spec.validate(params, where=lambda key: origin.where(table, key))
    return PluginCall(spec, validated, Where(origin.file, table))


def _resolve_entry(
    registry: Registry, kind: str, entry: dict[str, Any], origin: _Origin, table: str
) -> PluginCall:
    entry = dict(entry)
    name = entry.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(
            f'{origin.where(table)} each {table.split(".")[0]} entry needs name = "<{kind} plugin>"'
        )
    options_model = ENTRY_OPTIONS.get(kind)
    options: dict[str, Any] = {}
    if options_model is not None:
        own = {k: entry.pop(k) for k in list(entry) if k in options_model.model_fields}
        try:
            options = options_model(**own).model_dump()
        except pydantic.ValidationError as exc:
            raise ConfigError(
                "\n".join(
                    describe_error(
                        err,
                        where=origin.where(table, str(err["loc"][0])),
                        key=".".join(str(p) for p in err["loc"]),
                        valid_keys=options_model.model_fields,
                    )
                    for err in exc.errors()
                )
            ) from None
    core = ["name", *(options_model.model_fields if options_model else [])]
    call = _resolve_plugin(
        registry, kind, name, entry, origin, table, core_keys=core, name_key="name"
    )
    return PluginCall(call.spec, call.params, call.where, options)
