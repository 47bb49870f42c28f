"""Checkpoints: written atomically (:mod:`odirkit.files`), read safely.

Checkpoints hold only tensors and plain Python values and are read with
``torch.load(weights_only=True)``: opening one cannot run code.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from odirkit.errors import RunError
from odirkit.files import atomic_write

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Save a checkpoint atomically."""
    state = {"format": CHECKPOINT_FORMAT, **state}
    atomic_write(path, lambda fh: torch.save(state, fh))


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint safely; anything beyond tensors and plain values is refused.

    Raises :class:`RunError` naming the file when it is missing, unreadable, not
    odirkit's, or holds other objects."""
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
