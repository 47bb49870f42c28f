"""Where a validation error came from (file, variant, table) and the message that names it."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pydantic

from odirkit.config.evaluation import (
    CompareConfig,
    EvalConfig,
    EvaluateOptions,
)
from odirkit.config.experiment import (
    ExperimentConfig,
    LauncherConfig,
    TuneConfig,
)
from odirkit.config.schema import (
    NAME_PATTERN,
    DataConfig,
    ModelConfig,
    TrainConfig,
)
from odirkit.params import Where, describe_error


@dataclass
class _Origin:
    """Where each key of a merged variant came from, for error messages."""

    file: str | None
    variant: str | None
    variant_table: dict[str, Any]
    override_keys: list[list[str | int]]

    def where(self, table: str, key: str | None = None) -> Where:
        """The table that set ``table.key``: --set, the variant's table or the base."""
        path = [p for p in [*table.split("."), key or ""] if p]
        for okey in self.override_keys:
            okey_parts = [str(p) for p in okey]
            if okey_parts[: len(path)] == path[: len(okey_parts)]:
                return Where(self.file, table, "from --set")
        if self.variant is None:
            return Where(self.file, table)
        if _has_path(self.variant_table, path):
            return Where(
                self.file, ".".join(["variants", self.variant, *table.split(".")]).rstrip(".")
            )
        return Where(self.file, table, f"variant {self.variant!r}")


def _has_path(table: Mapping[str, Any], path: Sequence[str]) -> bool:
    node: Any = table
    for part in path:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return False
    return True


def _core_message(exc: pydantic.ValidationError, origin: _Origin) -> str:
    lines = []
    tables = {name for name in ExperimentConfig.model_fields if _model_at([name]) is not None}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if len(loc) == 1 and loc[0] in tables and err["type"] == "value_error":
            # a rule across a table's keys: the table, and the rule's own words
            lines.append(f"{origin.where(loc[0])} {err['msg'].removeprefix('Value error, ')}")
            continue
        if len(loc) > 1 and loc[0] in tables:
            table, key = loc[0], ".".join(loc[1:])
        else:
            table, key = "", ".".join(loc)
        valid = _fields(_model_at([table] if table else []))
        where = origin.where(table, key.split(".")[0])
        lines.append(describe_error(err, where=where, key=key, valid_keys=valid))
    return "\n".join(lines)


def _model_at(parts: Sequence[str]) -> type[pydantic.BaseModel] | None:
    model: Any = ExperimentConfig
    for part in parts:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        model = fields[part].annotation
    return model if isinstance(model, type) and issubclass(model, pydantic.BaseModel) else None


def _fields(model: Any) -> list[str]:
    fields = getattr(model, "model_fields", None)
    return list(fields) if fields else []


def _matches_name(name: str) -> bool:

    return re.match(NAME_PATTERN, name) is not None


def describe_tables() -> dict[str, type[pydantic.BaseModel]]:
    """The core tables, for ``odirkit describe`` and the TOML reference."""
    return {
        "top level": ExperimentConfig,
        "data": DataConfig,
        "model": ModelConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
        "compare": CompareConfig,
        "launcher": LauncherConfig,
        "tune": TuneConfig,
        "evaluate": EvaluateOptions,
    }
