"""The run folder's bookkeeping: ``run.json``, ``running.json``, ``failed.json`` and
``jobs.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field

from odirkit.runs.documents import _read_json
from odirkit.runs.records.base import Record


class RunDescription(Record):
    """Run description: ``run.json``, written as the run folder is made."""

    DOCUMENT: ClassVar[str] = "a run's description"

    name: str = ""
    #: the experiment file it was started from
    source: str | None = None
    #: the ``--set`` overrides, as given
    overrides: list[str] = Field(default_factory=list)
    #: the variant folders, in order (required: a document without them is not a run's)
    variants: list[str]
    started: str | None = None


class TrialDescription(RunDescription):
    """Trial description: a search trial's ``run.json`` (``odirkit tune``): its one variant
    and the values the search drew for it."""

    DOCUMENT: ClassVar[str] = "a search trial's description"

    trial: int
    #: the trial's one variant (a search made before it was listed has none)
    variants: list[str] = Field(default_factory=list)
    values: dict[str, Any] = Field(default_factory=dict)
    #: the search's name
    tune: str = ""


def read_description(path: Path) -> RunDescription:
    """``run.json`` as the record of its kind: a trial's (it names its ``trial``) or a run's.

    Raises:
        RunError: the file is missing, damaged or neither.
    """
    data = _read_json(path, "the run's description")
    kind = TrialDescription if "trial" in data else RunDescription
    return kind.from_json(data, path)


class RunningMarker(Record):
    """Running marker: ``running.json``, there while a process runs the variant."""

    DOCUMENT: ClassVar[str] = "a running marker"

    pid: int = 0
    host: str = ""
    #: the scheduler's job id (SLURM, submitit), when there is one
    job: str | None = None
    log: str = ""
    started: str | None = None


class Failure(Record):
    """Failure: ``failed.json``, why a variant's job stopped with an error."""

    DOCUMENT: ClassVar[str] = "a failure record"

    error: str = ""
    time: str | None = None
    log: str = ""
    #: the command that resumes the run
    resume: str = ""


class Job(Record):
    """One variant's job in ``jobs.json``."""

    DOCUMENT: ClassVar[str] = "a job record"

    id: str | None = None
    log: str | None = None
    started: str | None = None
    ended: str | None = None
    exit_code: int | None = None


class Launch(Record):
    """Launch record: ``jobs.json``, what the last launcher submitted and whether the
    comparison was written since."""

    DOCUMENT: ClassVar[str] = "a launch record"

    launcher: str = "local"
    launched: str | None = None
    #: how many times a job wrote the comparison (once per launch)
    comparisons: int = 0
    #: when this launch's comparison was written (``None``: not yet)
    compared: str | None = None
    #: ``pool``: processes at once, and the launching process (its jobs die with it)
    slots: int | None = None
    owner: dict[str, Any] | None = None
    #: ``slurm``: ``slurm`` or ``local`` (submitit's local executor)
    cluster: str | None = None
    jobs: dict[str, Job] = Field(default_factory=dict)
