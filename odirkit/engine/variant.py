"""One variant: checks before anything runs, and wiring data, model, augmenters and trainer.

:func:`run_variant` prepares the data (split by patient), builds the model
plugin's network, lets offline augmenters add their samples, assembles the
:class:`~odirkit.engine.trainer.Trainer` and hands it to the epoch loop
(:mod:`odirkit.engine.loop`), which trains, checkpoints and scores.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from odirkit.augment import ExpandContext, ExtraSamples, targets_of
from odirkit.config import ExternalData, ResolvedVariant
from odirkit.console import info
from odirkit.data.external import external_samples
from odirkit.data.prepare import DataBundle, cache_root, load_samples, prepare_data
from odirkit.data.split import class_weights
from odirkit.engine import distributed
from odirkit.engine.device import resolve_device
from odirkit.engine.environment import capture_environment
from odirkit.engine.loop import EpochLoop
from odirkit.engine.losses import make_loss
from odirkit.engine.models import build_model, check_input_size
from odirkit.engine.recipe import BatchMixer, parameter_groups
from odirkit.engine.trainer import (
    Trainer,
    make_optimizer,
    make_scheduler,
    resolve_performance,
)
from odirkit.errors import ConfigError, OdirkitError, PluginError
from odirkit.figures import plot_training_images
from odirkit.files import write_text
from odirkit.layers import check_layers
from odirkit.plugins import Registry
from odirkit.runs import VariantDirectory
from odirkit.runs.names import AUGMENT_FOLDER, FigureFiles
from odirkit.runs.records import RunMetrics, VariantConfig
from odirkit.seeding import Stream, derive_seed, generator_for, seed_everything, set_deterministic
from odirkit.tracking import RunInfo, Tracker
from odirkit.view import ModelView


@dataclass
class VariantResult:
    """A finished variant: its folder and ``metrics.json``, and, when it was trained in this
    process, the trained model with its data and view (for explanations)."""

    variant: str
    directory: VariantDirectory
    history: pd.DataFrame
    metrics: RunMetrics | None  # None: a search trial (test not scored), or not the first rank
    model: nn.Module | None = None
    data: DataBundle | None = None
    view: ModelView | None = None
    device: torch.device | None = None
    tracker: Tracker | None = None  # its loggers, still open for the explanations and report


def finished_result(variant: str, vdir: VariantDirectory) -> VariantResult:
    """A variant finished earlier, read back from its folder."""
    return VariantResult(variant, vdir, vdir.history(), vdir.metrics())


# -- checks before anything runs -------------------------------------------------


def preflight(exp: ResolvedVariant, *, data: bool = False, seen: set[str] | None = None) -> None:
    """Fail early, before any folder is written, on what can be checked cheaply.

    Builds the model on PyTorch's meta device (no memory, no weights) and the
    augmenters, so a factory that rejects its parameters fails now, and checks
    that every ``[[explain]]`` layer exists in that model. With ``data=True``
    (``odirkit run``) it also calls each plugin's ``prepare`` (a model fetching
    its pretrained weights), builds the sample table and chooses the task, so
    missing weights, a missing data folder or an empty selection fail before the
    run folder exists, and reads every ``[[evaluate]]`` collection (a wrong column or an
    unmapped class fails now, not after training) (``seen`` skips a data table already
    checked for another variant).

    Raises :class:`ConfigError` for an offline augmenter with a both-eyes model, and what
    the plugins, the layer check and the data raise."""
    resolve_device(exp.config.device)  # "cuda" on a machine without it fails here
    with torch.device("meta"):
        model = build_model(exp, len(exp.labels))
    check_input_size(exp, model)
    check_layers(exp, model)
    for call in exp.augmenters:
        aug = check_augmenter(call.name, call.build())
        if exp.eyes == 2 and hasattr(aug, "expand"):
            raise ConfigError(
                f"{call.where} {call.name!r} adds single photographs before training, and "
                f"model {exp.model.name!r} trains on patients with both eyes: use an online "
                "augmenter (applied to each photograph of a patient)"
            )
    if data:  # what "odirkit run" checks and fetches, and "odirkit validate" does not
        for call in (exp.model, exp.dataset, *exp.augmenters, *exp.explainers):
            prepare = call.spec.meta.get("prepare")
            if prepare is not None:
                _prepare(call, prepare)
        key = json.dumps(exp.to_dict()["data"], sort_keys=True)
        if seen is None or key not in seen:
            load_samples(exp)
        if seen is not None:
            seen.add(key)
        for external in exp.external:  # [[evaluate]]: its columns and mapping, checked now
            key = json.dumps(external.to_dict(), sort_keys=True)
            if seen is None or key not in seen:
                check_external(exp, external)
            if seen is not None:
                seen.add(key)


def check_external(exp: ResolvedVariant, external: ExternalData) -> None:
    """An ``[[evaluate]]`` collection can be read and grades a label the experiment learns.

    Raises :class:`ConfigError` when the collection grades none of the experiment's labels."""
    samples = external_samples(external)
    shared, _ = samples.shared(exp.labels)
    if not shared:
        raise ConfigError(
            f"{external.where} the collection {external.name!r} grades "
            f"{', '.join(samples.graded) or 'no label'}, none of the labels "
            f"{', '.join(exp.labels)} this experiment learns: nothing to validate"
        )


def _prepare(call: Any, prepare: Any) -> None:
    """A plugin's ``prepare(params)``: fetch what it needs (weights) before any training."""
    try:
        prepare(dict(call.params))
    except OdirkitError as exc:
        raise exc.at(call.where) from None
    except Exception as exc:
        raise PluginError(
            f"{call.where} {call.spec.label} could not prepare: {type(exc).__name__}: {exc}"
        ) from exc


def check_augmenter(name: str, aug: Any) -> Any:
    """An augmenter plugin's object, checked: callable on a batch, or with ``expand``.

    Raises:
        PluginError: naming the augmenter and what it returned.
    """
    if not (callable(aug) or hasattr(aug, "expand")):
        raise PluginError(
            f"augmenter {name!r} returned {type(aug).__name__}: expected a callable "
            "aug(images, generator) or an object with expand(train, ctx)"
        )
    return aug


# -- one variant --------------------------------------------------------------


def run_variant(
    exp: ResolvedVariant,
    vdir: VariantDirectory,
    *,
    registry: Registry,
    on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    score_test: bool = True,
) -> VariantResult:
    """Train and evaluate one variant in ``vdir``, continuing from its last checkpoint.

    ``on_epoch(epoch, row)`` sees each epoch's validation row; without ``score_test`` (a
    search trial) the test patients are never scored and no ``metrics.json`` is written.

    Raises :class:`ConfigError` for a binary cross-entropy loss on a single-label task, and
    what training raises (:class:`TrainingDiverged`, ``RunInterrupted``)."""
    if vdir.finished:
        info(f"{vdir}: already finished, skipped")
        return finished_result(exp.variant, vdir)
    cfg = exp.config
    here = distributed.world()
    seed_everything(cfg.seed)
    set_deterministic(cfg.train.deterministic)
    device = resolve_device(cfg.device)
    if here.distributed and device.type == "cuda":
        device = torch.device("cuda", here.local_rank)
    distributed.check_batch_size(cfg.train.batch_size)
    tracker = Tracker.build(exp.loggers, enabled=here.main)
    if here.main:
        VariantConfig(**exp.to_dict()).write(vdir.config_file)
        environment = capture_environment(
            registry=registry, device=device, seed=cfg.seed, experiment_file=exp.source
        )
        environment.distributed = {"world_size": here.size, "backend": here.backend}
        environment.write(vdir.environment_file())
        tracker.start(
            RunInfo(
                experiment=exp.name,
                variant=exp.variant,
                seed=cfg.seed,
                config=exp.to_dict(),
                environment=environment.to_json(),
                directory=vdir.path,
            )
        )
    with distributed.rank_zero_first():  # one process builds the dataset and the caches
        data = prepare_data(exp, both_eyes=exp.eyes == 2)
    if here.main:
        _write_data(vdir, data)

    seed_everything(cfg.seed)
    model = build_model(exp, data.task.num_classes)
    if here.distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    augmenters, online = [], []
    stored = len(data.train_idx)  # the training images before offline augmenters add theirs
    for i, call in enumerate(exp.augmenters):
        aug = check_augmenter(call.name, call.build())
        if hasattr(aug, "expand"):
            with distributed.rank_zero_first():  # one process trains the GAN, the others reuse it
                _expand(aug, call.name, i, exp, data, vdir, device)
        else:
            augmenters.append(aug)
            online.append(call.name)
    if here.main and exp.augmenters and not (vdir.figures / FigureFiles.TRAINING_IMAGES).exists():
        show_training_images(
            exp, data, stored, list(zip(online, augmenters, strict=True)), vdir, device
        )
    if here.main and data.report.extra_train_images:
        _write_data(vdir, data)
    view = ModelView.of(exp, single_label=data.task.single_label, age_stats=data.age_stats)
    if cfg.train.loss == "binary_cross_entropy" and data.task.single_label:
        raise ConfigError(
            f'{exp.source}: [train] loss = "binary_cross_entropy" needs a multi-label task; '
            f"labels {', '.join(data.task.labels)} exclude each other here"
        )
    weights = None
    if cfg.data.balance == "weighted":
        weights = class_weights(
            data.targets[data.train_idx],
            data.task.num_classes,
            single_label=data.task.single_label,
            shares=view.softmax,
        )
    train = cfg.train
    optimizer = make_optimizer(
        train.optimizer,
        parameter_groups(
            model,
            lr=train.lr,
            weight_decay=train.weight_decay,
            layer_decay=train.layer_decay,
            per_step=train.scheduler == "warmup_cosine",
        )
        if train.layer_decay is not None
        else [p for p in model.parameters() if p.requires_grad],
        lr=train.lr,
        momentum=train.momentum,
        weight_decay=train.weight_decay,
    )
    scheduler = make_scheduler(
        train.scheduler,
        optimizer,
        epochs=train.epochs,
        step_size=train.step_size,
        gamma=train.gamma,
        steps_per_epoch=math.ceil(len(data.train_idx) / train.batch_size),
        warmup_epochs=train.warmup_epochs,
        min_lr=train.min_lr,
    )
    mixer = None
    if train.mixup > 0 or train.cutmix > 0:
        mixer = BatchMixer(
            mixup=train.mixup,
            cutmix=train.cutmix,
            prob=train.mixup_prob,
            switch_prob=train.mixup_switch_prob,
            mode=train.mixup_mode,
            num_classes=data.task.num_classes,
            single_label=data.task.single_label,
            shares=view.softmax and not data.task.single_label,
        )
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        loss_fn=make_loss(
            data.task.single_label,
            weights,
            device,
            softmax=view.softmax,
            smoothing=train.label_smoothing,
        ),
        data=data,
        device=device,
        view=view,
        augmenters=augmenters,
        seed=cfg.seed,
        batch_size=cfg.train.batch_size,
        eval_batch_size=cfg.train.eval_batch_size,
        performance=resolve_performance(
            precision=cfg.train.precision,
            channels_last=cfg.train.channels_last,
            compile=cfg.train.compile,
            num_workers=cfg.train.num_workers,
            device=device,
            streaming=data.store.tensor is None,
        ),
        mixer=mixer,
        lr_schedule=scheduler if hasattr(scheduler, "before_step") else None,
    )
    loop = EpochLoop(exp, vdir, trainer, scheduler, tracker, on_epoch=on_epoch)
    distributed.barrier()  # rank 0 may have written the checkpoint being resumed
    loop.restore()
    loop.run()
    if not score_test:
        tracker.close()
        return VariantResult(exp.variant, vdir, loop.history_frame(), None, model=model, data=data)
    history, metrics, temperature = loop.finish()
    if metrics is not None:
        tracker.final(metrics.to_json())
        tracker.files(
            [
                vdir.config_file,
                vdir.metrics_file,
                vdir.history_file,
                vdir.data_file,
                *sorted(vdir.figures.glob("*.png")),
                *sorted((vdir.path / AUGMENT_FOLDER).rglob("*.png")),
            ]
        )
    return VariantResult(
        exp.variant,
        vdir,
        history,
        metrics,
        model=model,
        data=data,
        view=view.with_temperature(temperature),
        device=device,
        tracker=tracker,
    )


def _expand(
    aug: Any,
    name: str,
    position: int,
    exp: ResolvedVariant,
    data: DataBundle,
    vdir: VariantDirectory,
    device: torch.device,
) -> None:
    """Let an offline augmenter add samples, seeing the training images only."""
    train_idx = data.train_idx.copy()
    folder = vdir.augment_dir(position, name)
    seed = derive_seed(exp.config.seed, Stream.AUGMENTERS + position)
    ctx = ExpandContext(
        load=lambda positions: data.store.batch(train_idx[np.asarray(positions, dtype=np.int64)]),
        size=len(train_idx),
        targets=data.targets[train_idx],
        task=data.task,
        image_size=exp.image_size,
        device=device,
        generator=generator_for(device, seed),
        seed=seed,
        run_dir=folder,
        cache_dir=cache_root(exp) / "augment",
        log=info,
    )
    train = data.table.iloc[train_idx].reset_index(drop=True)
    extra = aug.expand(train, ctx)
    if not isinstance(extra, ExtraSamples):
        raise PluginError(
            f"augmenter {name!r}: expand() returned {type(extra).__name__}, not ExtraSamples"
        )
    extra.check(name, ctx)
    if len(extra.table):
        data.add_training_samples(
            extra.table,
            extra.images.cpu(),
            targets_of(extra.table, data.task),
            source=name,
            spill_dir=folder / "images",
        )


def show_training_images(
    exp: ResolvedVariant,
    data: DataBundle,
    stored: int,
    online: list[tuple[str, Any]],
    vdir: VariantDirectory,
    device: torch.device,
    per_class: int = 3,
) -> None:
    """``figures/training_images.png``: a few training images of each class as stored, the
    same after the online augmenters (one draw from a generator of its own, so training's
    random streams are untouched), and images the offline augmenters added."""

    labels = list(data.task.labels)

    def chosen(positions: np.ndarray) -> list[int]:
        picked = []
        for c in range(len(labels)):
            targets = data.targets[positions]
            member = targets == c if data.task.single_label else targets[:, c] > 0
            picked += positions[np.flatnonzero(member)[:per_class]].tolist()
        return picked

    def names(index: list[int]) -> list[str]:
        targets = data.targets[np.asarray(index, dtype=np.int64)]
        if data.task.single_label:
            return [labels[int(t)] for t in targets]
        return ["".join(x for x, t in zip(labels, row, strict=True) if t) for row in targets]

    def pictures(x: torch.Tensor) -> np.ndarray:
        return x.permute(0, 2, 3, 1).cpu().numpy()

    index = chosen(data.train_idx[:stored])
    if not index:
        return
    images = data.store.batch(np.asarray(index, dtype=np.int64))
    rows = [("as stored", pictures(images), names(index))]
    if online:
        x = images.to(device).float().div(255.0)
        generator = generator_for(device, derive_seed(exp.config.seed, Stream.TRAINING_IMAGES))
        with torch.no_grad():
            for _, aug in online:
                x = aug(x, generator)
        after = ", ".join(name for name, _ in online)
        rows.append(
            (f"after {after}", pictures(x.clamp(0, 1).mul(255).round().byte()), names(index))
        )
    added = data.train_idx[stored:]
    if len(added):
        extra = chosen(added)
        sources = data.table.iloc[extra].get("source")
        source = ", ".join(dict.fromkeys(str(v) for v in sources)) if sources is not None else ""
        rows.append(
            (
                f"added ({source})" if source else "added",
                pictures(data.store.batch(np.asarray(extra, dtype=np.int64))),
                names(extra),
            )
        )
    plot_training_images(
        rows,
        vdir.figures / FigureFiles.TRAINING_IMAGES,
        f"{exp.name}/{exp.variant}: training images",
    )


def _write_data(vdir: VariantDirectory, data: DataBundle) -> None:
    """data.json, split.csv (each image's side) and, if any, the skipped images."""
    data.report.write(vdir.data_file)
    side = np.full(len(data.table), "unused", dtype=object)
    side[data.train_idx] = "train"
    side[data.val_idx] = "val"
    side[data.test_idx] = "test"
    split = data.table[["patient_id", "eye", "path"]].assign(split=side)
    if "source" in data.table.columns:
        split["source"] = data.table["source"].fillna("").to_numpy()
    write_text(vdir.split_file, split.to_csv(index=False))
    if data.skipped:
        write_text(vdir.skipped_file, pd.DataFrame(data.skipped).to_csv(index=False))
