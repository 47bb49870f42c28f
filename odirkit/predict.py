"""Predicting with a finished run: per-patient probabilities in the challenge's format.

The input is a folder of photographs named ``<ID>_left.<ext>`` and
``<ID>_right.<ext>`` (as the ODIR-5K test set), or a workbook or CSV with the
columns ``ID``, ``Left-Fundus`` and ``Right-Fundus`` whose images are found by
name under the file's folder. Each image is preprocessed as in training, the
run's model gives its probabilities, and each patient's eyes are fused per
label by the run's ``data.fusion`` (N by the minimum over the eyes: see
:mod:`odirkit.fusion`).
"""

from __future__ import annotations

import json
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from odirkit.config import Experiment, resolve_document
from odirkit.data.images import IMAGE_SUFFIXES, Preprocessing, preprocess
from odirkit.engine.checkpoint import load_checkpoint
from odirkit.engine.device import resolve_device
from odirkit.engine.models import build_model
from odirkit.errors import DataError, RunError
from odirkit.fusion import fuse_eyes
from odirkit.plugins import Registry

EYE_FILE = re.compile(r"^(?P<id>.+)_(?P<eye>left|right)$", re.IGNORECASE)


@dataclass
class InputImage:
    patient_id: str
    eye: str
    path: Path
    age: float = float("nan")
    sex: str = ""


def find_variant(run_dir: Path) -> Path:
    """The variant folder: ``run_dir`` itself, or its only (finished) variant."""
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        return run_dir
    variants = sorted(p for p in run_dir.glob("*") if (p / "config.json").exists())
    if len(variants) == 1:
        return variants[0]
    if not variants:
        raise RunError(f"{run_dir}: not an odirkit run folder (no config.json)")
    names = ", ".join(p.name for p in variants)
    raise RunError(f"{run_dir}: holds several variants ({names}); pass one of their folders")


def reported_checkpoint(variant_dir: Path) -> str:
    """The checkpoint a run reports (metrics.json), else best when it exists, else last."""
    try:
        return str(json.loads((variant_dir / "metrics.json").read_text())["checkpoint"])
    except (OSError, ValueError, KeyError):
        return "best" if (variant_dir / "checkpoints" / "best.pt").exists() else "last"


def run_temperature(variant_dir: Path, checkpoint: str) -> float | None:
    """The temperature fitted on validation for the reported checkpoint (None: not fitted)."""
    try:
        final = json.loads((variant_dir / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    if final.get("checkpoint") != checkpoint:
        return None
    value = (final.get("final") or {}).get("temperature")
    return float(value) if value else None


def load_trained(
    variant_dir: Path, registry: Registry, checkpoint: str | None = None
) -> tuple[Experiment, torch.nn.Module]:
    """The run's experiment and its model with the chosen checkpoint's weights (default: the
    checkpoint the run reports)."""
    from odirkit.engine.run import rebase_paths

    checkpoint = checkpoint or reported_checkpoint(variant_dir)
    doc = json.loads((variant_dir / "config.json").read_text())
    (exp,) = resolve_document(
        rebase_paths(doc, variant_dir), registry, source=str(variant_dir / "config.json")
    )
    path = variant_dir / "checkpoints" / f"{checkpoint}.pt"
    if not path.exists():
        raise RunError(f"{path}: no such checkpoint (is the run finished?)")
    state = load_checkpoint(path)
    model = build_model(exp, len(exp.labels))
    try:
        model.load_state_dict(state["model"])
    except (KeyError, RuntimeError) as exc:
        raise RunError(
            f"{path}: does not fit model {exp.model.name!r} ({str(exc).splitlines()[0]})"
        ) from None
    return exp, model


def find_inputs(source: Path) -> list[InputImage]:
    """The images to predict, from a folder or from an annotation file."""
    source = Path(source)
    if source.is_dir():
        found = []
        for path in sorted(source.rglob("*")):
            match = EYE_FILE.match(path.stem)
            if path.suffix.lower() in IMAGE_SUFFIXES and match:
                found.append(InputImage(match["id"], match["eye"].lower(), path))
        if not found:
            raise DataError(f"{source}: no images named <ID>_left.jpg / <ID>_right.jpg")
        return found
    if not source.is_file():
        raise DataError(f"{source}: no such folder or file")
    try:
        frame = (
            pd.read_excel(source)
            if source.suffix.lower() in {".xlsx", ".xls"}
            else pd.read_csv(source, keep_default_na=False)
        )
    except Exception as exc:
        raise DataError(f"{source}: cannot read ({exc})") from None
    frame = frame.rename(columns={c: " ".join(str(c).split()) for c in frame.columns})
    needed = ["ID", "Left-Fundus", "Right-Fundus"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise DataError(f"{source}: lacks column(s) {', '.join(missing)}")
    by_name = {p.name: p for p in source.parent.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES}
    found = []
    for record in frame.to_dict("records"):
        for eye in ("left", "right"):
            name = str(record[f"{eye.capitalize()}-Fundus"]).strip()
            path = by_name.get(name)
            if path is None:
                raise DataError(
                    f"{source}: image {name} of patient {record['ID']} not found "
                    f"under {source.parent}"
                )
            found.append(
                InputImage(
                    str(record["ID"]).strip(),
                    eye,
                    path,
                    age=record.get("Patient Age", float("nan")),
                    sex=str(record.get("Patient Sex", "")),
                )
            )
    return found


@torch.inference_mode()
def predict(
    variant_dir: Path,
    source: Path,
    registry: Registry,
    *,
    checkpoint: str | None = None,
    batch_size: int = 32,
) -> pd.DataFrame:
    """Per-patient fused probabilities: ``ID`` and one column per label of the run.

    With the run's reported checkpoint, its logits are divided by the temperature
    fitted on validation (``eval.calibrate``) before they become probabilities.
    """
    checkpoint = checkpoint or reported_checkpoint(variant_dir)
    exp, model = load_trained(variant_dir, registry, checkpoint)
    temperature = run_temperature(variant_dir, checkpoint) or 1.0
    device = resolve_device(exp.config.device)
    model.to(device).eval()
    inputs = find_inputs(source)
    prep = Preprocessing(
        size=exp.image_size,
        crop_to_fov=exp.config.data.crop_to_fov,
        circle_crop=exp.config.data.circle_crop,
    )
    with ThreadPoolExecutor() as pool:
        images = list(pool.map(lambda item: preprocess(item.path, prep), inputs))
    meta = exp.model.meta
    mean = torch.tensor(meta.get("mean", (0.5, 0.5, 0.5)), device=device).view(1, 3, 1, 1)
    std = torch.tensor(meta.get("std", (0.5, 0.5, 0.5)), device=device).view(1, 3, 1, 1)
    single = _single_label(variant_dir)
    metadata = _metadata(variant_dir, inputs) if exp.config.model.metadata else None
    probs = []
    for start in range(0, len(images), batch_size):
        batch = torch.from_numpy(np.stack(images[start : start + batch_size])).permute(0, 3, 1, 2)
        x = (batch.to(device).float() / 255.0 - mean) / std
        if exp.config.model.metadata:
            logits = model(x, metadata[start : start + batch_size].to(device))
        else:
            logits = model(x)
        logits = logits.float() / temperature
        probs.append((logits.softmax(1) if single else logits.sigmoid()).float().cpu().numpy())
    fused = fuse_eyes(
        np.concatenate(probs),
        [item.patient_id for item in inputs],
        exp.labels,
        exp.config.data.fusion,
    )
    fused = fused.rename_axis("ID").reset_index()
    order = pd.to_numeric(fused["ID"], errors="coerce")
    if order.notna().all():
        fused = fused.iloc[np.argsort(order.to_numpy(), kind="stable")]
    return fused.reset_index(drop=True).round(6)


def _metadata(variant_dir: Path, inputs: list[InputImage]) -> torch.Tensor:
    """Age and sex of the inputs, standardised as in training (unknown without a workbook)."""
    from odirkit.data.prepare import metadata_features

    stats = json.loads((variant_dir / "data.json").read_text()).get("age_normalisation", {})
    table = pd.DataFrame({"age": [i.age for i in inputs], "sex": [i.sex for i in inputs]})
    if table["age"].isna().all():
        from odirkit.console import warn

        warn(
            "this model uses age and sex, and the images come without them: they are taken "
            "as unknown (give a workbook with Patient Age and Patient Sex instead)"
        )
    features = metadata_features(table, stats.get("mean", 0.0), stats.get("std", 1.0))
    return torch.from_numpy(features)


def _single_label(variant_dir: Path) -> bool:
    """Whether the run trained a single-label task (softmax) or a multi-label one (sigmoid)."""
    try:
        data = json.loads((variant_dir / "data.json").read_text())
        return data.get("task") == "single_label"
    except (OSError, ValueError):
        return False
