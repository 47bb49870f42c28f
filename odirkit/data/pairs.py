"""Patients as samples, for models that see both eyes at once (model meta ``eyes = 2``).

Each patient becomes one sample: their left and right photographs, in that
order, and the patient's own labels (the dataset's patient labels, e.g. the
ODIR-5K workbook's, else the union of the eyes'). A patient with one usable
photograph — the other missing, unreadable or failing the fundus check — is
kept, with that photograph in both places, and flagged: the sample's ``eye``
is ``"left only"`` or ``"right only"`` instead of ``"both"``, in the
prediction files, and ``data.json`` counts them. A single-label task keeps
the patients with exactly one of its labels (counted too).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from odirkit.data.table import Task
from odirkit.errors import DataError

BOTH, LEFT_ONLY, RIGHT_ONLY = "both", "left only", "right only"


@dataclass
class BothEyesStore:
    """A patient's two preprocessed photographs by patient index: ``item`` gives
    ``uint8 [2, 3, S, S]``, ``batch`` the patients' photographs interleaved ``[2B, 3, S, S]``
    (left, right, left, ...)."""

    images: Any  # the ImageStore of the photographs
    photographs: np.ndarray  # [P, 2]: each patient's left and right photograph (rows of ``images``)

    @property
    def size(self) -> int:
        """How many patients the store holds."""
        return self.images.size

    @property
    def tensor(self) -> torch.Tensor | None:
        """The photographs as one ``uint8 [N, 3, S, S]`` tensor when held in memory (rows of
        the image store, not patients), else None."""
        return self.images.tensor

    def __len__(self) -> int:
        return len(self.photographs)

    def item(self, index: int) -> torch.Tensor:
        """One patient's two photographs, left then right, ``uint8 [2, 3, S, S]``."""
        left, right = self.photographs[index]
        return torch.stack([self.images.item(int(left)), self.images.item(int(right))])

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        """Several patients' photographs, interleaved left, right: ``uint8 [2n, 3, S, S]``."""
        return self.images.batch(self.photographs[np.asarray(indices, dtype=np.int64)].reshape(-1))

    def append(self, images: torch.Tensor, spill_dir: Any) -> np.ndarray:
        """Add patients' photographs (``uint8 [2n, 3, S, S]``); returns their indices.

        Always raises :class:`DataError`: an offline augmenter's single photographs have no
        other eye."""
        raise DataError(
            "a both-eyes model trains on patients; an offline augmenter adds single "
            "photographs, which have no other eye"
        )


@dataclass
class PatientSamples:
    """Patients as samples for a both-eyes model: their table, targets, photographs and split."""

    table: pd.DataFrame  # one row per patient: patient_id, eye (both / left only / ...), ...
    targets: np.ndarray
    store: BothEyesStore
    side: np.ndarray  # each patient's split
    report: dict[str, Any]


def patients_as_samples(
    rows: pd.DataFrame,
    images: Any,
    side: np.ndarray,
    truth: pd.DataFrame,
    task: Task,
) -> PatientSamples:
    """The photographs ``rows`` (with their ``images`` store and split ``side``) as patients.

    ``truth`` holds each patient's labels (the task's columns).

    ``side`` is each photograph's split (``[N]``, as ``rows``); the result's arrays are one
    per patient (``targets`` ``[P]`` or ``[P, C]``).

    Raises :class:`DataError` when a photograph's eye is neither left nor right."""
    eyes = rows["eye"].astype(str).str.lower()
    unknown = sorted(set(eyes) - {"left", "right"})
    if unknown:
        raise DataError(
            f"a both-eyes model needs each photograph's eye (left or right); this dataset "
            f"has eye {unknown[0]!r}"
        )
    order = pd.unique(rows["patient_id"])
    position = {pid: i for i, pid in enumerate(order)}
    first = {"left": np.full(len(order), -1), "right": np.full(len(order), -1)}
    for row, (pid, eye) in enumerate(zip(rows["patient_id"], eyes, strict=True)):
        slot = first[eye]
        if slot[position[pid]] < 0:  # a second photograph of the same eye is not used
            slot[position[pid]] = row
    left, right = first["left"], first["right"]
    flag = np.where(left < 0, RIGHT_ONLY, np.where(right < 0, LEFT_ONLY, BOTH))
    left, right = np.where(left < 0, right, left), np.where(right < 0, left, right)
    patients = rows.iloc[left].reset_index(drop=True)
    paths = rows["path"].astype(str).to_numpy()
    table = pd.DataFrame(
        {
            "patient_id": order.astype(str),
            "eye": flag,
            "path": [f"{paths[a]};{paths[b]}" for a, b in zip(left, right, strict=True)],
            "left_path": paths[left],
            "right_path": paths[right],
            "age": patients["age"].to_numpy() if "age" in patients else np.nan,
            "sex": patients["sex"].to_numpy() if "sex" in patients else "",
        }
    )
    labels = truth.loc[table["patient_id"], list(task.labels)].to_numpy()
    keep = np.ones(len(table), dtype=bool)
    if task.single_label:
        keep = labels.sum(axis=1) == 1
        targets = labels.argmax(axis=1).astype(np.int64)
    else:
        targets = labels.astype(np.float32)
    by_patient = pd.Series(side, index=rows["patient_id"].astype(str).to_numpy())
    sides = by_patient[~by_patient.index.duplicated()].loc[table["patient_id"]].to_numpy()
    photographs = np.stack([left, right], axis=1)
    report = {
        "patients": int(keep.sum()),
        "both_eyes": int((flag[keep] == BOTH).sum()),
        "left_only": int((flag[keep] == LEFT_ONLY).sum()),
        "right_only": int((flag[keep] == RIGHT_ONLY).sum()),
        "one_eye_handling": "the available photograph in both places",
    }
    if task.single_label:
        report["left_out_without_exactly_one_label"] = int((~keep).sum())
    return PatientSamples(
        table=table[keep].reset_index(drop=True),
        targets=targets[keep],
        store=BothEyesStore(images, photographs[keep]),
        side=sides[keep],
        report=report,
    )
