"""Checkpoints and other run files, written atomically.

A file is written to a temporary name in the same folder and moved over the
target with ``os.replace``, so a kill leaves either the old file or the new
one, never half of one. Checkpoints hold only tensors and plain Python values
and are read with ``torch.load(weights_only=True)``: opening one cannot run code.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch

from odirkit.errors import RunError

CHECKPOINT_FORMAT = 1


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` through ``write(file)`` via a temporary file and a rename."""
    path = Path(path)
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
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def write_json(path: str | Path, data: Any) -> None:
    write_text(path, json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Save a checkpoint atomically."""
    state = {"format": CHECKPOINT_FORMAT, **state}
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely; anything beyond tensors and plain values is refused."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise RunError(f"{path}: checkpoint not found") from None
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" (it names {found.group(1)})" if found else ""
        raise RunError(
            f"{path}: refused to load: the checkpoint holds objects other than tensors and "
            f"plain values{what}, and unpickling them could run code"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise RunError(f"{path}: not a readable checkpoint ({_first_line(exc)})") from None
    if not isinstance(state, dict):
        raise RunError(f"{path}: not an odirkit checkpoint")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
