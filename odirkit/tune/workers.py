"""Several workers sharing one study: processes here (through the launcher's pool) or submitit
jobs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from odirkit.console import info
from odirkit.engine.interrupt import RunInterrupted
from odirkit.errors import RunError
from odirkit.launch import drop_template, run_children, slurm_executor, wait_jobs
from odirkit.plugins import get_registry
from odirkit.runs import RunDirectory
from odirkit.runs.names import SearchFiles
from odirkit.tune.search import (
    Search,
    TuneOutcome,
)


class TuneWorker:
    """One worker of a study as a submitit job (picklable: the search is rebuilt there)."""

    def __init__(self, args: dict[str, Any], trials: int, final: bool) -> None:
        self.args = args
        self.trials = trials
        self.final = final

    def __call__(self) -> str:

        os.environ.setdefault("ODIRKIT_QUIET", "1")
        args = dict(self.args)
        search = Search(Path(args.pop("file")), get_registry(), **args)
        outcome = search.run(self.trials, final=self.final)
        return f"{len(outcome.trials)} trial(s) in the study"

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """Preempted: a trial that was running stays failed in the study; a new worker
        takes up the remaining trials."""
        import submitit

        return submitit.helpers.DelayedSubmission(TuneWorker(self.args, self.trials, self.final))


def worker_command(search: Search, trials: int, final: bool) -> list[str]:
    """``odirkit tune`` with the same search, as one worker."""

    args = search.args
    command = [sys.executable, "-m", "odirkit", "tune", args["file"], "--trials", str(trials)]
    command += ["--out", args["out"], "--storage", search.storage, "--study", search.name]
    for text in args["overrides"]:
        command += ["--set", text]
    if args["variant"]:
        command += ["--variant", args["variant"]]
    return [*command, "--final" if final else "--no-final"]


def run_workers(
    search: Search,
    trials: int,
    *,
    workers: int,
    launcher: str,
    final: bool,
    wait: bool | None,
) -> TuneOutcome | None:
    """``workers`` workers sharing the study: processes here (``pool``) or submitit jobs
    (``slurm``). Returns the study's outcome once they end (None: left running).

    Raises :class:`RunError` when a worker failed, ``RunInterrupted`` on Ctrl-C."""

    study = search.open_study()  # created once, before the workers race for it
    if launcher == "pool":
        logs: dict[int, Any] = {}
        codes: dict[int, int] = {}
        env = {**os.environ, "ODIRKIT_QUIET": "1"}
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))

        def start(index: int, slot: int) -> subprocess.Popen[bytes]:
            logs[index] = (search.folder / SearchFiles.WORKER_LOG.format(index=index)).open("ab")
            process = subprocess.Popen(
                worker_command(search, trials, final),
                stdout=logs[index],
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
            info(f"worker {index}: pid {process.pid}, log {logs[index].name}")
            return process

        def end(index: int, code: int) -> None:
            logs.pop(index).close()
            codes[index] = code

        if run_children(workers, workers, start, end):
            raise RunInterrupted("stopped; trials that ended are kept in the study")
        failed = [
            str(search.folder / SearchFiles.WORKER_LOG.format(index=i))
            for i, c in sorted(codes.items())
            if c
        ]
        if failed:
            raise RunError(f"{len(failed)} worker(s) failed; see {', '.join(failed)}")
    else:
        settings = search.cfg.launcher.model_copy(update={"gpus_per_run": 1})
        executor = slurm_executor(RunDirectory(search.folder), settings, f"tune-{search.name}")
        with executor.batch():
            jobs = [executor.submit(TuneWorker(search.args, trials, final)) for _ in range(workers)]
        drop_template(RunDirectory(search.folder))
        for job in jobs:
            info(f"worker job {job.job_id}: log {job.paths.stdout}")
        if not (wait if wait is not None else settings.cluster == "local"):
            return None
        wait_jobs(jobs)
        failed = [str(job.paths.stdout) for job in jobs if job.exception() is not None]
        if failed:
            raise RunError(f"{len(failed)} worker job(s) failed; see {', '.join(failed)}")
    return search.conclude(study, final=final)
