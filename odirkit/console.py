"""Terminal output: messages and progress bars on stderr, results on stdout."""

from __future__ import annotations

import os

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

#: results (tables, JSON) go to stdout
out = Console(highlight=False, soft_wrap=True)
#: messages, warnings and progress go to stderr
err = Console(stderr=True, highlight=False, soft_wrap=True)


def quiet() -> bool:
    """Whether progress bars are off (``ODIRKIT_QUIET=1``, or any rank but 0 of ``torchrun``)."""
    if not _rank_zero():
        return True
    return os.environ.get("ODIRKIT_QUIET", "").strip().lower() in {"1", "true", "yes", "on"}


def _rank_zero() -> bool:
    return os.environ.get("RANK", "0") == "0"


def progress_bar(*, transient: bool = True) -> Progress:
    """A rich progress bar on stderr: description, bar, count, elapsed and remaining time."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
        console=err,
        transient=transient,
        disable=quiet(),
    )


def warn(message: str) -> None:
    if _rank_zero():
        err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


def info(message: str) -> None:
    if _rank_zero():
        err.print(message, markup=False, highlight=False)
