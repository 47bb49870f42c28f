"""The results of a run folder: ``metrics.json`` of a trained variant, of the metadata
baseline, of an ensemble and of an external validation, and the scores they hold."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from pydantic import Field

from odirkit.runs.records.base import Figure, Record
from odirkit.runs.records.data import CollectionReport, DataReport


class Scores(Record):
    """Scores of a set of patients: the headline figures, per label, with intervals.

    ``metrics.json``'s ``final`` (the test patients, scored once), ``validation``,
    ``final_without_tta`` and ``final_per_image`` are of this kind; only ``final`` has
    every field filled (thresholds, temperature, reliability, loss).
    """

    DOCUMENT: ClassVar[str] = "a set of scores"

    f1_micro: float | None = None
    f1_macro: float | None = None
    recall_macro: float | None = None
    specificity_macro: float | None = None
    precision_macro: float | None = None
    accuracy: float | None = None
    auc_macro: float | None = None
    pr_auc_macro: float | None = None
    brier_macro: float | None = None
    ece_macro: float | None = None
    #: ``{label: {"f1": ..., "recall": ..., "specificity": ..., "support": n, ...}}``
    per_class: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: per macro figure, the labels left out because the figure is undefined for them
    macro_left_out: dict[str, Any] = Field(default_factory=dict)
    #: ``{metric: [low, high]}``: the bootstrap interval of each figure (``recall_D``, ...)
    intervals: dict[str, list[float | None]] = Field(default_factory=dict)
    confidence: float = 0.95
    threshold_rule: str = "0.5"
    #: ``{label: threshold}`` chosen on validation (``{}``: the fixed rule or argmax)
    thresholds: dict[str, float] = Field(default_factory=dict)
    temperature: float | None = None
    #: per label, the reliability diagram's bins: ``mean_probability`` and ``frequency``
    #: (floats), ``count`` (whole numbers, written as ``7``, not ``7.0``)
    reliability: dict[str, dict[str, list[int | float]]] = Field(default_factory=dict)
    loss: float | None = None
    #: the ODIR-5K challenge's score on patients (kappa, AUC, agreement F1, final)
    odir_patient: dict[str, float] | None = None
    #: each label's recall (``final_without_tta``, which keeps the headline figures only)
    recall: dict[str, Figure] | None = None

    def value(self, metric: str) -> float | None:
        """A figure by name: a headline one (``f1_micro``) or one label's (``recall_D``).

        Returns ``None`` for a figure the run does not report (a label it did not learn, or
        one undefined on these patients).
        """
        extra = self.model_extra or {}
        if metric in type(self).model_fields or metric in extra:
            found = getattr(self, metric)
        elif "_" in metric:
            name, label = metric.rsplit("_", 1)
            found = self.per_class.get(label, {}).get(name)
        else:
            found = None
        if isinstance(found, bool) or not isinstance(found, int | float):
            return None
        return None if math.isnan(found) else float(found)

    def interval(self, metric: str) -> tuple[float, float] | None:
        """The interval of a figure (``None`` where none was computed or it is undefined)."""
        found = self.intervals.get(metric)
        if not found or len(found) != 2 or any(v is None for v in found):
            return None
        return float(found[0]), float(found[1])  # type: ignore[arg-type]

    def label(self, label: str) -> dict[str, Any]:
        """One label's figures (``{}`` for a label the run does not report)."""
        return self.per_class.get(label, {})


class Learning(Record):
    """Did the run learn? (``metrics.json``'s ``learning``, :mod:`odirkit.learning`): the
    training loss against chance, the validation AUC, the test decisions, and the verdict.

    Losses are the run's own (cross entropy or binary cross entropy, per image, mean).
    """

    DOCUMENT: ClassVar[str] = "a learning check"

    #: the training images' loss as stored, in evaluation mode, after training
    train_loss: Figure = None
    #: the loss of the best constant prediction of the training targets
    chance_loss: Figure = None
    #: the validation patients' macro AUC, and its bootstrap interval ``[low, high]``
    val_auc: Figure = None
    val_auc_interval: list[Figure] | None = None
    #: the decision every test patient got, when they all got one
    one_answer: str | None = None
    #: why the run did not learn, one sentence each (empty: it learned)
    reasons: list[str] = Field(default_factory=list)
    learned: bool | None = None
    #: the share by which the training loss must fall below chance
    loss_margin: Figure = None


class CheckpointScores(Record):
    """One kept checkpoint scored on the test patients (``metrics.json``'s
    ``checkpoints.last`` and ``checkpoints.best``): its headline figures, with intervals."""

    DOCUMENT: ClassVar[str] = "a checkpoint's scores"

    #: the epoch the checkpoint was saved at (1 is the first)
    epoch: int | None = None
    f1_micro: Figure = None
    f1_macro: Figure = None
    recall_macro: Figure = None
    specificity_macro: Figure = None
    auc_macro: Figure = None
    #: each label's recall (``None``: no test patient shows it)
    recall: dict[str, Figure] = Field(default_factory=dict)
    #: the ODIR-5K challenge's score on patients: kappa, f1, auc, final
    odir_patient: dict[str, Figure] | None = None
    #: ``{metric: [low, high]}``: bootstrap intervals
    intervals: dict[str, list[Figure]] = Field(default_factory=dict)


class BestEpoch(Record):
    """The best epoch on validation (``metrics.json``'s ``best``): the epoch of ``best.pt``."""

    DOCUMENT: ClassVar[str] = "a best epoch"

    #: 1 is the first
    epoch: int | None = None
    #: the validation figure watched (``train.monitor``)
    monitor: str = "f1_micro"
    #: its value at that epoch
    value: Figure = None


class RunMetrics(Record):
    """Run result: a finished variant's ``metrics.json``, written last.

    Also the metadata baseline's (no epochs, no checkpoints) and an ensemble's (its members
    instead of a training); fields a kind does not have keep their defaults.
    """

    DOCUMENT: ClassVar[str] = "a run's result"

    experiment: str = ""
    variant: str = ""
    #: ``single_label`` (softmax over the labels) or ``multi_label``
    task: str = ""
    labels: list[str] = Field(default_factory=list)
    epochs: int | None = None
    epochs_trained: int | None = None
    stopped_early: bool = False
    seed: int | None = None
    #: ``image`` or ``patient``: what one row of the test predictions is
    level: str = "image"
    #: the checkpoint reported (``best`` on validation, or ``last``)
    checkpoint: str = "last"
    checkpoint_epoch: int | None = None
    final: Scores
    #: the test-time views averaged, when any
    tta: list[str] = Field(default_factory=list)
    final_without_tta: Scores | None = None
    final_per_image: Scores | None = None
    validation: Scores | None = None
    #: the learning check (``None``: no check, a baseline or a run made before odirkit checked)
    learning: Learning | None = None
    #: per kept checkpoint (``last``, ``best``): its epoch, headline figures and intervals
    checkpoints: dict[str, CheckpointScores] = Field(default_factory=dict)
    #: the best epoch on validation (``None``: no validation patients)
    best: BestEpoch | None = None
    #: the data report (``data.json`` at the time of scoring)
    data: DataReport = Field(default_factory=DataReport)
    #: the training's wall-clock time, in seconds (resumed runs: every start's together)
    seconds: float | None = None
    #: ``{"world_size", "backend", "ranks_in_sync"}``: the processes of a distributed run
    distributed: dict[str, Any] = Field(default_factory=dict)
    #: the metadata baseline: its model, in words
    baseline: str | None = None

    @property
    def single_label(self) -> bool:
        """Whether the run learned a single-label task (softmax over its labels)."""
        return self.task == "single_label"

    @property
    def learned(self) -> bool | None:
        """The learning check's verdict (``None`` where the run has none)."""
        return None if self.learning is None else self.learning.learned


class EnsembleMetrics(RunMetrics):
    """Ensemble result: ``odirkit ensemble``'s ``metrics.json``, the members' averaged
    probabilities scored on the test samples they share."""

    DOCUMENT: ClassVar[str] = "an ensemble's result"

    #: the member variant folders
    ensemble_of: list[str] = Field(default_factory=list)
    #: each member's own micro F1 on its test set
    members_f1_micro: dict[str, float | None] = Field(default_factory=dict)
    #: each member's test-time views
    members_tta: dict[str, list[str]] = Field(default_factory=dict)
    shared_test_samples: int = 0


class ExternalMetrics(RunMetrics):
    """External validation result: ``external/<name>/metrics.json``, a trained run's reported
    checkpoint scored on another collection, on the labels both grade."""

    DOCUMENT: ClassVar[str] = "an external validation's result"

    #: the collection's report (its ``data.json``)
    data: CollectionReport = Field(default_factory=CollectionReport)  # type: ignore[assignment]
    #: the validation's folder name
    name: str = ""
    #: the collection as configured: dataset plugin, root, options
    collection: dict[str, Any] = Field(default_factory=dict)
    labels_scored: list[str] = Field(default_factory=list)
    labels_not_scored: list[str] = Field(default_factory=list)
    images: int = 0
    patients: int = 0
    #: the internal test against the external collection: ``metrics`` (one row per figure),
    #: ``verdicts`` in words, ``resamples``
    comparison: dict[str, Any] = Field(default_factory=dict)

    @property
    def comparison_rows(self) -> list[dict[str, Any]]:
        """One row per figure compared: internal and external values, their difference."""
        return list(self.comparison.get("metrics") or [])

    @property
    def verdicts(self) -> list[str]:
        """The comparison in words, one sentence per figure."""
        return list(self.comparison.get("verdicts") or [])
