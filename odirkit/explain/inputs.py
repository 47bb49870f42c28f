"""Explaining a finished run: the images from its data or from files, the explainers asked for,
and the flags read back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from odirkit.config import ExplainOptions, PluginCall
from odirkit.console import warn
from odirkit.data.fundus_check import check_fundus
from odirkit.data.images import IMAGE_SUFFIXES
from odirkit.data.pairs import BOTH, LEFT_ONLY
from odirkit.data.prepare import prepare_data
from odirkit.engine.device import resolve_device
from odirkit.engine.models import build_reinitialised
from odirkit.errors import ConfigError, DataError
from odirkit.explain.explaining import (
    explain,
)
from odirkit.explain.records import (
    ExplainInputs,
    Explanations,
)
from odirkit.eyes import LEFT, RIGHT
from odirkit.params import Where
from odirkit.plugins import Registry
from odirkit.predict import load_trained
from odirkit.runs import VariantDirectory
from odirkit.runs.names import ExplainFiles
from odirkit.seeding import Stream, derive_seed
from odirkit.view import ModelView


def inputs_from_data(data: Any, view: ModelView, limit: int) -> ExplainInputs:
    """The first ``limit`` test images of a data bundle, with their true classes."""
    if data.per_patient:
        return _photographs_of_patients(data, view, limit)
    index = data.test_idx[:limit]
    rows = data.table.iloc[index].reset_index(drop=True)
    if data.task.single_label:
        true = [[int(t)] for t in data.targets[index]]
    else:
        true = [[int(i) for i in np.flatnonzero(t)] for t in data.targets[index]]
    return ExplainInputs(
        images=data.store.batch(index), rows=rows, true=true, extra=view.extra_inputs(rows)
    )


def _photographs_of_patients(data: Any, view: ModelView, limit: int) -> ExplainInputs:
    """A both-eyes run's first test patients, each photograph of theirs (up to ``limit``)
    with its other eye; the true classes are the patient's labels."""
    store = data.store
    photos, partners, sides, true = [], [], [], []
    for patient in data.test_idx:
        left, right = (int(i) for i in store.photographs[patient])
        target = data.targets[patient]
        labels = [int(target)] if data.task.single_label else np.flatnonzero(target).tolist()
        one_eye = data.table["eye"].iloc[patient] != BOTH
        own = [(left, right, LEFT), (right, left, RIGHT)]
        if one_eye:  # the photograph there is, once, beside itself as in training
            flag = data.table["eye"].iloc[patient]
            own = [(left, left, LEFT if flag == LEFT_ONLY else RIGHT)]
        for photo, partner, side in own:
            photos.append(photo)
            partners.append(partner)
            sides.append(side)
            true.append([int(i) for i in labels])
        if len(photos) >= limit:
            break
    photos, partners, sides, true = photos[:limit], partners[:limit], sides[:limit], true[:limit]
    rows = data.photos.iloc[photos].reset_index(drop=True)
    return ExplainInputs(
        images=store.images.batch(np.array(photos)),
        rows=rows,
        true=true,
        extra=view.extra_inputs(rows),
        partners=store.images.batch(np.array(partners)),
        sides=torch.tensor(sides, dtype=torch.long),
    )


def inputs_from_files(source: Path, view: ModelView) -> ExplainInputs:
    """Images given by the user: a file, or every image in a folder (true classes, age and
    sex unknown).

    Raises :class:`DataError` when ``source`` does not exist, holds no image, or no usable
    fundus photograph."""
    source = Path(source)
    if source.is_dir():
        paths = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    elif source.is_file():
        paths = [source]
    else:
        raise DataError(f"{source}: no such image or folder")
    if not paths:
        raise DataError(f"{source}: no images found")
    stems = [p.stem for p in paths]
    eyes = [s.endswith(("_left", "_right")) for s in stems]
    rows = pd.DataFrame(
        {
            "patient_id": [
                s.rsplit("_", 1)[0] if e else s for s, e in zip(stems, eyes, strict=True)
            ],
            "eye": [s.rsplit("_", 1)[1] if e else "" for s, e in zip(stems, eyes, strict=True)],
            "path": [str(p) for p in paths],
            "age": float("nan"),
            "sex": "",
        }
    )
    arrays, kept = [], []
    for i, path in enumerate(paths):
        image = view.preprocess(path)
        verdict = check_fundus(image)
        if not verdict.usable:
            warn(f"{path}: {verdict.message}; not explained")
            continue
        arrays.append(image)
        kept.append(i)
    if not arrays:
        raise DataError(f"{source}: no usable fundus photograph to explain")
    rows = rows.iloc[kept].reset_index(drop=True)
    images = view.batch(arrays)
    paths = [paths[i] for i in kept]
    partners, sides = None, None
    if view.eyes == 2:  # each photograph beside its patient's other one (or itself)
        where = {(r.patient_id, r.eye): i for i, r in enumerate(rows.itertuples())}
        other = {"left": "right", "right": "left"}
        index = [
            where.get((r.patient_id, other.get(r.eye, "")), i)
            for i, r in enumerate(rows.itertuples())
        ]
        partners = images[torch.tensor(index)]
        sides = torch.tensor([RIGHT if eye == "right" else LEFT for eye in rows["eye"]])
    return ExplainInputs(
        images=images,
        rows=rows,
        true=[[] for _ in paths],
        extra=view.extra_inputs(rows),
        partners=partners,
        sides=sides,
    )


def explainer_calls(
    registry: Registry, names: Sequence[str] | None, configured: Sequence[PluginCall], limit: int
) -> list[PluginCall]:
    """The explainers named, else the run's own, else every installed one.

    Raises :class:`ConfigError` when no explainer plugin is installed."""
    if names:
        specs = [registry.get("explainer", name) for name in names]
    elif configured:
        return list(configured)
    else:
        specs = registry.specs("explainer")
    if not specs:
        raise ConfigError("no explainer plugin is installed")
    options = ExplainOptions(max_images=limit).model_dump()
    return [
        PluginCall(
            spec, spec.validate({}, where=Where(None, f"explainer {spec.name}")), None, options
        )
        for spec in specs
    ]


def explain_run(
    vdir: VariantDirectory,
    registry: Registry,
    *,
    explainers: Sequence[str] | None = None,
    labels: Sequence[str] | None = None,
    images: Path | None = None,
    layer: str | None = None,
    max_images: int = 64,
    checkpoint: str | None = None,
    out_dir: Path,
) -> Explanations:
    """Explain a finished run: its test images, or the photographs in ``images``.

    Raises :class:`ConfigError` for a ``labels`` entry the run did not learn."""

    exp, model, view = load_trained(vdir, registry, checkpoint)
    calls = explainer_calls(registry, explainers, exp.explainers, max_images)
    every_installed = not explainers and not exp.explainers
    asked = None
    if labels:
        unknown = [x for x in labels if x not in view.labels]
        if unknown:
            raise ConfigError(
                f"--label {unknown[0]!r}: the run learned {', '.join(view.labels)} only"
            )
        asked = [view.labels.index(x) for x in labels]
    device = resolve_device(exp.config.device)
    random_model = None
    if images is not None:
        inputs = inputs_from_files(images, view)
    else:
        data = prepare_data(exp, both_eyes=exp.eyes == 2)
        inputs = inputs_from_data(data, view, max_images)

        def random_model() -> nn.Module:
            torch.manual_seed(derive_seed(exp.config.seed, Stream.EXPLAIN))
            return build_reinitialised(exp, len(view.labels))

    return explain(
        model=model,
        view=view,
        calls=calls,
        inputs=inputs,
        device=device,
        out_dir=out_dir,
        seed=exp.config.seed,
        random_model=random_model,
        asked=asked,
        layer_override=layer,
        skip_inapplicable=every_installed,  # those asked for say why they cannot apply
    )


def read_flags(explain_dir: Path) -> list[str]:
    """The flags of explanations written earlier: failed sanity checks (``sanity.csv``)
    and localisation no better than chance (``localisation.csv``)."""
    folder = Path(explain_dir)
    sanity = localisation = None
    if (folder / ExplainFiles.SANITY).exists():
        table = pd.read_csv(folder / ExplainFiles.SANITY)
        if {"fails_randomisation", "fails_input_dependence"} <= set(table.columns):
            sanity = table
    if (folder / ExplainFiles.LOCALISATION).exists():
        localisation = pd.read_csv(folder / ExplainFiles.LOCALISATION)
    return Explanations([], localisation=localisation, sanity=sanity).flagged()
