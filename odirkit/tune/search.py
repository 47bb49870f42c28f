"""A hyperparameter search on validation only: an Optuna study, trials as --set overrides,
pruning per epoch, best.toml and one final test scoring.
"""

from __future__ import annotations

import json
import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from filelock import FileLock

from odirkit.config import ResolvedVariant, TuneRange, load_experiment
from odirkit.console import info, warn
from odirkit.engine.interrupt import RunInterrupted
from odirkit.engine.loop import LOWER_IS_BETTER
from odirkit.engine.variant import run_variant
from odirkit.errors import ConfigError, OdirkitError, RunError
from odirkit.experiment import run_experiment, start_run
from odirkit.files import write_json, write_text
from odirkit.launch import require
from odirkit.plugins import Registry
from odirkit.runs import RunDirectory, process_alive
from odirkit.runs.names import SearchFiles
from odirkit.runs.records import TrialDescription, VariantConfig
from odirkit.seeding import Stream, derive_seed

#: keys a trial sets whatever the search: no test scores before the end, no loggers
TRIAL_OVERRIDES = ("train.test_every_epoch=false", "log=[]")


#: what a search may not change
FORBIDDEN = ("name", "seed", "seeds", "repeats", "tune", "launcher", "data.shuffle_test_labels")


class TrialFailed(Exception):
    """A trial's training failed (it diverged, a drawn value was refused): the study
    records it as failed and goes on."""


@dataclass
class TuneOutcome:
    """What a worker leaves: the study and, once the search is complete, the best trial,
    ``best.toml`` and the final run (test scored once)."""

    folder: Path
    study: str
    storage: str
    metric: str
    direction: str
    trials: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] | None = None
    best_file: Path | None = None
    final: Any = None  # an ExperimentRun
    waiting: bool = False  # other workers still run trials


def toml_value(value: Any) -> str:
    """A drawn value as a TOML literal for ``--set``."""
    import tomli_w

    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def suggest(trial: Any, key: str, spec: TuneRange) -> Any:
    """Draw one value of ``key`` from its range."""
    if spec.log is not None:
        return trial.suggest_float(key, spec.log[0], spec.log[1], log=True)
    if spec.range is not None:
        return trial.suggest_float(key, spec.range[0], spec.range[1])
    if spec.integer is not None:
        return trial.suggest_int(key, spec.integer[0], spec.integer[1])
    assert spec.choice is not None
    return trial.suggest_categorical(key, list(spec.choice))


def first_values(params: dict[str, TuneRange]) -> dict[str, Any]:
    """One value of each range (its low end, or first choice): to check the keys."""
    out: dict[str, Any] = {}
    for key, spec in params.items():
        bounds = spec.log or spec.range or spec.integer or spec.choice
        assert bounds is not None
        out[key] = bounds[0]
    return out


class Search:
    """One worker of a study: the experiment, its ranges, the storage."""

    def __init__(
        self,
        file: Path,
        registry: Registry,
        *,
        out: Path = Path("runs"),
        overrides: tuple[str, ...] | list[str] = (),
        variant: str | None = None,
        storage: str | None = None,
        study: str | None = None,
    ) -> None:

        self.args = {
            "file": str(Path(file).resolve()),
            "out": str(Path(out).resolve()),
            "overrides": list(overrides),
            "variant": variant,
            "storage": storage,
            "study": study,
        }
        self.optuna = require("optuna", "tune")
        self.optuna.logging.set_verbosity(self.optuna.logging.WARNING)
        self.file = Path(file)
        self.registry = registry
        self.overrides = list(overrides)
        self.variants = [variant] if variant else None
        resolved = load_experiment(file, registry, overrides=self.overrides, variants=self.variants)
        if len(resolved) != 1:
            names = ", ".join(e.variant for e in resolved)
            raise ConfigError(
                f"{file}: odirkit tune searches one variant and one seed; this file runs "
                f"{len(resolved)} ({names}): pick one with --variant, or set one seed"
            )
        self.base = resolved[0]
        cfg = self.base.config
        self.params = dict(cfg.tune.params)
        if not self.params:
            raise ConfigError(
                f'{file}: [tune] names no parameter; add one, e.g. "train.lr" = '
                "{ log = [1e-4, 1e-1] }"
            )
        for key in self.params:
            if key.split(".")[0] in FORBIDDEN or key in FORBIDDEN:
                raise ConfigError(f'{file}: [tune] "{key}" cannot be searched')
        self.experiment(first_values(self.params))  # every key exists and takes its values
        self.metric = cfg.tune.metric or cfg.train.monitor
        self.column = f"val_{self.metric}"
        direction = cfg.tune.direction
        if direction == "auto":
            direction = "minimize" if self.metric in LOWER_IS_BETTER else "maximize"
        self.direction = direction
        self.name = (
            study
            or cfg.tune.study
            or (self.base.name if self.base.variant == "default" else f"{self.base.name}-{variant}")
        )
        self.folder = Path(out) / self.base.name / "tune" / self.name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.storage = (
            storage or cfg.tune.storage or f"sqlite:///{(self.folder / 'study.db').resolve()}"
        )
        self.cfg = cfg

    # -- experiments ---------------------------------------------------------------------

    def sets(self, values: dict[str, Any]) -> list[str]:
        """The drawn values as ``--set`` overrides."""
        return [f"{key}={toml_value(value)}" for key, value in values.items()]

    def experiment(self, values: dict[str, Any], *, trial: bool = True) -> ResolvedVariant:
        """The experiment with the drawn values (and, for a trial, no test scoring)."""
        extra = [*self.sets(values), *(TRIAL_OVERRIDES if trial else ())]
        (exp,) = load_experiment(
            self.file, self.registry, overrides=[*self.overrides, *extra], variants=self.variants
        )
        return exp

    # -- the study -----------------------------------------------------------------------

    def open_study(self) -> Any:
        """The Optuna study, created in its storage when it is new.

        Raises :class:`ConfigError` for a storage Optuna cannot open, or a study created for
        the other direction."""

        optuna = self.optuna
        cfg = self.cfg.tune
        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=cfg.startup_trials, n_warmup_steps=0)
            if cfg.prune
            else optuna.pruners.NopPruner()
        )
        with FileLock(str(self.folder / ".lock")):  # two workers must not create it twice
            try:
                study = optuna.create_study(
                    study_name=self.name,
                    storage=self.storage,
                    direction=self.direction,
                    pruner=pruner,
                    load_if_exists=True,
                )
            except (ValueError, ImportError, RuntimeError) as exc:
                raise ConfigError(f"--storage {self.storage}: {exc}") from None
            if study.direction.name.lower() != self.direction:
                raise ConfigError(
                    f"study {self.name!r} in {self.storage} was created to "
                    f"{study.direction.name.lower()}, not to {self.direction}: name another "
                    "study (--study)"
                )
            study.set_user_attr("metric", self.metric)
            study.set_user_attr("experiment", str(self.file))
            study.sampler = self.sampler(len(study.trials))
        return study

    def sampler(self, number: int) -> Any:
        """The sampler of trial ``number``: its draws depend on the seed, the trial's number
        and the study's history, not on which worker runs it (so two workers never draw
        alike, and one worker draws as it did before)."""
        seed = derive_seed(self.cfg.seed, Stream.TUNE_TRIALS, number) % (2**32)
        return self.optuna.samplers.TPESampler(seed=seed)

    def objective(self, trial: Any) -> float:
        """One trial: train with the drawn values, report each epoch for pruning, return the
        validation value.

        Raises :class:`ConfigError` when the runs have no column for ``[tune] metric``;
        ``TrialFailed`` and ``optuna.TrialPruned`` end the trial."""

        optuna = self.optuna
        values = {key: suggest(trial, key, spec) for key, spec in self.params.items()}
        run = RunDirectory(self.folder / f"trial-{trial.number:04d}")
        trial.set_user_attr("folder", str(run.path.resolve()))
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        shown = ", ".join(f"{k} = {toml_value(v)}" for k, v in values.items())
        info(f"trial {trial.number}: {shown}")
        try:
            exp = self.experiment(values)
            run.path.mkdir(parents=True, exist_ok=False)
            vdir = run.variant(exp.variant)
            TrialDescription(
                name=exp.name,
                variants=[exp.variant],
                trial=trial.number,
                values=values,
                tune=self.name,
            ).write(run.run_file)
            VariantConfig(**exp.to_dict()).write(vdir.config_file)

            def report(epoch: int, row: dict[str, Any]) -> None:
                value = row.get(self.column)
                if isinstance(value, int | float) and math.isfinite(value):
                    trial.report(float(value), epoch)
                    if trial.should_prune():
                        trial.set_user_attr("epochs", epoch)
                        raise optuna.TrialPruned(f"pruned after epoch {epoch}")

            result = run_variant(
                exp, vdir, registry=self.registry, on_epoch=report, score_test=False
            )
        except RunInterrupted:
            raise
        except OdirkitError as exc:
            trial.set_user_attr("error", str(exc))
            warn(f"trial {trial.number} failed: {exc}")
            raise TrialFailed(str(exc)) from None
        history = result.history
        if self.column not in history:
            raise ConfigError(
                f"{self.file}: [tune] metric {self.metric!r}: the runs have no "
                f"{self.column} column (no validation patients, or no such metric)"
            )
        column = history[self.column].astype(float)
        value = column.min() if self.direction == "minimize" else column.max()
        trial.set_user_attr("epochs", len(history))
        if not math.isfinite(value):
            raise TrialFailed(f"trial {trial.number}: {self.column} was never a number")
        return float(value)

    def fail_lost_trials(self, study: Any) -> None:
        """A trial still RUNNING whose worker was a process of this host that has gone
        (killed outright) is marked failed, so the search can complete."""

        here = socket.gethostname()
        for t in study.get_trials(deepcopy=False, states=(self.optuna.trial.TrialState.RUNNING,)):
            host, _, pid = str(t.user_attrs.get("worker", "")).rpartition(":")
            if host == here and pid.isdigit() and not process_alive(int(pid)):
                study.tell(t.number, state=self.optuna.trial.TrialState.FAIL)
                warn(f"trial {t.number}: its worker (pid {pid}) is gone; marked failed")

    def trial_rows(self, study: Any) -> list[dict[str, Any]]:
        """Each trial of the study as ``tune.json`` lists it."""
        return [
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": t.params,
                "epochs": t.user_attrs.get("epochs"),
                "worker": t.user_attrs.get("worker"),
                "folder": t.user_attrs.get("folder"),
                **({"error": t.user_attrs["error"]} if "error" in t.user_attrs else {}),
            }
            for t in study.get_trials(deepcopy=False)
        ]

    # -- a worker ------------------------------------------------------------------------

    def run(self, trials: int, *, final: bool = True) -> TuneOutcome:
        """Run trials until the study holds ``trials`` of them (every worker's, counted
        under a lock, so the total is exact); the worker that sees the search complete
        writes the best experiment and runs it once."""

        optuna = self.optuna
        state = optuna.trial.TrialState
        study = self.open_study()
        counted = (state.COMPLETE, state.PRUNED, state.FAIL, state.RUNNING)
        ran = 0
        while True:
            with FileLock(str(self.folder / ".lock")):
                self.fail_lost_trials(study)
                if len(study.get_trials(deepcopy=False, states=counted)) >= trials:
                    break
                trial = study.ask()  # the storage numbers it: no trial runs twice
            study.sampler = self.sampler(trial.number)  # draws at suggest time
            ran += 1
            try:
                value = self.objective(trial)
            except optuna.TrialPruned:
                study.tell(trial, state=state.PRUNED)
                info(f"trial {trial.number}: pruned after epoch {trial.user_attrs.get('epochs')}")
            except TrialFailed:
                study.tell(trial, state=state.FAIL)
            except BaseException:
                study.tell(trial, state=state.FAIL)
                raise
            else:
                study.tell(trial, value)
                info(f"trial {trial.number}: validation {self.metric} {value:.6g}")
        if not ran:
            info(f"study {self.name!r} already holds {trials} trial(s) or more")
        return self.conclude(study, final=final)

    def conclude(self, study: Any, *, final: bool) -> TuneOutcome:
        """The study's outcome: the trials, the best values, ``best.toml``, and (with ``final``)
        one run scored on test.

        Raises :class:`RunError` when no trial completed."""

        outcome = TuneOutcome(self.folder, self.name, self.storage, self.metric, self.direction)
        state = self.optuna.trial.TrialState
        with FileLock(str(self.folder / ".lock")):
            self.fail_lost_trials(study)
            outcome.trials = self.trial_rows(study)
            if study.get_trials(deepcopy=False, states=(state.RUNNING,)):
                outcome.waiting = True  # the last worker to end writes the best
                return outcome
            if not study.get_trials(deepcopy=False, states=(state.COMPLETE,)):
                raise RunError(
                    f"study {self.name!r}: no trial completed ({len(outcome.trials)} pruned or "
                    f"failed); see {self.folder}"
                )
            best = study.best_trial
            outcome.best = {
                "number": best.number,
                "value": best.value,
                "params": best.params,
                "folder": best.user_attrs.get("folder"),
            }
            outcome.best_file = self.folder / SearchFiles.BEST
            summary = self.folder / SearchFiles.STUDY
            done = _read(summary)
            if done.get("best", {}).get("number") == best.number and done.get("final"):
                outcome.final = done["final"]
                return outcome
            write_text(outcome.best_file, self.best_toml(best))
            record = {
                "study": self.name,
                "storage": self.storage,
                "metric": self.metric,
                "column": self.column,
                "direction": self.direction,
                "best": outcome.best,
                "best_file": str(outcome.best_file),
                "trials": outcome.trials,
                "final": None,
            }
            write_json(summary, record)
            if final:
                outcome.final = self.final_run(outcome.best_file)
                record["final"] = str(outcome.final.directory)
                write_json(summary, record)
        return outcome

    def best_toml(self, best: Any) -> str:
        """The whole experiment with the best trial's values, as TOML."""
        import tomli_w

        exp = self.experiment(dict(best.params), trial=False)
        doc = {k: v for k, v in exp.to_dict().items() if k != "tune"}
        if exp.variant != "default":
            doc["description"] = (doc.get("description") or "") + f" (variant {exp.variant})"
        header = (
            f"# The best trial ({best.number}) of study {self.name!r}: validation "
            f"{self.metric} = {best.value:.6g}\n"
            + "".join(f"#   {k} = {toml_value(v)}\n" for k, v in best.params.items())
            + f"# Written by odirkit tune from {self.file}; run it with: odirkit run <this file>\n"
        )
        return header + tomli_w.dumps(_without_none(doc))

    def final_run(self, best_file: Path) -> Any:
        """``best.toml`` run once, as ``odirkit run`` would: the test patients scored."""

        experiments = load_experiment(best_file, self.registry)
        info(f"the best trial, trained again and scored on the test patients: {best_file}")
        started = start_run(
            experiments,
            out=self.folder,
            source_text=best_file.read_text(encoding="utf-8"),
            overrides=[],
            label="final",
        )
        return run_experiment(started, registry=self.registry)


def _read(path: Path) -> dict[str, Any]:

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _without_none(value: Any) -> Any:
    """TOML has no null: a key left out takes its default (None for every such key)."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value if v is not None]
    return value
