"""Reading TOML and applying --set overrides and variant tables to a document."""

from __future__ import annotations

import copy
import datetime
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from odirkit.errors import ConfigError


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error names the file, line and column.

    Raises :class:`ConfigError` for a file that is missing, a folder, not UTF-8, unreadable,
    not TOML, or empty."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark (Windows editors) is fine
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not an experiment file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if not doc:
        raise ConfigError(
            f"{path}: the experiment file is empty (no key, only comments or nothing); "
            "start from experiments/quickstart.toml, or see docs/experiments.md"
        )
    return doc


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``"train.epochs=2"`` -> ``(["train", "epochs"], 2)``; values are TOML values.

    A value that is not valid TOML is taken as a string (unless it is braced as a table,
    ``{...``, or bracketed as a list, ``[...]``: then it is an error saying so), so
    ``data.root=data/odir5k`` needs no quotes; so is one that TOML reads as a date or a
    time (``data.root=2024-06-01``): no odirkit key takes a date.

    Raises :class:`ConfigError` for text without ``=``, an empty key part, or a braced or
    bracketed value that is not TOML."""
    key, sep, raw_value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=2")
    parts: list[str | int] = []
    for part in key.split("."):
        if not part:
            raise ConfigError(f"--set {text!r}: empty part in key {key!r}")
        parts.append(int(part) if part.isdigit() else part)
    raw_value = raw_value.strip()
    try:
        value = tomllib.loads(f"v = {raw_value}")["v"]
    except tomllib.TOMLDecodeError as exc:
        braced = raw_value.startswith("{") or (
            raw_value.startswith("[") and raw_value.endswith("]")
        )
        if braced:  # meant as a TOML table or list: say what is wrong with it
            reason = str(exc).split(" (at ")[0]
            raise ConfigError(
                f"--set {text!r}: the value is not a valid TOML inline table or list "
                f"({reason}); text inside it is quoted, e.g. "
                f"""--set 'data.mapping={{ "0" = "N", "1-4" = "D" }}'"""
            ) from None
        value = raw_value
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date too
        value = raw_value
    return parts, value


def apply_override(doc: dict[str, Any], path: Sequence[str | int], value: Any, text: str) -> None:
    """Set ``doc[path] = value``, creating tables on the way.

    Raises :class:`ConfigError` (quoting ``text``) when the path runs through a value that is
    not a table, or past the end of a list."""
    node: Any = doc
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise ConfigError(f"--set {text!r}: no item {part} in {_dotted(path[:i])}")
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {text!r}: {_dotted(path[:i])} is not a table")
        if part not in node:
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last > len(node):
            raise ConfigError(f"--set {text!r}: no item {last} in {_dotted(path[:-1])}")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        node[str(last)] = value
    else:
        raise ConfigError(f"--set {text!r}: {_dotted(path[:-1])} is not a table")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (arrays included) is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path) or "the top level"
