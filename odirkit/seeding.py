"""Seeds: one experiment seed, from which every random stream is derived.

Each training step reseeds PyTorch's global generator from ``(seed, epoch,
step)`` and gives the augmenters a fresh generator derived the same way, so a
run resumed at any step draws exactly the numbers an uninterrupted run draws.
Checkpoints therefore hold no generator state: nothing draws between a resume
and the first step's reseeding.
"""

from __future__ import annotations

import os
import random
import warnings
from enum import IntEnum, unique

import numpy as np
import torch


def derive_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (numpy's SeedSequence: well spread, stable)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch (every device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def set_deterministic(enabled: bool) -> None:
    """PyTorch's deterministic algorithms; warn, not fail, where an operation has none."""
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.use_deterministic_algorithms(enabled, warn_only=True)
    torch.backends.cudnn.deterministic = enabled


def generator_for(device: torch.device, *parts: int) -> torch.Generator:
    """A generator on ``device`` seeded from ``parts``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derive_seed(*parts))
    return gen


@unique
class Stream(IntEnum):
    """The named random streams of a run: each use draws ``derive_seed(seed, stream, ...)``
    from its own stream, so no two uses share one by accident. The values are those the
    uses had before they were named (runs keep their numbers), but for the search's
    trials, which shared 8 with the external bootstrap."""

    UNDERSAMPLE = 1  # which training images balance = "undersample" keeps
    SHUFFLE_TRAIN_LABELS = 2  # the control that scrambles the training labels
    TEST_BOOTSTRAP = 3  # resamples of the test patients (a run, its baseline, and the
    # internal side of an external validation: the same patients resampled alike)
    SPLIT = 4  # the train / validation / test split by patient
    SHUFFLE_TEST_LABELS = 5  # the control that scrambles the test labels
    COMPARISON = 6  # paired bootstrap and tests between variants
    EXPLAIN = 7  # which images are explained; SmoothGrad's noise
    EXTERNAL_BOOTSTRAP = 8  # resamples of an external collection's patients
    PRECISE_BN = 11  # the batches that re-estimate batch-norm statistics
    LEARNING = 12  # the learning check's chance-level loss
    MIXUP = 13  # mixup / cutmix draws, per step
    TUNE_TRIALS = 14  # the search's sampler, per trial
    AUGMENTERS = 1000  # offline augmenters, plus their position in the list
    TRAINING_IMAGES = 9001  # the training images shown in the report
