"""Choosing the device an experiment runs on."""

from __future__ import annotations

import torch

from odirkit.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` is CUDA when present, else the CPU; ``"cuda"`` without CUDA is an error.

    Raises :class:`ConfigError` for a device this machine lacks (CUDA, a CUDA index, MPS)."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device = {spec!r} but CUDA is not available on this machine; "
                'use device = "auto" or "cpu"'
            )
        index = int(spec.split(":")[1]) if ":" in spec else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                f"device = {spec!r} but this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    if spec == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device = 'mps' but Apple's MPS backend is not available here")
    return torch.device(spec)


def describe_device(device: torch.device) -> str:
    """A human name for the device: the GPU model on CUDA."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return device.type
