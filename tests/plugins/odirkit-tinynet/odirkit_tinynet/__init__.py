"""An example third-party odirkit plugin: a tiny CNN and a brightness augmenter.

Installed with ``pip install``, it appears in ``odirkit list-plugins`` and an
experiment can name it: ``[model] name = "tinynet"``,
``augment = [{ name = "brightness", strength = 0.2 }]``.
"""

from __future__ import annotations

import torch
from torch import nn

import odirkit


def build_tinynet(*, num_classes: int, width: int = 8, dropout: float = 0.0) -> nn.Module:
    """Two convolutions, global average pooling and a linear classifier.

    width: channels of the convolutions.
    dropout: dropout before the classifier.
    """
    if width < 1:
        raise odirkit.ConfigError(f"tinynet: width must be at least 1, got {width}")
    return nn.Sequential(
        nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, width * 2, 3, padding=1),
            nn.ReLU(),
        ),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(width * 2, num_classes),
    )


class Brightness:
    """Scale each image's brightness by a random factor in [1 - strength, 1 + strength]."""

    def __init__(self, strength: float) -> None:
        self.strength = strength

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        factors = torch.rand(images.shape[0], 1, 1, 1, generator=generator, device=images.device)
        factors = 1.0 + (factors * 2.0 - 1.0) * self.strength
        return (images * factors).clamp(0.0, 1.0)


def build_brightness(*, strength: float = 0.1) -> Brightness:
    """strength: the largest relative change of brightness."""
    if not 0.0 <= strength <= 1.0:
        raise odirkit.ConfigError(f"brightness: strength must be within [0, 1], got {strength}")
    return Brightness(strength)


@odirkit.hookimpl
def odirkit_register_models(register):
    register(
        "tinynet",
        build_tinynet,
        summary="A two-layer CNN with global pooling (example plugin)",
        cam_layer="0.4",
        input_size=64,
        test_params={"width": 4},
    )


@odirkit.hookimpl
def odirkit_register_augmenters(register):
    register(
        "brightness",
        build_brightness,
        summary="Random brightness scaling (example plugin)",
        test_params={"strength": 0.2},
    )
