"""The whole of explaining a model: choosing the image classes, computing, scoring, drawing and
writing the explain/ folder.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from odirkit.config import PluginCall
from odirkit.console import progress_bar, warn
from odirkit.data.images import FOV_THRESHOLD
from odirkit.errors import NotApplicable, RunError
from odirkit.explain.drawing import (
    _png,
    overlay,
    save_grid,
)
from odirkit.explain.maps import (
    compute_maps,
    targets_of_logits,
)
from odirkit.explain.records import (
    ExplainInputs,
    Explanations,
    ImageClass,
)
from odirkit.explain.scores import (
    localisation_scores,
    sanity_checks,
)
from odirkit.eyes import OneEye
from odirkit.files import write_bytes, write_json, write_text
from odirkit.layers import explained_layer, not_applicable
from odirkit.runs.names import ExplainFiles
from odirkit.view import ModelView


def choose_image_classes(
    inputs: ExplainInputs,
    predicted: list[list[int]],
    labels: Sequence[str],
    asked: Sequence[int] | None,
    max_images: int,
) -> list[ImageClass]:
    """The image classes (one image, one class) to explain; see the module's documentation."""
    image_classes: dict[tuple[int, int], ImageClass] = {}

    def add(image: int, target: int, **flags: bool) -> None:
        item = image_classes.setdefault((image, target), ImageClass(image, target))
        for key, value in flags.items():
            setattr(item, key, getattr(item, key) or value)

    count = min(max_images, len(inputs.images))
    for image in range(count):
        for target in asked if asked else predicted[image]:
            add(image, target, shown=True)
        for target in inputs.true[image]:
            column = f"mask_path_{labels[target]}"
            if (
                column in inputs.rows.columns
                and isinstance(inputs.rows[column].iloc[image], str)
                and inputs.rows[column].iloc[image]
            ):
                add(image, target, lesion=True)
    for target in asked if asked else range(len(labels)):
        for image in range(count):
            if target in inputs.true[image] or (not any(inputs.true) and image == 0):
                add(image, target, example=True, shown=True)
                break
    return sorted(image_classes.values(), key=lambda p: (p.image, p.target))


def explain(
    *,
    model: nn.Module,
    view: ModelView,
    calls: Sequence[PluginCall],
    inputs: ExplainInputs,
    device: torch.device,
    out_dir: Path,
    seed: int,
    random_model: Callable[[], nn.Module] | None = None,
    asked: Sequence[int] | None = None,
    layer_override: str | None = None,
    skip_inapplicable: bool = False,
) -> Explanations:
    """Run ``calls`` (explainer plugins) on ``inputs``; write everything to ``out_dir``.

    An explainer that declares it cannot apply to ``model`` (meta ``applies_to``) raises
    :class:`NotApplicable`, or with ``skip_inapplicable`` is left out with a warning.

    Raises :class:`RunError` for a both-eyes model whose inputs lack the other eyes."""
    model = model.to(device).eval()
    labels = view.labels
    x = view.normalise(inputs.images, device)
    meta = tuple(t.to(device) for t in inputs.extra)

    def runner(net: nn.Module) -> tuple[nn.Module, tuple[torch.Tensor, ...]]:
        """What the explainers call, and its extra inputs: a both-eyes model explains one
        photograph with its other eye held fixed (odirkit.eyes.OneEye)."""
        if view.eyes != 2:
            return net, meta
        if inputs.partners is None or inputs.sides is None:
            raise RunError("a both-eyes model needs each photograph's other eye to explain it")
        one = OneEye(net)
        other = one.features(view.normalise(inputs.partners, device))
        return one, (other, inputs.sides.to(device), *meta)

    explained, extra = runner(model)
    with torch.no_grad():
        logits = explained(x, *extra)
    predicted = targets_of_logits(logits, view.single_label)
    classes = [t[0] if t else p[0] for t, p in zip(inputs.true, predicted, strict=True)]
    fovs = [(image.float().mean(0) > FOV_THRESHOLD).numpy() for image in inputs.images]
    max_images = max((c.options.get("max_images", 64) for c in calls), default=64)
    image_classes = choose_image_classes(inputs, predicted, labels, asked, max_images)
    result = Explanations(image_classes)
    result.probabilities = view.probabilities(logits).cpu().numpy()
    result.predicted = predicted
    names = []
    with progress_bar() as bar:
        for call in calls:
            reason = not_applicable(call.spec.meta.get("applies_to"), model)
            if reason:
                message = f"explainer {call.name!r} cannot explain this model: {reason}"
                if not skip_inapplicable:
                    raise NotApplicable(message)
                warn(f"{message}; left out")
                continue
            explainer = call.build()
            needs_layer = call.spec.meta.get("needs_layer", True)
            layer_name = None
            with contextlib.ExitStack() as hooks:
                layer = None
                if needs_layer:
                    choice = layer_override or call.options.get("layer", "default")
                    layer_name, layer = hooks.enter_context(
                        explained_layer(model, choice, view.cam_layer, view.cam_reshape)
                    )
                task = bar.add_task(f"explain {call.name}", total=len(image_classes), status="")
                result.maps[call.name] = compute_maps(
                    explainer,
                    explained,
                    x,
                    image_classes,
                    layer,
                    seed=seed,
                    extra=extra,
                    progress=lambda n, t=task: bar.advance(t, n),
                    name=call.name,
                )
            names.append(call.name)
            if call.options.get("sanity", True):
                result.sanity = pd.concat(
                    [
                        result.sanity if result.sanity is not None else pd.DataFrame(),
                        sanity_checks(
                            call,
                            explainer,
                            random_model,
                            runner,
                            x,
                            image_classes,
                            layer_name,
                            seed,
                            result.maps[call.name],
                            device,
                            classes,
                            fovs,
                            view.cam_reshape,
                        ),
                    ],
                    ignore_index=True,
                )
    result.localisation = localisation_scores(inputs, result, labels, view)
    if result.localisation is not None and result.sanity is not None:
        reliable = dict(zip(result.sanity["explainer"], result.sanity["reliable"], strict=True))
        result.localisation["reliable"] = [
            bool(reliable.get(name, True)) for name in result.localisation["explainer"]
        ]
    _write(out_dir, inputs, result, labels, names, view)
    return result


def _write(
    out_dir: Path,
    inputs: ExplainInputs,
    result: Explanations,
    labels: Sequence[str],
    names: Sequence[str],
    view: ModelView | None = None,
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {name: maps.astype(np.float16) for name, maps in result.maps.items()}
    # strings as fixed-width unicode, so np.load needs no allow_pickle
    arrays["image"] = np.array([p.image for p in result.image_classes], dtype=np.int64)
    arrays["target"] = np.array([labels[p.target] for p in result.image_classes], dtype=str)
    images = arrays["image"]
    arrays["patient_id"] = np.array(inputs.rows["patient_id"].astype(str).tolist(), dtype=str)[
        images
    ]
    arrays["eye"] = np.array(inputs.rows["eye"].astype(str).tolist(), dtype=str)[images]
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    write_bytes(out_dir / ExplainFiles.MAPS, buffer.getvalue())
    for name in names:
        folder = out_dir / "overlays" / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, item in enumerate(result.image_classes):
            if not item.shown:
                continue
            row = inputs.rows.iloc[item.image]
            image = inputs.images[item.image].permute(1, 2, 0).numpy()
            data = _png(overlay(image, result.maps[name][i]))
            target = folder / ExplainFiles.OVERLAY.format(
                patient=row["patient_id"], eye=row["eye"], label=labels[item.target]
            )
            write_bytes(target, data)
    save_grid(out_dir / ExplainFiles.GRID, inputs, result, labels, names, view)
    if result.localisation is not None:
        write_text(
            out_dir / ExplainFiles.LOCALISATION, result.localisation.round(4).to_csv(index=False)
        )
    if result.sanity is not None:
        write_text(out_dir / ExplainFiles.SANITY, result.sanity.round(4).to_csv(index=False))
    write_json(
        out_dir / ExplainFiles.SUMMARY,
        {
            "explainers": list(names),
            "pairs": len(result.image_classes),
            "localisation": None
            if result.localisation is None
            else result.localisation.to_dict("records"),
            "sanity": None if result.sanity is None else result.sanity.to_dict("records"),
        },
    )
