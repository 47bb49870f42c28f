"""The plugin manager: discovery through entry points, registries, broken plugins.

Every plugin, built-in or third-party, is an entry point of group ``odirkit``
pointing at a module with ``@odirkit.hookimpl`` functions. Each entry point is
loaded on its own: one that fails to import, to pass pluggy's validation or
to register is recorded as a :class:`BrokenPlugin` and skipped, so the rest
keeps working. ``strict=True`` (the ``--strict`` flag, or the environment
variable ``ODIRKIT_STRICT_PLUGINS=1``) turns any broken plugin into an error.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pluggy

from odirkit import hookspecs
from odirkit.contract import check_meta
from odirkit.errors import OdirkitError, PluginConflictError, PluginError, closest
from odirkit.params import Param, Where, factory_params, validate_params

ENTRY_POINT_GROUP = "odirkit"
STRICT_ENV = "ODIRKIT_STRICT_PLUGINS"

#: kind -> the hook that registers plugins of that kind
KIND_HOOKS: dict[str, str] = {
    "model": "odirkit_register_models",
    "augmenter": "odirkit_register_augmenters",
    "explainer": "odirkit_register_explainers",
    "dataset": "odirkit_register_datasets",
    "logger": "odirkit_register_loggers",
}
KINDS: tuple[str, ...] = tuple(KIND_HOOKS)

#: parameters odirkit passes to a factory itself, per kind: not TOML parameters
SUPPLIED_PARAMS: dict[str, tuple[str, ...]] = {
    "model": ("num_classes",),
    "augmenter": (),
    "explainer": (),
    "dataset": ("root",),
    "logger": (),
}

_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_.\-]*$")


@dataclass(frozen=True)
class Source:
    """Where a plugin came from: its entry point and the distribution providing it."""

    plugin: str
    distribution: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        if self.distribution is None:
            return f"{self.plugin} (registered in-process)"
        return f"{self.distribution} {self.version}"


@dataclass(frozen=True)
class PluginSpec:
    """One registered plugin: its kind, name, factory and what it declared."""

    kind: str
    name: str
    factory: Callable[..., Any]
    summary: str
    meta: Mapping[str, Any]
    source: Source

    @cached_property
    def params(self) -> list[Param]:
        """The plugin's TOML parameters (the factory's keyword parameters)."""
        return factory_params(self.factory, supplied=SUPPLIED_PARAMS[self.kind])

    @property
    def label(self) -> str:
        """The plugin as messages name it (``model 'cnn'``)."""
        return f"{self.kind} {self.name!r}"

    def validate(
        self, values: Mapping[str, Any], *, where: Where | Callable[[str], Where]
    ) -> dict[str, Any]:
        """Check a TOML table against the parameters; return it with defaults filled in."""
        return validate_params(self.params, values, where=where, owner=self.label)

    def declared_meta(self) -> dict[str, Any]:
        """What the plugin declared, for people: no callables, no test settings."""
        return {k: v for k, v in self.meta.items() if not callable(v) and not k.startswith("test_")}

    def meta_for(self, params: Mapping[str, Any], *, where: Any = None) -> dict[str, Any]:
        """The meta for these parameters: ``meta``, updated by ``meta["meta_for"](params)``
        when the plugin declares one (for facts that depend on a parameter, such as the
        input size of a timm architecture).

        Raises :class:`PluginError` when ``meta_for`` fails (its own odirkit errors name
        ``where``)."""
        meta = {k: v for k, v in self.meta.items() if k != "meta_for"}
        resolver = self.meta.get("meta_for")
        if resolver is not None:
            try:
                found = resolver(dict(params))
                meta.update(
                    check_meta(self.kind, self.name, found, origin=f"from {self.source}: meta_for")
                )
            except OdirkitError as exc:
                raise exc.at(where) from None
            except Exception as exc:
                raise PluginError(
                    f"{self.label} from {self.source}: meta_for failed: {type(exc).__name__}: {exc}"
                ) from exc
        return meta

    def build(self, **kwargs: Any) -> Any:
        """Call the factory; an exception in it becomes a :class:`PluginError`."""
        try:
            return self.factory(**kwargs)
        except OdirkitError:
            raise
        except Exception as exc:
            raise PluginError(
                f"{self.label} from {self.source} failed to build: {type(exc).__name__}: {exc}"
            ) from exc


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be loaded or registered, and why."""

    plugin: str
    source: Source
    stage: str  # "import", "validate", "register" or "conflict"
    error: str
    details: str = ""


@dataclass
class Registry:
    """All plugins known to this process, by kind and name."""

    strict: bool = False
    _specs: dict[tuple[str, str], PluginSpec] = field(default_factory=dict)
    _conflicts: dict[tuple[str, str], list[Source]] = field(default_factory=dict)
    broken: list[BrokenPlugin] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)

    # -- discovery -------------------------------------------------------

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> None:
        """Load every installed entry point of ``group``, each on its own."""
        entry_points = sorted(
            importlib.metadata.entry_points(group=group),
            key=lambda ep: (ep.dist.name if ep.dist else "", ep.name),
        )
        for ep in entry_points:
            dist = ep.dist
            source = Source(
                plugin=ep.name,
                distribution=dist.name if dist else None,
                version=dist.version if dist else None,
            )
            try:
                module = ep.load()
            except BaseException as exc:  # a plugin's import may raise anything
                if isinstance(exc, KeyboardInterrupt):
                    raise
                self._broken(
                    BrokenPlugin(
                        ep.name,
                        source,
                        "import",
                        f"cannot import {ep.value!r}: {type(exc).__name__}: {exc}",
                        traceback.format_exc(),
                    )
                )
                continue
            self.add_plugin(module, name=ep.name, source=source)

    def add_plugin(self, plugin: object, *, name: str, source: Source | None = None) -> bool:
        """Register one plugin object (a module or any object with hookimpls).

        Returns whether it was registered; a failure is recorded in
        :attr:`broken` (or raised when the registry is strict).
        """
        source = source or Source(plugin=name)
        # Two distributions may both call an entry point "models": qualify the pluggy name.
        pm_name = f"{source.distribution}:{name}" if source.distribution else name
        try:
            self.pm.register(plugin, name=pm_name)
        except (pluggy.PluginValidationError, ValueError) as exc:
            self._broken(BrokenPlugin(name, source, "validate", _one_line(exc)))
            return False
        unknown = [
            caller.name for caller in self.pm.get_hookcallers(plugin) or [] if caller.spec is None
        ]
        if unknown:
            self.pm.unregister(plugin)
            hints = "".join(closest(hook, KIND_HOOKS.values()) for hook in unknown)
            self._broken(
                BrokenPlugin(
                    name,
                    source,
                    "validate",
                    f"implements unknown hook(s) {', '.join(unknown)}{hints}",
                )
            )
            return False
        staged: list[PluginSpec] = []
        try:
            for kind, hook_name in KIND_HOOKS.items():
                others = [p for p in self.pm.get_plugins() if p is not plugin]
                caller = self.pm.subset_hook_caller(hook_name, remove_plugins=others)
                caller(register=_Registrar(kind, source, staged))
        except Exception as exc:
            self.pm.unregister(plugin)
            self._broken(
                BrokenPlugin(
                    name,
                    source,
                    "register",
                    f"failed while registering: {type(exc).__name__}: {exc}",
                    traceback.format_exc(),
                )
            )
            return False
        for spec in staged:
            self._add_spec(spec)
        return True

    def _add_spec(self, spec: PluginSpec) -> None:
        key = (spec.kind, spec.name)
        if key in self._conflicts:
            self._conflicts[key].append(spec.source)
            return
        existing = self._specs.get(key)
        if existing is None:
            self._specs[key] = spec
            return
        del self._specs[key]
        self._conflicts[key] = [existing.source, spec.source]
        message = self._conflict_message(spec.kind, spec.name)
        self._broken(BrokenPlugin(spec.source.plugin, spec.source, "conflict", message))

    def _conflict_message(self, kind: str, name: str) -> str:
        sources = self._conflicts[(kind, name)]
        return (
            f"{kind} {name!r} is registered by more than one plugin: "
            + " and ".join(f"{s.plugin!r} from {s}" for s in sources)
            + "; uninstall one of them"
        )

    def _broken(self, broken: BrokenPlugin) -> None:
        self.broken.append(broken)
        if self.strict:
            raise PluginError(
                f"broken plugin {broken.plugin!r} ({broken.source}): {broken.error}\n"
                f"(strict mode: --strict or {STRICT_ENV}=1 makes any broken plugin fatal)"
            )

    # -- lookup ----------------------------------------------------------

    def get(self, kind: str, name: str, *, where: Where | None = None) -> PluginSpec:
        """The plugin of ``kind`` called ``name``; a clear error when there is none.

        Raises :class:`PluginError` for an unknown kind or name (with the closest names),
        :class:`PluginConflictError` when two plugins claim the name."""
        if kind not in KIND_HOOKS:
            raise PluginError(
                f"unknown plugin kind {kind!r}{closest(kind, KINDS)}; kinds: {', '.join(KINDS)}"
            )
        prefix = f"{where} " if where else ""
        if (kind, name) in self._conflicts:
            raise PluginConflictError(prefix + self._conflict_message(kind, name))
        spec = self._specs.get((kind, name))
        if spec is None:
            names = self.names(kind)
            broken = [b for b in self.broken if b.plugin == name]
            extra = (
                f"; a plugin called {name!r} is installed but broken: {broken[0].error}"
                if broken
                else ""
            )
            raise PluginError(
                f"{prefix}unknown {kind} {name!r}{closest(name, names)}; "
                f"available: {', '.join(names) or 'none'}{extra}"
            )
        return spec

    def names(self, kind: str) -> list[str]:
        """The registered names of a kind, sorted."""
        return sorted(name for k, name in self._specs if k == kind)

    def specs(self, kind: str | None = None) -> list[PluginSpec]:
        """Registered plugins, sorted by kind then name."""
        order = {k: i for i, k in enumerate(KINDS)}
        chosen = [s for s in self._specs.values() if kind is None or s.kind == kind]
        return sorted(chosen, key=lambda s: (order[s.kind], s.name))


@dataclass
class _Registrar:
    """The ``register`` callback handed to one plugin's hook for one kind."""

    kind: str
    source: Source
    staged: list[PluginSpec]

    def __call__(self, name: str, factory: Any, *, summary: str = "", **meta: Any) -> None:
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            raise PluginError(
                f"invalid {self.kind} name {name!r}: use lower-case letters, digits, '_', '-', '.'"
            )
        if not callable(factory):
            raise PluginError(f"{self.kind} {name!r}: factory {factory!r} is not callable")
        if not isinstance(summary, str):
            raise PluginError(f"{self.kind} {name!r}: summary must be a string")
        checked = check_meta(self.kind, name, meta)  # a misspelled keyword breaks the plugin
        spec = PluginSpec(self.kind, name, factory, summary, checked, self.source)
        spec.params  # noqa: B018 - read the signature now, so a bad one breaks the plugin here
        self.staged.append(spec)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


_registry: Registry | None = None


def strict_from_env() -> bool:
    """Whether ``ODIRKIT_STRICT_PLUGINS`` asks to fail on a broken plugin."""
    return os.environ.get(STRICT_ENV, "").strip().lower() in {"1", "true", "yes", "on"}


def get_registry(*, strict: bool | None = None) -> Registry:
    """The process-wide registry, loaded from entry points on first use."""
    global _registry
    if strict is None:
        strict = strict_from_env()
    if _registry is None or (strict and not _registry.strict):
        registry = Registry(strict=strict)
        registry.load_entry_points()
        _registry = registry
    return _registry


def reset_registry() -> None:
    """Forget the process-wide registry (tests, or after installing a plugin)."""
    global _registry
    _registry = None
