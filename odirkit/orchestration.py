"""What ``odirkit run``, ``tune`` and ``job`` do, without the command line.

The command line parses its options, calls one of :func:`run`, :func:`tune` and :func:`job`
and renders what comes back; everything between lives here:

* :func:`run`: an experiment started (its file loaded, every variant checked by
  ``preflight`` before a run folder exists) or resumed (the folder re-read, and an
  experiment file given beside ``--resume`` checked to be the same experiment); the
  launcher chosen (``--launcher``, else ``[launcher] kind``) and checked; the variants run
  here (:func:`~odirkit.experiment.run_experiment`) or as jobs (:mod:`odirkit.launch`),
  waited for, and their results and comparison read back from the run folder;
* :func:`tune`: a search (:class:`~odirkit.tune.Search`) run here or by workers;
* :func:`job`: one variant of a run folder, as a launcher's job.

Each takes the plugin registry as a function that loads it, called where the command
needs it: a command refused for its options never waits for the plugins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from odirkit.errors import ConfigError
from odirkit.launch import check_launcher, run_job, run_pool, submit_slurm, wait_slurm
from odirkit.plugins import Registry
from odirkit.runs import refuse_run_folder

if TYPE_CHECKING:  # imported where used: odirkit's start-up loads neither torch nor Optuna
    from odirkit.config import LauncherConfig, ResolvedVariant
    from odirkit.experiment import ExperimentRun
    from odirkit.tune import TuneOutcome

#: loads the process's plugin registry (the command line's spinner included)
Plugins = Callable[[], Registry]


@dataclass
class Submitted:
    """Jobs submitted and left running (``--launcher slurm`` without waiting): how many,
    and where to follow them (the run folder, or the study's storage)."""

    count: int
    where: str


def run(
    file: Path | None,
    plugins: Plugins,
    *,
    overrides: Sequence[str],
    variants: Sequence[str] | None,
    out: Path,
    resume: Path | None,
    launcher: str | None,
    jobs: int | None,
    wait: bool | None,
) -> ExperimentRun | Submitted | None:
    """Run an experiment: every variant, then a comparison of them (``odirkit run``).

    Returns the finished run; :class:`Submitted` for jobs left running; None in a process
    of a ``torchrun`` run other than the main one (which reports for all of them).

    Raises :class:`ConfigError` for ``--resume`` with overrides or variants, or neither a
    file nor ``--resume``; and what loading, checking and training raise."""
    from odirkit.config import load_experiment
    from odirkit.engine import distributed
    from odirkit.engine.variant import preflight
    from odirkit.experiment import load_run, run_experiment, start_run

    if resume is None:
        refuse_run_folder(out)
    distributed.setup()
    registry = plugins()
    if resume is not None:
        if overrides or variants:
            raise ConfigError("--resume continues a run as it was: drop --set and --variant")
        started = load_run(resume, registry)
        if file is not None:
            check_same_experiment(file, started, registry)
        experiments = started.variants
    else:
        if file is None:
            raise ConfigError("give an experiment file (odirkit run FILE) or --resume RUN_DIR")
        experiments = load_experiment(file, registry, overrides=overrides, variants=variants)
        seen: set[str] = set()
        with distributed.rank_zero_first():  # one process writes a phantom, if any
            for exp in experiments:
                preflight(exp, data=True, seen=seen)
    kind, settings = choose_launcher(experiments, launcher, jobs)
    if resume is None:
        assert file is not None
        source_text = file.read_text(encoding="utf-8-sig")
        started = start_run(experiments, out=out, source_text=source_text, overrides=overrides)
    if kind == "local":
        result = run_experiment(started, registry=registry)
    else:
        launched = launch_jobs(started, kind, settings, wait)
        if isinstance(launched, Submitted):
            return launched
        result = launched
    main = distributed.is_main()
    distributed.teardown()
    return result if main else None


def choose_launcher(
    experiments: Sequence[ResolvedVariant], launcher: str | None, jobs: int | None
) -> tuple[str, LauncherConfig]:
    """The launcher (``--launcher``, else ``[launcher] kind``) and its settings (``--jobs``
    over ``[launcher] jobs``), checked before a run folder is created."""
    chosen = experiments[0].config.launcher
    kind = launcher if launcher is not None else chosen.kind
    settings = chosen.model_copy(update={"jobs": jobs}) if jobs is not None else chosen
    check_launcher(kind, settings)
    return kind, settings


def launch_jobs(
    started: ExperimentRun, kind: str, settings: LauncherConfig, wait: bool | None
) -> ExperimentRun | Submitted:
    """Run the variants of a started run as jobs (pool, slurm); the results once they end,
    or :class:`Submitted` when the jobs were left to run (slurm without --wait).

    Raises :class:`ConfigError` under ``torchrun``: a launcher starts its own processes."""
    from odirkit.engine import distributed
    from odirkit.engine.variant import finished_result
    from odirkit.report import read_comparison

    if distributed.world().distributed:
        raise ConfigError(
            f"--launcher {kind} starts its own processes: run it without torchrun "
            "([launcher] gpus_per_run makes each job a DDP job)"
        )
    run_dir = started.directory
    names = [e.variant for e in started.variants]
    if kind == "pool":
        run_pool(run_dir, names, settings)
    else:
        submitted = submit_slurm(run_dir, names, settings, started.variants[0].name)
        if not (wait if wait is not None else settings.cluster == "local"):
            return Submitted(len(submitted), str(run_dir))
        wait_slurm(run_dir, names, submitted)
    started.results = [finished_result(n, run_dir.variant(n)) for n in names]
    started.comparison = read_comparison(run_dir.path)
    return started


def check_same_experiment(file: Path, previous: ExperimentRun, registry: Registry) -> None:
    """Refuse an experiment file given with ``--resume`` that no longer defines the run:
    a variant of both whose fingerprint changed.

    Raises :class:`ConfigError` naming the changed variant."""
    from odirkit.config import load_experiment

    current = {e.variant: e.fingerprint() for e in load_experiment(file, registry)}
    for exp in previous.variants:
        if exp.variant in current and current[exp.variant] != exp.fingerprint():
            raise ConfigError(
                f"{file} no longer matches the run in {previous.directory} (variant "
                f"{exp.variant!r} changed); resume without the file, or start a new run"
            )


def tune(
    file: Path,
    plugins: Plugins,
    *,
    trials: int,
    out: Path,
    overrides: Sequence[str],
    variant: str | None,
    storage: str | None,
    study: str | None,
    final: bool,
    workers: int,
    launcher: str | None,
    wait: bool | None,
) -> TuneOutcome | Submitted:
    """Search hyperparameters (``odirkit tune``): here (``local``, one worker) or by
    ``workers`` workers (``pool``, the default for several; ``slurm``). Returns the study's
    outcome, or :class:`Submitted` for workers left running.

    Raises :class:`ConfigError` for several workers with the ``local`` launcher."""
    from odirkit.tune import Search, run_workers

    refuse_run_folder(out)
    search = Search(
        file,
        plugins(),
        out=out,
        overrides=list(overrides),
        variant=variant,
        storage=storage,
        study=study,
    )
    kind = launcher if launcher is not None else ("pool" if workers > 1 else "local")
    if kind == "local":
        if workers > 1:
            raise ConfigError("--launcher local runs one worker: use pool or slurm for several")
        return search.run(trials, final=final)
    found = run_workers(search, trials, workers=workers, launcher=kind, final=final, wait=wait)
    return Submitted(workers, str(search.storage)) if found is None else found


def job(run_dir: Path, variant: str, plugins: Plugins) -> str | None:
    """One variant of a run folder, as a launcher's job (``odirkit job``): its status, or
    None in a process of the job other than the main one."""
    from odirkit.engine import distributed

    distributed.setup()
    status = run_job(run_dir, variant, plugins())
    main = distributed.is_main()
    distributed.teardown()
    return status if main else None
