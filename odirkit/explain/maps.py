"""Computing maps: the classes to explain and one map per image class (one image,
one class), batched, through an explainer plugin.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import nn

from odirkit.errors import PluginError
from odirkit.explain.records import (
    EXPLAIN_BATCH,
    ImageClass,
)
from odirkit.seeding import derive_seed


def predicted_targets(
    model: nn.Module, x: torch.Tensor, single_label: bool, extra: tuple[torch.Tensor, ...] = ()
) -> list[list[int]]:
    """The predicted class (single-label) or every label above 0.5 (multi-label; at
    least the most probable one).

    ``x`` is the normalised images ``[N, 3, S, S]``; one list of class indices per image."""
    with torch.no_grad():
        logits = model(x, *extra)
    return targets_of_logits(logits, single_label)


def targets_of_logits(logits: torch.Tensor, single_label: bool) -> list[list[int]]:
    """:func:`predicted_targets` from logits ``[N, C]`` already computed."""
    if single_label:
        return [[int(i)] for i in logits.argmax(1).tolist()]
    probs = logits.sigmoid()
    return [
        [int(i) for i in torch.nonzero(p > 0.5).flatten().tolist()] or [int(p.argmax())]
        for p in probs
    ]


def compute_maps(
    explainer: Callable[..., torch.Tensor],
    model: nn.Module,
    x: torch.Tensor,
    image_classes: Sequence[ImageClass],
    layer: nn.Module | None,
    *,
    seed: int,
    extra: tuple[torch.Tensor, ...] = (),
    batch_size: int = EXPLAIN_BATCH,
    progress: Callable[[int], None] | None = None,
    name: str = "explainer",
) -> np.ndarray:
    """``float32 [P, S, S]``: the explainer's map for each image class, in batches.

    The model's extra inputs, if any, are passed as ``additional_forward_args``
    (held fixed while the image is explained).

    Raises :class:`PluginError` when the explainer returns maps of another shape, or takes
    no ``additional_forward_args`` for a model with extra inputs."""
    maps = []
    for start in range(0, len(image_classes), batch_size):
        chunk = image_classes[start : start + batch_size]
        index = torch.tensor([p.image for p in chunk], device=x.device)
        targets = torch.tensor([p.target for p in chunk], device=x.device)
        torch.manual_seed(derive_seed(seed, start))  # SmoothGrad's noise repeats exactly
        if extra:
            held = tuple(t[index.cpu()].to(x.device) for t in extra)
            try:
                result = explainer(model, x[index], targets, layer, additional_forward_args=held)
            except TypeError as exc:
                if "additional_forward_args" not in str(exc):
                    raise
                raise PluginError(
                    f"explainer {name!r} takes no additional_forward_args, so it cannot explain "
                    "a model with extra inputs ([model] metadata = true)"
                ) from None
        else:
            result = explainer(model, x[index], targets, layer)
        if not isinstance(result, torch.Tensor) or result.shape != (len(chunk), *x.shape[-2:]):
            shape = tuple(result.shape) if isinstance(result, torch.Tensor) else type(result)
            raise PluginError(
                f"explainer {name!r} returned {shape}; expected [B, H, W] maps at the input size"
            )
        maps.append(result.detach().float().clamp_min(0).cpu().numpy())
        if progress is not None:
            progress(len(chunk))
    return np.concatenate(maps) if maps else np.zeros((0, *x.shape[-2:]), np.float32)
