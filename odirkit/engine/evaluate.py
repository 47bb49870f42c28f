"""Scoring an evaluation: per image, or per patient with both eyes fused.

At ``data.level = "patient"`` — the unit of the ODIR-2019 challenge — each
patient's held-out images are fused per label (maximum by default, or mean)
and compared with the patient's labels. Multi-label tasks also get the
challenge's own score (:func:`odirkit.metrics.odir_score`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from odirkit.data.prepare import DataBundle
from odirkit.engine.trainer import Evaluation
from odirkit.metrics import classification_metrics, odir_score


@dataclass
class Scores:
    """The metrics of one evaluation at the experiment's level."""

    metrics: dict[str, Any]
    image_metrics: dict[str, Any] | None = None
    patients: pd.DataFrame | None = None  # fused probabilities and targets per patient


def fuse_patients(
    data: DataBundle, evaluation: Evaluation, fusion: str
) -> tuple[pd.Index, np.ndarray, np.ndarray]:
    """Patient ids, fused probabilities ``[P, C]`` and patient targets.

    Single-label tasks keep the patients with exactly one of the task's labels.
    """
    labels = list(data.task.labels)
    ids = data.table["patient_id"].to_numpy()[evaluation.indices]
    frame = pd.DataFrame(evaluation.probs, columns=labels)
    frame["patient_id"] = ids
    grouped = frame.groupby("patient_id", sort=True)[labels]
    fused = grouped.max() if fusion == "max" else grouped.mean()
    assert data.patients is not None
    truth = data.patients.loc[fused.index, labels].to_numpy()
    if data.task.single_label:
        keep = truth.sum(axis=1) == 1
        return fused.index[keep], fused.to_numpy()[keep], truth[keep].argmax(axis=1)
    return fused.index, fused.to_numpy(), truth.astype(np.float32)


def score(data: DataBundle, evaluation: Evaluation, *, level: str, fusion: str) -> Scores:
    """Metrics of ``evaluation``; per patient when ``level == "patient"``."""
    task = data.task
    image = classification_metrics(
        evaluation.targets, evaluation.probs, labels=task.labels, single_label=task.single_label
    )
    if not task.single_label:
        image["odir"] = odir_score(evaluation.targets, evaluation.probs)
    if level != "patient":
        return Scores(image)
    ids, probs, targets = fuse_patients(data, evaluation, fusion)
    metrics = classification_metrics(
        targets, probs, labels=task.labels, single_label=task.single_label
    )
    if not task.single_label:
        metrics["odir"] = odir_score(targets, probs)
    table = pd.DataFrame(probs, columns=list(task.labels), index=ids).rename_axis("ID")
    if task.single_label:
        table.insert(0, "target", [task.labels[i] for i in targets])
    else:
        for i, label in enumerate(task.labels):
            table[f"target_{label}"] = targets[:, i].astype(int)
    return Scores(metrics, image, table.reset_index())
