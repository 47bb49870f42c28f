"""Stopping a run cleanly: the first Ctrl-C (or SIGTERM) finishes the step and checkpoints."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from odirkit.console import warn
from odirkit.errors import OdirkitError


class RunInterrupted(OdirkitError):
    """The user stopped the run; a checkpoint was written first."""

    exit_code = 130


class StopRequested(Exception):
    """Raised inside the epoch loop when some rank asked to stop."""


class StopFlag:
    """Set by the first Ctrl-C (or SIGTERM); the loop stops at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False


@contextmanager
def graceful_stop() -> Iterator[StopFlag]:
    """First Ctrl-C/SIGTERM: finish the step, checkpoint, stop. Second Ctrl-C: stop now."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.requested = True
        warn("stopping after this step; a checkpoint will be written (Ctrl-C again to abort)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
