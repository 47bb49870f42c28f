"""Vision Transformer weights in the layouts they are published in, checked as they load.

A pretrained ViT's checkpoint rarely is a plain state dict of the model that
fine-tunes it. :func:`fit_checkpoint` turns each published layout into one,
saying what it dropped and why, and refuses anything else with the keys named
(a silently half-loaded backbone trains, and only its results are wrong):

- **MAE / RETFound** (``RETFound_cfp_weights.pth``, ``RETFound_mae_*.pth`` on the
  Hugging Face hub; RETFound's ``main_finetune.py``): ``{"model": state_dict, ...}``
  from MAE pre-training, with the decoder (``decoder_*``) and ``mask_token``, which
  are dropped. With global average pooling the encoder's final ``norm`` is dropped
  too: a new ``fc_norm`` normalises the pooled tokens (MAE's fine-tuning model).
- **DINOv2 training checkpoints** (``RETFound_dinov2_*.pth``): ``{"teacher":
  {"backbone.<key>": ..., "dino_head.*": ..., "ibot_head.*": ...}}``; the backbone's
  keys are kept without their prefix, the projection heads dropped; timm's own
  conversion renames DINOv2's keys (``mlp.w12``/``w3``, register tokens).
- **Fine-tuned checkpoints** (``{"model": state_dict}`` with ``fc_norm`` and ``head``),
  **timm / odirkit state dicts** and ``.safetensors`` files: loaded as they are; a
  ``module.`` prefix (DistributedDataParallel) is removed.

Then, for every layout: the position embedding is resampled to the model's patch
grid when the image size differs from the pretraining size, and the patch
embedding's kernel when the patch size differs (timm's ``checkpoint_filter_fn``,
which calls ``timm.layers.resample_abs_pos_embed``); a head whose shape differs
(another number of classes) is dropped. The only keys the model may still miss
are the head's and, with global average pooling, ``fc_norm``'s; any other missing
key, any key the model does not have and any shape that differs is an error
naming them. A new head is initialised as MAE and RETFound do: truncated normal,
standard deviation 2e-5, bias 0.
"""

from __future__ import annotations

import argparse
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

import odirkit

#: what RETFound's fine-tuning initialises a new head with (MAE's main_finetune.py)
HEAD_INIT_STD = 2e-5
#: keys listed in an error message, at most
SHOWN_KEYS = 12


@dataclass
class FitReport:
    """What :func:`fit_checkpoint` did to a checkpoint: its layout, the keys it dropped
    (and why), the keys the model keeps its own values for (the head, ``fc_norm``)."""

    layout: str
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> keys
    new: list[str] = field(default_factory=list)
    resampled: list[str] = field(default_factory=list)

    def drop(self, reason: str, keys: list[str]) -> None:
        if keys:
            self.dropped.setdefault(reason, []).extend(keys)

    def summary(self) -> str:
        parts = [self.layout]
        parts += [f"dropped {len(keys)} {reason}" for reason, keys in self.dropped.items()]
        if self.resampled:
            parts.append(f"adapted to the model: {', '.join(self.resampled)}")
        if self.new:
            parts.append(f"new: {', '.join(self.new)}")
        return "; ".join(parts)


def read_checkpoint(path: Path, *, mmap: bool = False) -> Any:
    """A ``.pth`` / ``.bin`` / ``.pt`` checkpoint or a ``.safetensors`` file, read without
    running code: tensors, plain values and ``argparse.Namespace`` (the ``args`` MAE's
    and RETFound's training saves beside the weights) only.

    Raises :class:`odirkit.DataError` (no such file) or :class:`odirkit.PluginError`
    (unreadable, or holding other objects).
    """
    path = Path(path)
    if not path.is_file():
        raise odirkit.DataError(f"weights file {path} not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:
            raise odirkit.PluginError(
                f"weights file {path}: not a readable .safetensors file ({exc})"
            ) from None
    wrong = not_a_checkpoint(path)
    if wrong:
        raise odirkit.PluginError(
            f"weights file {path}: not a PyTorch checkpoint: {wrong}; download it again "
            "(docs/weights.md says how)"
        )
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:
                return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
            except RuntimeError as exc:
                if not mmap or "mmap" not in str(exc):
                    raise
                return torch.load(path, map_location="cpu", weights_only=True)  # legacy format
    except pickle.UnpicklingError as exc:
        reason = " ".join(str(exc).split())[:300]
        raise odirkit.PluginError(
            f"weights file {path}: refused to load: it holds objects other than tensors and "
            f"plain values, and unpickling them could run code ({reason}). If you trust the "
            "file, save its weights alone: python -c \"import torch; c = torch.load('IN', "
            "weights_only=False); torch.save(c.get('model', c), 'OUT.pth')\""
        ) from None
    except Exception as exc:  # a damaged file: the unpickler's KeyError, EOFError, ...
        reason = " ".join(str(exc).split())[:300] or type(exc).__name__
        raise odirkit.PluginError(
            f"weights file {path}: not a readable checkpoint ({reason})"
        ) from None


def not_a_checkpoint(path: Path) -> str | None:
    """What a file that cannot be a PyTorch checkpoint holds instead (None: it may be one).

    ``torch.save`` writes a zip archive (or, before PyTorch 1.6, a pickle); a file
    starting otherwise is refused before unpickling, which would misreport it as holding
    code objects or fail with a bare ``KeyError``.
    """
    with open(path, "rb") as file:
        head = file.read(256)
    if not head:
        return "the file is empty"
    if head.startswith((b"PK\x03\x04", b"\x80")):  # zip archive, pickle protocol 2+
        return None
    start = head.lstrip().lower()
    if start.startswith(b"version https://git-lfs"):
        return "it is a Git LFS pointer (a repository cloned without git lfs)"
    if start.startswith((b"<!doctype html", b"<html", b"<?xml")):
        return "it is a web page (saved in place of the file: a login or error page?)"
    return f"it starts with {head[:16]!r}"


def _is_state_dict(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def unwrap(raw: Any, source: str) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict inside a checkpoint, and the name of its layout."""
    if _is_state_dict(raw):
        return dict(raw), "a state dict"
    if isinstance(raw, dict):
        for key, layout in (
            ("model", "an MAE / RETFound checkpoint ('model')"),
            ("teacher", "a DINOv2 training checkpoint ('teacher')"),
            ("state_dict", "a checkpoint with 'state_dict'"),
        ):
            if _is_state_dict(raw.get(key)):
                return dict(raw[key]), layout
        keys = ", ".join(repr(k) for k in list(raw)[:SHOWN_KEYS])
        raise odirkit.PluginError(
            f"weights {source}: no state dict found: a state dict, or a checkpoint holding one "
            f"under 'model' (MAE, RETFound), 'teacher' (DINOv2) or 'state_dict'; its keys: "
            f"{keys}"
        )
    raise odirkit.PluginError(f"weights {source}: holds {type(raw).__name__}, not a state dict")


def fit_checkpoint(
    model: nn.Module, raw: Any, source: str
) -> tuple[dict[str, torch.Tensor], FitReport]:
    """The state dict of ``raw`` (any published layout) made to fit ``model``, a timm
    ``VisionTransformer``; see the module's documentation for each step.

    Raises :class:`odirkit.PluginError` naming the missing, unexpected and misshapen
    keys when the checkpoint does not fit.
    """
    from timm.models.vision_transformer import checkpoint_filter_fn

    state, layout = unwrap(raw, source)
    report = FitReport(layout)
    if state and all(k.startswith("module.") for k in state):
        state = {k.removeprefix("module."): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):  # DINOv2: the teacher's backbone
        heads = [k for k in state if not k.startswith("backbone.")]
        report.drop("keys outside the backbone (DINOv2 projection heads)", heads)
        state = {k.removeprefix("backbone."): v for k, v in state.items() if k not in heads}
    report.drop("MAE decoder keys", [k for k in state if k.startswith("decoder_")])
    state = {k: v for k, v in state.items() if not k.startswith("decoder_")}
    if "mask_token" in state:  # timm's conversion removes it (and converts DINOv2's keys)
        report.drop("mask_token (pretraining only)", ["mask_token"])
    own = model.state_dict()
    pooled_norm = "fc_norm.weight" in own and "norm.weight" not in own
    if pooled_norm and "fc_norm.weight" not in state:
        norm = [k for k in ("norm.weight", "norm.bias") if k in state]
        report.drop("final-norm keys (global average pooling normalises with fc_norm)", norm)
        state = {k: v for k, v in state.items() if k not in norm}
    before = {k: tuple(v.shape) for k, v in state.items()}
    state = checkpoint_filter_fn(state, model)
    # the position embedding resampled to another grid, or only its class position dropped
    # (DINOv2 with registers): said by its shapes, which tell the two apart
    report.resampled = [
        f"{k} {before[k]} -> {tuple(v.shape)}"
        for k, v in state.items()
        if k in before and before[k] != tuple(v.shape)
    ]
    head = [k for k in ("head.weight", "head.bias") if k in state and k in own]
    if head and any(tuple(state[k].shape) != tuple(own[k].shape) for k in head):
        report.drop(f"head keys (shape {tuple(state['head.weight'].shape)})", head)
        state = {k: v for k, v in state.items() if k not in head}
    may_be_new = {"head.weight", "head.bias"}
    if pooled_norm:
        may_be_new |= {"fc_norm.weight", "fc_norm.bias"}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    misshapen = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in state
        if k in own and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    wrong_missing = [k for k in missing if k not in may_be_new]
    if wrong_missing or unexpected or misshapen:
        problems = []
        for what, keys in (
            ("missing", wrong_missing),
            ("unexpected", unexpected),
            ("of another shape", misshapen),
        ):
            if keys:
                shown = ", ".join(keys[:SHOWN_KEYS])
                more = f" and {len(keys) - SHOWN_KEYS} more" if len(keys) > SHOWN_KEYS else ""
                problems.append(f"{len(keys)} key(s) {what}: {shown}{more}")
        raise odirkit.PluginError(
            f"weights {source} ({layout}) do not fit this model: {'; '.join(problems)}. A "
            "checkpoint is loaded whole or not at all; check arch and global_pool against "
            "the weights (docs/weights.md lists them)"
        )
    report.new = missing
    return state, report


def load_into(model: nn.Module, raw: Any, source: str) -> FitReport:
    """Fit ``raw`` to ``model`` (:func:`fit_checkpoint`) and load it; a new head gets
    MAE's initialisation (truncated normal, std 2e-5, bias 0)."""
    from timm.layers import trunc_normal_

    state, report = fit_checkpoint(model, raw, source)
    result = model.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == sorted(report.new) and not result.unexpected_keys
    head = getattr(model, "head", None)
    if "head.weight" in report.new and isinstance(head, nn.Linear):
        with torch.no_grad():
            trunc_normal_(head.weight, std=HEAD_INIT_STD)
            if head.bias is not None:
                head.bias.zero_()
    return report


def check_fits(model: nn.Module, path: Path, source: str) -> FitReport:
    """Whether the checkpoint at ``path`` fits ``model`` (a model on the meta device
    will do): the file is memory-mapped, and nothing is loaded."""
    raw = read_checkpoint(path, mmap=True)
    _, report = fit_checkpoint(model, raw, source)
    return report
