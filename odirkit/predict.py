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

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from odirkit.config import ResolvedVariant, resolve_document
from odirkit.console import warn
from odirkit.data.fundus_check import check_fundus
from odirkit.data.images import IMAGE_SUFFIXES
from odirkit.engine.checkpoint import load_checkpoint
from odirkit.engine.device import resolve_device
from odirkit.engine.models import build_model
from odirkit.errors import DataError, RunError
from odirkit.plugins import Registry
from odirkit.runs import VariantDirectory
from odirkit.view import ModelView

EYE_FILE = re.compile(r"^(?P<id>.+)_(?P<eye>left|right)$", re.IGNORECASE)


@dataclass
class InputImage:
    """One photograph to predict on: its patient, eye, file and (if known) age and sex."""

    patient_id: str
    eye: str
    path: Path
    age: float = float("nan")
    sex: str = ""


def load_trained(
    vdir: VariantDirectory, registry: Registry, checkpoint: str | None = None
) -> tuple[ResolvedVariant, torch.nn.Module, ModelView]:
    """The run's experiment, its model with the chosen checkpoint's weights (default: the
    one the run reports) and how it sees an image (with the fitted temperature when the
    checkpoint is the reported one).

    Raises :class:`RunError` when the checkpoint is missing or does not fit the model."""
    checkpoint = checkpoint or vdir.reported_checkpoint()
    (exp,) = resolve_document(vdir.config().to_json(), registry, source=str(vdir.config_file))
    path = vdir.checkpoint(checkpoint)
    if not path.exists():
        raise RunError(f"{path}: no such checkpoint (is the run finished?)")
    state = load_checkpoint(path)
    try:
        model = _model_with(exp, state["model"])
    except (KeyError, RuntimeError) as exc:
        raise RunError(
            f"{path}: does not fit model {exp.model.name!r} ({str(exc).splitlines()[0]})"
        ) from None
    view = ModelView.of(
        exp,
        single_label=vdir.single_label,
        age_stats=vdir.age_stats,
        temperature=vdir.temperature(checkpoint),
    )
    return exp, model, view


def _model_with(exp: ResolvedVariant, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The run's network holding the checkpoint's ``weights``.

    Built on PyTorch's meta device, where a model plugin builds the structure and loads
    nothing, so the pretrained weights the run started from (a local file, the Hugging
    Face hub, timm's) are neither read again nor needed: the run may be used on another
    machine, offline, or after that file moved. A network whose tensors the checkpoint
    does not all hold (buffers outside the state dict) is built as for training.
    """
    with torch.device("meta"):
        model = build_model(exp, len(exp.labels))
    model.load_state_dict(weights, assign=True)
    tensors = [*model.parameters(), *model.buffers()]
    if any(t.is_meta for t in tensors):
        model = build_model(exp, len(exp.labels))
        model.load_state_dict(weights)
    return model


def find_inputs(source: Path) -> list[InputImage]:
    """The images to predict, from a folder or from an annotation file.

    Raises :class:`DataError` naming ``source``: missing, unreadable, without the columns,
    or naming no photograph found."""
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
    found: dict[tuple[str, str], InputImage] = {}
    absent: list[str] = []
    for record in frame.to_dict("records"):
        pid = _patient_id(record["ID"])
        for eye in ("left", "right"):
            name = str(record[f"{eye.capitalize()}-Fundus"]).strip()
            if not name or (pid, eye) in found:  # a per-image table names each eye per row
                continue
            path = by_name.get(name)
            if path is None:
                absent.append(name)
                continue
            age = pd.to_numeric(record.get("Patient Age", float("nan")), errors="coerce")
            sex = str(record.get("Patient Sex", "")).strip()
            found[(pid, eye)] = InputImage(pid, eye, path, age=float(age), sex=sex)
    absent = sorted(set(absent))
    if absent:
        warn(
            f"{source}: {len(absent)} photograph(s) it names are not under {source.parent} "
            f"and are left out, e.g. {absent[0]}"
        )
    if not found:
        raise DataError(f"{source}: none of the photographs it names is under {source.parent}")
    return list(found.values())


def _patient_id(value: object) -> str:
    """A patient ID as text: ``88``, ``"88"`` and ``88.0`` (a spreadsheet's float) are one
    patient; ``"0088"`` keeps its zeros."""
    text = str(value).strip()
    return re.sub(r"^(\d+)\.0+$", r"\1", text)


@dataclass
class Prediction:
    """Per-patient probabilities, and what became of every image."""

    patients: pd.DataFrame  # ID and one column per label (the submission)
    images: pd.DataFrame  # image, patient_id, eye, usable, reason, predicted
    left_out: list[str]  # patients without a usable photograph, not in the submission


def _prepare(item: InputImage, view: ModelView, check: bool) -> tuple[np.ndarray | None, str, str]:
    """The preprocessed image (or None), the reason it is unusable (or ""), its message."""
    try:
        image = view.preprocess(item.path)
    except DataError as exc:
        return None, "unreadable", str(exc)
    if not check:
        return image, "", ""
    verdict = check_fundus(image)
    return image, verdict.reason, verdict.message


@dataclass(frozen=True)
class CheckPolicy:
    """What predict does with photographs that fail the fundus check: what the run did
    (its ``data.fundus_check``), unless ``--force`` keeps them all."""

    mode: str  # "warn" | "skip" | "error" | "off"
    force: bool = False

    @property
    def checks(self) -> bool:
        """Whether the fundus check runs at all."""
        return self.mode != "off"

    def keeps(self, reason: str) -> bool:
        """Whether a readable photograph with this check ``reason`` ("" = passed) is used."""
        return not reason or self.force or self.mode == "warn"

    def note(self) -> str:
        """What the check did, in words, for predict's output."""
        if self.force:
            return " (predicted anyway: --force)"
        return ' (kept, as the run kept them: data.fundus_check = "warn")'


@torch.inference_mode()
def predict(
    vdir: VariantDirectory,
    source: Path,
    registry: Registry,
    *,
    checkpoint: str | None = None,
    batch_size: int = 32,
    force: bool = False,
    workers: int | None = None,
) -> Prediction:
    """Per-patient fused probabilities: ``ID`` and one column per label of the run.

    The run's :class:`~odirkit.view.ModelView` does everything the run did to an
    image: preprocessing, normalisation, age and sex (from a workbook), the
    temperature fitted on validation, and the patient fusion. Every image is
    checked first (:mod:`odirkit.data.fundus_check`) and what fails is treated as
    the run treated it (its ``data.fundus_check``): kept and reported ("warn"),
    left out of its patient's fusion ("skip"; a patient with no usable image is
    then left out of the submission), or refused ("error"); ``force`` predicts
    from whatever there is. Images
    are decoded in parallel and streamed in chunks, so a folder of any size
    runs in bounded memory. A both-eyes model (``eyes = 2``) takes each
    patient's two photographs together instead of fusing; a patient with one
    usable photograph gets it in both places, as in training.
    """
    exp, model, view = load_trained(vdir, registry, checkpoint)
    device = resolve_device(exp.config.device)
    model.to(device).eval()
    inputs = find_inputs(source)
    table = pd.DataFrame({"age": [i.age for i in inputs], "sex": [i.sex for i in inputs]})
    if view.metadata and table["age"].isna().all():
        warn(
            "this model uses age and sex, and the images come without them: they are taken "
            "as unknown (give a workbook with Patient Age and Patient Sex instead)"
        )
    extra = view.extra_inputs(table)
    reasons: list[str] = [""] * len(inputs)
    messages: list[str] = [""] * len(inputs)
    policy = CheckPolicy(exp.config.data.fundus_check, force)
    run = _by_patient if view.eyes == 2 else _by_image
    predicted, fused = run(
        inputs, view, model, extra, device, batch_size, policy, workers, reasons, messages
    )
    images = pd.DataFrame(
        {
            "image": [str(i.path) for i in inputs],
            "patient_id": [i.patient_id for i in inputs],
            "eye": [i.eye for i in inputs],
            "usable": [not r for r in reasons],
            "reason": messages,
            "predicted": predicted,
        }
    )
    for row in images[~images["usable"]].itertuples(index=False):
        note = policy.note() if row.predicted else ""
        warn(f"{row.image}: {row.reason}{note}")
    ids = np.array([i.patient_id for i in inputs], dtype=object)
    left_out = sorted(set(ids) - set(fused["ID"]), key=_natural)
    order = pd.to_numeric(fused["ID"], errors="coerce")
    if order.notna().all():
        fused = fused.iloc[np.argsort(order.to_numpy(), kind="stable")]
    return Prediction(fused.reset_index(drop=True).round(6), images, left_out)


def _natural(patient: str) -> tuple[int, float, str]:
    try:
        return (0, float(patient), "")
    except ValueError:
        return (1, 0.0, patient)


def _prepared_chunks(inputs, view, batch_size, workers, reasons, messages, policy, groups):
    """Decode and check ``inputs`` in parallel, a chunk at a time (whole ``groups`` of input
    positions per chunk); yield each chunk's usable ``(position, image)`` pairs.

    Raises :class:`DataError` at the first photograph that fails the check when the run
    stopped on those (``data.fundus_check = "error"``) and ``--force`` is not given.
    """
    chunk = max(batch_size, 1) * 4
    with ThreadPoolExecutor(max_workers=workers) as pool:
        start = 0
        while start < len(groups):
            part_groups = groups[start : start + chunk]
            start += chunk
            part = [i for group in part_groups for i in group]
            prepared = list(pool.map(lambda i: _prepare(inputs[i], view, policy.checks), part))
            usable = {}
            for i, (image, reason, message) in zip(part, prepared, strict=True):
                reasons[i], messages[i] = reason, message
                if image is None:
                    continue
                if reason and policy.mode == "error" and not policy.force:
                    raise DataError(
                        f"{inputs[i].path}: {message}; the run stops on such photographs "
                        '(data.fundus_check = "error"): remove it, or --force to predict anyway'
                    )
                if policy.keeps(reason):
                    usable[i] = image
            yield part_groups, usable


def _by_image(inputs, view, model, extra, device, batch_size, policy, workers, reasons, messages):
    """Each photograph through the model; each patient's photographs fused."""
    probs = np.full((len(inputs), len(view.labels)), np.nan)
    groups = [[i] for i in range(len(inputs))]
    for _, usable in _prepared_chunks(
        inputs, view, batch_size, workers, reasons, messages, policy, groups
    ):
        items = list(usable.items())
        for b in range(0, len(items), batch_size):
            rows = [i for i, _ in items[b : b + batch_size]]
            batch = view.batch([image for _, image in items[b : b + batch_size]])
            index = torch.tensor(rows)
            held = [t[index].to(device) for t in extra]
            logits = view.logits(model, batch, held, device)
            probs[rows] = view.probabilities(logits).cpu().numpy()
    predicted = ~np.isnan(probs).any(axis=1)
    ids = np.array([i.patient_id for i in inputs], dtype=object)
    fused = view.fuse(probs[predicted], ids[predicted]).rename_axis("ID").reset_index()
    return predicted, fused


def _by_patient(inputs, view, model, extra, device, batch_size, policy, workers, reasons, messages):
    """A both-eyes model: each patient's left and right photograph together (one usable
    photograph serves as both, as in training; odirkit.data.pairs)."""
    patients: dict[str, list[int]] = {}
    for i, item in enumerate(inputs):
        patients.setdefault(item.patient_id, []).append(i)
    groups = list(patients.values())
    predicted = np.zeros(len(inputs), dtype=bool)
    found: dict[str, np.ndarray] = {}
    for part_groups, usable in _prepared_chunks(
        inputs, view, batch_size, workers, reasons, messages, policy, groups
    ):
        patients_eyes = []
        for group in part_groups:
            eyes = {inputs[i].eye: i for i in reversed(group) if i in usable}
            if not eyes:
                continue
            left = eyes.get("left", eyes.get("right"))
            right = eyes.get("right", left)
            patients_eyes.append((left, right))
            predicted[list(eyes.values())] = True
        for b in range(0, len(patients_eyes), batch_size):
            chunk = patients_eyes[b : b + batch_size]
            batch = view.batch([usable[i] for both in chunk for i in both])
            index = torch.tensor([left for left, _ in chunk])
            held = [t[index].to(device) for t in extra]
            logits = view.logits(model, batch, held, device)
            for (left, _), row in zip(chunk, view.probabilities(logits).cpu().numpy(), strict=True):
                found[inputs[left].patient_id] = row
    fused = pd.DataFrame([[pid, *row] for pid, row in found.items()], columns=["ID", *view.labels])
    return predicted, fused
