"""The CNN of Thiry, Tao and Bense (2021), Table 1, with every size a parameter.

At its defaults it is the paper's network for 512x512x3 images:

====================  ==================  =========================
layer                 output              here
====================  ==================  =========================
convolution 13x13     500 x 500 x 12      ``features.0`` + BN + ReLU
convolution 3x3       500 x 500 x 36      ``features.3`` + BN + ReLU
max pooling 4x4       125 x 125 x 36      ``features.6``
dropout
convolution 6x6       120 x 120 x 72      ``features.8`` + BN + ReLU
convolution 3x3       120 x 120 x 144     ``features.11`` + BN + ReLU
max pooling 4x4       30 x 30 x 144       ``features.14``
dropout
dense                 4096, 512, 64       ``classifier``
dense                 classes
====================  ==================  =========================

Activations are ``nn.ReLU`` modules, never functional calls, so that Guided
Grad-CAM and guided backpropagation can hook them. The widths, kernels,
pooling, dense sizes and dropout scale it down for small images on a CPU.
"""

from __future__ import annotations

from typing import Annotated

import torch
from pydantic import Field
from torch import nn

import odirkit

#: index of the last ReLU of ``features``: the default Grad-CAM layer
CAM_LAYER = "features.13"


def _feature_size(input_size: int, kernels: list[int], pool: int) -> int:
    size = input_size - kernels[0] + 1  # valid convolution
    size = size // pool  # the second convolution keeps the size ("same" padding)
    size = size - kernels[2] + 1
    return size // pool


class PaperCNN(nn.Module):
    """Two convolution blocks and four dense layers (Thiry et al. 2021, Table 1)."""

    def __init__(
        self,
        *,
        num_classes: int,
        input_size: int,
        widths: list[int],
        kernels: list[int],
        pool: int,
        dense: list[int],
        dropout: float,
        batch_norm: bool = True,
    ) -> None:
        super().__init__()
        w1, w2, w3, w4 = widths
        k1, k2, k3, k4 = kernels

        def norm(channels: int) -> nn.Module:
            # Identity keeps the module indices (and CAM_LAYER) the same without batch norm.
            return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(3, w1, k1),
            norm(w1),
            nn.ReLU(),
            nn.Conv2d(w1, w2, k2, padding="same"),
            norm(w2),
            nn.ReLU(),
            nn.MaxPool2d(pool),
            nn.Dropout(dropout),
            nn.Conv2d(w2, w3, k3),
            norm(w3),
            nn.ReLU(),
            nn.Conv2d(w3, w4, k4, padding="same"),
            norm(w4),
            nn.ReLU(),
            nn.MaxPool2d(pool),
            nn.Dropout(dropout),
        )
        side = _feature_size(input_size, kernels, pool)
        layers: list[nn.Module] = [nn.Flatten()]
        width = w4 * side * side
        for size in dense:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, num_classes))
        self.classifier = nn.Sequential(*layers)
        self.input_size = input_size

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(images))


Positive = Annotated[int, Field(ge=1)]
FourSizes = Annotated[list[Positive], Field(min_length=4, max_length=4)]


def build_cnn(
    *,
    num_classes: int,
    input_size: Annotated[int, Field(ge=8)] = 512,
    widths: FourSizes = [12, 36, 72, 144],  # noqa: B006 - never mutated; shown as the TOML default
    kernels: FourSizes = [13, 3, 6, 3],  # noqa: B006
    pool: Positive = 4,
    dense: list[Positive] = [4096, 512, 64],  # noqa: B006
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.25,
    batch_norm: bool = True,
) -> PaperCNN:
    """The paper's CNN.

    input_size: side of the square input images (the paper: 512).
    widths: channels of the four convolutions.
    kernels: kernel sizes of the four convolutions (first and third unpadded).
    pool: max-pooling size after each block.
    dense: sizes of the hidden dense layers.
    dropout: dropout probability after each pooling.
    batch_norm: batch normalisation after each convolution (the paper: yes).
    """
    if _feature_size(input_size, kernels, pool) < 1:
        raise odirkit.ConfigError(
            f"cnn: input_size {input_size} is too small for kernels {kernels} and pool {pool}; "
            "use larger images or smaller kernels"
        )
    return PaperCNN(
        num_classes=num_classes,
        input_size=input_size,
        widths=list(widths),
        kernels=list(kernels),
        pool=pool,
        dense=list(dense),
        dropout=dropout,
        batch_norm=batch_norm,
    )


@odirkit.hookimpl
def odirkit_register_models(register):
    register(
        "cnn",
        build_cnn,
        summary="The CNN of Thiry et al. 2021 (Table 1), every size a parameter",
        input_size=512,
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        cam_layer=CAM_LAYER,
        test_params={
            "input_size": 48,
            "widths": [4, 8, 8, 8],
            "kernels": [5, 3, 3, 3],
            "pool": 2,
            "dense": [16, 8],
        },
    )
