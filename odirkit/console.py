"""Terminal output: messages and progress bars on stderr, results on stdout."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

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


_said: set[str] | None = None  # the warnings given so far, inside say_once()


def warn(message: str) -> None:
    """Print a warning on stderr (rank 0 only); inside :func:`say_once`, each text once."""
    if not _rank_zero() or (_said is not None and message in _said):
        return
    if _said is not None:
        _said.add(message)
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", highlight=False)


@contextmanager
def say_once() -> Iterator[None]:
    """Within, an identical warning is printed once: a command that reads its dataset
    twice (checked before the run folder exists, then loaded) warns once."""
    global _said
    outer, _said = _said, set() if _said is None else _said
    try:
        yield
    finally:
        _said = outer


def info(message: str) -> None:
    if _rank_zero():
        err.print(message, markup=False, highlight=False)
