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
