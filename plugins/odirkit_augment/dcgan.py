"""A DCGAN per class whose images join the training set (Thiry et al. 2021).

The standard DCGAN of Radford, Metz and Chintala (2016, "Unsupervised
Representation Learning with Deep Convolutional Generative Adversarial
Networks"): a generator from a 100-dimensional noise vector through
transposed convolutions (base width 64, batch norm) to a ``tanh`` image of
64x64, and a mirrored discriminator of strided convolutions with
LeakyReLU(0.2); Adam with lr 2e-4 and beta1 0.5; binary cross entropy. One
change, as in the paper: the generator's activations are LeakyReLU as well.
``real_label`` below 1 turns on one-sided label smoothing (Salimans et al.
2016, "Improved Techniques for Training GANs"), which helps a narrow GAN on
few images escape an all-winning discriminator; the default, 1, is the
standard DCGAN.

One GAN is trained per class, on that class's **training** images only — the
context an augmenter receives holds no held-out image — and its samples,
resized to the experiment's image size, join the training set with that
class's label. Each trained generator is saved under the run folder together
with its losses per epoch (CSV and plot), sample grids at chosen epochs (the
paper's Figure 1) and the list of images it learned from; it is also kept in
a cache shared by runs and reused when the same images and parameters come
again. A class with too few training images is skipped with a warning (in the
paper only N and D converged).

Caveat: on a CPU a DCGAN is slow; the defaults are the paper's, and the
quickstart uses a narrow, short one.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import shutil
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

import odirkit
from odirkit.api import (
    ExpandContext,
    ExtraSamples,
    derive_seed,
    generator_for,
    images_to_uint8,
    progress_bar,
    warn,
    write_json,
)

GAN_VERSION = 1
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


def labels_index(ctx: ExpandContext, label: str) -> int:
    return list(ctx.task.labels).index(label)


class DCGAN:
    """The offline augmenter: ``expand`` trains (or reuses) one GAN per class."""

    def __init__(
        self,
        *,
        epochs: int,
        batch_size: int,
        width: int,
        gan_size: int,
        lr: float,
        beta1: float,
        real_label: float,
        images_per_class: int | None,
        ratio: float,
        classes: list[str] | None,
        min_images: int,
        sample_epochs: list[int],
    ) -> None:
        self.epochs = epochs
        self.batch_size = batch_size
        self.width = width
        self.gan_size = gan_size
        self.lr = lr
        self.beta1 = beta1
        self.real_label = real_label
        self.images_per_class = images_per_class
        self.ratio = ratio
        self.classes = classes
        self.min_images = min_images
        self.sample_epochs = sample_epochs

    def params(self) -> dict:
        return {
            k: v
            for k, v in vars(self).items()
            if k not in {"images_per_class", "ratio", "classes", "min_images"}
        }

    # -- expand ----------------------------------------------------------------

    def expand(self, train: pd.DataFrame, ctx: ExpandContext) -> ExtraSamples:
        labels = list(ctx.task.labels)
        wanted = self.classes or labels
        unknown = [c for c in wanted if c not in labels]
        if unknown:
            raise odirkit.ConfigError(
                f"dcgan: classes {unknown} are not among the experiment's labels {labels}"
            )
        tables, images = [], []
        figures: list[dict[str, str]] = []
        notes: list[str] = []
        for label in wanted:
            c = labels.index(label)
            member = (ctx.targets == c) if ctx.task.single_label else (ctx.targets[:, c] > 0)
            positions = np.flatnonzero(member)
            if len(positions) < self.min_images:
                skipped = (
                    f"dcgan: class {label} has {len(positions)} training images, fewer than "
                    f"min_images = {self.min_images}; no GAN is trained for it"
                )
                warn(skipped)
                note = skipped[len("dcgan: ") :]
                notes.append(note[:1].upper() + note[1:] + ".")
                continue
            count = self.images_per_class or round(self.ratio * len(positions))
            if count < 1:
                continue
            generator = self.generator_for_class(label, train.iloc[positions], positions, ctx)
            figures += self.figures_of(label, ctx.run_dir / label)
            note = convergence_note(pd.read_csv(ctx.run_dir / label / "losses.csv"), label)
            if note:
                notes.append(note)
            # Sampling has its own stream, so a reused generator draws the very same images.
            sampling = generator_for(ctx.device, ctx.seed, c, 2)
            z = torch.randn(count, Z_DIM, 1, 1, generator=sampling, device=ctx.device)
            with torch.no_grad():
                fake = torch.cat([generator(chunk) for chunk in z.split(256)])
            fake = (fake + 1.0) / 2.0
            fake = F.interpolate(
                fake, size=(ctx.image_size, ctx.image_size), mode="bilinear", align_corners=False
            )
            real = ctx.images(positions[:64]).to(fake.device).float() / 255.0
            flat = flatness_note(fake, real, label)
            if flat and not note:
                notes.append(flat)
            images.append(images_to_uint8(fake).cpu())
            rows = pd.DataFrame(
                {label_: int(label_ == label) for label_ in labels}, index=range(count)
            )
            rows["patient_id"] = [f"dcgan-{label}-{i}" for i in range(count)]
            rows["source"] = f"dcgan {label}"
            tables.append(rows)
            ctx.log(f"dcgan: {count} generated {label} images added to the training set")
        # what the report shows, in order, with captions (odirkit's report reads it)
        write_json(ctx.run_dir / "report.json", {"figures": figures, "notes": notes})
        if not tables:
            empty = torch.zeros((0, 3, ctx.image_size, ctx.image_size), dtype=torch.uint8)
            return ExtraSamples(pd.DataFrame(columns=labels), empty)
        return ExtraSamples(pd.concat(tables, ignore_index=True), torch.cat(images))

    def figures_of(self, label: str, folder: Path) -> list[dict[str, str]]:
        """A class's sample grids by epoch, in order, then its losses, with captions."""
        name = f"{label} ({odirkit.LABEL_NAMES.get(label, label)})"
        found = []
        for path in sorted(folder.glob("samples_epoch_*.png")):
            epoch = int(path.stem.rsplit("_", 1)[-1])
            found.append(
                {
                    "file": f"{label}/{path.name}",
                    "caption": f"{name}: the generator's samples after epoch {epoch} of "
                    f"{self.epochs} (the same noise at every epoch)",
                }
            )
        if (folder / "losses.png").exists():
            found.append(
                {
                    "file": f"{label}/losses.png",
                    "caption": f"{name}: discriminator and generator loss per epoch",
                }
            )
        return found

    # -- one class ---------------------------------------------------------------

    def generator_for_class(
        self, label: str, rows: pd.DataFrame, positions: np.ndarray, ctx: ExpandContext
    ) -> Generator:
        """The trained generator of one class: from the cache, or trained now."""
        real = to_gan_range(ctx.images(positions.tolist()), self.gan_size)
        digest = hashlib.sha256()
        digest.update(
            json.dumps(
                {**self.params(), "label": label, "version": GAN_VERSION, "seed": ctx.seed},
                sort_keys=True,
            ).encode()
        )
        digest.update(((real + 1) * 127.5).round().to(torch.uint8).numpy().tobytes())
        key = digest.hexdigest()[:20]
        cached = ctx.cache_dir / "dcgan" / key
        out_dir = ctx.run_dir / label
        out_dir.mkdir(parents=True, exist_ok=True)
        provenance = rows[[c for c in ("patient_id", "eye", "path") if c in rows.columns]]
        provenance.to_csv(out_dir / "training_images.csv", index=False)

        generator = Generator(self.width, self.gan_size).to(ctx.device)
        if (cached / "generator.pt").exists():
            state = torch.load(cached / "generator.pt", map_location=ctx.device, weights_only=True)
            generator.load_state_dict(state)
            ctx.log(f"dcgan: reusing the trained {label} generator from {cached}")
        else:
            stream = generator_for(ctx.device, ctx.seed, labels_index(ctx, label), 1)
            self.train(generator, real.to(ctx.device), label, ctx, cached, stream)
        for item in cached.iterdir():
            if item.is_file() and item.name != "training_images.csv":
                shutil.copyfile(item, out_dir / item.name)
        (out_dir / "cache_key.txt").write_text(key + "\n")
        generator.eval()
        return generator

    def train(
        self,
        generator: Generator,
        real: torch.Tensor,
        label: str,
        ctx: ExpandContext,
        out: Path,
        rng: torch.Generator,
    ) -> None:
        torch.manual_seed(derive_seed(ctx.seed, labels_index(ctx, label)))
        generator.apply(init_weights)
        discriminator = Discriminator(self.width, self.gan_size).to(ctx.device)
        discriminator.apply(init_weights)
        betas = (self.beta1, 0.999)
        opt_g = torch.optim.Adam(generator.parameters(), lr=self.lr, betas=betas)
        opt_d = torch.optim.Adam(discriminator.parameters(), lr=self.lr, betas=betas)
        bce = nn.BCEWithLogitsLoss()
        fixed_z = torch.randn(32, Z_DIM, 1, 1, generator=rng, device=ctx.device)
        staging = out.with_name(out.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        history = []
        n = real.shape[0]
        with progress_bar() as bar:
            task = bar.add_task(f"DCGAN {label}", total=self.epochs, status="")
            for epoch in range(1, self.epochs + 1):
                generator.train()
                sums = np.zeros(4)
                batches = 0
                order = torch.randperm(n, generator=rng, device=ctx.device)
                for start in range(0, n, self.batch_size):
                    batch = real[order[start : start + self.batch_size]]
                    if batch.shape[0] < 2:
                        continue  # batch norm needs two samples
                    b = batch.shape[0]
                    z = torch.randn(b, Z_DIM, 1, 1, generator=rng, device=ctx.device)
                    fake = generator(z)
                    opt_d.zero_grad(set_to_none=True)
                    d_real = discriminator(batch)
                    d_fake = discriminator(fake.detach())
                    loss_d = bce(d_real, torch.full_like(d_real, self.real_label)) + bce(
                        d_fake, torch.zeros_like(d_fake)
                    )
                    loss_d.backward()
                    opt_d.step()
                    opt_g.zero_grad(set_to_none=True)
                    d_gen = discriminator(fake)
                    loss_g = bce(d_gen, torch.ones_like(d_gen))
                    loss_g.backward()
                    opt_g.step()
                    sums += [
                        loss_d.item(),
                        loss_g.item(),
                        d_real.sigmoid().mean().item(),
                        d_fake.sigmoid().mean().item(),
                    ]
                    batches += 1
                means = sums / max(batches, 1)
                history.append(
                    {
                        "epoch": epoch,
                        "loss_d": means[0],
                        "loss_g": means[1],
                        "d_real": means[2],
                        "d_fake": means[3],
                    }
                )
                if epoch in self.sample_epochs or epoch == self.epochs:
                    generator.eval()
                    with torch.no_grad():
                        save_grid(generator(fixed_z), staging / f"samples_epoch_{epoch:03d}.png")
                bar.update(task, completed=epoch, status=f"D {means[0]:.3f} G {means[1]:.3f}")
        losses = pd.DataFrame(history)
        losses.to_csv(staging / "losses.csv", index=False)
        plot_losses(losses, staging / "losses.png", f"DCGAN {label}")
        torch.save(generator.state_dict(), staging / "generator.pt")
        (staging / "params.json").write_text(
            json.dumps({**self.params(), "label": label, "images": int(n)}, indent=2) + "\n"
        )
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)  # the cache entry appears whole, or not at all


def build_dcgan(
    *,
    epochs: Annotated[int, Field(ge=1)] = 200,
    batch_size: Annotated[int, Field(ge=2)] = 64,
    width: Annotated[int, Field(ge=1)] = 64,
    gan_size: Annotated[int, Field(ge=16)] = 64,
    lr: Annotated[float, Field(gt=0.0)] = 2e-4,
    beta1: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.5,
    real_label: Annotated[float, Field(ge=0.5, le=1.0)] = 1.0,
    images_per_class: Annotated[int, Field(ge=0)] | None = None,
    ratio: Annotated[float, Field(ge=0.0)] = 0.5,
    classes: list[str] | None = None,
    min_images: Annotated[int, Field(ge=0)] = 64,
    sample_epochs: list[int] = [30, 100, 200],  # noqa: B006 - never mutated
) -> DCGAN:
    """One DCGAN per class, trained on that class's training images; samples join training.

    epochs: GAN training epochs per class.
    batch_size: GAN batch size.
    width: base width of generator and discriminator (the paper: 64).
    gan_size: side of the generated images (the paper: 64), before resizing.
    lr, beta1: Adam's learning rate and first beta (the paper: 2e-4, 0.5).
    real_label: the discriminator's target for real images; below 1 is one-sided
    label smoothing (1: the standard DCGAN).
    images_per_class: images to generate per class; when absent, ratio decides.
    ratio: images to generate per class, as a share of that class's training images.
    classes: the classes that get a GAN (default: every label of the experiment).
    min_images: a class with fewer training images is skipped, with a warning.
    sample_epochs: epochs at which a grid of samples is saved (and the last one).
    """
    if gan_size & (gan_size - 1):
        raise odirkit.ConfigError(f"dcgan: gan_size must be a power of two, got {gan_size}")
    return DCGAN(
        epochs=epochs,
        batch_size=batch_size,
        width=width,
        gan_size=gan_size,
        lr=lr,
        beta1=beta1,
        real_label=real_label,
        images_per_class=images_per_class,
        ratio=ratio,
        classes=classes,
        min_images=min_images,
        sample_epochs=list(sample_epochs),
    )


@odirkit.hookimpl
def odirkit_register_augmenters(register):
    register(
        "dcgan",
        build_dcgan,
        summary="One DCGAN per class (64x64, LeakyReLU generator); samples join the training set",
        test_params={
            "epochs": 1,
            "batch_size": 4,
            "width": 4,
            "gan_size": 16,
            "min_images": 2,
            "sample_epochs": [1],
        },
    )
