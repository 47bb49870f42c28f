"""The training losses: cross entropy, binary cross entropy, and cross entropy over a
multi-label task's labels as equal shares; each with label smoothing and class weights.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class SharedLabelCrossEntropy(nn.Module):
    """Softmax cross entropy for multi-label targets: each of an image's labels gets an
    equal share of the target distribution (the paper's 8-label CNN); with ``smoothing``
    the shares are mixed with the uniform distribution, ``(1 - e) shares + e / C``."""

    def __init__(self, weight: torch.Tensor | None = None, smoothing: float = 0.0) -> None:
        super().__init__()
        self.weight = weight
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of logits ``[N, C]`` against 0/1 (or mixed) targets ``[N, C]``."""
        shares = targets / targets.sum(dim=1, keepdim=True).clamp_min(1.0)
        return nn.functional.cross_entropy(
            logits, shares, weight=self.weight, label_smoothing=self.smoothing
        )


class SmoothedBinaryCrossEntropy(nn.Module):
    """Binary cross entropy per label against smoothed targets ``(1 - e) y + e / 2``
    (each label pulled towards 1/2: timm's multi-label smoothing); ``pos_weight`` as
    ``BCEWithLogitsLoss``'s. Targets ``[B, C]`` in [0, 1] (0/1, or mixed by mixup)."""

    def __init__(self, pos_weight: torch.Tensor | None = None, smoothing: float = 0.0) -> None:
        super().__init__()
        self.pos_weight = pos_weight
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of logits ``[N, C]`` against 0/1 targets ``[N, C]``, smoothed."""
        soft = targets.float() * (1.0 - self.smoothing) + 0.5 * self.smoothing
        return nn.functional.binary_cross_entropy_with_logits(
            logits, soft, pos_weight=self.pos_weight
        )


def make_loss(
    single_label: bool,
    weights: np.ndarray | None,
    device: torch.device,
    *,
    softmax: bool = False,
    smoothing: float = 0.0,
) -> nn.Module:
    """Cross entropy for single-label tasks; for multi-label ones binary cross entropy, or
    (``softmax``) cross entropy over the labels. ``smoothing`` is label smoothing
    (Szegedy et al. 2016, sec. 7): single-label and softmax targets become ``(1 - e)
    target + e / classes`` (PyTorch's ``label_smoothing``), multi-label ones ``(1 - e) y +
    e / 2``. Every loss takes class indices or probability rows (mixup's mixed targets).

    ``weights`` are per class, ``[C]`` (:func:`odirkit.data.split.class_weights`)."""
    w = None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)
    if single_label:
        return nn.CrossEntropyLoss(weight=w, label_smoothing=smoothing)
    if softmax:
        return SharedLabelCrossEntropy(weight=w, smoothing=smoothing)
    if smoothing:
        return SmoothedBinaryCrossEntropy(pos_weight=w, smoothing=smoothing)
    return nn.BCEWithLogitsLoss(pos_weight=w)
