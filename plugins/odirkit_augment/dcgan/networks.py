"""The standard DCGAN's two networks (Radford et al. 2016), the generator's activations
LeakyReLU as in the paper; their initialisation, and images brought to their range."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

Z_DIM = 100


class Generator(nn.Module):
    """Noise ``[B, 100, 1, 1]`` -> image ``[B, 3, size, size]`` in [-1, 1]."""

    def __init__(self, width: int = 64, size: int = 64) -> None:
        super().__init__()
        blocks = int(math.log2(size)) - 3  # 4x4 -> size/2 by doubling, then the last layer
        channels = width * 2**blocks
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(Z_DIM, channels, 4, 1, 0, bias=False),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(0.2),
        ]
        for _ in range(blocks):
            layers += [
                nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels // 2),
                nn.LeakyReLU(0.2),
            ]
            channels //= 2
        layers += [nn.ConvTranspose2d(channels, 3, 4, 2, 1, bias=False), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    """Image ``[B, 3, size, size]`` -> one logit per image (real vs generated)."""

    def __init__(self, width: int = 64, size: int = 64) -> None:
        super().__init__()
        blocks = int(math.log2(size)) - 3
        layers: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2)]
        channels = width
        for _ in range(blocks):
            layers += [
                nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=False),
                nn.BatchNorm2d(channels * 2),
                nn.LeakyReLU(0.2),
            ]
            channels *= 2
        layers.append(nn.Conv2d(channels, 1, 4, 1, 0, bias=False))
        self.net = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images).flatten()


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: N(0, 0.02) convolutions, N(1, 0.02) batch-norm scales."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def to_gan_range(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images -> floats in [-1, 1] at ``size`` x ``size``."""
    x = images.float().div(255.0)
    if x.shape[-1] != size:
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
        )
    return x * 2.0 - 1.0
