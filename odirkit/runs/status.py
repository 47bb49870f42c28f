"""What odirkit status and odirkit runs show: each variant's state, log and job, every run
under a folder, and the command that resumes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from odirkit.errors import RunError
from odirkit.runs.layout import (
    RunDirectory,
    VariantDirectory,
)
from odirkit.runs.records import Failure, Job


def retry_command(run: RunDirectory) -> str:
    """The command that resumes a run with the launcher it was started with."""
    jobs = run.jobs()
    kind = jobs.launcher
    command = f"odirkit run --resume {run.path}"
    if kind == "pool":
        command += f" --launcher pool --jobs {jobs.slots or 1}"
    elif kind == "slurm":
        command += " --launcher slurm"
    return command


def tail(path: Path, lines: int = 12) -> list[str]:
    """The last lines of a log file (none when it is missing)."""
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 16384, 0))
            text = f.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    return text.splitlines()[-lines:]


def variant_status(vdir: VariantDirectory, job: Job | None) -> dict[str, Any]:
    """A variant's row of ``odirkit status`` (``job``: what the launcher recorded of it)."""
    status = vdir.status
    job = job or Job()
    row: dict[str, Any] = {
        "variant": vdir.name,
        "status": status,
        "epoch": vdir.epochs_done(),
        "job": job.id,
        "log": job.log or (str(vdir.job_log.resolve()) if vdir.job_log.exists() else None),
    }
    if status == "finished":
        try:
            vdir.metrics()
        except RunError as exc:  # finished, but its result no longer reads
            row["status"] = "damaged"
            row["error"] = str(exc)
    marker = vdir.running()
    if marker is not None:
        row["host"] = marker.host
        row["log"] = marker.log or row["log"]
    if status == "failed":
        failure = _failure(vdir)
        row["error"] = failure.error
        row["log"] = failure.log or row["log"]
        row["log_tail"] = tail(Path(row["log"])) if row["log"] else []
    return row


def _failure(vdir: VariantDirectory) -> Failure:
    """``failed.json``; a damaged one reads as a failure with no details."""
    try:
        return Failure.read(vdir.failed_file, "not failed")
    except RunError:
        return Failure()


def run_status(path: Path) -> dict[str, Any]:
    """Each variant of a run folder (or of the run a variant folder belongs to): status,
    epoch, job, log; and the retry command."""
    if VariantDirectory(path).exists and not (Path(path) / RunDirectory.RUN).exists():
        path = Path(path).parent
    run = RunDirectory(path)
    jobs = run.jobs()
    rows = [variant_status(v, jobs.jobs.get(v.name)) for v in run.variants()]
    undone = [r for r in rows if r["status"] in ("failed", "interrupted", "not started", "damaged")]
    return {
        "folder": str(run.path),
        "launcher": jobs.launcher,
        "variants": rows,
        "retry": retry_command(run) if undone else None,
    }


def list_runs(root: Path) -> list[dict[str, object]]:
    """Every run folder under ``root`` (``runs/<name>/<timestamp>``), newest first: its
    experiment, start, variants with their status, the best headline figure, and the
    command that resumes it when it is not finished. A folder whose ``run.json`` cannot
    be read is listed as ``damaged``, its ``damage`` saying why."""
    found = []
    for run_file in sorted(Path(root).glob(f"*/*/{RunDirectory.RUN}")):
        if run_file.parent.name.startswith("."):  # a run still being created (or never was)
            continue
        run = RunDirectory(run_file.parent)
        try:
            meta = run.description()
        except RunError as exc:  # listed as damaged, with what is wrong, never left out
            found.append(
                {
                    "folder": str(run.path),
                    "experiment": run.path.parent.name,
                    "started": "",
                    "variants": {},
                    "status": "damaged",
                    "best": None,
                    "not_learned": 0,
                    "errors": {},
                    "damage": str(exc),
                    "resume": None,
                }
            )
            continue
        variants = [run.variant(v) for v in meta.variants]
        statuses = {v.name: v.status for v in variants}
        best = None
        unlearned = 0
        for vdir in variants:
            if vdir.finished:
                try:
                    metrics = vdir.metrics()
                except RunError:  # damaged: nobody's best; odirkit status names the file
                    statuses[vdir.name] = "damaged"
                    continue
                if metrics.learned is False:
                    unlearned += 1  # a run that did not learn is nobody's best
                    continue
                value = metrics.final.f1_micro
                metric = "accuracy" if metrics.single_label else "micro F1"
                if value is not None and (best is None or value > best[2]):
                    best = (vdir.name, metric, value)
        if all(s == "finished" for s in statuses.values()):
            status = "finished"
        elif any(s in ("running", "queued") for s in statuses.values()):
            status = "running"
        elif any(s == "failed" for s in statuses.values()):
            status = "failed"
        elif any(s == "damaged" for s in statuses.values()):
            status = "damaged"
        else:
            status = "interrupted"
        errors = {v.name: _failure(v).error for v in variants if v.status == "failed"}
        found.append(
            {
                "folder": str(run.path),
                "experiment": meta.name or run.path.parent.name,
                "started": meta.started or "",
                "variants": statuses,
                "status": status,
                "best": {"variant": best[0], "metric": best[1], "value": best[2]} if best else None,
                "not_learned": unlearned,
                "errors": errors,
                "damage": None,
                "resume": None if status in ("finished", "running") else retry_command(run),
            }
        )
    return sorted(found, key=lambda r: str(r["started"]), reverse=True)
