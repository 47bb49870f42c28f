"""Classic augmentation as in Thiry et al. (2021): noise, rotation, contrast stretch.

Three transforms, each applied to an image with its own probability:

- additive Gaussian noise of variance ``noise_variance`` (the paper: 0.01);
- a rotation about the image centre by an angle drawn uniformly within
  ``±max_angle`` radians (the paper: π/4), the corners filled with black, so
  that a field of view cropped to its circle stays round;
- an intensity rescale mapping the image's ``low_percentile`` and
  ``high_percentile`` (the paper: 0.2 and 99.8) to 0 and 1.

No flips by default: a left eye mirrored is a right eye (the optic disc
changes sides), so a flip changes what the image shows. ``hflip_p`` and
``vflip_p`` switch them on for those who want them.

Everything works on a batch ``[B, 3, H, W]`` of floats in [0, 1] on the
training device, drawing every random number from the generator it is given,
always in the same order, so a run repeats exactly.

``mode = "online"`` draws fresh transforms for every batch. ``mode =
"offline"`` is the paper's way: ``copies`` transformed copies of each training
image are added to the training set once, before training.
"""

from __future__ import annotations

import math
from typing import Annotated, Literal

import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field

import odirkit
from odirkit.api import ExpandContext, ExtraSamples, images_to_uint8

#: torch.quantile refuses inputs above 2**24 elements: work in chunks below that
_QUANTILE_LIMIT = 2**24


def rotate(images: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each image about its centre by its angle (radians, counter-clockwise)."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    zero = torch.zeros_like(angles)
    theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def percentiles(images: torch.Tensor, low: float, high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Each image's ``low`` and ``high`` percentiles over all its pixels and channels.

    Linear interpolation between order statistics, as ``numpy.percentile``.
    Extreme percentiles come from ``topk`` (linear in the pixels, no full sort).
    """
    flat = images.flatten(1)
    return _percentile(flat, low / 100.0), _percentile(flat, high / 100.0)


def _percentile(flat: torch.Tensor, q: float) -> torch.Tensor:
    n = flat.shape[1]
    position = q * (n - 1)
    k = math.floor(position)
    k1 = min(k + 1, n - 1)
    frac = position - k
    if k1 + 1 <= n // 8:  # low tail: the k1 + 1 smallest values, ascending
        values = flat.topk(k1 + 1, dim=1, largest=False).values
        a, b = values[:, k], values[:, k1]
    elif n - k <= n // 8:  # high tail: the n - k largest values, descending
        values = flat.topk(n - k, dim=1).values
        a, b = values[:, n - 1 - k], values[:, n - 1 - k1]
    else:
        per_chunk = max(1, _QUANTILE_LIMIT // max(n, 1))
        qt = torch.tensor([q], dtype=flat.dtype, device=flat.device)
        return torch.cat([torch.quantile(c, qt, dim=1)[0] for c in flat.split(per_chunk)])
    return a + frac * (b - a)


def contrast_stretch(
    images: torch.Tensor, low: float, high: float, *, inplace: bool = False
) -> torch.Tensor:
    """Map each image's ``low``/``high`` percentiles to 0 and 1, clipping beyond them."""
    lo, hi = percentiles(images, low, high)
    lo = lo.view(-1, 1, 1, 1)
    span = (hi.view(-1, 1, 1, 1) - lo).clamp_min(1e-6)
    if inplace:
        return images.sub_(lo).div_(span).clamp_(0.0, 1.0)
    return ((images - lo) / span).clamp(0.0, 1.0)


class ClassicAugment:
    """Noise, rotation and contrast stretch (and optional flips), batched."""

    def __init__(
        self,
        *,
        noise_p: float,
        noise_variance: float,
        rotation_p: float,
        max_angle: float,
        contrast_p: float,
        low_percentile: float,
        high_percentile: float,
        hflip_p: float,
        vflip_p: float,
    ) -> None:
        self.noise_p = noise_p
        self.noise_std = math.sqrt(noise_variance)
        self.rotation_p = rotation_p
        self.max_angle = max_angle
        self.contrast_p = contrast_p
        self.low = low_percentile
        self.high = high_percentile
        self.hflip_p = hflip_p
        self.vflip_p = vflip_p

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b, device = images.shape[0], images.device

        def uniform(*shape: int) -> torch.Tensor:
            return torch.rand(*shape, generator=generator, device=device)

        # The draws come in a fixed order, so the same generator state gives the same batch.
        rotate_mask = uniform(b) < self.rotation_p
        angles = (uniform(b) * 2.0 - 1.0) * self.max_angle
        contrast_mask = uniform(b) < self.contrast_p
        noise_mask = uniform(b) < self.noise_p
        hflip_mask = uniform(b) < self.hflip_p
        vflip_mask = uniform(b) < self.vflip_p
        chosen_noise = int(noise_mask.sum())
        noise = torch.randn((chosen_noise, *images.shape[1:]), generator=generator, device=device)

        def add_noise(x: torch.Tensor, own: bool) -> torch.Tensor:
            if own:
                return x.add_(noise, alpha=self.noise_std).clamp_(0.0, 1.0)
            return (x + self.noise_std * noise).clamp(0.0, 1.0)

        steps = [
            (rotate_mask, lambda x, i, own: rotate(x, angles[i])),
            (
                contrast_mask,
                lambda x, i, own: contrast_stretch(x, self.low, self.high, inplace=own),
            ),
            (noise_mask, lambda x, i, own: add_noise(x, own)),
            (hflip_mask, lambda x, i, own: x.flip(-1)),
            (vflip_mask, lambda x, i, own: x.flip(-2)),
        ]
        out, owned = images, False  # never write into the caller's tensor
        for mask, transform in steps:
            if not mask.any():
                continue
            if mask.all():
                out = transform(out, torch.arange(b, device=device), owned)
            else:
                index = mask.nonzero().squeeze(1)
                changed = transform(out.index_select(0, index), index, True)
                if not owned:
                    out = out.clone()
                out.index_copy_(0, index, changed)
            owned = True
        return out


class OfflineClassic:
    """The paper's way: ``copies`` augmented copies of every training image, added once."""

    def __init__(self, augment: ClassicAugment, copies: int, batch_size: int = 32) -> None:
        self.augment = augment
        self.copies = copies
        self.batch_size = batch_size

    def expand(self, train: pd.DataFrame, ctx: ExpandContext) -> ExtraSamples:
        images, rows = [], []
        n = len(train)
        for copy in range(self.copies):
            for start in range(0, n, self.batch_size):
                positions = list(range(start, min(n, start + self.batch_size)))
                batch = ctx.images(positions).to(ctx.device).float().div_(255.0)
                images.append(images_to_uint8(self.augment(batch, ctx.generator)).cpu())
            rows.append(train.assign(source=f"classic copy {copy + 1}"))
        table = pd.concat(rows, ignore_index=True)
        ctx.log(f"classic (offline): {len(table)} augmented copies added to the training set")
        return ExtraSamples(table=table, images=torch.cat(images))


Probability = Annotated[float, Field(ge=0.0, le=1.0)]
Percentile = Annotated[float, Field(ge=0.0, le=100.0)]


def build_classic(
    *,
    mode: Literal["online", "offline"] = "online",
    copies: Annotated[int, Field(ge=1)] = 1,
    noise_p: Probability = 0.5,
    noise_variance: Annotated[float, Field(ge=0.0)] = 0.01,
    rotation_p: Probability = 0.5,
    max_angle: Annotated[float, Field(ge=0.0)] = math.pi / 4,
    contrast_p: Probability = 0.5,
    low_percentile: Percentile = 0.2,
    high_percentile: Percentile = 99.8,
    hflip_p: Probability = 0.0,
    vflip_p: Probability = 0.0,
) -> ClassicAugment | OfflineClassic:
    """Gaussian noise, rotation and percentile contrast stretch (Thiry et al. 2021).

    mode: online (fresh draws every batch) or offline (copies added once).
    copies: augmented copies of each training image (offline mode).
    noise_p, rotation_p, contrast_p: probability of each transform per image.
    noise_variance: variance of the additive Gaussian noise.
    max_angle: largest rotation in radians (default pi/4).
    low_percentile, high_percentile: mapped to 0 and 1 by the contrast stretch.
    hflip_p, vflip_p: probability of a horizontal / vertical flip (default 0:
    a flipped left eye looks like a right eye).
    """
    if not low_percentile < high_percentile:
        raise odirkit.ConfigError(
            "classic: need low_percentile < high_percentile, got "
            f"{low_percentile} and {high_percentile}"
        )
    augment = ClassicAugment(
        noise_p=noise_p,
        noise_variance=noise_variance,
        rotation_p=rotation_p,
        max_angle=max_angle,
        contrast_p=contrast_p,
        low_percentile=low_percentile,
        high_percentile=high_percentile,
        hflip_p=hflip_p,
        vflip_p=vflip_p,
    )
    return OfflineClassic(augment, copies) if mode == "offline" else augment


@odirkit.hookimpl
def odirkit_register_augmenters(register):
    register(
        "classic",
        build_classic,
        summary="Gaussian noise, rotation within ±π/4, percentile contrast stretch; no flips",
        test_params={},
    )
