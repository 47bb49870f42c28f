"""An example third-party odirkit plugin: a tiny CNN, a brightness and a gamma augmenter.

Installed with ``pip install``, it appears in ``odirkit list-plugins`` and an
experiment can name it: ``[model] name = "tinynet"``,
``augment = [{ name = "brightness", strength = 0.2 }]``; the gamma augmenter is
deterministic, so it may also be a test-time view:
``[eval] tta = [{ name = "gamma", value = 0.8 }]``.
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


class Gamma:
    """Raise every pixel to the power ``value``: the same picture always gives the same output."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images.clamp(0.0, 1.0).pow(self.value)


def build_gamma(*, value: float = 0.8) -> Gamma:
    """value: the exponent (below 1 brightens the dark fundus)."""
    if value <= 0:
        raise odirkit.ConfigError(f"gamma: value must be positive, got {value}")
    return Gamma(value)


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
    register(
        "gamma",
        build_gamma,
        summary="A fixed gamma curve (example plugin; deterministic: usable as a test-time view)",
        deterministic=True,
        test_params={"value": 0.8},
    )
