"""How a variant was set up: its ``config.json`` (:class:`VariantConfig`) and its
``environment.json`` (:class:`Environment`).

Both are written as they were before they had records (:attr:`Record.WRITTEN` ``python``),
their fields declared in the order the writers give them, so that a file read and written
again is the same text.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field, ValidationError

from odirkit.errors import RunError
from odirkit.runs.documents import RELATIVE_PATHS
from odirkit.runs.records.base import Record, refusal

if TYPE_CHECKING:  # the configuration loads numpy (thresholds): imported where it is read
    from odirkit.config import ExperimentConfig


class VariantConfig(Record):
    """Resolved configuration: a variant's ``config.json``, the experiment as it ran (one
    variant, one seed, one fold), every default filled in; a valid experiment document of
    its own.

    The record types the top level; what the tables hold is the configuration's own schema
    (:mod:`odirkit.config`), not repeated here: :meth:`settings` reads the core tables back
    through it, and :func:`odirkit.config.resolve_document` the whole document, the plugins'
    parameters included (that takes the registry).
    """

    DOCUMENT: ClassVar[str] = "a variant's resolved configuration"
    WRITTEN: ClassVar[Literal["json", "python"]] = "python"

    name: str = ""
    description: str = ""
    seed: int = 0
    seeds: list[int] | None = None
    repeats: int | None = None
    device: str = "auto"
    #: ``[data]``: the core keys, then the dataset plugin's parameters
    data: dict[str, Any] = Field(default_factory=dict)
    #: ``[model]``: the core keys, then the model plugin's parameters
    model: dict[str, Any] = Field(default_factory=dict)
    train: dict[str, Any] = Field(default_factory=dict)
    eval: dict[str, Any] = Field(default_factory=dict)
    compare: dict[str, Any] = Field(default_factory=dict)
    launcher: dict[str, Any] = Field(default_factory=dict)
    tune: dict[str, Any] = Field(default_factory=dict)
    #: the plugins of each list: ``{"name", odirkit's options, the plugin's parameters}``
    augment: list[dict[str, Any]] = Field(default_factory=list)
    explain: list[dict[str, Any]] = Field(default_factory=list)
    log: list[dict[str, Any]] = Field(default_factory=list)
    evaluate: list[dict[str, Any]] = Field(default_factory=list)
    #: the metadata baseline's folder: ``metadata`` (not an experiment key)
    baseline: str | None = None

    def rebased(self, started: str | None) -> VariantConfig:
        """The configuration with its relative data paths (:data:`RELATIVE_PATHS`) made to
        work from here where they do not and do from ``started``, the folder the run
        started in, so that resuming, predicting or explaining works from anywhere."""
        if started is None:
            return self
        for table, key in RELATIVE_PATHS:
            values: dict[str, Any] = getattr(self, table)  # the table, as written
            value = values.get(key)
            if isinstance(value, str) and value and not Path(value).is_absolute():
                here, there = Path(value), Path(started) / value
                if not here.exists() and there.exists():
                    values[key] = str(there)
        return self

    @property
    def augmenters(self) -> list[str]:
        """The augmenter plugins' names, in order."""
        return [str(entry["name"]) for entry in self.augment if entry.get("name")]

    def settings(self, where: str | Path) -> ExperimentConfig:
        """The core tables read back through the configuration's schema
        (:class:`~odirkit.config.ExperimentConfig`), its defaults for keys the file lacks;
        the plugins' parameters are set aside (checking them takes the registry).

        Raises:
            RunError: the file (``where``) does not hold a configuration this odirkit reads,
                naming the field (:meth:`check_complete`, which
                :meth:`~odirkit.runs.VariantDirectory.config` calls on reading, refuses one
                without its dataset or model).
        """
        from odirkit.config import ExperimentConfig, split_plugin_params

        given = self.model_dump(exclude_unset=True, include=set(ExperimentConfig.model_fields))
        core, _ = split_plugin_params(given)
        try:
            return ExperimentConfig.model_validate(core)
        except ValidationError as exc:
            raise refusal(exc, where, self.DOCUMENT) from None

    def check_complete(self, where: str | Path) -> None:
        """Refuse a configuration without ``data.dataset`` or ``model.name``, which every
        resolved configuration holds: filled in with defaults, a resumed, predicting or
        explaining run would build another model than the one it trained.

        Raises:
            RunError: naming the file (``where``) and the missing key.
        """
        for table, key in (("data", "dataset"), ("model", "name")):  # written whole, always
            values = getattr(self, table)
            if not values.get(key):
                raise RunError(
                    f"{where}: not {self.DOCUMENT} as odirkit writes it ({table}.{key} "
                    "missing: the run's settings would silently be the defaults); was "
                    "another file saved over it?"
                )


class PluginVersion(Record):
    """One plugin the registry held when the run started."""

    DOCUMENT: ClassVar[str] = "a plugin entry"

    #: ``dataset``, ``model``, ``augmenter``, ``explainer`` or ``logger``
    kind: str = ""
    name: str = ""
    #: the distribution that registered it, and its version
    distribution: str | None = None
    version: str | None = None


class BrokenPlugin(Record):
    """A plugin that failed to load when the run started."""

    DOCUMENT: ClassVar[str] = "a broken plugin entry"

    #: the entry point
    plugin: str = ""
    distribution: str | None = None
    #: why, in words
    error: str = ""


class GitRevision(Record):
    """The source revision of the git checkout holding the experiment file."""

    DOCUMENT: ClassVar[str] = "a git revision"

    commit: str = ""
    #: whether tracked files had changes not committed
    dirty: bool = False


class Environment(Record):
    """Environment: a variant's ``environment.json``, what the run ran on (a resumed run
    adds ``environment-resumed-<time>.json``, the same document, per start)."""

    DOCUMENT: ClassVar[str] = "a run's environment"
    WRITTEN: ClassVar[Literal["json", "python"]] = "python"

    #: the Python version, ``3.12.3``
    python: str = ""
    platform: str = ""
    machine: str = ""
    cpu_count: int | None = None
    #: torch's intra-op threads
    torch_threads: int | None = None
    #: ``cpu``, or ``cuda (<the GPU's model>)``
    device: str = ""
    #: the CUDA version torch was built with
    cuda: str | None = None
    seed: int | None = None
    #: the versions of the packages a run depends on (``None``: not installed)
    packages: dict[str, str | None] = Field(default_factory=dict)
    plugins: list[PluginVersion] = Field(default_factory=list)
    broken_plugins: list[BrokenPlugin] = Field(default_factory=list)
    #: ``None`` outside a git checkout
    git: GitRevision | None = None
    #: the command line (``sys.argv``)
    command: list[str] = Field(default_factory=list)
    #: where the run started: relative data paths are relative to it
    working_directory: str | None = None
    #: ``{"world_size", "backend"}``: the processes of a distributed run
    distributed: dict[str, Any] | None = None
