"""Model surgery that works on any model plugin: metadata fusion.

``[model] metadata = true`` turns any model into one that also sees the
patient's age and sex: the model's final linear layer (the one producing
``num_classes`` logits) is replaced by the identity, so the model yields its
pooled image features; these are concatenated with the normalised metadata
and pass through a small head.
"""

from __future__ import annotations

import torch
from torch import nn

from odirkit.errors import PluginError
from odirkit.layers import BACKBONE

METADATA_FEATURES = 2  # age (standardised) and sex (1 male, 0 female, 0.5 unknown)


def final_linear(model: nn.Module, num_classes: int) -> tuple[nn.Module, str, nn.Linear]:
    """The last ``nn.Linear`` with ``num_classes`` outputs: its parent, name and itself.

    Raises :class:`PluginError` when the model has no such layer."""
    found = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear) and module.out_features == num_classes:
            found = (name, module)
    if found is None:
        raise PluginError(
            "metadata fusion needs a model whose last layer is an nn.Linear producing the "
            f"{num_classes} logits; this model has none"
        )
    name, linear = found
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    return parent, attr, linear


class MetadataFusion(nn.Module):
    """Image features from the model, concatenated with age and sex, then a small head."""

    def __init__(self, model: nn.Module, num_classes: int, hidden: int = 64) -> None:
        super().__init__()
        parent, attr, linear = final_linear(model, num_classes)
        setattr(parent, attr, nn.Identity())
        self.add_module(BACKBONE, model)  # the CAM layer is found under this name
        self.head = nn.Sequential(
            nn.Linear(linear.in_features + METADATA_FEATURES, hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, images: torch.Tensor, metadata: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` from images ``[N, 3, S, S]`` and metadata ``[N, F]`` (age, sex)."""
        features = getattr(self, BACKBONE)(images)
        return self.head(torch.cat([features.flatten(1), metadata.to(features.dtype)], dim=1))
