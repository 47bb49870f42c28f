"""Running augmenter plugins: online callables per batch, ``expand`` once before training.

An augmenter plugin's factory returns either a callable applied to every
training batch (see :class:`~odirkit.engine.trainer.Trainer`) or an object
with ``expand(train, ctx)``, called once here. ``expand`` sees only the
training images — never a held-out patient's — through :class:`ExpandContext`
and returns :class:`ExtraSamples`, which join the training set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from odirkit.data.table import Task
from odirkit.errors import PluginError


@dataclass
class ExpandContext:
    """What ``expand(train, ctx)`` may use.

    - ``images(positions)``: preprocessed training images, ``uint8 [n, 3, S, S]``,
      by position in the ``train`` table passed alongside (all of them when
      ``positions`` is None);
    - ``targets``: their targets (class indices, or a 0/1 matrix for multi-label);
    - ``task``: the labels and whether they are exclusive;
    - ``image_size``: ``S``, the size the extra images must have;
    - ``device``: where to compute; ``generator``: the only source of randomness
      (seeded from the experiment seed), and ``seed``, for seeding models;
    - ``run_dir``: a folder of this run for the augmenter's own files; a ``report.json``
      there (``{"figures": [{"file", "caption"}], "notes": [...]}``) tells the report
      which figures to show, in order, with their captions, and what to say about them;
    - ``cache_dir``: a folder shared by runs, to reuse expensive work (a trained
      GAN) when the same data and parameters come again.
    """

    load: Callable[[Sequence[int]], torch.Tensor]
    size: int
    targets: np.ndarray
    task: Task
    image_size: int
    device: torch.device
    generator: torch.Generator
    seed: int
    run_dir: Path
    cache_dir: Path
    log: Callable[[str], None] = print

    def __len__(self) -> int:
        return self.size

    def images(self, positions: Sequence[int] | None = None) -> torch.Tensor:
        """Training images by position in the ``train`` table, ``uint8 [n, 3, S, S]``."""
        return self.load(range(self.size) if positions is None else positions)


@dataclass
class ExtraSamples:
    """Training samples an augmenter adds: table rows and their images.

    ``table`` has one row per image with the label columns of the task's
    labels (0/1) and, optionally, ``patient_id``, ``eye``, ``age``, ``sex`` and
    ``source`` (a description such as ``"dcgan"``); ``images`` is
    ``uint8 [N, 3, S, S]`` at the context's image size.
    """

    table: pd.DataFrame
    images: torch.Tensor

    def check(self, name: str, ctx: ExpandContext) -> None:
        """Check the samples an augmenter returned: one image per row, ``uint8`` images of the
        run's size, labels among the run's.

        Raises:
            PluginError: naming the augmenter and what is wrong.
        """
        images = self.images
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8:
            raise PluginError(f"augmenter {name!r}: expand() must return uint8 images")
        size = ctx.image_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise PluginError(
                f"augmenter {name!r}: expand() returned images of shape {tuple(images.shape)}, "
                f"expected [N, 3, {size}, {size}]"
            )
        if len(self.table) != images.shape[0]:
            raise PluginError(
                f"augmenter {name!r}: expand() returned {len(self.table)} rows for "
                f"{images.shape[0]} images"
            )
        missing = [label for label in ctx.task.labels if label not in self.table.columns]
        if missing:
            raise PluginError(f"augmenter {name!r}: extra rows lack label column(s) {missing}")


def targets_of(table: pd.DataFrame, task: Task) -> np.ndarray:
    """Targets in the task's form for rows carrying label columns: class indices
    ``int64 [N]`` (single-label) or a 0/1 matrix ``float32 [N, C]`` (multi-label).

    Raises :class:`PluginError` when a single-label task's row has not exactly one label."""
    y = table[list(task.labels)].to_numpy(dtype=np.int64)
    if task.single_label:
        if (y.sum(axis=1) != 1).any():
            raise PluginError("extra samples of a single-label task need exactly one label each")
        return y.argmax(axis=1)
    return y.astype(np.float32)


def images_to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1], ``[N, 3, S, S]``, to ``uint8 [N, 3, S, S]``, rounding to
    the nearest of the 256 levels (values outside [0, 1] clamped)."""
    return images.clamp(0.0, 1.0).mul(255.0).round().to(torch.uint8)
