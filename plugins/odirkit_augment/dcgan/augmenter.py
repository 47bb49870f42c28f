"""The offline augmenter: one GAN per class trained (or reused from the cache) on that
class's training images, its samples joining the training set; the factory and its
registration."""

from __future__ import annotations

import hashlib
import json
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
from odirkit_augment.dcgan.diagnostics import (
    convergence_note,
    flatness_note,
    plot_losses,
    save_grid,
)
from odirkit_augment.dcgan.networks import (
    Z_DIM,
    Discriminator,
    Generator,
    init_weights,
    to_gan_range,
)

GAN_VERSION = 1


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
