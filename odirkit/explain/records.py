"""What explaining takes and gives: the images, the image classes (one image and one class,
:class:`ImageClass`), the maps and scores; the limits the checks use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

EXPLAIN_BATCH = 16


SANITY_IMAGE_CLASSES = 16  # the first image classes' maps, made again on a re-initialised model


INPUT_COMPARISONS = 64  # maps of two images of different classes compared (input dependence)


#: a rank correlation above this fails a sanity check (Adebayo et al. 2018 report
#: near-zero correlations for faithful maps after randomisation)
SANITY_LIMIT = 0.5


POINTING_TOLERANCE = 0.03  # of the image side: 15 px at 512


@dataclass
class ExplainInputs:
    """Images to explain and what is known of them."""

    images: torch.Tensor  # uint8 [N, 3, S, S]
    rows: pd.DataFrame  # patient_id, eye, path (and, when known, image_path, mask_path_<L>)
    true: list[list[int]]  # per image: the true class indices (empty when unknown)
    extra: tuple[torch.Tensor, ...] = ()  # the model's other inputs per image (age, sex)
    # a both-eyes model: each photograph's other eye (uint8 [N, 3, S, S]; itself when the
    # patient has one) and its side (0 left, 1 right)
    partners: torch.Tensor | None = None
    sides: torch.Tensor | None = None


@dataclass
class ImageClass:
    """An image class: one image (``image``, its row of the inputs) and one class (``target``,
    its index) to explain, and why."""

    image: int
    target: int
    shown: bool = False  # drawn as an overlay
    lesion: bool = False  # scored against a lesion mask
    example: bool = False  # the grid's example of its class


@dataclass
class Explanations:
    """The maps of every explainer for every image class, and the scores."""

    image_classes: list[ImageClass]
    maps: dict[str, np.ndarray] = field(default_factory=dict)  # name -> float32 [P, S, S]
    localisation: pd.DataFrame | None = None
    sanity: pd.DataFrame | None = None
    # the model's probabilities per image (float32 [N, C]: the view's softmax or sigmoid,
    # with its temperature) and its predicted classes, shown on the grid
    probabilities: np.ndarray | None = None
    predicted: list[list[int]] | None = None

    def flagged(self) -> list[str]:
        """One sentence per explainer that failed a sanity check, and per explainer and
        class whose localisation is no better than chance."""
        return self._sanity_flags() + self._chance_flags()

    def _chance_flags(self) -> list[str]:
        """Localisation at or below its random baseline: the maps' peaks fall on a lesion
        no more often than a random point of the field of view does (or their energy in
        the lesions is no more than a uniform map's). The model does not look there only
        when no measure says otherwise: where the other measure beats its baseline, the
        line says the two disagree."""
        if self.localisation is None or self.localisation.empty:
            return []
        lines = []
        for row in self.localisation.to_dict("records"):
            pointing, chance = row.get("pointing_game"), row.get("random_point")
            energy, uniform = row.get("energy_in_mask"), row.get("uniform_map")
            below = []
            if pointing is not None and chance is not None and pointing <= chance:
                below.append(
                    f"its peak falls on a lesion in {pointing:.3f} of the images, no more "
                    f"often than a random point of the field of view ({chance:.3f})"
                )
            if energy is not None and uniform is not None and energy <= uniform:
                below.append(
                    f"its share of map energy on the lesions ({energy:.3f}) is no more than a "
                    f"uniform map's ({uniform:.3f})"
                )
            if not below:
                continue
            # the conclusion only where no measure says otherwise: a peak that missed the
            # lesions beside an energy well above a flat map's is a disagreement, not proof
            above = (
                f"its share of map energy on the lesions ({energy:.3f}) is "
                f"{energy / uniform:.1f} times a uniform map's"
                if energy is not None and uniform and energy > uniform
                else f"its peak falls on a lesion {pointing / chance:.1f} times as often as a "
                "random point"
                if pointing is not None and chance and pointing > chance
                else ""
            )
            reading = (
                f"yet {above}: the two measures disagree, so where the model's evidence "
                "lies is not settled"
                if above
                else "the model's evidence is not on the lesions"
            )
            images = row.get("images")
            few = (
                f" (only {int(images)} images)"
                if images is not None and np.isfinite(images) and images < 10
                else ""
            )
            lines.append(
                f"{row['explainer']} on {row['label']} is no better than chance{few}: "
                f"{'; '.join(below)}: {reading}"
            )
        return lines

    def _sanity_flags(self) -> list[str]:
        if self.sanity is None:
            return []
        lines = []
        for row in self.sanity.to_dict("records"):
            failed = []
            if row["fails_randomisation"]:
                failed.append(
                    f"its maps barely change when the model is re-initialised (rank "
                    f"correlation {row['rank_correlation_with_random_model']:.2f})"
                )
            if row["fails_input_dependence"]:
                failed.append(
                    f"its maps barely change from image to image (rank correlation "
                    f"{row['input_dependence']:.2f} across classes)"
                )
            if failed:
                lines.append(
                    f"{row['explainer']} fails its sanity checks: {'; '.join(failed)} "
                    f"(limit {SANITY_LIMIT}); its localisation scores are unreliable"
                )
        return lines
