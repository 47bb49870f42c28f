"""What a class's trained GAN leaves for the report: its sample grids and losses drawn,
and a sentence when it did not converge (losses that part, or images nearly flat)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import pandas as pd
import torch


def save_grid(images: torch.Tensor, path: Path, columns: int = 8) -> None:
    """Images in [-1, 1] as one PNG grid."""
    from PIL import Image

    x = ((images.detach().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    n, _, h, w = x.shape
    rows = math.ceil(n / columns)
    grid = torch.zeros(3, rows * (h + 2), columns * (w + 2), dtype=torch.uint8)
    for i, image in enumerate(x):
        r, c = divmod(i, columns)
        grid[:, r * (h + 2) + 1 : r * (h + 2) + 1 + h, c * (w + 2) + 1 : c * (w + 2) + 1 + w] = (
            image
        )
    buffer = io.BytesIO()
    Image.fromarray(grid.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())


def plot_losses(losses: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    from odirkit.api import save_figure

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(losses["epoch"], losses["loss_d"], label="discriminator")
    ax.plot(losses["epoch"], losses["loss_g"], label="generator")
    ax.set_xlabel("epoch")
    ax.set_ylabel("BCE loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, path)


def convergence_note(losses: pd.DataFrame, label: str) -> str | None:
    """A sentence when a class's GAN did not converge, else None.

    At the balance a GAN seeks (the discriminator answers 1/2 everywhere) the
    discriminator's loss, real and generated images summed, is 2 ln 2 = 1.39 and the
    generator's ln 2 = 0.69. A generator whose loss ends at least twice where it began
    (the means of the first and last tenth of the epochs), while the discriminator's
    ends below ln 2, lost the game: the discriminator tells its images from photographs
    with ease, and what it adds to training looks unlike them.
    """
    if len(losses) < 4 or not {"loss_d", "loss_g"} <= set(losses.columns):
        return None
    k = max(1, len(losses) // 10)
    g_start, g_end = losses["loss_g"].head(k).mean(), losses["loss_g"].tail(k).mean()
    d_end = losses["loss_d"].tail(k).mean()
    if not (g_end >= 2 * g_start and d_end < math.log(2)):
        return None
    return (
        f"The GAN of {label} did not converge: over {len(losses)} epochs the generator's loss "
        f"climbed from {g_start:.2f} to {g_end:.2f} while the discriminator's ended at "
        f"{d_end:.2f} (at balance they would be near 0.69 and 1.39): the discriminator tells "
        "the generated images from photographs with ease, so they look unlike the "
        "photographs they join."
    )


#: generated images whose detail (pixel spread within an image) is below this share of
#: the photographs' are called flat: an undertrained or collapsed generator
FLAT_SHARE = 0.25


def flatness_note(fake: torch.Tensor, real: torch.Tensor, label: str) -> str | None:
    """A sentence when a class's generated images are nearly flat, else None.

    ``fake`` and ``real`` are image batches ``[N, 3, H, W]`` in [0, 1]; each image's
    detail is the standard deviation of its pixels, and the two sets' medians compared.
    A generator that trained too briefly, or collapsed, draws near-uniform squares
    whatever its losses say; they add images of the class that look like no photograph.
    """
    if not len(fake) or not len(real):
        return None
    spread = lambda batch: float(batch.flatten(1).std(dim=1).median())  # noqa: E731
    generated, photographs = spread(fake.float()), spread(real.float())
    if generated >= FLAT_SHARE * photographs:
        return None
    return (
        f"The GAN of {label} did not converge: its images are nearly flat (pixel spread "
        f"{generated:.3f} against the photographs' {photographs:.3f}), so they add images "
        "of the class that look like no photograph."
    )
