"""The datasets of [[evaluate]]: resolved like the training data, with the training data's keys
they may not change.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pydantic

from odirkit.config.calls import (
    _resolve_plugin,
)
from odirkit.config.evaluation import (
    EvaluateOptions,
)
from odirkit.config.experiment import (
    ExternalData,
)
from odirkit.config.messages import (
    _matches_name,
    _Origin,
)
from odirkit.config.overrides import (
    parse_override,
)
from odirkit.config.schema import (
    DataConfig,
)
from odirkit.errors import ConfigError
from odirkit.params import describe_error
from odirkit.plugins import Registry

#: keys of [data] that describe training, not a collection: ignored by odirkit evaluate --data
TRAINING_DATA_KEYS = tuple(
    k for k in DataConfig.model_fields if k not in EvaluateOptions.model_fields
)


def resolve_external(
    table: Mapping[str, Any],
    registry: Registry,
    *,
    source: str | None,
    table_name: str = "data",
    overrides: Sequence[str] = (),
) -> ExternalData:
    """An external collection from a ``[data]``-like table (``odirkit evaluate --data FILE``):
    odirkit's keys of ``[[evaluate]]`` and the dataset plugin's; keys of ``[data]`` that only
    concern training (labels, image_size, ...) are left out, since the run's own apply."""
    entry = {k: v for k, v in table.items() if k not in TRAINING_DATA_KEYS}
    origin = _Origin(source, None, {}, [parse_override(o)[0] for o in overrides])
    return _resolve_external(registry, entry, origin, table_name)


def _resolve_external(
    registry: Registry, entry: Mapping[str, Any], origin: _Origin, table: str
) -> ExternalData:
    entry = dict(entry)
    own = {k: entry.pop(k) for k in list(entry) if k in EvaluateOptions.model_fields}
    try:
        options = EvaluateOptions(**own)
    except pydantic.ValidationError as exc:
        raise ConfigError(
            "\n".join(
                describe_error(
                    err,
                    where=origin.where(table, str(err["loc"][0]) if err["loc"] else None),
                    key=".".join(str(p) for p in err["loc"]) or "(table)",
                    valid_keys=EvaluateOptions.model_fields,
                )
                for err in exc.errors()
            )
        ) from None
    call = _resolve_plugin(
        registry,
        "dataset",
        options.dataset,
        entry,
        origin,
        table,
        core_keys=list(EvaluateOptions.model_fields),
        name_key="dataset",
    )
    name = options.name or _folder_name(options.root) or options.dataset
    return ExternalData(name, options, call, str(origin.where(table)))


def _folder_name(root: str) -> str:
    """The last part of ``root`` as a result name (letters, digits, '_', '-', '.')."""
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", Path(root).resolve().name).strip("-.")
    return name if _matches_name(name) else ""
