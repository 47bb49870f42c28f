"""Plugin parameters: a factory's keyword signature turned into a validator.

A plugin's TOML parameters are the keyword parameters of its factory, with
their type hints and defaults. This module reads them with :mod:`inspect`,
builds a strict pydantic model from them, and turns validation failures into
messages that name the file, the table and the key.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import pydantic

from odirkit.errors import ConfigError, PluginError, closest

REQUIRED = inspect.Parameter.empty


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a plugin factory."""

    name: str
    annotation: Any
    default: Any = REQUIRED

    @property
    def required(self) -> bool:
        """Whether the parameter has no default."""
        return self.default is REQUIRED

    @property
    def type_name(self) -> str:
        """The parameter's type as ``describe`` shows it."""
        return type_name(self.annotation)

    @property
    def constraints(self) -> str:
        """The range the annotation declares (``">= 0, < 1"``), or ``""``."""
        return constraint_text(annotation_metadata(self.annotation))


#: the keys of ``[model]`` below which the model plugin being prepared reads its own: none,
#: or those of a model nested in another (both_eyes' ``backbone_params``)
_MODEL_KEYS: ContextVar[tuple[str, ...]] = ContextVar("model_keys", default=())


def model_key(name: str) -> str:
    """How the user writes a model parameter, for a plugin's messages: ``[model] weights``,
    or ``[model] backbone_params.weights`` for a backbone inside ``both_eyes``."""
    return "[model] " + ".".join((*_MODEL_KEYS.get(), name))


@contextmanager
def model_keys_under(key: str) -> Iterator[None]:
    """Within the block, :func:`model_key` names the keys below ``[model] <key>`` (a model
    plugin nested in another, which passes it that table of parameters)."""
    token = _MODEL_KEYS.set((*_MODEL_KEYS.get(), key))
    try:
        yield
    finally:
        _MODEL_KEYS.reset(token)


@dataclass(frozen=True)
class Where:
    """Where a table came from, for error messages: a file, a table path and a note."""

    file: str | None
    table: str
    note: str = ""

    def __str__(self) -> str:
        prefix = f"{self.file}: " if self.file else ""
        note = f" ({self.note})" if self.note else ""
        return f"{prefix}[{self.table or 'top level'}]{note}"


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="), ("multiple_of", "multiple of"))
_LENGTHS = (("min_length", "at least {} item(s)"), ("max_length", "at most {} item(s)"))


def annotation_metadata(annotation: Any) -> list[Any]:
    """The constraints an ``Annotated[...]`` hint carries (pydantic ``Field``s unpacked)."""
    if typing.get_origin(annotation) is not typing.Annotated:
        return []
    found: list[Any] = []
    for extra in typing.get_args(annotation)[1:]:
        found.extend(getattr(extra, "metadata", None) or [extra])
    return found


def constraint_text(metadata: Iterable[Any]) -> str:
    """``Ge(0)``, ``Lt(1)`` and the like as ``">= 0, < 1"``."""
    parts, lengths = [], {}
    for item in metadata:
        for attribute, symbol in _BOUNDS:
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(f"{symbol} {value}")
        for attribute, _ in _LENGTHS:
            value = getattr(item, attribute, None)
            if value is not None:
                lengths[attribute] = value
    if lengths and lengths.get("min_length") == lengths.get("max_length"):
        parts.append(f"{lengths['min_length']} items")
    else:
        parts += [template.format(lengths[a]) for a, template in _LENGTHS if a in lengths]
    return ", ".join(parts)


def type_name(annotation: Any, metadata: Iterable[Any] = ()) -> str:
    """A short, readable name for a type hint (``list[int]``, ``'sgd' | 'adam'``), with
    the range it declares (``float (>= 0, < 1)``)."""
    if typing.get_origin(annotation) is typing.Annotated:
        metadata = [*annotation_metadata(annotation), *metadata]
        annotation = typing.get_args(annotation)[0]
    name = _bare_type_name(annotation)
    bounds = constraint_text(metadata)
    return f"{name} ({bounds})" if bounds else name


def _bare_type_name(annotation: Any) -> str:
    if annotation is Any or annotation is REQUIRED:
        return "any"
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(v) for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def factory_params(factory: Callable[..., Any], *, supplied: Iterable[str] = ()) -> list[Param]:
    """The TOML parameters of ``factory``: its keyword parameters minus ``supplied``.

    ``supplied`` names the parameters odirkit passes itself (``num_classes``
    for models, ``root`` for datasets). Raises :class:`PluginError` when the
    signature cannot be read or takes ``*args``.
    """
    target = factory.__init__ if inspect.isclass(factory) else factory
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError) as exc:
        raise PluginError(f"cannot read the signature of factory {factory!r}: {exc}") from exc
    try:
        hints = typing.get_type_hints(target, include_extras=True)  # keep Annotated ranges
    except Exception as exc:  # unresolvable forward references and the like
        raise PluginError(
            f"cannot resolve the type hints of factory {_qualname(factory)}: {exc}"
        ) from exc
    skip = set(supplied)
    params: list[Param] = []
    for p in signature.parameters.values():
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            raise PluginError(
                f"factory {_qualname(factory)} takes *{p.name}; "
                "plugin parameters must be keyword parameters"
            )
        if p.kind is inspect.Parameter.VAR_KEYWORD or p.name in skip or p.name == "self":
            continue
        params.append(Param(p.name, hints.get(p.name, Any), p.default))
    return params


def params_model(params: list[Param]) -> type[pydantic.BaseModel]:
    """A strict pydantic model validating a table against ``params`` (its class name is never
    shown: messages are built from each error's key)."""
    fields: dict[str, Any] = {
        p.name: (p.annotation, ... if p.required else p.default) for p in params
    }
    # a float is finite unless its parameter says otherwise (Field(allow_inf_nan=True))
    config = pydantic.ConfigDict(
        extra="forbid", strict=True, arbitrary_types_allowed=True, allow_inf_nan=False
    )
    return pydantic.create_model("PluginParams", __config__=config, **fields)


def validate_params(
    params: list[Param],
    values: Mapping[str, Any],
    *,
    where: Where | Callable[[str], Where],
    owner: str,
) -> dict[str, Any]:
    """Validate ``values`` against ``params``; return them with defaults filled in.

    ``owner`` names the plugin for the messages (``"model 'cnn'"``); ``where`` is the
    table, or for each key the table that set it (a variant's, ``--set``).

    Raises:
        ConfigError: one line per bad key, each naming its file, table and key.
    """
    model = params_model(params)
    try:
        validated = model(**dict(values))
    except pydantic.ValidationError as exc:
        raise ConfigError(
            validation_message(exc, where=where, valid_keys=[p.name for p in params], owner=owner)
        ) from None
    return {p.name: getattr(validated, p.name) for p in params}


def validation_message(
    exc: pydantic.ValidationError,
    *,
    where: Where | Callable[[str], Where],
    valid_keys: Iterable[str],
    owner: str = "",
) -> str:
    """Turn a pydantic error into one line per problem, naming file, table and key
    (``where(key)`` when the table depends on the key)."""
    lines = []
    for err in exc.errors():
        key = ".".join(str(part) for part in err["loc"]) or "(table)"
        place = where(key.split(".")[0]) if callable(where) else where
        lines.append(describe_error(err, where=place, key=key, valid_keys=valid_keys, owner=owner))
    return "\n".join(lines)


def describe_error(
    err: Mapping[str, Any],
    *,
    where: Where,
    key: str,
    valid_keys: Iterable[str],
    owner: str = "",
) -> str:
    """One pydantic error as a sentence: unknown key, missing key, or a bad value."""
    who = f" for {owner}" if owner else ""
    kind = err["type"]
    if kind == "extra_forbidden":
        valid = sorted(valid_keys)
        hint = closest(key.split(".")[-1], valid)
        return f"{where} unknown key {key!r}{who}{hint}; valid keys: {', '.join(valid) or 'none'}"
    if kind == "missing":
        return f"{where} missing required key {key!r}{who}"
    got = err.get("input")
    message = err["msg"][:1].lower() + err["msg"][1:]
    return f"{where} {key}: {message}, got {got!r} ({type(got).__name__}){who}"


def _qualname(obj: Any) -> str:
    """``module.qualified.name`` of a function or class; the ``repr`` of anything else."""
    if not hasattr(obj, "__qualname__"):  # a functools.partial, a callable instance
        return repr(obj)
    return f"{getattr(obj, '__module__', '?')}.{obj.__qualname__}"
