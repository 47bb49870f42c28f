"""Files written whole or not at all, and a lock shared between processes.

A file is written to a temporary name in the same folder and moved over the
target with ``os.replace``, so a kill leaves either the old file or the new
one, never half of one. Every file a run writes goes through here. The lock
(the ``filelock`` package: ``fcntl`` on Unix, ``msvcrt`` on Windows) lets
processes that build one cache take turns.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from filelock import FileLock

from odirkit.errors import RunError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: the permissions a new file gets here (the temporary file starts private)
FILE_MODE = 0o666 & ~_umask()


#: ``ODIRKIT_KILL_AT = "<when>:<file name>:<n>"`` ends the process (exit code 137, as a
#: ``kill -9``) at the n-th write of that file, ``before`` it, ``during`` it (the temporary
#: file written, not yet renamed) or ``after`` it: how the tests prove that a run killed
#: between any two of its writes resumes to the numbers of an uninterrupted one.
KILL_AT = "ODIRKIT_KILL_AT"
_writes: dict[str, int] = {}


def _kill_point(path: Path, when: str) -> None:
    spec = os.environ.get(KILL_AT)
    if not spec:
        return
    moment, name, count = spec.split(":")
    if name != path.name:
        return
    if when == "before":  # each write of the file is counted as it begins
        _writes[name] = _writes.get(name, 0) + 1
    if moment == when and _writes.get(name, 0) == int(count):
        os._exit(137)


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` via a temporary file and a rename; the file
    gets the permissions of any new file (the user's umask), not the temporary's 0600.

    Raises :class:`RunError` naming the file when its folder cannot be written."""
    path = Path(path)
    _kill_point(path, "before")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise RunError(f"{path}: cannot write ({exc.strerror or exc})") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        _kill_point(path, "during")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _kill_point(path, "after")


def remove_stale_temporaries(folder: str | Path) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp``) a killed writer left under ``folder``;
    returns them. Safe only while nothing else writes there (a resumed run's own folder)."""
    stale = [p for p in Path(folder).rglob(".*.tmp") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return stale


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (a temporary file, then a rename)."""
    atomic_write(path, lambda fh: fh.write(data))


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


@contextmanager
def exclusive_lock(path: str | Path) -> Iterator[bool]:
    """Hold ``path`` (a lock file) exclusively for the block; yields whether it is held
    (False where the folder cannot be written: there is nothing to protect then)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path))
        lock.acquire()
    except OSError:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
