"""The training loop of one variant (:class:`EpochLoop`): its epochs, each trained by
:meth:`odirkit.engine.trainer.Trainer.train_epoch` and then validated, checkpoints,
early stopping, resuming, and the end.

After each epoch the **validation** patients are scored, ``last.pt`` (and,
when the validation monitor improved, ``best.pt``) is written atomically and
``metrics.csv`` grows by a row. At the end the **test** patients are scored
once for the last and for the best checkpoint (:func:`score_test`), and the
prediction files, figures and ``metrics.json`` — the marker of a finished
variant — are written.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from odirkit import bootstrap
from odirkit.config import ResolvedVariant
from odirkit.console import epoch_status, info, progress_bar, warn
from odirkit.engine import distributed
from odirkit.engine.checkpoint import load_checkpoint, save_checkpoint
from odirkit.engine.evaluate import (
    TestResult,
    at_level,
    metrics_of,
    score_test,
    scored,
    write_prediction_files,
)
from odirkit.engine.interrupt import RunInterrupted, StopRequested, graceful_stop
from odirkit.engine.trainer import EpochProgress, Evaluation, Trainer
from odirkit.errors import RunError, TrainingDiverged
from odirkit.figures import plot_reliability, plot_run, plot_test_curves
from odirkit.files import remove_stale_temporaries, write_text
from odirkit.learning import LearningCheck, chance_loss, check_learning
from odirkit.metrics import flatten_metrics, predictions
from odirkit.runs import VariantDirectory
from odirkit.runs.names import FigureFiles
from odirkit.runs.records import BestEpoch, CheckpointScores, RunMetrics, Scores
from odirkit.seeding import Stream, derive_seed
from odirkit.tracking import Tracker

LOWER_IS_BETTER = {"loss"}


class EpochLoop:
    """The epochs of one variant, with checkpoints, metrics files and progress."""

    def __init__(
        self,
        exp: ResolvedVariant,
        vdir: VariantDirectory,
        trainer: Trainer,
        scheduler: Any,
        tracker: Tracker | None = None,
        on_epoch: Callable[[int, dict[str, Any]], None] | None = None,
    ) -> None:
        self.tracker = tracker or Tracker()
        self.on_epoch = on_epoch  # called after each epoch's checkpoint (odirkit tune prunes)
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
        """``checkpoints/last.pt``."""
        return self.vdir.checkpoint("last")

    @property
    def best_path(self) -> Path:
        """``checkpoints/best.pt``."""
        return self.vdir.checkpoint("best")

    # -- checkpoints ---------------------------------------------------------

    def state(self) -> dict[str, Any]:
        """What ``last.pt`` holds: progress, model, optimiser, scheduler, scaler, history, best."""
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
        }

    def save(self) -> None:
        """Write ``last.pt`` (model, optimiser, scheduler, scaler, progress) atomically,
        on rank 0, after the ranks agree on their buffers."""
        with torch.no_grad():
            distributed.agree_buffers(self.trainer.model)
        if distributed.is_main():
            save_checkpoint(self.last_path, self.state())

    def restore(self) -> None:
        """Continue from ``last.pt`` when there is one (a resumed run), after clearing the
        temporary files a killed writer left in the variant's folder.

        Raises :class:`RunError` when ``last.pt`` was written for another configuration, or does
        not fit the model."""
        if distributed.is_main():
            remove_stale_temporaries(self.vdir.path)
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
        self.history = list(state["history"])
        self.best = state["best"]
        self.since_best = int(state.get("since_best", 0))
        self.stopped_early = bool(state.get("stopped_early", False))
        self.seconds_before = float(state.get("seconds", 0.0))
        info(f"resuming {self.vdir} at epoch {self.progress.epoch + 1}, step {self.progress.step}")

    # -- the epochs ----------------------------------------------------------

    def run(self) -> None:
        """Train from where :attr:`progress` stands to ``[train] epochs``, or until early
        stopping: steps with a checkpoint every ``checkpoint_every``, each epoch ended by
        :meth:`end_epoch`.

        Raises:
            RunInterrupted: Ctrl-C or SIGTERM, after a checkpoint at the step's end.
            TrainingDiverged: the loss became NaN or infinite.
        """
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
                    raise StopRequested

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
                        status=epoch_status(self.history[-1]),
                    )
                    if distributed.all_sum([float(stop.requested)])[0] > 0:
                        raise StopRequested
            except StopRequested:
                self.save()
                raise RunInterrupted(
                    f"stopped; checkpoint written to {self.last_path}.\n"
                    f"Continue with: odirkit run --resume {self.vdir.run}"
                ) from None

    def _last_good(self) -> str:
        if not self.last_path.exists():
            return "No checkpoint was written before it."
        state = load_checkpoint(self.last_path)
        return (
            f"The last good checkpoint is {self.last_path} (after epoch {state['epoch']}, "
            f"step {state['step']}); resume from it with a lower lr: edit "
            f"{self.vdir.config_file} or start a new run"
        )

    def end_epoch(self) -> None:
        """The end of an epoch: batch-norm statistics (recomputed or agreed between
        ranks), the validation patients scored (and the test ones for the paper's curves
        when asked), ``metrics.csv`` extended, ``best.pt`` on a better monitor value,
        early stopping counted, then ``last.pt``."""
        epoch = self.progress.epoch
        data = self.trainer.data
        if not self.trainer.recompute_batch_norm(epoch, self.cfg.train.precise_bn):
            with torch.no_grad():  # without SyncBatchNorm, ranks' running statistics differ
                distributed.agree_buffers(self.trainer.model)
        row: dict[str, Any] = {"epoch": epoch + 1, "train_loss": self.progress.loss}
        if len(data.val_idx):
            row.update(self._epoch_scores("val", self.trainer.evaluate(data.val_idx)))
        if self.cfg.train.test_every_epoch:  # the paper's curves; nothing is chosen on them
            row.update(self._epoch_scores("test", self.trainer.evaluate(data.test_idx)))
        # the head's rate: with layer-wise decay the other groups' are smaller
        row["lr"] = max(group["lr"] for group in self.trainer.optimizer.param_groups)
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
        # best.pt before last.pt: last.pt records which epoch is best, so it must never
        # name a best.pt not yet on disk. Killed between the two, the run resumes from the
        # previous last.pt and trains this epoch again, to the same best.pt.
        if improved and distributed.is_main():
            save_checkpoint(
                self.best_path,
                {
                    "fingerprint": self.exp.fingerprint(),
                    "epoch": epoch + 1,
                    "model": self.trainer.model.state_dict(),
                    "metrics": {k: v for k, v in row.items() if isinstance(v, int | float)},
                },
            )
        self.save()
        if not distributed.is_main():
            return
        write_text(self.vdir.history_file, self.history_frame().to_csv(index=False))
        self.tracker.epoch(epoch + 1, row)
        info(f"{self.exp.variant} epoch {epoch + 1}/{self.cfg.train.epochs}  {epoch_status(row)}")
        if self.stopped_early:
            best, monitor = self.best["epoch"], self.cfg.train.monitor
            info(
                f"{self.exp.variant}: no better validation {monitor} for {patience} epoch(s); "
                f"stopping early (best: epoch {best})"
            )
        if self.on_epoch is not None:
            self.on_epoch(epoch + 1, row)

    def _epoch_scores(self, split: str, evaluation: Evaluation) -> dict[str, float]:
        """One split's per-epoch columns: ``<split>_loss`` and ``<split>_<metric>`` at the
        experiment's level (and ``<split>_image_<metric>`` at patient level)."""
        data_cfg = self.cfg.data
        data = self.trainer.data
        softmax = self.trainer.view.softmax
        preds = at_level(
            data, evaluation, level=data_cfg.level, fusion=data_cfg.fusion, softmax=softmax
        )
        row = {f"{split}_loss": evaluation.loss, **flatten_metrics(metrics_of(preds), f"{split}_")}
        if data_cfg.level == "patient" and not data.per_patient:
            image = at_level(
                data, evaluation, level="image", fusion=data_cfg.fusion, softmax=softmax
            )
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

    def history_frame(self) -> pd.DataFrame:
        """The epochs so far, a row each (``metrics.csv``)."""
        return pd.DataFrame(self.history)

    # -- the end -------------------------------------------------------------

    def _score_checkpoint(self, *, tta: bool = False) -> tuple[TestResult, Evaluation]:
        """Validation (for the operating point) and test (once) with the model's weights now;
        with ``tta``, both averaged over the test-time views."""
        data = self.trainer.data
        ev = self.cfg.eval
        val = self.trainer.evaluate(data.val_idx, tta=tta) if len(data.val_idx) else None
        test = self.trainer.evaluate(data.test_idx, tta=tta)
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
            seed=derive_seed(self.cfg.seed, Stream.TEST_BOOTSTRAP),
            softmax=self.trainer.view.softmax,
        )
        return result, test

    def finish(self) -> tuple[pd.DataFrame, RunMetrics | None, float | None]:
        """Score the test patients once per kept checkpoint; write predictions, figures and
        metrics.json. Returns the history, ``metrics.json``'s record (``None`` on a rank other than
        the first, which writes nothing) and the fitted temperature.

        Raises :class:`RunError` when the ``torchrun`` processes ended with different weights."""
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
        # With test-time views the reported scores are those of their average; the
        # scores of the image alone are kept beside them (final_without_tta).
        chosen = self.cfg.eval.checkpoint if self.best is not None else "last"
        tta = bool(self.trainer.view.test_time_views)
        results = {"last": self._score_checkpoint(tta=tta)}
        plain = {"last": self._score_checkpoint()} if tta else {}
        if self.best is not None:
            distributed.barrier()  # rank 0 wrote best.pt
            last_weights = {k: v.clone() for k, v in self.trainer.model.state_dict().items()}
            self.trainer.model.load_state_dict(load_checkpoint(self.best_path)["model"])
            results["best"] = self._score_checkpoint(tta=tta)
            if tta:
                plain["best"] = self._score_checkpoint()
            if chosen == "last":
                self.trainer.model.load_state_dict(last_weights)
        history = self.history_frame()
        train = self.trainer.data.train_idx  # the learning check's loss: as stored, every rank
        fitted = float(self.trainer.evaluate(train).loss) if len(train) else float("nan")
        if not here.main:
            return history, None, results[chosen][0].temperature
        result, test = results[chosen]
        rule = self.cfg.eval.threshold
        write_prediction_files(self.vdir, self.trainer.data, result, test)
        write_text(self.vdir.history_file, history.to_csv(index=False))
        epochs = {"last": len(self.history), "best": (self.best or {}).get("epoch")}
        metrics = RunMetrics(
            experiment=self.exp.name,
            variant=self.exp.variant,
            task=task.kind,
            labels=list(task.labels),
            epochs=self.cfg.train.epochs,
            epochs_trained=len(self.history),
            stopped_early=self.stopped_early,
            seed=self.cfg.seed,
            level=self.cfg.data.level,
            checkpoint=chosen,
            checkpoint_epoch=epochs[chosen],
            final=result.summary(rule, self.cfg.eval.confidence, loss=test.loss),
            validation=None if result.validation is None else Scores(**result.validation),
            learning=self._learning(result, fitted).record(),
            checkpoints={
                name: CheckpointScores(
                    epoch=epochs[name], **_headline(r.metrics), intervals=r.intervals
                )
                for name, (r, _) in results.items()
            },
            best=None if self.best is None else BestEpoch(**self.best),
            data=data.report,
            seconds=round(self.seconds_before + time.perf_counter() - self.started, 3),
            distributed={
                "world_size": here.size,
                "backend": here.backend,
                "ranks_in_sync": in_sync,
            },
        )
        if tta:  # the reported scores average the test-time views; the image alone's beside
            metrics.tta = list(_test_time_view_names(self.cfg.eval.tta))
            without, test_without = plain[chosen]
            metrics.final_without_tta = Scores(
                **_headline(without.metrics), intervals=without.intervals, loss=test_without.loss
            )
        if result.image_metrics:
            metrics.final_per_image = Scores(**result.image_metrics)
        title = f"{self.exp.name}/{self.exp.variant}"
        plot_run(history, list(task.labels), self.vdir.figures, title, metrics)
        plot_reliability(
            metrics.final.reliability,
            self.vdir.figures / FigureFiles.RELIABILITY,
            f"{title}: reliability on the test patients",
        )
        tested = scored(result.test, result.thresholds)
        plot_test_curves(
            tested.outcomes,
            tested.scores,
            tested.decisions,
            task.labels,
            self.vdir.figures,
            title,
            single_label=task.single_label,
        )
        metrics.write(self.vdir.metrics_file)
        return history, metrics, result.temperature

    def _learning(self, result: TestResult, train_loss: float) -> LearningCheck:
        """Did the run learn? Its training images' loss (as stored, evaluation mode) against
        chance, the validation AUC interval, the test decisions (:mod:`odirkit.learning`)."""
        data, ev = self.trainer.data, self.cfg.eval
        chance = chance_loss(
            self.trainer.loss_fn, data.targets_tensor(data.train_idx), data.task.num_classes
        )
        val_auc = interval = None
        if result.val is not None and len(result.val.probs):
            val_auc = (result.validation or {}).get("auc_macro")
            found = bootstrap.intervals(
                scored(result.val, result.thresholds),
                resamples=ev.bootstrap,
                confidence=ev.confidence,
                seed=derive_seed(self.cfg.seed, Stream.LEARNING),
            ).get("auc_macro")
            interval = (float(found[0]), float(found[1])) if found else None
        decisions = predictions(
            result.test.probs, single_label=data.task.single_label, thresholds=result.thresholds
        )
        check = check_learning(
            train_loss=train_loss,
            chance=chance,
            val_auc=None if val_auc is None else float(val_auc),
            val_auc_interval=interval,
            decisions=decisions,
            labels=tuple(data.task.labels),
            single_label=data.task.single_label,
        )
        if not check.learned:
            warn(f"{self.exp.variant}: {check.summary()}")
        return check


#: the figures kept per checkpoint in metrics.json (beside the recall of each label)
CHECKPOINT_FIGURES = ("f1_micro", "f1_macro", "recall_macro", "specificity_macro", "auc_macro")


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    out = {k: metrics[k] for k in CHECKPOINT_FIGURES if k in metrics}
    out["recall"] = {label: f["recall"] for label, f in metrics["per_class"].items()}
    if "odir_patient" in metrics:
        out["odir_patient"] = metrics["odir_patient"]
    return out


def _test_time_view_names(specs: list[Any]) -> list[str]:
    """``[eval] tta`` as text: built-in test-time views as written, plugins by name."""
    return [spec if isinstance(spec, str) else str(spec.get("name")) for spec in specs]


def _column(monitor: str) -> str:
    """The metrics.csv column of a ``train.monitor`` value (always a validation column)."""
    return f"val_{monitor}"
