"""Drawing maps: heat colours, overlays over the fundus and the grid of examples per class and
explainer.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from odirkit.explain.records import (
    ExplainInputs,
    Explanations,
)
from odirkit.explain.scores import (
    lesion_mask,
)
from odirkit.labels import LABEL_NAMES
from odirkit.view import ModelView

#: the maps' colours, low to high importance
HEAT = ("#1a9641", "#ffff33", "#d7191c")


def heat_colours(heat: np.ndarray) -> np.ndarray:
    """Importance in [0, 1] -> RGB in [0, 1], green through yellow to red.

    ``[H, W]`` in, ``[H, W, 3]`` out (any leading shape: ``[...]`` to ``[..., 3]``)."""
    from matplotlib.colors import LinearSegmentedColormap

    cmap = LinearSegmentedColormap.from_list("odirkit", list(HEAT))
    return cmap(heat)[..., :3]


def overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """A map drawn over a fundus image (``uint8 [H, W, 3]``), more opaque where it matters."""
    top = float(np.percentile(heat, 99.5)) or float(heat.max()) or 1.0
    level = np.clip(heat / top, 0.0, 1.0)
    alpha = (0.15 + 0.6 * level)[..., None]
    blended = (1 - alpha) * image.astype(np.float32) / 255.0 + alpha * heat_colours(level)
    return (np.clip(blended, 0, 1) * 255).round().astype(np.uint8)


def _png(array: np.ndarray) -> bytes:

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def save_grid(
    path: Path,
    inputs: ExplainInputs,
    result: Explanations,
    labels: Sequence[str],
    names: Sequence[str],
    view: ModelView | None = None,
) -> None:
    """One row per class (its example image), the image then one column per explainer;
    under each image its true class and the model's prediction with its probability,
    over each map the class it explains; the lesion's outline drawn over each where the
    image has a lesion mask; a colour bar for the maps' importance."""
    import matplotlib.pyplot as plt
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    from odirkit.figures import save_figure

    examples = sorted(
        ((i, p) for i, p in enumerate(result.image_classes) if p.example),
        key=lambda item: item[1].target,
    )
    if not examples:
        return
    columns = 1 + len(names)
    fig, axes = plt.subplots(
        len(examples),
        columns,
        figsize=(2.6 * columns + 0.8, 2.9 * len(examples)),
        squeeze=False,
    )
    for row, (i, item) in enumerate(examples):
        image = inputs.images[item.image].permute(1, 2, 0).numpy()
        axes[row][0].imshow(image)
        label = labels[item.target]
        axes[row][0].set_title(f"true: {label} ({LABEL_NAMES.get(label, label)})", fontsize=8)
        axes[row][0].set_xlabel(_prediction(result, item.image, labels), fontsize=8)
        mask = lesion_mask(inputs, item.image, label, view)
        for col, name in enumerate(names, start=1):
            axes[row][col].imshow(overlay(image, result.maps[name][i]))
            axes[row][col].set_title(f"{name}: map for {label}", fontsize=8)
        if mask is not None and mask.any():
            for ax in axes[row]:
                ax.contour(mask, levels=[0.5], colors="cyan", linewidths=0.7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
    fig.tight_layout(h_pad=1.5)
    cmap = LinearSegmentedColormap.from_list("odirkit", list(HEAT))
    bar = fig.colorbar(
        ScalarMappable(norm=Normalize(0, 1), cmap=cmap),
        ax=axes[:, 1:].ravel().tolist() if len(names) else axes.ravel().tolist(),
        fraction=0.025,
        pad=0.02,
    )
    bar.set_ticks([0, 0.5, 1], labels=["low", "", "high"])
    bar.set_label("importance (share of the map's top)", fontsize=8)
    save_figure(fig, path)


def _prediction(result: Explanations, image: int, labels: Sequence[str]) -> str:
    """ "predicted D, p = 0.73" for an image (empty when the model's answers are unknown)."""
    if result.probabilities is None or result.predicted is None:
        return ""
    chosen = result.predicted[image]
    probs = result.probabilities[image]
    return "predicted " + ", ".join(f"{labels[c]} (p = {probs[c]:.2f})" for c in chosen)
