"""The steps of one epoch and the evaluation of a set of images (:class:`Trainer`), and what
a step is made of: speed settings per device (:func:`resolve_performance`), optimisers and
schedulers (the losses are :mod:`odirkit.engine.losses`').

This is not the training loop: the epochs, validation after each, checkpoints, early
stopping and the test scored at the end are :class:`odirkit.engine.loop.EpochLoop`'s,
which calls :meth:`Trainer.train_epoch` once an epoch; the fine-tuning recipe (layer-wise
decay, warm-up, mixup) is :mod:`odirkit.engine.recipe`'s.

Images arrive as ``uint8`` batches; on the training device they become floats
in [0, 1], pass through the online augmenters, are normalised with the
model's mean and standard deviation, and meet the model. Every random draw of
a step is seeded from ``(seed, epoch, step)`` (see :mod:`odirkit.seeding`),
so an epoch can stop after any step and resume to the same numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from odirkit.console import info
from odirkit.data.prepare import DataBundle, chunked
from odirkit.engine import distributed
from odirkit.engine.distributed import world
from odirkit.engine.recipe import WarmupCosine, frozen_batch_norms, recomputed_batch_norms
from odirkit.errors import TrainingDiverged
from odirkit.seeding import Stream, derive_seed, generator_for
from odirkit.view import ModelView

Augmenter = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass
class EpochProgress:
    """Where an epoch stands: steps done and the running training loss."""

    epoch: int
    step: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    stop: bool = False  # a stop was requested on some rank

    @property
    def loss(self) -> float:
        """The mean training loss of the epoch so far (NaN before the first step)."""
        return self.loss_sum / self.seen if self.seen else float("nan")


@dataclass
class Evaluation:
    """A model's outputs on some images (validation or test), in the order of ``indices``."""

    indices: np.ndarray
    probs: np.ndarray
    targets: np.ndarray
    loss: float
    logits: np.ndarray | None = None  # before softmax/sigmoid, for temperature scaling


@dataclass(frozen=True)
class Performance:
    """How fast to run: mixed precision, memory format, compilation, loading."""

    autocast_dtype: torch.dtype | None = None  # None: fp32
    grad_scaler: bool = False  # fp16 needs loss scaling
    channels_last: bool = False
    compile: bool = False
    num_workers: int = 0
    pin_memory: bool = False

    @property
    def precision(self) -> str:
        """The autocast precision in words (``fp32``, ``bf16``, ``fp16``)."""
        names = {torch.bfloat16: "bf16", torch.float16: "fp16"}
        return names.get(self.autocast_dtype, "fp32")  # type: ignore[arg-type]


def resolve_performance(
    *,
    precision: str,
    channels_last: bool | None,
    compile: bool,
    num_workers: int | None,
    device: torch.device,
    streaming: bool,
) -> Performance:
    """Settle ``auto`` and unset choices for this device.

    On CUDA: bf16 autocast where the GPU supports it, else fp16 with a gradient
    scaler; channels_last on; pinned memory; DataLoader workers when images are
    read from the cache. On the CPU: fp32, contiguous, no workers — unless the
    experiment asks otherwise.
    """
    cuda = device.type == "cuda"
    dtype: torch.dtype | None
    if precision == "auto":
        if cuda:
            bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            dtype = torch.bfloat16 if bf16 else torch.float16
        else:
            dtype = None
    else:
        dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    if dtype is torch.float16 and not cuda:
        dtype = torch.bfloat16  # CPU autocast has no fp16 gradient scaling: use bf16
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if (cuda and streaming) else 0
    return Performance(
        autocast_dtype=dtype,
        grad_scaler=dtype is torch.float16,
        channels_last=cuda if channels_last is None else channels_last,
        compile=compile,
        num_workers=num_workers,
        pin_memory=cuda,
    )


class Trainer:
    """Runs the training steps of an epoch (:meth:`train_epoch`) and evaluations
    (:meth:`evaluate`) for one model on one data bundle; the epochs are
    :class:`odirkit.engine.loop.EpochLoop`'s."""

    def __init__(
        self,
        *,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        loss_fn: nn.Module,
        data: DataBundle,
        device: torch.device,
        view: ModelView,
        augmenters: Sequence[Augmenter] = (),
        seed: int = 0,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        performance: Performance | None = None,
        mixer: Callable[..., tuple[torch.Tensor, torch.Tensor]] | None = None,
        lr_schedule: Any = None,
    ) -> None:
        self.performance = performance or Performance()
        self.mixer = mixer  # mixup / cutmix (engine.recipe.BatchMixer), after the augmenters
        self.lr_schedule = lr_schedule  # per-step rates (engine.recipe.WarmupCosine)
        self.model = model  # the module whose state is saved
        if self.performance.channels_last:
            model.to(memory_format=torch.channels_last)
        self.forward_model: nn.Module = model
        here = world()
        if here.distributed:
            self.forward_model = nn.parallel.DistributedDataParallel(
                model, device_ids=[device.index] if device.type == "cuda" else None
            )
        if self.performance.compile:
            self.forward_model = torch.compile(self.forward_model)
        self.optimizer = optimizer
        self.loss_fn = loss_fn
        self.data = data
        self.device = device
        self.view = view
        self.mean = torch.tensor(view.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(view.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        # the model's other inputs (age, sex) for every row, computed once
        self.extra = view.extra_inputs(data.table)
        self.augmenters = list(augmenters)
        self.seed = seed
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.performance.grad_scaler)
        self._has_batch_norm = any(
            isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()
        )
        self._merge_said = False

    # -- the pieces of a step ------------------------------------------------

    def to_input(
        self, images: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """uint8 batch -> floats in [0, 1] -> augmenters (given a generator) -> normalised
        with the view's mean and std (as :meth:`ModelView.normalise` does, on the device).

        ``uint8 [B, 3, S, S]`` in, ``float32 [B, 3, S, S]`` out, on the training device."""
        x = images.to(self.device, non_blocking=True).float().div_(255.0)
        if generator is not None:
            for aug in self.augmenters:
                x = aug(x, generator)
        return self._normalised(x)

    def _normalised(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        if self.performance.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def forward(
        self, x: torch.Tensor, indices: np.ndarray, *, training: bool = True
    ) -> torch.Tensor:
        """The model on a batch, under autocast when mixed precision is on.

        Training goes through the distributed (and compiled) wrapper; evaluation,
        where ranks may run different numbers of batches, through the module itself.

        ``x`` is the normalised batch ``[B, 3, S, S]`` (a both-eyes model's ``[2B, 3, S, S]``),
        ``indices`` its rows ``[B]`` (for the extra inputs); returns the logits ``[B, C]``."""
        dtype = self.performance.autocast_dtype
        module = self.forward_model if training else self.model
        with torch.autocast(
            self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None
        ):
            rows = torch.from_numpy(np.asarray(indices, dtype=np.int64))
            extra = [t[rows].to(self.device, non_blocking=True) for t in self.extra]
            return module(x, *extra)

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The training images of ``epoch`` in their shuffled order (seeded by epoch).

        Row indices ``[N_train]``."""
        rng = np.random.default_rng(derive_seed(self.seed, epoch, 0))
        return self.data.train_idx[rng.permutation(len(self.data.train_idx))]

    def steps_per_epoch(self) -> int:
        """How many optimiser steps an epoch takes."""
        return len(self.epoch_batches(0))

    def epoch_batches(self, epoch: int) -> list[np.ndarray]:
        """The training batches of ``epoch``: its shuffled order in ``batch_size`` chunks.

        A last chunk too small for batch norm to measure (one image on some process) is
        merged into the batch before it when the model has batch norm: in training mode
        batch norm cannot normalise a single value per channel (and a batch of one is a
        poor estimate anyway). Said once per run.

        Each batch is row indices ``[B]``."""
        chunks = chunked(self.epoch_order(epoch), self.batch_size)
        if len(chunks) > 1 and len(chunks[-1]) < 2 * world().size and self._has_batch_norm:
            if not self._merge_said:
                info(
                    f"the last training batch of each epoch would hold {len(chunks[-1])} "
                    f"image(s), too few for batch norm: it is merged into the batch before it"
                )
                self._merge_said = True
            chunks = [*chunks[:-2], np.concatenate(chunks[-2:])]
        return chunks

    def _batches(self, chunks: list[np.ndarray]):
        return self.data.batches(
            chunks,
            num_workers=self.performance.num_workers,
            pin_memory=self.performance.pin_memory,
        )

    # -- training ------------------------------------------------------------

    def train_epoch(
        self,
        progress: EpochProgress,
        *,
        after_step: Callable[[EpochProgress], None] | None = None,
        stop_requested: Callable[[], bool] | None = None,
    ) -> EpochProgress:
        """Run the remaining steps of ``progress.epoch``; ``after_step`` sees each one.

        Under ``torchrun`` each rank takes its share of every global batch; one
        small all-reduce per step agrees on the loss, on divergence and on a stop
        request, so that every rank stops at the same step.

        Raises :class:`TrainingDiverged` when the loss stops being finite."""
        self.model.train()
        for norm in frozen_batch_norms(self.model):
            norm.eval()
        chunks = self.epoch_batches(progress.epoch)[progress.step :]
        shares = [distributed.rank_share(chunk) for chunk in chunks]
        batches = self._batches([mine for mine, _ in shares])
        for (indices, images, targets), (_, weight) in zip(batches, shares, strict=True):
            step_seed = derive_seed(self.seed, progress.epoch, progress.step + 1)
            torch.manual_seed(step_seed)
            generator = generator_for(self.device, step_seed, 1)
            if self.lr_schedule is not None:
                self.lr_schedule.before_step(progress.epoch, progress.step)
            x = self.to_input(images, generator)
            y = targets.to(self.device, non_blocking=True)
            if self.mixer is not None:
                x, y = self.mixer(x, y, seed=self.seed, epoch=progress.epoch, step=progress.step)
            self.optimizer.zero_grad(set_to_none=True)
            logits = self.forward(x, indices)
            loss = self.loss_fn(logits.float(), y)
            value = float(loss.detach())
            count = len(images) if weight > 0 else 0
            finite = math.isfinite(value)
            stop = bool(stop_requested and stop_requested())
            totals = distributed.all_sum(
                [0.0 if finite else 1.0, float(stop), value * count if finite else 0.0, count]
            )
            if totals[0] > 0:
                raise TrainingDiverged(
                    f"the training loss became {value if not finite else 'not finite'} at "
                    f"epoch {progress.epoch + 1}, step {progress.step + 1}; lower train.lr or "
                    "check the data"
                )
            self.scaler.scale(loss * weight).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            progress.step += 1
            progress.loss_sum += totals[2]
            progress.seen += int(totals[3])
            progress.stop = totals[1] > 0
            if after_step is not None:
                after_step(progress)
        return progress

    # -- batch-norm statistics ------------------------------------------------

    @torch.no_grad()
    def recompute_batch_norm(self, epoch: int, max_batches: int) -> int:
        """Precise BN: every batch-norm layer's running mean and variance recomputed as
        the exact average over up to ``max_batches`` training batches, with the weights
        as they are now (Wu & Johnson 2021, "Rethinking 'Batch' in BatchNorm", sec. 3).

        The running averages training keeps (momentum 0.1) mix in statistics of earlier
        weights; after few steps with weights that change fast they no longer match the
        network, and evaluation then sees mis-normalised activations (a model that
        separates its classes in training mode may answer one class for every image in
        evaluation mode). The images are the training images without augmentation, as
        evaluation sees images; dropout is off, as in evaluation. Under ``torchrun`` each
        rank averages its share and the ranks' statistics are then averaged
        (:func:`~odirkit.engine.distributed.agree_buffers`). Returns the batches used
        (0 when the model has no batch norm or ``max_batches`` is 0).
        """
        norms = recomputed_batch_norms(self.model)
        if not norms or max_batches <= 0 or len(self.data.train_idx) == 0:
            return 0
        rng = np.random.default_rng(derive_seed(self.seed, epoch, 0, Stream.PRECISE_BN))
        order = self.data.train_idx[rng.permutation(len(self.data.train_idx))]
        chunks = chunked(order, self.batch_size)[:max_batches]
        if len(chunks) > 1 and len(chunks[-1]) < 2:
            chunks = chunks[:-1]  # a batch of one image has no variance to measure
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches, not a moving one
        was_training = self.model.training
        self.model.train()
        for m in frozen_batch_norms(self.model):
            m.eval()
        for m in self.model.modules():
            if isinstance(m, nn.modules.dropout._DropoutNd):
                m.eval()
        mine = [distributed.rank_share(chunk)[0] for chunk in chunks]
        for indices, images, _ in self._batches([c for c in mine if len(c)]):
            x = self._normalised(images.to(self.device, non_blocking=True).float().div_(255.0))
            self.forward(x, indices, training=False)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        self.model.train(was_training)
        distributed.agree_buffers(self.model)
        return len(chunks)

    # -- evaluation ----------------------------------------------------------

    @torch.inference_mode()
    def evaluate(self, indices: np.ndarray, *, tta: bool = False) -> Evaluation:
        """Probabilities and loss on the images ``indices`` (validation or test), in order.

        With ``tta`` the logits are averaged over the image and its test-time views
        (``[eval] tta``, :mod:`odirkit.tta`). Under ``torchrun`` each rank evaluates
        every ``WORLD_SIZE``-th image and the predictions are gathered: each image is
        evaluated exactly once.

        ``indices`` are rows ``[N]``; the :class:`Evaluation`'s probabilities and logits are
        ``[N, C]``, its loss the mean per image."""
        test_time_views = self.view.test_time_views if tta else ()
        here = world()
        mine = indices[here.rank :: here.size] if here.distributed else indices
        self.model.eval()
        outputs, total, seen = [], 0.0, 0
        for chunk, images, targets in self._batches(chunked(mine, self.eval_batch_size)):
            x = images.to(self.device, non_blocking=True).float().div_(255.0)
            logits = self.forward(self._normalised(x), chunk, training=False).float()
            for tta_view in test_time_views:
                tta_x = self._normalised(tta_view(x))
                logits += self.forward(tta_x, chunk, training=False).float()
            logits /= 1 + len(test_time_views)
            y = targets.to(self.device)
            total += float(self.loss_fn(logits, y)) * len(images)
            seen += len(images)
            outputs.append(logits.cpu().numpy())
        empty = np.zeros((0, self.data.task.num_classes), dtype=np.float32)
        local = np.concatenate(outputs) if outputs else empty
        if here.distributed:
            parts = distributed.gather((mine, local, total, seen))
            order = np.concatenate([p[0] for p in parts])
            stacked = np.concatenate([p[1] for p in parts])
            position = {int(row): i for i, row in enumerate(order)}
            local = stacked[[position[int(row)] for row in indices]]
            total = sum(p[2] for p in parts)
            seen = sum(p[3] for p in parts)
        logits = torch.from_numpy(local)
        probs = logits.softmax(dim=1) if self.view.softmax else logits.sigmoid()
        return Evaluation(
            indices=indices,
            probs=probs.numpy(),
            targets=self.data.targets[indices],
            loss=total / max(seen, 1) if seen else float("nan"),
            logits=local,
        )


def make_optimizer(
    name: str, params: Any, *, lr: float, momentum: float, weight_decay: float
) -> torch.optim.Optimizer:
    """SGD with momentum, Adam, or AdamW (Loshchilov & Hutter 2019, decoupled weight
    decay; MAE's and RETFound's). ``params`` may be parameter groups with their own
    ``lr`` and ``weight_decay`` (layer-wise decay, :mod:`odirkit.engine.recipe`)."""
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)


def make_scheduler(
    name: str,
    optimizer: torch.optim.Optimizer,
    *,
    epochs: int,
    step_size: int,
    gamma: float,
    steps_per_epoch: int = 1,
    warmup_epochs: float = 0.0,
    min_lr: float = 0.0,
) -> Any:
    """A per-epoch learning-rate schedule (cosine, step), the per-step warm-up and cosine
    of :class:`~odirkit.engine.recipe.WarmupCosine`, or None."""
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
    if name == "warmup_cosine":
        return WarmupCosine(
            optimizer,
            epochs=epochs,
            steps_per_epoch=steps_per_epoch,
            warmup_epochs=warmup_epochs,
            min_lr=min_lr,
        )
    return None
