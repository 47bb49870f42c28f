"""How a run sees an image: one description, built once per run.

From a photograph to the patient's probabilities, every step that depends on
the run is here: preprocessing (size, crop, circle), the model's input
normalisation (mean, std), the extra inputs (age and sex, standardised with
the training images' statistics), the labels and whether they exclude each
other, the temperature fitted on validation, the patient fusion, and the
layer Grad-CAM explains. Training, ``explain``, ``predict`` and ``ensemble``
all use this object rather than rebuilding any of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from odirkit.config import ResolvedVariant
from odirkit.data.images import Preprocessing, preprocess
from odirkit.data.prepare import metadata_features, preprocessing_of
from odirkit.fusion import fuse_eyes
from odirkit.layers import cam_layer_of, cam_reshape_of
from odirkit.tta import build_test_time_views

DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class ModelView:
    """Preprocessing, normalisation, extra inputs, labels, temperature, fusion, CAM layer."""

    labels: tuple[str, ...]
    single_label: bool
    preprocessing: Preprocessing
    mean: tuple[float, float, float] = DEFAULT_MEAN
    std: tuple[float, float, float] = DEFAULT_STD
    cam_layer: str | None = None
    cam_reshape: str | None = None  # how the CAM layer's output becomes a grid (tokens)
    metadata: bool = False
    age_mean: float = 0.0
    age_std: float = 1.0
    fusion: str = "max"
    temperature: float = 1.0
    softmax: bool = False  # softmax over the labels (a single-label task, or a softmax loss)
    test_time_views: tuple[Any, ...] = ()  # besides the image ([eval] tta; odirkit.tta)
    eyes: int = 1  # 2: the model sees a patient's two photographs at once (odirkit.eyes)

    @classmethod
    def of(
        cls,
        exp: ResolvedVariant,
        *,
        single_label: bool,
        age_stats: Sequence[float] = (0.0, 1.0),
        temperature: float | None = None,
        labels: Sequence[str] | None = None,
    ) -> ModelView:
        """The view of resolved variant ``exp`` (its model plugin's meta, its ``[data]`` table)."""
        data = exp.config.data
        meta = exp.model.meta
        return cls(
            labels=tuple(labels or exp.labels),
            single_label=single_label,
            preprocessing=preprocessing_of(exp),
            mean=tuple(meta.get("mean", DEFAULT_MEAN)),  # type: ignore[arg-type]
            std=tuple(meta.get("std", DEFAULT_STD)),  # type: ignore[arg-type]
            cam_layer=cam_layer_of(exp),
            cam_reshape=cam_reshape_of(exp),
            metadata=exp.config.model.metadata,
            age_mean=float(age_stats[0]),
            age_std=float(age_stats[1]),
            fusion=data.fusion,
            temperature=float(temperature or 1.0),
            softmax=single_label or exp.config.train.loss == "cross_entropy",
            eyes=exp.eyes,
            test_time_views=tuple(
                build_test_time_views(
                    [v for v in exp.config.eval.tta if isinstance(v, str)],
                    [call.build() for call in exp.tta_augmenters],
                )
            ),
        )

    def with_temperature(self, temperature: float | None) -> ModelView:
        """The same view with another temperature."""
        return replace(self, temperature=float(temperature or 1.0))

    # -- images ----------------------------------------------------------------------------

    def preprocess(self, path: str | Path) -> np.ndarray:
        """A photograph as the run's training images were made: ``uint8 [S, S, 3]``."""
        return preprocess(path, self.preprocessing)

    def batch(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """Preprocessed images ``[S, S, 3]`` stacked as ``uint8 [B, 3, S, S]``."""
        return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()

    def normalise(self, images: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
        """``uint8 [B, 3, S, S]`` (or floats in [0, 1]) -> the model's normalised input."""
        x = images.to(device)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        mean = torch.tensor(self.mean, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
        return (x - mean) / std

    # -- extra inputs ----------------------------------------------------------------------

    def extra_inputs(self, table: pd.DataFrame) -> tuple[torch.Tensor, ...]:
        """The model's inputs besides the image, per row of ``table`` (``age``, ``sex``):
        ``(metadata [B, 2],)`` for a model with metadata fusion, else ``()``."""
        if not self.metadata:
            return ()
        features = metadata_features(table, self.age_mean, self.age_std)
        return (torch.from_numpy(features),)

    # -- outputs ---------------------------------------------------------------------------

    def logits(
        self,
        model: Any,
        images: torch.Tensor,
        extra: Sequence[torch.Tensor] = (),
        device: torch.device | str = "cpu",
    ) -> torch.Tensor:
        """The model's logits for ``uint8`` images, averaged over the image and its
        test-time views (``[eval] tta``).

        ``images`` ``uint8 [B, 3, S, S]`` (or floats in [0, 1]), ``extra`` the model's other
        inputs ``[B, ...]``; returns ``float32 [B, C]``."""
        x = images.to(device)
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        total = model(self.normalise(x, device), *extra).float()
        for tta_view in self.test_time_views:
            total = total + model(self.normalise(tta_view(x), device), *extra).float()
        return total / (1 + len(self.test_time_views))

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Softmax (single-label, or a softmax loss) or sigmoid of ``logits / temperature``.

        ``[B, C]`` in and out."""
        z = logits.float() / self.temperature
        return z.softmax(dim=1) if self.softmax else z.sigmoid()

    def fuse(self, probs: np.ndarray, patient_ids: Sequence[Any]) -> pd.DataFrame:
        """Per-patient probabilities (:mod:`odirkit.fusion`), indexed by patient ID.

        ``probs`` ``[N, C]`` per image, ``patient_ids`` ``N``; one row per patient, a column per
        label."""
        return fuse_eyes(probs, patient_ids, self.labels, self.fusion)
