"""Ensembles: the average of finished runs' probabilities on their shared test images.

Thiry et al. (2021) name ensembling their models as the next step. The runs
must have learned the same labels the same way; their held-out images are
matched by patient, eye and file (runs with the same seed hold out the same
patients, whatever the model). At patient level the runs' fused per-patient
probabilities are averaged instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from odirkit.engine.checkpoint import write_json, write_text
from odirkit.errors import RunError
from odirkit.metrics import classification_metrics, odir_score


@dataclass
class Member:
    directory: Path
    final: dict[str, Any]
    predictions: pd.DataFrame


def _member(directory: Path) -> Member:
    try:
        final = json.loads((directory / "metrics.json").read_text())
    except (OSError, ValueError):
        raise RunError(f"{directory}: not a finished run (no readable metrics.json)") from None
    patient = final.get("level") == "patient"
    name = "patient_predictions.csv" if patient else "predictions.csv"
    try:
        predictions = pd.read_csv(
            directory / name, dtype={"patient_id": str, "ID": str}, keep_default_na=False
        )
    except OSError:
        raise RunError(f"{directory}: {name} is missing") from None
    return Member(directory, final, predictions)


def ensemble(directories: list[Path], out_dir: Path) -> dict[str, Any]:
    """Average the members' probabilities; write and return the metrics."""
    members = [_member(d) for d in directories]
    if len(members) < 2:
        raise RunError("an ensemble needs at least two finished runs")
    first = members[0].final
    for member in members[1:]:
        for key in ("labels", "task", "level"):
            if member.final.get(key) != first.get(key):
                raise RunError(
                    f"{member.directory} has {key} {member.final.get(key)!r} but "
                    f"{members[0].directory} has {first.get(key)!r}: runs to ensemble must agree"
                )
    labels: list[str] = first["labels"]
    single = first["task"] == "single_label"
    patient = first.get("level") == "patient"
    keys = ["ID"] if patient else ["patient_id", "eye", "path"]
    probs = [label if patient else f"prob_{label}" for label in labels]
    shared = members[0].predictions[keys]
    for member in members[1:]:
        shared = shared.merge(member.predictions[keys], on=keys)
    if shared.empty:
        raise RunError("the runs share no held-out image: were they split with the same seed?")
    stacked = []
    for member in members:
        aligned = shared.merge(member.predictions, on=keys, how="left")
        stacked.append(aligned[probs].to_numpy(dtype=float))
    mean = np.mean(stacked, axis=0)
    reference = shared.merge(members[0].predictions, on=keys, how="left")
    if single:
        targets = np.array([labels.index(t) for t in reference["target"]])
    else:
        targets = reference[[f"target_{label}" for label in labels]].to_numpy()
    metrics = classification_metrics(targets, mean, labels=labels, single_label=single)
    if not single:
        metrics["odir"] = odir_score(targets, mean)
    out = shared.copy()
    for i, column in enumerate(probs):
        out[column] = np.round(mean[:, i], 6)
    write_text(
        out_dir / ("patient_predictions.csv" if patient else "predictions.csv"),
        out.to_csv(index=False),
    )
    result = {
        "ensemble_of": [str(m.directory) for m in members],
        "members_f1_micro": {str(m.directory): m.final["final"]["f1_micro"] for m in members},
        "shared_test_samples": len(shared),
        "labels": labels,
        "task": first["task"],
        "level": first.get("level", "image"),
        "final": metrics,
    }
    write_json(out_dir / "metrics.json", result)
    return result
