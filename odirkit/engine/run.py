"""Runs: the run directory, training every variant, resuming, and the comparison.

``odirkit run FILE`` writes::

    runs/<name>/<timestamp>/
        experiment.toml      the experiment file as it was
        run.json             variants, overrides, source, start time
        comparison.csv/.png  the variants side by side, and report.md
        <variant>/
            config.json      the resolved configuration (every default filled in)
            environment.json versions, plugins, device, seed, git commit
            data.json        image and patient counts; split.csv: each image's side
                             (train / val / test)
            metrics.csv      one row per epoch: training loss, validation metrics (and
                             test metrics with train.test_every_epoch)
            metrics.json     the test patients scored once, with intervals, for the best
                             and the last checkpoint (written last: the variant is done)
            predictions.csv  per test image: targets, decisions and probabilities
            patient_predictions.csv  per test patient (data.level = "patient")
            val_predictions.csv      per validation image or patient
            checkpoints/     last.pt (every epoch, and every N steps) and best.pt
            figures/         F1 and recall per epoch, recall per class, loss, reliability
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from odirkit.augment import ExpandContext, ExtraSamples, targets_of
from odirkit.config import Experiment, resolve_document
from odirkit.console import info, progress_bar, warn
from odirkit.data.images import Preprocessing
from odirkit.data.prepare import DataBundle, cache_root, load_samples, prepare_data
from odirkit.data.split import class_weights
from odirkit.engine import distributed
from odirkit.engine.checkpoint import load_checkpoint, save_checkpoint
from odirkit.engine.device import resolve_device
from odirkit.engine.environment import capture_environment
from odirkit.engine.evaluate import (
    TestResult,
    at_level,
    metrics_of,
    score_test,
    write_prediction_files,
)
from odirkit.engine.models import build_model
from odirkit.engine.trainer import (
    EpochProgress,
    Evaluation,
    Trainer,
    make_loss,
    make_optimizer,
    make_scheduler,
    resolve_performance,
)
from odirkit.errors import OdirkitError, PluginError, RunError, TrainingDiverged
from odirkit.figures import plot_reliability, plot_run
from odirkit.files import write_json, write_text
from odirkit.metrics import flatten_metrics
from odirkit.plugins import Registry
from odirkit.report import Comparison, RunSummary, write_report
from odirkit.seeding import (
    derive_seed,
    generator_for,
    random_states,
    restore_random_states,
    seed_everything,
    set_deterministic,
)

DEFAULT_MEAN = (0.5, 0.5, 0.5)
DEFAULT_STD = (0.5, 0.5, 0.5)
LOWER_IS_BETTER = {"loss"}


class RunInterrupted(OdirkitError):
    """The user stopped the run; a checkpoint was written first."""

    exit_code = 130


@dataclass
class VariantResult:
    """A finished variant: its folder, history and final metrics."""

    variant: str
    directory: Path
    history: pd.DataFrame
    final: dict[str, Any]


@dataclass
class ExperimentRun:
    """A run of every variant of one experiment, in one timestamped folder."""

    directory: Path
    experiments: list[Experiment]
    results: list[VariantResult] = field(default_factory=list)
    comparison: Comparison | None = None


# -- run folders --------------------------------------------------------------


def new_run_directory(out: Path, name: str) -> Path:
    """``out/<name>/<timestamp>``, created now (a suffix keeps two runs apart)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    parent = out / name
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for i in range(1000):
            candidate = parent / (stamp if i == 0 else f"{stamp}-{i}")
            try:
                candidate.mkdir()
                return candidate
            except FileExistsError:
                continue
    except OSError as exc:
        raise RunError(f"{out}: cannot create the run folder ({exc.strerror or exc})") from None
    raise RunError(f"{parent}: too many runs started in the same second")


def start_run(
    experiments: Sequence[Experiment],
    *,
    out: Path,
    source_text: str | None,
    overrides: Sequence[str],
) -> ExperimentRun:
    """Create the run folder and write what defines it, before any training.

    Under ``torchrun`` rank 0 creates it and tells the others where it is.
    """
    first = experiments[0]
    directory = Path(
        distributed.broadcast(
            str(new_run_directory(out, first.name)) if distributed.is_main() else None
        )
    )
    if not distributed.is_main():
        return ExperimentRun(directory, list(experiments))
    if source_text is not None:
        write_text(directory / "experiment.toml", source_text)
    write_json(
        directory / "run.json",
        {
            "name": first.name,
            "source": first.source,
            "overrides": list(overrides),
            "variants": [e.variant for e in experiments],
            "started": datetime.now().isoformat(timespec="seconds"),
        },
    )
    for exp in experiments:
        write_json(directory / exp.variant / "config.json", exp.to_dict())
    return ExperimentRun(directory, list(experiments))


def load_run(directory: Path, registry: Registry) -> ExperimentRun:
    """Re-open a run folder (the whole experiment, or one variant) to resume it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise RunError(f"{directory}: no such run folder")
    if (directory / "config.json").exists():  # one variant
        return ExperimentRun(directory.parent, [_load_variant(directory, registry)])
    run_file = directory / "run.json"
    if not run_file.exists():
        raise RunError(
            f"{directory}: not an odirkit run folder (no run.json or config.json); "
            "pass runs/<name>/<timestamp> or one of its variant folders"
        )
    try:
        meta = json.loads(run_file.read_text())
    except (OSError, ValueError) as exc:
        raise RunError(f"{run_file}: unreadable ({exc})") from None
    variants = meta.get("variants", [])
    return ExperimentRun(directory, [_load_variant(directory / v, registry) for v in variants])


def _load_variant(vdir: Path, registry: Registry) -> Experiment:
    config_file = vdir / "config.json"
    try:
        doc = json.loads(config_file.read_text())
    except FileNotFoundError:
        raise RunError(f"{config_file}: missing; this variant cannot be resumed") from None
    except (OSError, ValueError) as exc:
        raise RunError(f"{config_file}: unreadable ({exc})") from None
    (exp,) = resolve_document(rebase_paths(doc, vdir), registry, source=str(config_file))
    exp.variant = vdir.name
    return exp


#: the paths of a resolved configuration that are relative to the working directory
RELATIVE_PATHS = (
    ("data", "root"),
    ("data", "cache_dir"),
    ("data", "split_file"),
    ("model", "weights"),
)


def rebase_paths(doc: dict[str, Any], vdir: Path) -> dict[str, Any]:
    """Relative data paths of a saved run, made relative to where the run was started,
    so that resuming, predicting or explaining works from any working directory."""
    try:
        env = json.loads((vdir / "environment.json").read_text())
        start = Path(env["working_directory"])
    except (OSError, ValueError, KeyError):
        return doc
    for table, key in RELATIVE_PATHS:
        value = doc.get(table, {}).get(key)
        if isinstance(value, str) and value and not Path(value).is_absolute():
            here, there = Path(value), start / value
            if not here.exists() and there.exists():
                doc[table][key] = str(there)
    return doc


# -- Ctrl-C -------------------------------------------------------------------


class _StopFlag:
    """Set by the first Ctrl-C (or SIGTERM); the loop stops at the next step boundary."""

    def __init__(self) -> None:
        self.requested = False


@contextmanager
def graceful_stop() -> Iterator[_StopFlag]:
    """First Ctrl-C/SIGTERM: finish the step, checkpoint, stop. Second Ctrl-C: stop now."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum: int, frame: Any) -> None:
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.requested = True
        warn("stopping after this step; a checkpoint will be written (Ctrl-C again to abort)")

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


class _Stop(Exception):
    pass


# -- checks before anything runs -------------------------------------------------


def preflight(exp: Experiment, *, data: bool = False, seen: set[str] | None = None) -> None:
    """Fail early, before any folder is written, on what can be checked cheaply.

    Builds the model on PyTorch's meta device (no memory, no weights) and the
    augmenters, so a factory that rejects its parameters fails now. With
    ``data=True`` (``odirkit run``) it also calls each plugin's ``prepare`` (a
    model fetching its pretrained weights), builds the sample table and chooses
    the task, so missing weights, a missing data folder or an empty selection
    fail before the run folder exists
    (``seen`` skips a data table already checked for another variant).
    """
    resolve_device(exp.config.device)  # "cuda" on a machine without it fails here
    with torch.device("meta"):
        build_model(exp, len(exp.labels))
    for call in exp.augmenters:
        _check_augmenter(call.name, call.build())
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


def _prepare(call: Any, prepare: Any) -> None:
    """A plugin's ``prepare(params)``: fetch what it needs (weights) before any training."""
    try:
        prepare(dict(call.params))
    except OdirkitError as exc:
        raise type(exc)(f"{call.where} {exc}") from None
    except Exception as exc:
        raise PluginError(
            f"{call.where} {call.spec.label} could not prepare: {type(exc).__name__}: {exc}"
        ) from exc


def _check_augmenter(name: str, aug: Any) -> Any:
    if not (callable(aug) or hasattr(aug, "expand")):
        raise PluginError(
            f"augmenter {name!r} returned {type(aug).__name__}: expected a callable "
            "aug(images, generator) or an object with expand(train, ctx)"
        )
    return aug


# -- one variant --------------------------------------------------------------


def run_variant(exp: Experiment, vdir: Path, *, registry: Registry) -> VariantResult:
    """Train and evaluate one variant in ``vdir``, continuing from its last checkpoint."""
    done = vdir / "metrics.json"
    if done.exists():
        info(f"{vdir}: already finished, skipped")
        return _finished(exp.variant, vdir)
    cfg = exp.config
    here = distributed.world()
    main = here.main
    seed_everything(cfg.seed)
    set_deterministic(cfg.train.deterministic)
    device = resolve_device(cfg.device)
    if here.distributed and device.type == "cuda":
        device = torch.device("cuda", here.local_rank)
    distributed.check_batch_size(cfg.train.batch_size)
    if main:
        write_json(vdir / "config.json", exp.to_dict())
        environment = capture_environment(
            registry=registry, device=device, seed=cfg.seed, experiment_file=exp.source
        )
        environment["distributed"] = {"world_size": here.size, "backend": here.backend}
        name = "environment.json"
        if (vdir / name).exists():  # a resumed run keeps the first environment too
            name = f"environment-resumed-{datetime.now():%Y%m%d-%H%M%S}.json"
        write_json(vdir / name, environment)
    with distributed.rank_zero_first():  # one process builds the dataset and the caches
        data = prepare_data(exp)
    if main:
        write_json(vdir / "data.json", data.report)
        _write_split(vdir / "split.csv", data)
        if data.skipped:
            write_text(vdir / "skipped_images.csv", pd.DataFrame(data.skipped).to_csv(index=False))

    seed_everything(cfg.seed)
    model = build_model(exp, data.task.num_classes)
    if here.distributed and device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    meta = exp.model.meta
    augmenters = []
    for i, call in enumerate(exp.augmenters):
        aug = _check_augmenter(call.name, call.build())
        if hasattr(aug, "expand"):
            with distributed.rank_zero_first():  # one process trains the GAN, the others reuse it
                _expand(aug, call.name, i, exp, data, vdir, device)
        else:
            augmenters.append(aug)
    if main and data.report.get("extra_train_images"):
        write_json(vdir / "data.json", data.report)
        _write_split(vdir / "split.csv", data)
    weights = None
    if cfg.data.balance == "weighted":
        weights = class_weights(
            data.targets[data.train_idx], data.task.num_classes, single_label=data.task.single_label
        )
    loss_fn = make_loss(data.task.single_label, weights, device)
    optimizer = make_optimizer(
        cfg.train.optimizer,
        [p for p in model.parameters() if p.requires_grad],
        lr=cfg.train.lr,
        momentum=cfg.train.momentum,
        weight_decay=cfg.train.weight_decay,
    )
    scheduler = make_scheduler(
        cfg.train.scheduler,
        optimizer,
        epochs=cfg.train.epochs,
        step_size=cfg.train.step_size,
        gamma=cfg.train.gamma,
    )
    trainer = Trainer(
        model=model,
        optimizer=optimizer,
        loss_fn=loss_fn,
        data=data,
        device=device,
        mean=meta.get("mean", DEFAULT_MEAN),
        std=meta.get("std", DEFAULT_STD),
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
        metadata=cfg.model.metadata,
    )
    loop = _Loop(exp, vdir, trainer, scheduler)
    distributed.barrier()  # rank 0 may have written the checkpoint being resumed
    loop.restore()
    loop.run()
    result = loop.finish()
    if exp.explainers and main:
        explain_variant(exp, model, data, vdir / "explain", device)
    distributed.barrier()
    return result


def explain_variant(
    exp: Experiment,
    model: nn.Module,
    data: DataBundle,
    out_dir: Path,
    device: torch.device,
    *,
    calls: Sequence[Any] | None = None,
    asked: Sequence[int] | None = None,
    layer: str | None = None,
    max_images: int | None = None,
) -> Any:
    """The experiment's explainers (or ``calls``) on a trained model's held-out images."""
    from odirkit.explain import explain, inputs_from_data

    calls = list(calls if calls is not None else exp.explainers)
    limit = max_images or max(c.options.get("max_images", 64) for c in calls)
    meta = exp.model.meta
    cam_layer = meta.get("cam_layer")
    if cam_layer and exp.config.model.metadata:
        cam_layer = f"backbone.{cam_layer}"

    def random_model() -> nn.Module:
        torch.manual_seed(derive_seed(exp.config.seed, 7))
        return build_model(exp, data.task.num_classes)

    prep = Preprocessing(
        size=exp.image_size,
        crop_to_fov=exp.config.data.crop_to_fov,
        circle_crop=exp.config.data.circle_crop,
    )
    return explain(
        model=model,
        calls=calls,
        inputs=inputs_from_data(data, limit, metadata=exp.config.model.metadata),
        labels=list(data.task.labels),
        single_label=data.task.single_label,
        mean=meta.get("mean", DEFAULT_MEAN),
        std=meta.get("std", DEFAULT_STD),
        cam_layer=cam_layer,
        device=device,
        out_dir=out_dir,
        seed=exp.config.seed,
        prep=prep,
        random_model=random_model,
        asked=asked,
        layer_override=layer,
    )


def _expand(
    aug: Any,
    name: str,
    position: int,
    exp: Experiment,
    data: DataBundle,
    vdir: Path,
    device: torch.device,
) -> None:
    """Let an offline augmenter add samples, seeing the training images only."""
    train_idx = data.train_idx.copy()
    folder = vdir / "augment" / f"{position}-{name}"
    seed = derive_seed(exp.config.seed, 1000 + position)
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


def _write_split(path: Path, data: DataBundle) -> None:
    side = np.full(len(data.table), "unused", dtype=object)
    side[data.train_idx] = "train"
    side[data.val_idx] = "val"
    side[data.test_idx] = "test"
    split = data.table[["patient_id", "eye", "path"]].assign(split=side)
    if "source" in data.table.columns:
        split["source"] = data.table["source"].fillna("").to_numpy()
    write_text(path, split.to_csv(index=False))


class _Loop:
    """The epochs of one variant, with checkpoints, metrics files and progress."""

    def __init__(self, exp: Experiment, vdir: Path, trainer: Trainer, scheduler: Any) -> None:
        self.exp = exp
        self.cfg = exp.config
        self.vdir = vdir
        self.trainer = trainer
        self.scheduler = scheduler
        self.progress = EpochProgress(epoch=0)
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.since_best = 0  # epochs since the validation monitor last improved
        self.stopped_early = False
        self.started = time.perf_counter()
        self.seconds_before = 0.0

    @property
    def last_path(self) -> Path:
        return self.vdir / "checkpoints" / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.vdir / "checkpoints" / "best.pt"

    # -- checkpoints ---------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "fingerprint": self.exp.fingerprint(),
            "epoch": self.progress.epoch,
            "step": self.progress.step,
            "loss_sum": self.progress.loss_sum,
            "seen": self.progress.seen,
            "model": self.trainer.model.state_dict(),
            "optimizer": self.trainer.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "scaler": self.trainer.scaler.state_dict(),
            "history": self.history,
            "best": self.best,
            "since_best": self.since_best,
            "stopped_early": self.stopped_early,
            "seconds": self.seconds_before + time.perf_counter() - self.started,
            "rng": random_states(),
        }

    def save(self) -> None:
        if distributed.is_main():
            save_checkpoint(self.last_path, self.state())

    def restore(self) -> None:
        if not self.last_path.exists():
            return
        state = load_checkpoint(self.last_path)
        if state.get("fingerprint") != self.exp.fingerprint():
            raise RunError(
                f"{self.last_path}: this checkpoint belongs to a different configuration; "
                "resume with the run's own config.json, or start a new run"
            )
        try:
            self.trainer.model.load_state_dict(state["model"])
            self.trainer.optimizer.load_state_dict(state["optimizer"])
            if self.scheduler is not None and state.get("scheduler"):
                self.scheduler.load_state_dict(state["scheduler"])
            if state.get("scaler"):
                self.trainer.scaler.load_state_dict(state["scaler"])
        except (KeyError, RuntimeError, ValueError) as exc:
            raise RunError(
                f"{self.last_path}: does not fit model {self.exp.model.name!r} "
                f"({str(exc).splitlines()[0]})"
            ) from None
        self.progress = EpochProgress(
            state["epoch"], state["step"], state["loss_sum"], state["seen"]
        )
        if state.get("rng"):
            restore_random_states(state["rng"])
        self.history = list(state["history"])
        self.best = state["best"]
        self.since_best = int(state.get("since_best", 0))
        self.stopped_early = bool(state.get("stopped_early", False))
        self.seconds_before = float(state.get("seconds", 0.0))
        info(f"resuming {self.vdir} at epoch {self.progress.epoch + 1}, step {self.progress.step}")

    # -- the epochs ----------------------------------------------------------

    def run(self) -> None:
        epochs = self.cfg.train.epochs
        every = self.cfg.train.checkpoint_every
        steps = self.trainer.steps_per_epoch()
        label = f"{self.exp.name}/{self.exp.variant}"
        with graceful_stop() as stop, progress_bar() as bar:
            epoch_task = bar.add_task(
                f"{label} epochs", total=epochs, completed=self.progress.epoch, status=""
            )
            step_task = bar.add_task("  steps", total=steps, status="")

            def after_step(p: EpochProgress) -> None:
                bar.update(step_task, completed=p.step, status=f"loss {p.loss:.4f}")
                if every and p.step % every == 0 and p.step < steps:
                    self.save()
                if p.stop:  # asked on some rank; every rank agrees within the step
                    raise _Stop

            try:
                while self.progress.epoch < epochs and not self.stopped_early:
                    bar.reset(step_task, total=steps, completed=self.progress.step, status="")
                    try:
                        self.trainer.train_epoch(
                            self.progress,
                            after_step=after_step,
                            stop_requested=lambda: stop.requested,
                        )
                    except TrainingDiverged as exc:
                        raise TrainingDiverged(f"{exc}. {self._last_good()}") from None
                    self.end_epoch()
                    bar.update(
                        epoch_task,
                        completed=self.progress.epoch,
                        status=self._status(self.history[-1]),
                    )
                    if distributed.all_sum([float(stop.requested)])[0] > 0:
                        raise _Stop
            except _Stop:
                self.save()
                raise RunInterrupted(
                    f"stopped; checkpoint written to {self.last_path}.\n"
                    f"Continue with: odirkit run --resume {self.vdir.parent}"
                ) from None

    def _last_good(self) -> str:
        if not self.last_path.exists():
            return "No checkpoint was written before it."
        state = load_checkpoint(self.last_path)
        return (
            f"The last good checkpoint is {self.last_path} (after epoch {state['epoch']}, "
            f"step {state['step']}); resume from it with a lower lr: edit "
            f"{self.vdir / 'config.json'} or start a new run"
        )

    def end_epoch(self) -> None:
        epoch = self.progress.epoch
        data = self.trainer.data
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": self.progress.loss}
        if len(data.val_idx):
            row.update(self._epoch_scores("val", self.trainer.evaluate(data.val_idx)))
        if self.cfg.train.test_every_epoch:  # the paper's curves; nothing is chosen on them
            row.update(self._epoch_scores("test", self.trainer.evaluate(data.test_idx)))
        row["lr"] = self.trainer.optimizer.param_groups[0]["lr"]
        row["seconds"] = round(self.seconds_before + time.perf_counter() - self.started, 3)
        self.history.append(row)
        if self.scheduler is not None:
            self.scheduler.step()
        improved = self._improved(row)
        if improved:
            monitor = self.cfg.train.monitor
            self.best = {"epoch": epoch + 1, "monitor": monitor, "value": row[_column(monitor)]}
            self.since_best = 0
        else:
            self.since_best += 1
        patience = self.cfg.train.patience
        if patience and self.since_best >= patience and epoch + 1 < self.cfg.train.epochs:
            self.stopped_early = True
        self.progress = EpochProgress(epoch=epoch + 1)
        self.save()
        if not distributed.is_main():
            return
        if improved:
            save_checkpoint(
                self.best_path,
                {
                    "fingerprint": self.exp.fingerprint(),
                    "epoch": epoch + 1,
                    "model": self.trainer.model.state_dict(),
                    "metrics": {k: v for k, v in row.items() if isinstance(v, int | float)},
                },
            )
        write_text(self.vdir / "metrics.csv", self._history_frame().to_csv(index=False))
        info(f"{self.exp.variant} epoch {epoch + 1}/{self.cfg.train.epochs}  {self._status(row)}")
        if self.stopped_early:
            info(
                f"{self.exp.variant}: no better validation {self.cfg.train.monitor} for "
                f"{patience} epoch(s); stopping early (best: epoch {self.best['epoch']})"
            )

    def _epoch_scores(self, split: str, evaluation: Evaluation) -> dict[str, float]:
        """One split's per-epoch columns: ``<split>_loss`` and ``<split>_<metric>`` at the
        experiment's level (and ``<split>_image_<metric>`` at patient level)."""
        data_cfg = self.cfg.data
        data = self.trainer.data
        preds = at_level(data, evaluation, level=data_cfg.level, fusion=data_cfg.fusion)
        row = {f"{split}_loss": evaluation.loss, **flatten_metrics(metrics_of(preds), f"{split}_")}
        if data_cfg.level == "patient":
            image = at_level(data, evaluation, level="image", fusion=data_cfg.fusion)
            row.update(flatten_metrics(metrics_of(image), f"{split}_image_"))
        return row

    def _improved(self, row: dict[str, Any]) -> bool:
        monitor = self.cfg.train.monitor
        value = row.get(_column(monitor))
        if _column(monitor) not in row:  # no validation patients: nothing to choose on
            return False
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return self.best is None
        if self.best is None:
            return True
        if monitor in LOWER_IS_BETTER:
            return value < self.best["value"]
        return value > self.best["value"]

    @staticmethod
    def _status(row: dict[str, Any]) -> str:
        text = f"train loss {row['train_loss']:.4f}"
        if "val_loss" in row:
            text += (
                f"  val loss {row['val_loss']:.4f}  val F1 micro {row['val_f1_micro']:.3f} "
                f"macro {row['val_f1_macro']:.3f}"
            )
        if "test_loss" in row:
            text += f"  (test F1 micro {row['test_f1_micro']:.3f})"
        return text

    def _history_frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.history)

    # -- the end -------------------------------------------------------------

    def _score_checkpoint(self) -> tuple[TestResult, Evaluation]:
        """Validation (for the operating point) and test (once) with the model's weights now."""
        data = self.trainer.data
        ev = self.cfg.eval
        val = self.trainer.evaluate(data.val_idx) if len(data.val_idx) else None
        test = self.trainer.evaluate(data.test_idx)
        result = score_test(
            data,
            val=val,
            test=test,
            level=self.cfg.data.level,
            fusion=self.cfg.data.fusion,
            threshold=ev.threshold,
            calibrate=ev.calibrate,
            resamples=ev.bootstrap,
            confidence=ev.confidence,
            seed=derive_seed(self.cfg.seed, 3),
        )
        return result, test

    def finish(self) -> VariantResult:
        data = self.trainer.data
        task = data.task
        here = distributed.world()
        in_sync = None
        if here.distributed:  # every rank must end with the very same weights
            digests = distributed.gather(distributed.parameters_digest(self.trainer.model))
            in_sync = len(set(digests)) == 1
            if not in_sync:
                raise RunError(f"the {here.size} processes ended with different weights")
        # The test patients are scored once per kept checkpoint: last, then best. The model
        # ends with the weights of the reported one (the explanations use it).
        chosen = self.cfg.eval.checkpoint if self.best is not None else "last"
        results = {"last": self._score_checkpoint()}
        if self.best is not None:
            distributed.barrier()  # rank 0 wrote best.pt
            last_weights = {k: v.clone() for k, v in self.trainer.model.state_dict().items()}
            self.trainer.model.load_state_dict(load_checkpoint(self.best_path)["model"])
            results["best"] = self._score_checkpoint()
            if chosen == "last":
                self.trainer.model.load_state_dict(last_weights)
        history = self._history_frame()
        if not here.main:
            return VariantResult(self.exp.variant, self.vdir, history, {})
        result, test = results[chosen]
        rule = self.cfg.eval.threshold
        write_prediction_files(
            self.vdir, self.trainer.data, result, test, fusion=self.cfg.data.fusion
        )
        write_text(self.vdir / "metrics.csv", history.to_csv(index=False))
        summary = result.summary(rule, self.cfg.eval.confidence)
        epochs = {"last": len(self.history), "best": (self.best or {}).get("epoch")}
        final = {
            "experiment": self.exp.name,
            "variant": self.exp.variant,
            "task": task.kind,
            "labels": list(task.labels),
            "epochs": self.cfg.train.epochs,
            "epochs_trained": len(self.history),
            "stopped_early": self.stopped_early,
            "seed": self.cfg.seed,
            "level": self.cfg.data.level,
            "checkpoint": chosen,
            "checkpoint_epoch": epochs[chosen],
            "final": {**summary, "loss": test.loss},
            **({"final_per_image": result.image_metrics} if result.image_metrics else {}),
            "validation": result.validation,
            "checkpoints": {
                name: {"epoch": epochs[name], **_headline(r.metrics), "intervals": r.intervals}
                for name, (r, _) in results.items()
            },
            "best": self.best,
            "data": data.report,
            "seconds": round(self.seconds_before + time.perf_counter() - self.started, 3),
            "distributed": {
                "world_size": here.size,
                "backend": here.backend,
                "ranks_in_sync": in_sync,
            },
        }
        title = f"{self.exp.name}/{self.exp.variant}"
        plot_run(history, list(task.labels), self.vdir / "figures", title, final)
        plot_reliability(
            summary["reliability"],
            self.vdir / "figures" / "reliability.png",
            f"{title}: reliability on the test patients",
        )
        write_json(self.vdir / "metrics.json", final)
        return VariantResult(self.exp.variant, self.vdir, history, final)


#: the figures of a result shown wherever a run is summarised
HEADLINE = ("f1_micro", "f1_macro", "recall_macro", "specificity_macro", "auc_macro")


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {k: metrics[k] for k in HEADLINE if k in metrics}
    out["recall"] = {label: f["recall"] for label, f in metrics["per_class"].items()}
    if "odir_patient" in metrics:
        out["odir_patient"] = metrics["odir_patient"]
    return out


def _column(monitor: str) -> str:
    """The metrics.csv column of a ``train.monitor`` value (always a validation column)."""
    return f"val_{monitor}"


def _finished(variant: str, vdir: Path) -> VariantResult:
    final = json.loads((vdir / "metrics.json").read_text())
    csv = vdir / "metrics.csv"  # a baseline has no epochs
    history = pd.read_csv(csv) if csv.exists() else pd.DataFrame()
    return VariantResult(variant, vdir, history, final)


# -- the whole experiment -----------------------------------------------------


def run_experiment(run: ExperimentRun, *, registry: Registry) -> ExperimentRun:
    """Run every variant, then compare them in the run folder."""
    for exp in run.experiments:
        vdir = run.directory / exp.variant
        info(f"variant {exp.variant!r} -> {vdir}")
        run.results.append(run_variant(exp, vdir, registry=registry))
    if distributed.is_main():
        run.comparison = write_comparison(run)
    return run


def write_comparison(run: ExperimentRun) -> Comparison:
    """comparison.csv/.json, figures and report.md across the run's finished variants, with
    the paired tests of ``[compare]``."""
    results = []
    for exp in run.experiments:
        vdir = run.directory / exp.variant
        if (vdir / "metrics.json").exists():
            results.append(_finished(exp.variant, vdir))
    first = run.experiments[0]
    summaries = [
        RunSummary(r.variant, r.history, r.final, r.final["labels"], r.directory) for r in results
    ]
    cfg = first.config
    return write_report(
        run.directory,
        title=first.name,
        description=cfg.description,
        runs=summaries,
        figures={r.variant: f"{r.variant}/figures" for r in results},
        baseline=cfg.compare.baseline,
        metrics=cfg.compare.metrics,
        resamples=cfg.eval.bootstrap,
        confidence=cfg.eval.confidence,
        seed=derive_seed(cfg.seed, 6),
    )


def finished_variant_dirs(directories: Sequence[Path]) -> list[Path]:
    """The finished variant folders given, or found inside the given run folders."""
    return [path for path, _ in _finished_dirs(directories)]


def _finished_dirs(directories: Sequence[Path]) -> list[tuple[Path, str]]:
    found: list[tuple[Path, str]] = []
    for directory in directories:
        directory = Path(directory)
        if (directory / "metrics.json").exists():
            found.append((directory, f"{directory.parent.parent.name}/{directory.name}"))
        elif directory.is_dir():
            for child in sorted(p for p in directory.iterdir() if (p / "metrics.json").exists()):
                found.append((child, f"{directory.parent.name}/{child.name}"))
        if not directory.exists():
            raise RunError(f"{directory}: no such run folder")
    if not found:
        raise RunError(
            "no finished run in "
            + ", ".join(str(d) for d in directories)
            + " (a finished variant folder holds metrics.json)"
        )
    return found


def summaries_from_dirs(directories: Sequence[Path]) -> list[RunSummary]:
    """Finished variants under the given folders (run folders or variant folders)."""
    found = _finished_dirs(directories)
    labels = [label for _, label in found]
    summaries = []
    for path, label in found:
        unique = label if labels.count(label) == 1 else str(path)
        result = _finished(path.name, path)
        summaries.append(
            RunSummary(unique, result.history, result.final, result.final["labels"], path)
        )
    return summaries
