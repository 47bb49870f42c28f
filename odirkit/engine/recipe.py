"""The fine-tuning recipe of pretrained transformers, for any model.

What MAE (He et al. 2022, "Masked Autoencoders Are Scalable Vision Learners",
appendix A.3) and RETFound (Zhou et al. 2023, Nature 622:156, "A foundation model
for generalizable disease detection from retinal images", ``main_finetune.py``)
fine-tune with, each piece timm's own:

- **layer-wise learning-rate decay** (Clark et al. 2020, ELECTRA; Bao et al. 2022,
  BEiT): :func:`parameter_groups` is timm's ``param_groups_layer_decay``; each group's
  learning rate is ``lr * layer_decay ** (depth - layer)``, the head at ``depth``;
- **warm-up then half-cycle cosine, per step**: :class:`WarmupCosine` drives timm's
  ``CosineLRScheduler``;
- **mixup / cutmix**: :class:`BatchMixer` calls timm's ``Mixup``, seeded per step;
- **linear probing and partial fine-tuning** (:func:`apply_finetune`): the backbone
  frozen, or all but its last blocks.

Label smoothing and AdamW live with the other losses and optimisers
(:mod:`odirkit.engine.trainer`); the base learning rate scaled by the batch
(``[train] blr``) is settled in :mod:`odirkit.config`.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import torch
from torch import nn

from odirkit.engine.heads import MetadataFusion, final_linear
from odirkit.errors import ConfigError
from odirkit.layers import BACKBONE
from odirkit.seeding import Stream, derive_seed

#: the seed stream of mixup / cutmix draws


# -- parameter groups ------------------------------------------------------------------


def parameter_groups(
    model: nn.Module, *, lr: float, weight_decay: float, layer_decay: float, per_step: bool
) -> list[dict[str, Any]]:
    """The trainable parameters in timm's layer-decay groups.

    Each group holds ``lr_scale = layer_decay ** (depth - layer)`` (timm's
    ``param_groups_layer_decay``: layers from the model's ``group_matcher``, stem 0,
    one per block, head and pooling norm last) and its weight decay (none for 1-D
    parameters, norms and biases, and the model's ``no_weight_decay()`` names, such as
    the position embedding and class token). With ``per_step`` (a timm scheduler, which
    applies ``lr_scale`` itself) the groups start at ``lr``; otherwise (PyTorch's
    per-epoch schedulers, or none) each group's ``lr`` is already scaled.
    """
    from timm.optim import param_groups_layer_decay

    target, backbone, prefix = model, model, ""
    if isinstance(model, MetadataFusion):  # the backbone's layers, the fusion head on top
        backbone, prefix = getattr(model, BACKBONE), f"{BACKBONE}."
        if hasattr(backbone, "group_matcher"):
            target = _FusionGroups(model)
    names = getattr(backbone, "no_weight_decay", None)
    no_decay = {prefix + name for name in names()} if callable(names) else set()
    groups = param_groups_layer_decay(
        target, weight_decay=weight_decay, no_weight_decay_list=no_decay, layer_decay=layer_decay
    )
    for group in groups:
        group["lr"] = lr if per_step else lr * group["lr_scale"]
    return groups


class _FusionGroups(nn.Module):
    """A metadata-fusion model as timm's layer grouping sees it: the backbone's groups
    under ``backbone.``; the fusion head, matched by none, the top layer."""

    def __init__(self, model: MetadataFusion) -> None:
        super().__init__()
        self.add_module(BACKBONE, getattr(model, BACKBONE))
        self.head = model.head

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        matcher = getattr(self, BACKBONE).group_matcher(coarse=coarse)
        return {
            key: _prefixed(rule)
            if isinstance(rule, str)
            else [(_prefixed(pattern), order) for pattern, order in rule]
            for key, rule in matcher.items()
        }


def _prefixed(pattern: str) -> str:
    """A timm group pattern (``^blocks\\.(\\d+)``, ``^a|b|c``) under ``backbone.``: its
    anchors moved in front of the prefix, its capture groups kept in order."""
    inner = re.sub(r"(^|\|)\^", r"\1", pattern)
    return rf"^{BACKBONE}\.(?:{inner})"


# -- the learning rate per step --------------------------------------------------------


class WarmupCosine:
    """Linear warm-up from 0 over ``warmup_epochs``, then a half-cycle cosine from the
    learning rate to ``min_lr`` at the end of the last step, updated before every step
    (RETFound's ``util/lr_sched.adjust_learning_rate``), as timm's ``CosineLRScheduler``
    with ``warmup_prefix``. Layer-decay groups keep their ``lr_scale``.

    The rate is a function of the global step alone, so a resumed run sets the very
    rates of an uninterrupted one. ``step()`` (called at the end of each epoch) does
    nothing; :meth:`before_step` does the work.
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        epochs: int,
        steps_per_epoch: int,
        warmup_epochs: float,
        min_lr: float,
    ) -> None:
        from timm.scheduler import CosineLRScheduler

        total = max(1, epochs * steps_per_epoch)
        self.warmup_steps = round(warmup_epochs * steps_per_epoch)
        self.steps_per_epoch = steps_per_epoch
        self.schedule = CosineLRScheduler(
            optimizer,
            t_initial=max(1, total - self.warmup_steps),
            lr_min=min_lr,
            warmup_t=self.warmup_steps,
            warmup_lr_init=0.0,
            warmup_prefix=True,
            t_in_epochs=False,
        )

    def before_step(self, epoch: int, step: int) -> None:
        """Set the learning rates of step ``step`` (0-based) of epoch ``epoch``."""
        self.schedule.step_update(epoch * self.steps_per_epoch + step)

    def step(self) -> None:
        """End of an epoch: nothing (the rate changes per step)."""

    def state_dict(self) -> dict[str, Any]:
        """The schedule's position, for checkpoints."""
        return {"warmup_steps": self.warmup_steps, "steps_per_epoch": self.steps_per_epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint's position.

        Raises :class:`ConfigError` when the checkpoint's schedule differs from this run's."""
        if state != self.state_dict():
            raise ConfigError(
                f"the checkpoint's warm-up schedule ({state}) differs from this run's "
                f"({self.state_dict()})"
            )


# -- mixup and cutmix --------------------------------------------------------------------


class BatchMixer:
    """Mixup and cutmix on a normalised batch and its targets: timm's ``Mixup``.

    Mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization") blends each
    image with another and their targets alike; cutmix (Yun et al. 2019, "CutMix")
    pastes a box of the other image and mixes the targets by its area. timm pairs
    image ``i`` with image ``B - 1 - i``. Label smoothing is left to the loss (it is
    affine, so smoothing after mixing equals mixing smoothed targets).

    Single-label targets (class indices) become mixed one-hot rows; multi-label 0/1
    rows are mixed as they are; with a softmax loss over several labels the rows are
    first made the shares that loss compares with. timm draws from NumPy's global
    generator: it is seeded per step from ``(seed, epoch, step)`` and restored after,
    so a run and its resumption mix the same pairs. An odd batch mixes all but its
    last image (timm pairs images).
    """

    def __init__(
        self,
        *,
        mixup: float,
        cutmix: float,
        prob: float,
        switch_prob: float,
        mode: str,
        num_classes: int,
        single_label: bool,
        shares: bool,
    ) -> None:
        from timm.data import Mixup

        try:  # dense target rows for every task: timm mixes them as it mixes one-hot rows
            self.mixup = Mixup(
                mixup_alpha=mixup,
                cutmix_alpha=cutmix,
                prob=prob,
                switch_prob=switch_prob,
                mode=mode,
                label_smoothing=0.0,
                num_classes=num_classes,
                multi_label=True,
            )
        except TypeError as exc:
            raise ConfigError(
                f"[train] mixup / cutmix need a timm whose Mixup mixes dense targets "
                f"(multi_label=True, timm >= 1.0.20); upgrade timm ({exc})"
            ) from None
        self.num_classes = num_classes
        self.single_label = single_label
        self.shares = shares

    def __call__(
        self, x: torch.Tensor, y: torch.Tensor, *, seed: int, epoch: int, step: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` (mixed in place) and the mixed float targets ``[B, num_classes]``."""
        if self.single_label:
            y = nn.functional.one_hot(y.long(), self.num_classes).float()
        else:
            y = y.float()
            if self.shares:
                y = y / y.sum(dim=1, keepdim=True).clamp_min(1.0)
        even = len(x) - len(x) % 2
        if even == 0:
            return x, y
        state = np.random.get_state()
        np.random.seed(derive_seed(seed, epoch, step, Stream.MIXUP) % 2**32)
        try:
            mixed_x, mixed_y = self.mixup(x[:even], y[:even])
        finally:
            np.random.set_state(state)
        x[:even] = mixed_x
        y = y.clone()
        y[:even] = mixed_y
        return x, y


# -- what is trained ------------------------------------------------------------------------


def apply_finetune(model: nn.Module, mode: str, blocks: int | None, num_classes: int) -> None:
    """Freeze what ``[model] finetune`` leaves out.

    - ``full``: nothing frozen.
    - ``linear_probe``: only the final linear layer producing the ``num_classes`` logits
      (the head; with metadata fusion, the fusion head) is trained (MAE's and RETFound's
      linear probing, without MAE's extra BatchNorm before the head).
    - ``partial``: the last ``blocks`` of the model's ``blocks`` sequence (a timm
      ViT's transformer blocks) and every parameter after them (final norm, pooling
      norm, head) are trained; the patch and position embeddings, the class token and
      the earlier blocks are frozen (He et al. 2022, sec. 4.3, partial fine-tuning).

    Raises :class:`ConfigError` when the model has no ``blocks`` sequence or fewer
    blocks than asked.
    """
    if mode == "full":
        return
    if mode == "linear_probe":
        keep = _head_parameters(model, num_classes)
        for parameter in model.parameters():
            parameter.requires_grad = id(parameter) in keep
        return
    owner = getattr(model, BACKBONE, model) if isinstance(model, MetadataFusion) else model
    sequence = getattr(owner, "blocks", None)
    if not isinstance(sequence, nn.Sequential | nn.ModuleList) or len(sequence) == 0:
        raise ConfigError(
            'finetune = "partial" needs a model with a sequence of blocks (a timm Vision '
            'Transformer\'s "blocks"); this one has none: use "linear_probe" or "full"'
        )
    assert blocks is not None
    if blocks > len(sequence):
        raise ConfigError(f"finetune_blocks = {blocks}, but the model has {len(sequence)} blocks")
    first = {id(p) for p in sequence[len(sequence) - blocks].parameters()}
    trainable = False
    for parameter in model.parameters():  # registration order: stem, blocks, norms, head
        trainable = trainable or id(parameter) in first
        parameter.requires_grad = trainable


def frozen_batch_norms(model: nn.Module) -> list[nn.Module]:
    """The batch-norm layers ``[model] finetune`` froze (affine parameters, none trained).

    Training keeps them in evaluation mode and precise BN leaves them alone: their running
    statistics are part of the frozen backbone (a linear probe of a pretrained CNN would
    otherwise re-estimate them on the new images, changing every feature the head sees).
    """
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and any(True for _ in m.parameters())
        and not any(p.requires_grad for p in m.parameters())
    ]


def recomputed_batch_norms(model: nn.Module) -> list[nn.Module]:
    """The batch-norm layers whose statistics precise BN recomputes: those tracking
    running statistics, except the frozen ones (:func:`frozen_batch_norms`)."""
    frozen = {id(m) for m in frozen_batch_norms(model)}
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm)
        and m.track_running_stats
        and id(m) not in frozen
    ]


def _head_parameters(model: nn.Module, num_classes: int) -> set[int]:
    if isinstance(model, MetadataFusion):
        return {id(p) for p in model.head.parameters()}
    _, _, linear = final_linear(model, num_classes)
    return {id(p) for p in linear.parameters()}


def trainable_share(model: nn.Module) -> float:
    """The share of the model's parameters that are trained."""
    total = sum(p.numel() for p in model.parameters())
    trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trained / total if total else math.nan
