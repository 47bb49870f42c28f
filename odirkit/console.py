"""Terminal output: messages and progress bars on stderr, results on stdout.

rich reads square brackets as markup: ``[data]`` would vanish from a table title and
``[launcher] kind`` from a help text. Every text that comes from configuration, plugin
metadata or users passes through :func:`plain` before it reaches rich (table titles and
cells, messages, help texts); progress bars take no markup at all.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

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
from rich.table import Column

#: results (tables, JSON) go to stdout
out = Console(highlight=False, soft_wrap=True)
#: messages, warnings and progress go to stderr
err = Console(stderr=True, highlight=False, soft_wrap=True)


def plain(value: object) -> str:
    """``value`` as text rich prints as written: its square brackets are not markup
    (``plain("[data]")`` prints ``[data]``, where rich alone prints nothing)."""
    return escape(str(value))


def quiet() -> bool:
    """Whether progress bars are off (``ODIRKIT_QUIET=1``, or any rank but 0 of ``torchrun``)."""
    if not _rank_zero():
        return True
    return os.environ.get("ODIRKIT_QUIET", "").strip().lower() in {"1", "true", "yes", "on"}


def _rank_zero() -> bool:
    return os.environ.get("RANK", "0") == "0"


def progress_bar(*, transient: bool = True) -> Progress:
    """A rich progress bar on stderr: description, bar, count, elapsed and remaining time,
    and a status (``status=`` of each task). Every column but the status keeps its width
    whatever the status says; a long description or status is cut with an ellipsis, never
    the bar or the times. Descriptions and statuses are shown as written (no markup)."""
    return Progress(
        TextColumn(
            "{task.description}",
            style="progress.description",
            markup=False,
            table_column=Column(no_wrap=True, overflow="ellipsis", max_width=26),
        ),
        BarColumn(bar_width=16),
        MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=7, justify="right")),
        TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
        TimeRemainingColumn(table_column=Column(no_wrap=True, min_width=7)),
        TextColumn(
            "{task.fields[status]}",
            markup=False,
            table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
        ),
        console=err,
        transient=transient,
        disable=quiet(),
        expand=True,
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
    """A progress note on stderr, from rank 0 only."""
    if _rank_zero():
        err.print(message, markup=False, highlight=False)


def epoch_status(row: dict[str, Any]) -> str:
    """An epoch's line on the console: the training loss, then (when there are validation
    patients) their loss and F1, then the test F1 when the paper's curves are asked for."""
    text = f"train loss {row['train_loss']:.4f}"
    if "val_loss" in row:
        text += (
            f"  val loss {row['val_loss']:.4f}  val F1 micro {row['val_f1_micro']:.3f} "
            f"macro {row['val_f1_macro']:.3f}"
        )
    if "test_loss" in row:
        text += f"  (test F1 micro {row['test_f1_micro']:.3f})"
    return text
