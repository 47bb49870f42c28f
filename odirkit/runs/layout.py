"""The folders of a run, a variant and an external evaluation: every file's name and the
documents read back.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas is imported where a table is read: odirkit's start-up stays light
    import pandas as pd

    from odirkit.config import ExperimentConfig

from odirkit.errors import RunError
from odirkit.runs.documents import (
    PATIENT_PREDICTIONS,
    VariantFiles,
    _read_predictions,
    process_alive,
)
from odirkit.runs.records import (
    AgeNormalisation,
    DataReport,
    Environment,
    ExternalMetrics,
    Launch,
    RunDescription,
    RunMetrics,
    RunningMarker,
    TrialDescription,
    VariantConfig,
    read_description,
)


def rebase_paths(config: VariantConfig, vdir: VariantDirectory) -> VariantConfig:
    """Relative data paths of a saved run, made relative to where the run was started,
    so that resuming, predicting or explaining works from any working directory."""
    try:
        return config.rebased(vdir.environment().working_directory)
    except RunError:
        return config


class VariantDirectory(VariantFiles):
    """One variant's folder, ``runs/<name>/<timestamp>/<variant>/``: its files
    (:class:`VariantFiles`), its state, its documents read back, its run and its
    external validations."""

    def __repr__(self) -> str:
        return f"VariantDirectory({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VariantDirectory) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    @property
    def run(self) -> RunDirectory:
        """The run this variant belongs to."""
        return RunDirectory(self.path.parent)

    # -- paths ---------------------------------------------------------------------------

    def external(self, name: str) -> ExternalDirectory:
        """``external/<name>/``: the variant validated on another collection."""
        return ExternalDirectory(self.external_root / name)

    def new_external(self, name: str) -> ExternalDirectory:
        """A new ``external/<name>/`` folder, created now (else :class:`RunError`); ``<name>-2``,
        ``-3``, ... when the name is taken: an earlier result is never overwritten."""
        for i in range(1, 1000):
            candidate = self.external(name if i == 1 else f"{name}-{i}")
            try:
                candidate.path.mkdir(parents=True)
                return candidate
            except FileExistsError:
                continue
            except OSError as exc:
                raise RunError(
                    f"{candidate.path}: cannot create the folder ({exc.strerror or exc})"
                ) from None
        raise RunError(f"{self.external_root}: too many results named {name!r}")

    def external_results(self) -> list[ExternalDirectory]:
        """The finished external validations of this variant, by name."""
        if not self.external_root.is_dir():
            return []
        found = (ExternalDirectory(p) for p in sorted(self.external_root.iterdir()))
        return [e for e in found if e.finished]

    # -- state ---------------------------------------------------------------------------

    @property
    def exists(self) -> bool:
        """Whether this is a variant folder (it has ``config.json``)."""
        return self.config_file.exists()

    @property
    def finished(self) -> bool:
        """A variant is finished once its ``metrics.json`` exists (it is written last)."""
        return self.metrics_file.exists()

    @property
    def status(self) -> str:
        """``finished``, ``failed``, ``running`` (a live process holds it), ``interrupted``
        (a checkpoint, no result, nobody running it), ``queued`` (a launcher submitted it),
        or ``not started``."""
        if self.finished:
            return "finished"
        if self.failed_file.exists():
            return "failed"
        if self.running() is not None:
            return "running"
        if self.checkpoint("last").exists():
            return "interrupted"
        if self.name in self.run.queued():
            return "queued"
        return "not started"

    def running(self) -> RunningMarker | None:
        """``running.json`` while a live process runs the variant (a process of this host
        that has died does not count; one of another host is taken at its word; a damaged
        marker is no marker)."""
        try:
            marker = RunningMarker.read(self.running_file, "not running")
        except RunError:
            return None
        if marker.host == socket.gethostname() and not process_alive(marker.pid):
            return None
        return marker

    def epochs_done(self) -> int:
        """Epochs in ``metrics.csv`` so far."""
        try:
            with self.history_file.open() as f:
                return max(sum(1 for _ in f) - 1, 0)
        except OSError:
            return 0

    # -- contents ------------------------------------------------------------------------

    def config(self) -> VariantConfig:
        """``config.json``, the resolved configuration, with relative data paths made to
        work from here.

        Raises:
            RunError: the file is missing, damaged or not a resolved configuration.
        """
        found = VariantConfig.read(self.config_file, "this variant cannot be resumed or reused")
        found.check_complete(self.config_file)
        return rebase_paths(found, self)

    def settings(self) -> ExperimentConfig:
        """``config.json``'s core tables through the configuration's schema
        (:meth:`VariantConfig.settings`); a :class:`RunError` names the file and field."""
        return self.config().settings(self.config_file)

    def environment(self) -> Environment:
        """``environment.json``: versions, plugins, device, seed, commit.

        Raises:
            RunError: the file is missing, damaged or not a run's environment.
        """
        return Environment.read(self.path / self.ENVIRONMENT, "the run's environment")

    def data_report(self) -> DataReport:
        """``data.json`` read back.

        Raises:
            RunError: the file is missing, damaged or not a data report.
        """
        return DataReport.read(self.data_file, "the run's data report")

    def metrics(self) -> RunMetrics:
        """``metrics.json`` read back.

        Raises:
            RunError: the variant is not finished, or the file is damaged or not a run's
                result.
        """
        return RunMetrics.read(self.metrics_file, "not a finished run")

    def history(self) -> pd.DataFrame:
        """``metrics.csv``: one row per epoch (empty for a baseline, which has no epochs).

        Raises :class:`RunError` naming the file when it cannot be read."""
        import pandas as pd

        if not self.history_file.exists():
            return pd.DataFrame()
        try:
            frame = pd.read_csv(self.history_file)
        except (OSError, ValueError) as exc:
            raise RunError(f"{self.history_file}: unreadable ({type(exc).__name__})") from None
        epochs = pd.to_numeric(frame.get("epoch", pd.Series([None])), errors="coerce")
        if "epoch" not in frame.columns or epochs.isna().any():
            raise RunError(
                f"{self.history_file}: damaged (not the per-epoch table this run wrote: "
                "no whole 'epoch' column); was another file saved over it?"
            )
        return frame

    @property
    def single_label(self) -> bool:
        """Whether the run learned a single-label task (softmax) or a multi-label one, as
        ``data.json`` says, else ``metrics.json`` (neither readable: multi-label)."""
        for read in (self.data_report, self.metrics):
            try:
                return read().single_label
            except RunError:
                continue
        return False

    @property
    def age_stats(self) -> tuple[float, float]:
        """The training images' age mean and deviation (metadata fusion)."""
        try:
            stats = self.data_report().age_normalisation or AgeNormalisation()
        except RunError:
            stats = AgeNormalisation()
        return stats.mean, stats.std

    def reported_checkpoint(self) -> str:
        """The checkpoint the run reports, else (not finished) best when it exists, else last.
        A damaged ``metrics.json`` is an error naming it, never a silent other choice."""
        if self.finished:
            return self.metrics().checkpoint
        return "best" if self.checkpoint("best").exists() else "last"

    def temperature(self, checkpoint: str) -> float | None:
        """The temperature fitted on validation, for the reported checkpoint only."""
        if not self.finished:
            return None
        metrics = self.metrics()  # damaged: an error naming it, not a missing temperature
        if metrics.checkpoint != checkpoint:
            return None
        return metrics.final.temperature or None

    def test_predictions(self, *, validation: bool = False) -> pd.DataFrame:
        """The test (or ``validation``) predictions at the run's level, checked."""
        metrics, path = self.metrics(), self.val_predictions_file
        patient = metrics.level == "patient"
        if not validation:
            path = self.patient_predictions_file if patient else self.predictions_file
        return _read_predictions(path, metrics.labels or None, patient=patient)

    def val_predictions(self) -> pd.DataFrame | None:
        """The validation predictions (thresholds and temperature are chosen on them)."""
        exists = self.val_predictions_file.exists()
        return self.test_predictions(validation=True) if exists else None


class ExternalDirectory:
    """One external validation of a variant, ``<variant>/external/<name>/``::

    metrics.json      the result (written last: done): scores and intervals on the labels
                      the collection grades, the run's operating points, the comparison
    data.json         the collection: images, patients, counts per label, what was left out
    predictions.csv   one row per image (patient_predictions.csv too at patient level)
    comparison.csv    internal test vs external, per metric, with intervals
    figures/          internal_vs_external.png
    """

    METRICS = "metrics.json"
    DATA = "data.json"
    PREDICTIONS = "predictions.csv"
    PATIENT_PREDICTIONS = PATIENT_PREDICTIONS
    COMPARISON = "comparison.csv"
    SKIPPED = "skipped_images.csv"
    FIGURE = "internal_vs_external.png"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"ExternalDirectory({str(self.path)!r})"

    @property
    def name(self) -> str:
        """The external validation's name (its folder's)."""
        return self.path.name

    @property
    def variant(self) -> VariantDirectory:
        """The variant this validation scored."""
        return VariantDirectory(self.path.parent.parent)

    @property
    def metrics_file(self) -> Path:
        """``metrics.json``: the collection scored; written last."""
        return self.path / self.METRICS

    @property
    def data_file(self) -> Path:
        """``data.json``: the collection's counts and the labels it grades."""
        return self.path / self.DATA

    @property
    def predictions_file(self) -> Path:
        """``predictions.csv``: per image on the collection."""
        return self.path / self.PREDICTIONS

    @property
    def patient_predictions_file(self) -> Path:
        """``patient_predictions.csv``: per patient on the collection."""
        return self.path / self.PATIENT_PREDICTIONS

    @property
    def comparison_file(self) -> Path:
        """``comparison.csv``: internal against external per metric, with intervals."""
        return self.path / self.COMPARISON

    @property
    def skipped_file(self) -> Path:
        """``skipped_images.csv``: the collection's images left out."""
        return self.path / self.SKIPPED

    @property
    def figure(self) -> Path:
        """The figure of internal against external per metric."""
        return self.path / "figures" / self.FIGURE

    @property
    def finished(self) -> bool:
        """Whether the validation ended (``metrics.json`` exists)."""
        return self.metrics_file.exists()

    def metrics(self) -> ExternalMetrics:
        """``metrics.json`` read back.

        Raises:
            RunError: the validation did not finish, or the file is damaged or not an
                external validation's result.
        """
        return ExternalMetrics.read(self.metrics_file, "not a finished external validation")

    def comparison(self) -> pd.DataFrame:
        """``comparison.csv`` read back (:class:`RunError` when it is missing)."""
        import pandas as pd

        try:
            return pd.read_csv(self.comparison_file)
        except OSError:
            raise RunError(f"{self.comparison_file} is missing") from None

    def predictions(self) -> pd.DataFrame:
        """The predictions at the run's level (patients, or images)."""
        patient = self.metrics().level == "patient"
        return _read_predictions(
            self.patient_predictions_file if patient else self.predictions_file
        )


class RunDirectory:
    """An experiment's run folder, ``runs/<name>/<timestamp>/``."""

    RUN = "run.json"
    EXPERIMENT = "experiment.toml"
    JOBS = "jobs.json"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDirectory({str(self.path)!r})"

    def __str__(self) -> str:
        return str(self.path)

    @classmethod
    def create(
        cls, out: Path, name: str, fill: Callable[[RunDirectory], None] | None = None
    ) -> RunDirectory:
        """``out/<name>/<timestamp>``, created now (a suffix keeps two runs apart).

        With ``fill``, the folder's first files are written by ``fill`` into a hidden
        staging folder beside it (``.<timestamp>-<pid>.partial``), which takes the run's
        name only once they are all there: a run killed meanwhile leaves no half-made run
        folder that could not be resumed, only the hidden one (no training had started).

        Raises:
            RunError: the folder cannot be created.
        """
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        parent = Path(out) / name
        try:
            parent.mkdir(parents=True, exist_ok=True)
            staging = None
            if fill is not None:
                staging = parent / f".{stamp}-{os.getpid()}.partial"
                staging.mkdir()
                fill(cls(staging))
            for i in range(1000):
                candidate = parent / (stamp if i == 0 else f"{stamp}-{i}")
                try:
                    candidate.mkdir()  # the name, reserved
                except FileExistsError:
                    continue
                if staging is not None:
                    os.replace(staging, candidate)  # onto the empty reservation: atomic
                return cls(candidate)
        except OSError as exc:
            raise RunError(f"{out}: cannot create the run folder ({exc.strerror or exc})") from None
        raise RunError(f"{parent}: too many runs started in the same second")

    @property
    def run_file(self) -> Path:
        """``run.json``: the variants, overrides, source and start time."""
        return self.path / self.RUN

    @property
    def experiment_file(self) -> Path:
        """``experiment.toml``: the experiment file as it was."""
        return self.path / self.EXPERIMENT

    @property
    def jobs_file(self) -> Path:
        """What a launcher submitted: the launcher, each variant's job id and log."""
        return self.path / self.JOBS

    @property
    def lock_file(self) -> Path:
        """Taken by the jobs of a launcher while they decide who writes the comparison."""
        return self.path / ".lock"

    @property
    def submitit_dir(self) -> Path:
        """submitit's job files (pickles, logs) under the ``slurm`` launcher."""
        return self.path / ".submitit"

    def jobs(self) -> Launch:
        """``jobs.json``, or an empty launch record when no launcher wrote one (or it is
        damaged: it only counts comparisons and lists jobs)."""
        try:
            return Launch.read(self.jobs_file, "no launcher")
        except RunError:
            return Launch()

    def queued(self) -> set[str]:
        """The variants the last launch submitted (each is queued until its job starts),
        unless the ``pool`` process that would start them has gone."""
        jobs = self.jobs()
        owner = jobs.owner or {}
        if owner.get("host") == socket.gethostname() and not process_alive(owner.get("pid")):
            return set()
        return set(jobs.jobs)

    def description(self) -> RunDescription:
        """``run.json``: a run's description, or a search trial's.

        Raises:
            RunError: the file is missing, damaged or neither.
        """
        return read_description(self.run_file)

    def variant(self, name: str) -> VariantDirectory:
        """The folder of variant ``name`` (it may not exist yet)."""
        return VariantDirectory(self.path / name)

    def variant_names(self) -> list[str]:
        """The variants ``run.json`` lists, in order (a search's trial written before trials
        listed theirs: its folders with a ``config.json``); :class:`RunError` if no run folder."""
        if not self.path.is_dir():
            raise RunError(f"{self.path}: no such run folder")
        if not self.run_file.exists():
            raise RunError(
                f"{self.path}: not an odirkit run folder (no {self.RUN} or "
                f"{VariantDirectory.CONFIG}); pass runs/<name>/<timestamp> or one of its "
                "variant folders"
            )
        described = self.description()
        if not described.variants and isinstance(described, TrialDescription):
            return sorted(p.parent.name for p in self.path.glob(f"*/{VariantDirectory.CONFIG}"))
        return list(described.variants)

    def variants(self) -> list[VariantDirectory]:
        """The variants ``run.json`` lists, as folders."""
        return [self.variant(name) for name in self.variant_names()]

    def finished_variants(self) -> list[VariantDirectory]:
        """The variant folders holding a finished run, in name order."""
        return sorted(
            (
                VariantDirectory(p)
                for p in self.path.iterdir()
                if (p / VariantDirectory.METRICS).exists()
            ),
            key=lambda v: v.name,
        )
