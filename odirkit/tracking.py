"""Experiment trackers: logger plugins told what a run does, without ever failing it.

A logger plugin (``odirkit_register_loggers``; an experiment lists them as
``[[log]]`` tables) returns an object with these methods, each optional:

- ``start(run: RunInfo) -> dict | None``: the run begins; the returned dict is
  kept in the variant folder and handed back as ``run.resumed`` when the run is
  resumed, so the logger continues the same tracked run (an MLflow run id);
- ``log_epoch(epoch: int, metrics: dict[str, float])``: after each epoch, the
  training loss and the validation (and, if asked, test) metrics;
- ``log_final(final: dict)``: ``metrics.json`` (the test scores with their intervals);
- ``log_files(paths: list[Path])``: files the run wrote (figures, report,
  configuration, explanation grid, GAN samples);
- ``log_external(name: str, result: dict)``: the run validated on another collection
  (``[[evaluate]]``, ``odirkit evaluate``): ``result`` is that validation's
  ``metrics.json`` (scores under ``final``, the change from the internal test under
  ``comparison``);
- ``close()``: nothing more will come.

The :class:`Tracker` calls every logger on rank 0 only. A logger that raises
(a server down, a disk full) gets one warning naming it and is switched off for
the rest of the run: the run's results never depend on its loggers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from odirkit.console import warn
from odirkit.files import write_json
from odirkit.runs.names import LOGGERS

#: where each logger's state (for a resumed run) is kept, in the variant folder
STATE_FILE = LOGGERS


@dataclass(frozen=True)
class RunInfo:
    """What a logger learns when a run starts."""

    experiment: str
    variant: str
    seed: int
    config: Mapping[str, Any]  # the resolved configuration
    environment: Mapping[str, Any]  # versions, plugins, device, git commit
    directory: Path  # the variant folder
    resumed: Mapping[str, Any] | None = None  # what this logger's start returned last time

    @property
    def git_commit(self) -> str | None:
        """The commit the run's code came from, if it came from a git checkout."""
        git = self.environment.get("git") or {}
        return git.get("commit") if isinstance(git, Mapping) else None


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.01}}`` -> ``{"train.lr": 0.01}`` (lists kept whole)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


@dataclass
class _Entry:
    key: str  # "<position>-<plugin name>": one entry of [[log]]
    name: str
    logger: Any
    alive: bool = True


@dataclass
class Tracker:
    """The loggers of one run, called safely."""

    entries: list[_Entry] = field(default_factory=list)
    directory: Path | None = None

    @classmethod
    def build(cls, calls: Sequence[Any], *, enabled: bool = True) -> Tracker:
        """Build each ``[[log]]`` plugin (on rank 0; elsewhere, a tracker that does nothing).

        A logger whose factory fails is reported and left out, like one that fails later.
        """
        tracker = cls()
        if not enabled:
            return tracker
        for i, call in enumerate(calls):
            try:
                logger = call.build()
            except Exception as exc:  # an optional extra missing, a bad URI, ...
                warn(f"logger {call.name!r} could not start ({exc}); the run goes on without it")
                continue
            tracker.entries.append(_Entry(f"{i}-{call.name}", call.name, logger))
        return tracker

    def __bool__(self) -> bool:
        return any(e.alive for e in self.entries)

    def _call(self, entry: _Entry, method: str, *args: Any) -> Any:
        handler = getattr(entry.logger, method, None)
        if not entry.alive or handler is None:
            return None
        try:
            return handler(*args)
        except Exception as exc:
            entry.alive = False
            warn(
                f"logger {entry.name!r} failed in {method} ({type(exc).__name__}: {exc}); "
                "it is switched off for the rest of this run"
            )
            return None

    def start(self, run: RunInfo) -> None:
        """Start every logger (continuing the tracked run a resumed run had)."""
        self.directory = run.directory
        saved = self._saved()
        for entry in self.entries:
            state = self._call(entry, "start", replace(run, resumed=saved.get(entry.key)))
            if isinstance(state, Mapping):
                saved[entry.key] = dict(state)
        if saved and self.directory is not None:
            write_json(self.directory / STATE_FILE, saved)

    def _saved(self) -> dict[str, Any]:
        if self.directory is None:
            return {}
        try:
            return json.loads((self.directory / STATE_FILE).read_text())
        except (OSError, ValueError):
            return {}

    def epoch(self, epoch: int, metrics: Mapping[str, Any]) -> None:
        """Give every logger one epoch's figures."""
        numbers = {
            k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and k != "epoch"
        }
        for entry in self.entries:
            self._call(entry, "log_epoch", epoch, numbers)

    def final(self, final: Mapping[str, Any]) -> None:
        """Give every logger the test figures."""
        for entry in self.entries:
            self._call(entry, "log_final", final)

    def external(self, name: str, result: Mapping[str, Any]) -> None:
        """Give every logger an external validation's figures."""
        for entry in self.entries:
            self._call(entry, "log_external", name, result)

    def files(self, paths: Sequence[Path]) -> None:
        """Give every logger files to keep (the report, figures)."""
        existing = [Path(p) for p in paths if Path(p).is_file()]
        if existing:
            for entry in self.entries:
                self._call(entry, "log_files", existing)

    def close(self) -> None:
        """End every logger's tracked run."""
        for entry in self.entries:
            self._call(entry, "close")
            entry.alive = False
