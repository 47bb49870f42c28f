"""Where the runs of an experiment run: the launchers of ``odirkit run``.

Every variant (each seed and each fold is one) is a **job**: it re-opens the run folder
(:func:`~odirkit.experiment.load_run` on its variant folder), trains or resumes the
variant, and leaves. The launchers differ only in where the jobs run:

* ``local``: one after another in this process (no job at all);
* ``pool``: ``--jobs N`` child processes on this machine (``odirkit job RUN VARIANT``),
  each CUDA job on its own GPUs, round robin over the visible devices; a job of several
  processes (``[launcher] gpus_per_run``) is started by ``torch.distributed.run``;
* ``slurm``: one SLURM job per variant through submitit, requeued on preemption and on
  timeout (:class:`VariantJob` is the pickled callable; its ``checkpoint`` resubmits it,
  and the new job resumes from the variant's last checkpoint).

The comparison and the reports are written once, by the last job to end: each job, as it
ends, takes the run folder's lock and writes them when no variant is left queued or
running (:func:`job_ended`); ``jobs.json`` counts how often that happened.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock

from odirkit.console import info, warn
from odirkit.engine.interrupt import RunInterrupted
from odirkit.errors import ConfigError, RunError
from odirkit.plugins import get_registry
from odirkit.runs import RunDirectory, retry_command
from odirkit.runs.records import Job, Launch

if TYPE_CHECKING:  # imported where used: odirkit status and runs start without torch
    from odirkit.config import LauncherConfig
    from odirkit.plugins import Registry
    from odirkit.report import Comparison

#: variant states after which a job will not run again by itself
ENDED = ("finished", "failed")


def _now() -> str:
    return datetime.now().isoformat(timespec="milliseconds")


# -- one job -----------------------------------------------------------------------------


def run_job(run_dir: Path, variant: str, registry: Registry) -> str:
    """Run (or resume) one variant of a run folder, then write the comparison if this job
    is the last to end. Returns the variant's status.

    Raises :class:`RunError` when the run folder has no such variant."""
    from odirkit.engine import distributed
    from odirkit.experiment import load_run, run_experiment

    run = RunDirectory(run_dir)
    vdir = run.variant(variant)
    if not vdir.exists:
        raise RunError(f"{run_dir}: no variant {variant!r}; variants: {', '.join(_names(run))}")
    requeued = False
    try:
        run_experiment(load_run(vdir.path, registry), registry=registry, compare=False)
    except SystemExit:
        requeued = True  # submitit requeues the job: it is not over
        raise
    finally:
        if distributed.is_main() and not requeued:
            job_ended(run)
    return vdir.status


def _names(run: RunDirectory) -> list[str]:
    try:
        return run.variant_names()
    except RunError:
        return []


def job_ended(run: RunDirectory, *, final: bool = False) -> Comparison | None:
    """Called by each job as it ends: the last one (no variant left queued or running)
    writes the comparison and the reports, once per launch. ``final``: the launcher has
    seen every job end (a job killed outright never says so) and writes them if nobody
    did."""

    from odirkit.experiment import rebuild_report

    with FileLock(str(run.lock_file)):
        jobs = run.jobs()
        if jobs.compared:
            return None
        if not final:
            for vdir in run.variants():
                if vdir.status in ENDED:
                    continue
                if vdir.running() is not None or vdir.name in jobs.jobs:
                    return None  # another job still runs, waits, or will be requeued
        if not run.finished_variants():
            return None
        comparison = rebuild_report(run.path)[1]
        jobs.compared = _now()
        jobs.comparisons += 1
        jobs.write(run.jobs_file)
        return comparison


def _record_launch(
    run: RunDirectory, kind: str, jobs: dict[str, dict[str, Any]], **extra: Any
) -> None:
    """``jobs.json``: the launcher and this launch's jobs (a new launch replaces the jobs
    and allows one more comparison)."""

    with FileLock(str(run.lock_file)):
        previous = run.jobs()
        Launch(
            launcher=kind,
            launched=_now(),
            comparisons=previous.comparisons,
            compared=None,
            **extra,
            jobs={name: Job(**job) for name, job in jobs.items()},
        ).write(run.jobs_file)


def _update_jobs(run: RunDirectory, variant: str, **fields: Any) -> None:

    with FileLock(str(run.lock_file)):
        jobs = run.jobs()
        job = jobs.jobs.get(variant) or Job()
        for name, value in fields.items():
            setattr(job, name, value)
        jobs.jobs = {**jobs.jobs, variant: job}  # assigned: written even into a new record
        jobs.write(run.jobs_file)


def pending(run: RunDirectory, variants: Sequence[str]) -> list[str]:
    """The variants a launch must (re)start: not finished and not running now."""
    return [v for v in variants if run.variant(v).status not in ("finished", "running")]


# -- pool ---------------------------------------------------------------------------------


def device_groups(slots: int, per_run: int) -> list[str | None]:
    """The ``CUDA_VISIBLE_DEVICES`` of each pool slot: ``per_run`` visible GPUs each, round
    robin; ``None`` everywhere without CUDA.

    Raises :class:`ConfigError` when ``per_run`` is more than the GPUs visible."""
    import torch

    if not torch.cuda.is_available():
        return [None] * slots
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    devices = (
        [d.strip() for d in visible.split(",") if d.strip()]
        if visible
        else [str(i) for i in range(torch.cuda.device_count())]
    )
    if len(devices) < per_run:
        raise ConfigError(
            f"[launcher] gpus_per_run = {per_run}, but only {len(devices)} GPU(s) are visible"
        )
    groups = len(devices) // per_run
    return [
        ",".join(devices[(i % groups) * per_run : (i % groups + 1) * per_run]) for i in range(slots)
    ]


def job_command(run: RunDirectory, variant: str, processes: int) -> list[str]:
    """The command of one job: ``odirkit job RUN VARIANT``, under torchrun when a run is
    several processes."""
    tail = ["-m", "odirkit", "job", str(run.path), variant]
    if processes <= 1:
        return [sys.executable, *tail]
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        str(processes),
        *tail,
    ]


def run_children(
    count: int,
    slots: int,
    start: Callable[[int, int], subprocess.Popen[bytes]],
    end: Callable[[int, int], None],
) -> bool:
    """Run ``count`` child processes, ``slots`` at a time: ``start(index, slot)`` starts
    one (in its own session), ``end(index, exit_code)`` hears that it ended. Ctrl-C and
    SIGTERM reach every running child as SIGINT (each stops at a checkpoint) and start no
    more. Returns whether a stop was asked. The one process pool of odirkit: the pool
    launcher's jobs and ``odirkit tune``'s workers."""
    queue = list(range(count))
    free = list(range(slots))
    running: dict[int, tuple[subprocess.Popen[bytes], int]] = {}
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        if not stopping:
            warn("stopping every job after its step; each writes a checkpoint")
        stopping = True
        for process, _ in running.values():
            process.send_signal(signal.SIGINT)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        while queue or running:
            while queue and free and not stopping:
                index, slot = queue.pop(0), free.pop(0)
                running[index] = (start(index, slot), slot)
            time.sleep(0.2)
            for index, (process, slot) in list(running.items()):
                if process.poll() is None:
                    continue
                del running[index]
                free.append(slot)
                end(index, int(process.returncode))
            if stopping:
                queue.clear()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    return stopping


def run_pool(run: RunDirectory, variants: Sequence[str], settings: LauncherConfig) -> None:
    """Run the variants as child processes, ``settings.jobs`` at a time; Ctrl-C stops every
    job at a checkpoint."""
    todo = pending(run, variants)
    slots = min(settings.jobs, max(len(todo), 1))
    groups = device_groups(slots, settings.gpus_per_run)
    processes = settings.gpus_per_run if settings.gpus_per_run > 1 else 1
    threads = max(1, (os.cpu_count() or 1) // (slots * processes))
    _record_launch(
        run,
        "pool",
        {v: {"log": str(run.variant(v).job_log.resolve())} for v in todo},
        slots=slots,
        owner={"pid": os.getpid(), "host": socket.gethostname()},
    )
    logs: dict[int, Any] = {}

    def start(index: int, slot: int) -> subprocess.Popen[bytes]:
        variant = todo[index]
        vdir = run.variant(variant)
        env = {
            **os.environ,
            "ODIRKIT_QUIET": "1",
            "ODIRKIT_JOB_LOG": str(vdir.job_log.resolve()),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(threads)),
        }
        if groups[slot] is not None:
            env["CUDA_VISIBLE_DEVICES"] = str(groups[slot])
        logs[index] = vdir.job_log.open("ab")
        process = subprocess.Popen(
            job_command(run, variant, processes),
            stdout=logs[index],
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # Ctrl-C reaches the pool, which tells each job
        )
        _update_jobs(run, variant, id=str(process.pid), started=_now())
        info(f"{variant}: job started (pid {process.pid}, log {vdir.job_log})")
        return process

    def end(index: int, code: int) -> None:
        logs.pop(index).close()
        variant = todo[index]
        _update_jobs(run, variant, ended=_now(), exit_code=code)
        info(f"{variant}: job ended ({run.variant(variant).status}, exit code {code})")

    if run_children(len(todo), slots, start, end):
        raise RunInterrupted(
            f"stopped; each job wrote a checkpoint.\nContinue with: {retry_command(run)}"
        )
    job_ended(run, final=True)
    _raise_failures(run, variants)


def _raise_failures(run: RunDirectory, variants: Sequence[str]) -> None:
    failed = [v for v in variants if run.variant(v).status != "finished"]
    if failed:
        raise RunError(
            f"{len(failed)} of {len(variants)} job(s) did not finish: {', '.join(failed)}; "
            f"see odirkit status {run.path}, then retry with: {retry_command(run)}"
        )


# -- slurm --------------------------------------------------------------------------------


class VariantJob:
    """One variant as a submitit job: picklable, and checkpointable (submitit calls
    :meth:`checkpoint` on preemption or timeout and submits what it returns again)."""

    def __init__(self, run_dir: str, variant: str, processes: int = 1) -> None:
        self.run_dir = run_dir
        self.variant = variant
        self.processes = processes

    def __call__(self) -> str:
        import submitit

        env = submitit.JobEnvironment()
        os.environ.setdefault("ODIRKIT_QUIET", "1")
        os.environ["ODIRKIT_JOB_LOG"] = str(env.paths.stdout)
        if self.processes > 1:  # each SLURM task is one process of a DDP run
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        from odirkit.engine import distributed

        distributed.setup()
        try:
            return run_job(Path(self.run_dir), self.variant, get_registry())
        finally:
            distributed.teardown()

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Preempted or out of time: the same job again; it resumes from ``last.pt``."""
        import submitit

        return submitit.helpers.DelayedSubmission(
            VariantJob(self.run_dir, self.variant, self.processes)
        )


def require(module: str, extra: str) -> Any:
    """Import an optional dependency, or say which extra installs it.

    Raises :class:`ConfigError` naming the ``pip install`` that brings ``module``."""

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"{module} is not installed; install it with: pip install 'odirkit[{extra}]'"
        ) from None


def check_launcher(kind: str, settings: LauncherConfig) -> None:
    """What a launcher needs, checked before a run folder is created.

    Raises :class:`ConfigError` for ``slurm`` when submitit is not installed, or (``cluster =
    "slurm"``) SLURM's commands are not on the PATH."""

    if kind != "slurm":
        return
    require("submitit", "slurm")
    if settings.cluster == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
        raise ConfigError(
            "--launcher slurm: sbatch and srun are not on this machine's PATH (not a SLURM "
            'login node?); [launcher] cluster = "local" runs the jobs through submitit here'
        )


def slurm_executor(run: RunDirectory, settings: LauncherConfig, name: str) -> Any:
    """A submitit executor with the ``[launcher]`` settings (SLURM, or submitit's local
    executor for ``cluster = "local"``).

    Raises :class:`ConfigError` when SLURM's commands are missing or submitit refuses the
    settings."""
    submitit = require("submitit", "slurm")
    import torch

    local = settings.cluster == "local"
    try:
        executor = submitit.AutoExecutor(
            folder=str(run.submitit_dir / "%j"), cluster="local" if local else "slurm"
        )
    except RuntimeError as exc:  # no srun/sbatch here
        raise ConfigError(
            f"--launcher slurm: {exc} (SLURM's commands are not on this machine's PATH); "
            '[launcher] cluster = "local" runs the jobs through submitit here'
        ) from None
    processes = max(settings.gpus_per_run, 1)
    gpus = settings.gpus_per_run if (not local or torch.cuda.is_available()) else 0
    params: dict[str, Any] = {
        "name": f"odirkit-{name}",
        "timeout_min": settings.time,
        "nodes": 1,
        "tasks_per_node": processes,
        "gpus_per_node": gpus,
        "stderr_to_stdout": True,
    }
    if settings.cpus_per_run:
        params["cpus_per_task"] = max(1, settings.cpus_per_run // processes)
    if settings.mem_gb:
        params["mem_gb"] = settings.mem_gb
    if settings.partition:
        params["slurm_partition"] = settings.partition
    if settings.account:
        params["slurm_account"] = settings.account
    if settings.sbatch:
        params["slurm_additional_parameters"] = dict(settings.sbatch)
    try:
        executor.update_parameters(**params)
    except (NameError, TypeError, ValueError) as exc:
        raise ConfigError(f"[launcher]: submitit refuses the settings: {exc}") from None
    return executor


def drop_template(run: RunDirectory) -> None:
    """submitit's batch leaves the unexpanded ``%j`` folder behind, empty."""
    template = run.submitit_dir / "%j"
    if template.is_dir() and not any(template.iterdir()):
        template.rmdir()


def submit_slurm(
    run: RunDirectory, variants: Sequence[str], settings: LauncherConfig, name: str
) -> list[Any]:
    """One submitit job per variant not finished (nor running); ``jobs.json`` records them.

    Raises :class:`RunError` when SLURM refuses the jobs (the run folder is kept)."""
    todo = pending(run, variants)
    executor = slurm_executor(run, settings, name)
    processes = max(settings.gpus_per_run, 1)
    # recorded first: a job that ends at once must see the others as queued
    _record_launch(run, "slurm", {v: {} for v in todo}, cluster=settings.cluster)
    try:
        with executor.batch():
            where = str(run.path.resolve())  # a cluster node may start elsewhere
            submitted = [executor.submit(VariantJob(where, v, processes)) for v in todo]
    except (OSError, subprocess.CalledProcessError, RuntimeError) as exc:
        raise RunError(
            f"SLURM refused the jobs: {str(exc).strip().splitlines()[-1]}; nothing ran, "
            f"the run folder {run.path} is kept (resume it with --resume)"
        ) from None
    drop_template(run)
    for v, job in zip(todo, submitted, strict=True):
        _update_jobs(run, v, id=str(job.job_id), log=str(job.paths.stdout), submitted=_now())
        info(f"{v}: submitted as job {job.job_id} (log {job.paths.stdout})")
    return submitted


def wait_jobs(submitted: Sequence[Any]) -> None:
    """Wait until every submitit job is done (requeued ones included)."""
    for job in submitted:
        while not job.done():
            time.sleep(0.5)


def wait_slurm(run: RunDirectory, variants: Sequence[str], submitted: Sequence[Any]) -> None:
    """Wait for submitted jobs (requeued ones included), then report the failures."""
    wait_jobs(submitted)
    job_ended(run, final=True)
    _raise_failures(run, variants)
