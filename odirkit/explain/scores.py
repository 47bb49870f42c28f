"""Scoring maps: the pointing game and energy inside a lesion, rank correlations, and the two
sanity checks (Adebayo et al. 2018).
"""

from __future__ import annotations

import contextlib
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.ndimage import binary_dilation
from scipy.stats import spearmanr
from torch import nn

from odirkit.config import PluginCall
from odirkit.data.images import FOV_THRESHOLD, preprocess_mask
from odirkit.explain.maps import (
    compute_maps,
)
from odirkit.explain.records import (
    INPUT_COMPARISONS,
    POINTING_TOLERANCE,
    SANITY_IMAGE_CLASSES,
    SANITY_LIMIT,
    ExplainInputs,
    Explanations,
    ImageClass,
)
from odirkit.layers import explained_layer
from odirkit.view import ModelView


def pointing_and_energy(
    heat: np.ndarray, mask: np.ndarray, fov: np.ndarray, tolerance: int
) -> tuple[float, float, float, float]:
    """For one map: whether its maximum hits the (dilated) mask, the share of its energy
    inside the mask, and what a uniform random point and a uniform map would score.

    ``heat`` ``[S, S]`` (non-negative), ``mask`` and ``fov`` ``bool [S, S]``; ``tolerance``
    in pixels. Each figure a fraction in [0, 1]."""

    grown = binary_dilation(mask, iterations=tolerance) if tolerance else mask
    y, x = np.unravel_index(int(np.argmax(heat)), heat.shape)
    total = float(heat.sum())
    energy = float(heat[mask].sum()) / total if total > 0 else 0.0
    field = max(float(fov.sum()), 1.0)
    chance = float((grown & fov).sum()) / field
    share = float((mask & fov).sum()) / field
    return float(grown[y, x]), energy, chance, share


def rank_correlation(a: np.ndarray, b: np.ndarray, region: np.ndarray | None = None) -> float:
    """Spearman's rank correlation of two maps, on a 56x56 grid (for speed), over the cells
    mostly inside ``region`` (the field of view) when it is given.

    ``a`` and ``b`` ``[S, S]``, ``region`` ``bool [S, S]``; NaN when fewer than three cells
    remain or a map is constant there."""

    def small(m: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.asarray(m, dtype=np.float32))[None, None]
        return torch.nn.functional.adaptive_avg_pool2d(t, 56).flatten().numpy()

    x, y = small(a), small(b)
    if region is not None:
        inside = small(region.astype(np.float32)) > 0.5
        x, y = x[inside], y[inside]
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def input_dependence(
    maps: np.ndarray,
    image_classes: Sequence[ImageClass],
    classes: Sequence[int],
    fovs: Sequence[np.ndarray],
) -> float:
    """Mean rank correlation between the maps of images of different classes (high: the
    maps hardly depend on the image).

    ``maps`` ``[P, S, S]``, one per image class; ``classes`` each image's class; ``fovs`` each
    image's field of view, ``bool [S, S]``. At most ``INPUT_COMPARISONS`` comparisons; NaN when
    none is defined."""
    shown = [(i, p) for i, p in enumerate(image_classes) if p.shown]
    scores = []
    for (i, a), (j, b) in itertools.combinations(shown, 2):
        if a.image == b.image or classes[a.image] == classes[b.image]:
            continue
        scores.append(rank_correlation(maps[i], maps[j], fovs[a.image] & fovs[b.image]))
        if len(scores) >= INPUT_COMPARISONS:
            break
    valid = [v for v in scores if not math.isnan(v)]
    return float(np.mean(valid)) if valid else float("nan")


def lesion_mask(
    inputs: ExplainInputs, image: int, label: str, view: ModelView | None
) -> np.ndarray | None:
    """The image's lesion mask for ``label`` in the image's frame, when there is one.

    ``bool [S, S]``, or None (no mask, or no view to preprocess it with)."""
    column = f"mask_path_{label}"
    if view is None or column not in inputs.rows.columns or "image_path" not in inputs.rows:
        return None
    row = inputs.rows.iloc[image]
    if not isinstance(row[column], str) or not row[column]:
        return None
    return preprocess_mask(row[column], row["image_path"], view.preprocessing)


def sanity_checks(
    call: PluginCall,
    explainer: Any,
    random_model: Callable[[], nn.Module] | None,
    runner: Callable[[nn.Module], tuple[nn.Module, tuple[torch.Tensor, ...]]],
    x: torch.Tensor,
    image_classes: list[ImageClass],
    layer_name: str | None,
    seed: int,
    trained: np.ndarray,
    device: torch.device,
    classes: Sequence[int],
    fovs: Sequence[np.ndarray],
    reshape: str | None = None,
) -> pd.DataFrame:
    """Both sanity checks for one explainer, and the verdict.

    ``x`` the normalised images ``[N, 3, S, S]``; ``trained`` the trained model's maps
    ``[P, S, S]`` of ``image_classes``; ``fovs`` each image's field of view, ``bool [S, S]``.
    One row: the rank correlation with the re-initialised model's maps and the input
    dependence (each NaN when undefined), the flat maps counted, and the verdicts."""
    randomisation, constant = float("nan"), 0
    subset = image_classes[:SANITY_IMAGE_CLASSES]
    if random_model is not None:
        fresh = random_model().to(device).eval()
        explained, extra = runner(fresh)
        with contextlib.ExitStack() as hooks:
            layer = None
            if layer_name:
                _, layer = hooks.enter_context(explained_layer(fresh, layer_name, None, reshape))
            randomised = compute_maps(
                explainer, explained, x, subset, layer, seed=seed, extra=extra, name=call.name
            )
        scores = [
            rank_correlation(trained[i], randomised[i], fovs[p.image]) for i, p in enumerate(subset)
        ]
        valid = [v for v in scores if not math.isnan(v)]
        randomisation = float(np.mean(valid)) if valid else float("nan")
        constant = len(scores) - len(valid)
    dependence = input_dependence(trained, image_classes, classes, fovs)
    fails_randomisation = bool(randomisation > SANITY_LIMIT)
    fails_input = bool(dependence > SANITY_LIMIT)
    return pd.DataFrame(
        [
            {
                "explainer": call.name,
                "pairs": len(subset),
                "rank_correlation_with_random_model": randomisation,
                "constant_maps": constant,
                "input_dependence": dependence,
                "fails_randomisation": fails_randomisation,
                "fails_input_dependence": fails_input,
                "reliable": not (fails_randomisation or fails_input),
            }
        ]
    )


def localisation_scores(
    inputs: ExplainInputs, result: Explanations, labels: Sequence[str], view: ModelView
) -> pd.DataFrame | None:
    """Per explainer and class, the pointing game and the energy inside the lesion
    (averaged over the images with a lesion mask) beside what a uniform random point in
    the field of view scores; None when no image has a mask."""
    lesion = [(i, p) for i, p in enumerate(result.image_classes) if p.lesion]
    if not lesion or "image_path" not in inputs.rows.columns:
        return None
    prep = view.preprocessing
    tolerance = max(1, round(POINTING_TOLERANCE * prep.size))
    masks, fovs = {}, {}
    for _, item in lesion:
        row = inputs.rows.iloc[item.image]
        label = labels[item.target]
        masks[(item.image, item.target)] = preprocess_mask(
            row[f"mask_path_{label}"], row["image_path"], prep
        )
        gray = inputs.images[item.image].float().mean(0).numpy()
        fovs[item.image] = gray > FOV_THRESHOLD
    records = []
    for name, maps in result.maps.items():
        for i, item in lesion:
            mask = masks[(item.image, item.target)]
            if not mask.any():
                continue
            hit, energy, chance, share = pointing_and_energy(
                maps[i], mask, fovs[item.image], tolerance
            )
            records.append(
                {
                    "explainer": name,
                    "label": labels[item.target],
                    "hit": hit,
                    "energy": energy,
                    "chance": chance,
                    "share": share,
                }
            )
    if not records:
        return None
    frame = pd.DataFrame(records)
    table = (
        frame.groupby(["explainer", "label"], sort=False)
        .agg(
            images=("hit", "size"),
            pointing_game=("hit", "mean"),
            random_point=("chance", "mean"),
            energy_in_mask=("energy", "mean"),
            uniform_map=("share", "mean"),
        )
        .reset_index()
    )
    return table
