"""Reading a run folder's documents back: JSON with a clear error, predictions tables, the data
paths kept relative, whether a process still runs.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pandas is imported where a table is read: odirkit's start-up stays light
    import pandas as pd

from odirkit.errors import RunError

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
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise RunError(f"{path}: missing ({what})") from None
    except (OSError, ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise RunError(f"{path}: unreadable ({exc})") from None
    if not isinstance(doc, dict):
        raise RunError(
            f"{path}: damaged (a JSON {type(doc).__name__}, not the object odirkit wrote)"
        )
    return doc


def process_alive(pid: object) -> bool:
    """Whether a process of this host with that id runs (never for an id that is not a
    positive whole number, as a damaged file may hold)."""
    if type(pid) is not int or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_predictions(
    path: Path, labels: list[str] | None = None, *, patient: bool | None = None
) -> pd.DataFrame:
    """A prediction file a run wrote, checked: images (``patient_id``, ``eye``,
    ``prob_<L>``, as ``predictions.csv``) or patients (``ID``, ``<L>``, as
    ``patient_predictions.csv``), with the targets. ``patient`` says which (by default, the
    file's name): ``val_predictions.csv`` is at the run's level, either.

    Raises :class:`RunError` naming the file when it is missing, unreadable, or not what
    the run wrote (another command's output saved over it, say)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, dtype={"patient_id": str, "ID": str}, keep_default_na=False)
    except FileNotFoundError:
        raise RunError(f"{path} is missing") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: unreadable ({type(exc).__name__}: {exc})") from None
    if labels is not None:
        if patient is None:
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
        numbers = probs if targets == ["target"] else [*probs, *targets]
        for column in numbers:
            values = pd.to_numeric(frame[column], errors="coerce")
            if values.isna().any():
                row = int(values.isna().to_numpy().argmax()) + 2  # the header is line 1
                raise RunError(
                    f"{path}: damaged (line {row}: column {column} holds "
                    f"{str(frame[column].iloc[row - 2])!r}, not a number); was it cut short?"
                )
            frame[column] = values
        if targets == ["target"]:
            unknown = sorted(set(frame["target"].astype(str)) - set(labels))
            if unknown:
                raise RunError(
                    f"{path}: damaged (target {unknown[0]!r} is none of the run's labels "
                    f"{', '.join(labels)})"
                )
    return frame


class VariantFiles:
    """Where each file of a variant's folder lives (the names and paths only: reading them
    back and the folder's relations are :class:`~odirkit.runs.layout.VariantDirectory`'s)."""

    CONFIG = "config.json"
    ENVIRONMENT = "environment.json"
    DATA = "data.json"
    SPLIT = "split.csv"
    SKIPPED = "skipped_images.csv"
    HISTORY = "metrics.csv"
    METRICS = "metrics.json"
    PREDICTIONS = "predictions.csv"
    PATIENT_PREDICTIONS = PATIENT_PREDICTIONS
    VAL_PREDICTIONS = "val_predictions.csv"
    FAILED = "failed.json"
    RUNNING = "running.json"
    JOB_LOG = "job.log"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    @property
    def name(self) -> str:
        """The variant's name, as its folder is named (``default-seed0``)."""
        return self.path.name

    @property
    def config_file(self) -> Path:
        """``config.json``: the resolved configuration, every default filled in."""
        return self.path / self.CONFIG

    @property
    def data_file(self) -> Path:
        """``data.json``: image and patient counts, what was left out and why."""
        return self.path / self.DATA

    @property
    def split_file(self) -> Path:
        """``split.csv``: each image's side (train, val, test)."""
        return self.path / self.SPLIT

    @property
    def skipped_file(self) -> Path:
        """``skipped_images.csv``: images left out (unreadable, not a fundus)."""
        return self.path / self.SKIPPED

    @property
    def history_file(self) -> Path:
        """``metrics.csv``: one row per epoch."""
        return self.path / self.HISTORY

    @property
    def metrics_file(self) -> Path:
        """``metrics.json``: the test scored once; written last, so it marks the end."""
        return self.path / self.METRICS

    @property
    def predictions_file(self) -> Path:
        """``predictions.csv``: the test images' probabilities and decisions."""
        return self.path / self.PREDICTIONS

    @property
    def patient_predictions_file(self) -> Path:
        """``patient_predictions.csv``: the test patients', eyes fused."""
        return self.path / self.PATIENT_PREDICTIONS

    @property
    def val_predictions_file(self) -> Path:
        """``val_predictions.csv``: the validation images' probabilities."""
        return self.path / self.VAL_PREDICTIONS

    @property
    def failed_file(self) -> Path:
        """``failed.json``: why the variant's job failed, and its log."""
        return self.path / self.FAILED

    @property
    def running_file(self) -> Path:
        """Written when a process starts the variant, removed when it ends: who runs it."""
        return self.path / self.RUNNING

    @property
    def job_log(self) -> Path:
        """The output of the variant's job under the ``pool`` launcher."""
        return self.path / self.JOB_LOG

    @property
    def figures(self) -> Path:
        """The variant's ``figures/`` folder."""
        return self.path / "figures"

    @property
    def explain_dir(self) -> Path:
        """The variant's ``explain/`` folder (the explanations made after training)."""
        return self.path / "explain"

    @property
    def external_root(self) -> Path:
        """The variant's ``external/`` folder: one folder per external validation."""
        return self.path / "external"

    def augment_dir(self, position: int, name: str) -> Path:
        """The folder of the ``position``-th augmenter of the experiment."""
        return self.path / "augment" / f"{position}-{name}"

    def checkpoint(self, which: str) -> Path:
        """``checkpoints/best.pt`` or ``checkpoints/last.pt``.

        Raises :class:`RunError` for anything but ``best`` or ``last``."""
        if which not in CHECKPOINTS:
            raise RunError(f"checkpoint {which!r}: use best or last")
        return self.path / "checkpoints" / f"{which}.pt"

    def environment_file(self) -> Path:
        """Where this start's environment goes: ``environment.json``, or, for a resumed run,
        a timestamped sibling (the first start's stays)."""
        first = self.path / self.ENVIRONMENT
        if not first.exists():
            return first
        return self.path / f"environment-resumed-{datetime.now():%Y%m%d-%H%M%S}.json"
