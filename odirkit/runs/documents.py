"""Reading a run folder's documents back: JSON with a clear error, predictions tables, the data
paths kept relative, whether a process still runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from odirkit.errors import RunError

if TYPE_CHECKING:  # for annotations: layout imports this module
    from odirkit.runs.layout import VariantDirectory

#: the paths of a resolved configuration that are relative to the working directory
RELATIVE_PATHS = (
    ("data", "root"),
    ("data", "cache_dir"),
    ("data", "split_file"),
    ("model", "weights"),
)


CHECKPOINTS = ("best", "last")
#: the predictions per patient (both eyes together), beside those per photograph
PATIENT_PREDICTIONS = "patient_predictions.csv"


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: missing ({what})") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable ({exc})") from None


def process_alive(pid: int) -> bool:
    """Whether a process of this host with that id runs."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_predictions(path: Path, labels: list[str] | None = None) -> pd.DataFrame:
    """A prediction file a run wrote, checked: ``predictions.csv`` (``patient_id``, ``eye``,
    ``prob_<L>``) or ``patient_predictions.csv`` (``ID``, ``<L>``), with the targets.

    Raises :class:`RunError` naming the file when it is missing, unreadable, or not what
    the run wrote (another command's output saved over it, say)."""
    try:
        frame = pd.read_csv(path, dtype={"patient_id": str, "ID": str}, keep_default_na=False)
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if labels is not None:
        patient = path.name == PATIENT_PREDICTIONS
        keys = ["ID"] if patient else ["patient_id", "eye"]
        probs = list(labels) if patient else [f"prob_{label}" for label in labels]
        targets = ["target"] if "target" in frame.columns else [f"target_{x}" for x in labels]
        missing = [c for c in [*keys, *probs, *targets] if c not in frame.columns]
        if missing:
            raise RunError(
                f"{path}: not the predictions this run wrote (no column(s) "
                f"{', '.join(missing)}); was another file saved over it? Re-create it with "
                "odirkit run --resume after removing it, or use another run"
            )
    return frame


def rebase_paths(doc: dict[str, Any], vdir: VariantDirectory) -> dict[str, Any]:
    """Relative data paths of a saved run, made relative to where the run was started,
    so that resuming, predicting or explaining works from any working directory."""
    try:
        start = Path(vdir.environment()["working_directory"])
    except (RunError, KeyError):
        return doc
    for table, key in RELATIVE_PATHS:
        value = doc.get(table, {}).get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            here, there = Path(value), start / value
            if not here.exists() and there.exists():
                doc[table][key] = str(there)
    return doc
