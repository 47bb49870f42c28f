"""Experiment files: TOML loading, schema validation, ``--set`` overrides, variants.

An experiment is one TOML file. Its core tables (``[data]``, ``[model]``,
``[train]``) are validated by the pydantic models below; the keys of a table
that are not core keys are the parameters of the plugin the table names, and
are validated against that plugin's factory signature. ``[variants.NAME]``
tables are merged onto the base, one resolved configuration per variant.

A TOML file names registered plugins only, never an import path or an
expression: opening an experiment cannot run code.
"""

from __future__ import annotations

import copy
import datetime
import json
import math
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from odirkit.errors import ConfigError, OdirkitError, closest
from odirkit.labels import LABELS, Label
from odirkit.params import Where, describe_error
from odirkit.plugins import PluginSpec, Registry

DEFAULT_IMAGE_SIZE = 224
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
MONITORS = ("f1_micro", "f1_macro", "loss", "recall_macro", "precision_macro", "auc_macro")


class _Table(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class DataConfig(_Table):
    """``[data]``: which images, which labels, how they are split and prepared."""

    dataset: str = Field("phantom", description="dataset plugin")
    root: str = Field(
        "data/phantom", description="dataset folder, relative to the working directory"
    )
    labels: list[Label] = Field(
        default_factory=lambda: list(LABELS),
        min_length=2,
        description="the labels to learn, a subset of N D G C A H M O",
    )
    task: Literal["auto", "single_label", "multi_label"] = Field(
        "auto",
        description="single_label: one class per image (cross entropy); multi_label: "
        "independent labels (binary cross entropy); auto: single_label when no image "
        "has two of the chosen labels",
    )
    image_size: Annotated[int, Field(ge=16, le=4096)] | None = Field(
        None, description="square side in pixels; default: the model's input size"
    )
    test_fraction: float = Field(
        0.15, gt=0.0, lt=1.0, description="share of patients held out for the test"
    )
    val_fraction: float = Field(
        0.15,
        ge=0.0,
        lt=1.0,
        description="share of the training patients kept for validation (checkpoint choice, "
        "early stopping, thresholds, calibration); 0: none, the last epoch is the result",
    )
    balance: Literal["none", "undersample", "weighted"] = Field(
        "none", description="class balance of the training set"
    )
    level: Literal["image", "patient"] = Field(
        "image",
        description="evaluate per image, or per patient (the ODIR-2019 unit: both eyes' "
        "probabilities fused per label)",
    )
    fusion: Literal["max", "mean"] = Field(
        "max", description="how a patient's eyes are fused per label (level = 'patient')"
    )
    folds: int = Field(
        0, ge=0, le=100, description="k-fold cross-validation by patient (0: one split)"
    )
    fold: int | None = Field(
        None, ge=0, description="the held-out fold; unset with folds >= 2: run every fold"
    )
    split_file: str | None = Field(
        None, description="CSV of patient_id,split (or fold): read when it exists, else written"
    )
    circle_crop: bool = Field(False, description="black out what lies outside the inscribed circle")
    crop_to_fov: bool = Field(True, description="crop the black border around the field of view")
    cache_dir: str | None = Field(
        None, description="preprocessed-image cache; default: <root>/.odirkit-cache"
    )
    fundus_check: Literal["warn", "skip", "error", "off"] = Field(
        "warn",
        description="photographs that fail the fundus check (no round field of view, too dark, "
        "washed out, hopelessly blurred): kept with a warning, left out, stop the run, or "
        "not checked",
    )
    on_bad_image: Literal["error", "skip"] = Field(
        "error", description="a corrupt or missing image stops the run, or is skipped and reported"
    )
    shuffle_train_labels: bool = Field(
        False, description="control: permute the training labels (scores should fall to chance)"
    )
    shuffle_test_labels: bool = Field(
        False,
        description="control: permute the test patients' labels after the split (nothing but "
        "the test scores may change: checkpoint, epoch and thresholds stay)",
    )

    @pydantic.field_validator("labels")
    @classmethod
    def _unique_labels(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError("labels must not repeat")
        return labels

    @pydantic.model_validator(mode="after")
    def _folds(self) -> DataConfig:
        if self.folds == 1:
            raise ValueError("folds = 1 is no cross-validation: use 0 (one split) or 2 or more")
        if self.fold is not None and not self.folds:
            raise ValueError("fold needs folds >= 2")
        if self.fold is not None and self.fold >= self.folds:
            raise ValueError(f"fold must be below folds ({self.folds}), got {self.fold}")
        return self


class ModelConfig(_Table):
    """``[model]``: the model plugin; its other keys are the plugin's parameters."""

    name: str = Field("cnn", description="model plugin")
    metadata: bool = Field(
        False, description="fuse age and sex with the pooled image features (any model)"
    )
    metadata_hidden: int = Field(64, ge=1, description="width of the metadata fusion head")
    finetune: Literal["full", "linear_probe", "partial"] = Field(
        "full",
        description="full: every layer trained; linear_probe: the backbone frozen, only the "
        "final linear layer (the head) trained; partial: the last finetune_blocks of the "
        "model's blocks and everything after them trained, the rest frozen",
    )
    finetune_blocks: int | None = Field(
        None, ge=1, description="finetune = 'partial': how many of the last blocks are trained"
    )

    @pydantic.model_validator(mode="after")
    def _blocks_with_partial(self) -> ModelConfig:
        if self.finetune == "partial" and self.finetune_blocks is None:
            raise ValueError('finetune = "partial" needs finetune_blocks = <how many>')
        if self.finetune != "partial" and self.finetune_blocks is not None:
            raise ValueError(
                f'finetune_blocks applies to finetune = "partial", not "{self.finetune}"'
            )
        return self


class TrainConfig(_Table):
    """``[train]``: the optimisation."""

    epochs: int = Field(10, ge=1, description="passes over the training set")
    batch_size: int = Field(32, ge=1, description="images per training step")
    eval_batch_size: int | None = Field(
        None, ge=1, description="images per evaluation step; default: batch_size"
    )
    optimizer: Literal["sgd", "adam", "adamw"] = Field(
        "sgd", description="sgd (with momentum), adam, or adamw (decoupled weight decay)"
    )
    lr: float = Field(
        0.01, gt=0.0, description="learning rate (with blr: blr * batch_size / 256, derived)"
    )
    blr: float | None = Field(
        None,
        gt=0.0,
        allow_inf_nan=False,
        description="base learning rate for a batch of 256 images: lr = blr * batch_size / 256 "
        "(the linear scaling rule, Goyal et al. 2017; RETFound's --blr)",
    )
    layer_decay: float | None = Field(
        None,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="layer-wise learning-rate decay (BEiT, MAE, RETFound: 0.65): each layer "
        "group's lr is lr * layer_decay^(depth - layer), head at depth; 1-D parameters "
        "(biases, norms) and position embeddings get no weight decay (timm's "
        "param_groups_layer_decay)",
    )
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="SGD momentum")
    loss: Literal["auto", "cross_entropy", "binary_cross_entropy"] = Field(
        "auto",
        description="auto: cross entropy for a single-label task, binary cross entropy for a "
        "multi-label one; cross_entropy on a multi-label task: softmax over the labels with "
        "the image's labels as equal shares (the paper's CNN)",
    )
    weight_decay: float = Field(1e-4, ge=0.0, description="L2 weight decay")
    scheduler: Literal["none", "cosine", "step", "warmup_cosine"] = Field(
        "none",
        description="learning-rate schedule: cosine and step per epoch; warmup_cosine per "
        "step, a linear warm-up from 0 over warmup_epochs then a half-cycle cosine to min_lr "
        "at the end of the last epoch (MAE, RETFound; timm's CosineLRScheduler)",
    )
    warmup_epochs: float = Field(
        0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="epochs (fractions allowed) of linear warm-up (scheduler = 'warmup_cosine')",
    )
    min_lr: float = Field(
        1e-6,
        ge=0.0,
        allow_inf_nan=False,
        description="the learning rate warmup_cosine ends at (layer decay scales it too)",
    )
    label_smoothing: float = Field(
        0.0,
        ge=0.0,
        lt=1.0,
        allow_inf_nan=False,
        description="label smoothing: single-label targets (1 - e) one-hot + e / classes; "
        "multi-label targets (1 - e) y + e / 2 per label (timm's convention)",
    )
    mixup: float = Field(
        0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="mixup alpha (Zhang et al. 2018; 0: off), timm's Mixup",
    )
    cutmix: float = Field(
        0.0,
        ge=0.0,
        allow_inf_nan=False,
        description="cutmix alpha (Yun et al. 2019; 0: off), timm's Mixup",
    )
    mixup_prob: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="probability of mixing a batch (or pair, or image)",
    )
    mixup_switch_prob: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        allow_inf_nan=False,
        description="with both mixup and cutmix: probability of cutmix",
    )
    mixup_mode: Literal["batch", "pair", "elem"] = Field(
        "batch", description="one mixing draw per batch, per pair of images or per image"
    )
    step_size: int = Field(10, ge=1, description="epochs between decays (scheduler = 'step')")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="decay factor (scheduler = 'step')")
    monitor: Literal[MONITORS] = Field(  # type: ignore[valid-type]
        "f1_micro", description="validation metric that picks the best checkpoint"
    )
    patience: int = Field(
        0,
        ge=0,
        description="stop after this many epochs without a better validation monitor "
        "(0: never stop early)",
    )
    test_every_epoch: bool = Field(
        False,
        description="also score the test patients after every epoch (the paper's curves; "
        "never used to choose anything)",
    )
    checkpoint_every: int = Field(
        0, ge=0, description="also checkpoint every N steps within an epoch (0: end of epoch only)"
    )
    precise_bn: int = Field(
        200,
        ge=0,
        description="before each evaluation, recompute batch norm's statistics as the exact "
        "average over this many training batches with the current weights (precise BN, Wu & "
        "Johnson 2021); 0 keeps the running averages training left, which lag behind weights "
        "that change fast (short runs)",
    )
    num_workers: int | None = Field(
        None,
        ge=0,
        description="DataLoader workers; default: several on CUDA when images stream from the "
        "cache, none otherwise",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="auto: bf16 autocast on CUDA where supported, else fp16 with a gradient "
        "scaler; fp32 on the CPU",
    )
    channels_last: bool | None = Field(
        None, description="channels-last memory format; default: on for CUDA"
    )
    compile: bool = Field(False, description="torch.compile the model")
    deterministic: bool = Field(
        False, description="use PyTorch's deterministic algorithms (warns where there are none)"
    )

    @pydantic.model_validator(mode="after")
    def _recipe(self) -> TrainConfig:
        if self.blr is not None:
            scaled = self.blr * self.batch_size / 256
            if "lr" in self.model_fields_set and not math.isclose(self.lr, scaled, rel_tol=1e-9):
                raise ValueError(
                    f"give lr or blr, not both: blr = {self.blr:g} makes lr = blr * batch_size "
                    f"/ 256 = {scaled:g}, and lr = {self.lr:g} was given too"
                )
            self.lr = scaled
        if self.warmup_epochs and self.scheduler != "warmup_cosine":
            raise ValueError(
                f'warmup_epochs needs scheduler = "warmup_cosine" (scheduler is "{self.scheduler}")'
            )
        if self.scheduler == "warmup_cosine" and self.min_lr >= self.lr:
            raise ValueError(
                f"min_lr ({self.min_lr:g}) must lie below lr ({self.lr:g}) for warmup_cosine"
            )
        return self


class ExplainOptions(_Table):
    """odirkit's own keys of an ``[[explain]]`` entry (the others are the plugin's)."""

    layer: str = Field(
        "default",
        description="the layer explained: default (the model's CAM layer), auto (the last "
        "convolution), or a dotted module name",
    )
    max_images: int = Field(64, ge=1, description="held-out images explained at most")
    sanity: bool = Field(
        True, description="compare with the maps of a re-initialised model (rank correlation)"
    )


_RULE = re.compile(
    r"^(?:(?P<fixed>0?\.\d+)|(?P<max_f1>max_f1)"
    r"|(?P<kind>sensitivity|specificity):(?P<target>0?\.\d+|1(?:\.0*)?))$"
)


@dataclass(frozen=True)
class ThresholdRule:
    """A parsed ``[eval] threshold`` value."""

    kind: str  # "fixed", "max_f1", "sensitivity", "specificity"
    value: float = 0.5

    @property
    def fixed(self) -> bool:
        return self.kind == "fixed"

    def __str__(self) -> str:
        if self.kind == "fixed":
            return f"{self.value:g}"
        if self.kind == "max_f1":
            return "max_f1"
        return f"{self.kind}:{self.value:g}"


def parse_rule(text: str) -> ThresholdRule:
    """``"0.5"``, ``"max_f1"``, ``"sensitivity:0.90"`` or ``"specificity:0.95"``."""
    match = _RULE.match(str(text).strip())
    if match is None:
        raise ValueError(
            f'threshold {text!r}: expected a number in (0, 1) such as "0.5", "max_f1", '
            '"sensitivity:0.90" or "specificity:0.95"'
        )
    if match["fixed"]:
        value = float(match["fixed"])
        if not 0.0 < value < 1.0:
            raise ValueError(f"threshold {text!r}: a fixed threshold lies in (0, 1)")
        return ThresholdRule("fixed", value)
    if match["max_f1"]:
        return ThresholdRule("max_f1")
    value = float(match["target"])
    if not 0.0 < value <= 1.0:
        raise ValueError(f"threshold {text!r}: the target lies in (0, 1]")
    return ThresholdRule(match["kind"], value)


#: a built-in test-time view (odirkit.tta)
TTA_VIEW = r"^(identity|rotate:[+-]?\d+(\.\d+)?)$"
#: ``[eval] tta = true``: small turns either way, as the eye sits in the camera (no flips)
DEFAULT_TTA = ("rotate:-10", "rotate:10")


class EvalConfig(_Table):
    """``[eval]``: how the test patients are scored, once, after training."""

    checkpoint: Literal["best", "last"] = Field(
        "best",
        description="the reported result: best (by the validation monitor) or last epoch",
    )
    threshold: str = Field(
        "0.5",
        description='operating point per class, chosen on validation: "0.5" (or another '
        'number), "max_f1", "sensitivity:0.90" or "specificity:0.95"',
    )
    calibrate: bool = Field(
        False, description="temperature scaling fitted on the validation images"
    )
    bootstrap: int = Field(
        1000, ge=0, le=100_000, description="bootstrap resamples of the test patients (0: none)"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1.0, description="level of every interval")
    tta: bool | list[str | dict[str, Any]] = Field(
        default_factory=list,
        description='test-time views besides the image: "rotate:DEG", "identity", or '
        "{ name = <augmenter> } for an augmenter declared deterministic (true: the default "
        "rotations); logits averaged",
    )

    @pydantic.field_validator("tta")
    @classmethod
    def _known_views(cls, value: bool | list[str | dict[str, Any]]) -> list[str | dict[str, Any]]:
        if isinstance(value, bool):
            return list(DEFAULT_TTA) if value else []
        for view in value:
            if isinstance(view, str) and not re.match(TTA_VIEW, view):
                raise ValueError(
                    f'unknown test-time view {view!r}: use "identity", "rotate:DEG" or '
                    '{ name = "<augmenter>" } (no flips: a mirrored left eye is a right eye)'
                )
        return value

    @pydantic.field_validator("threshold")
    @classmethod
    def _rule(cls, value: str) -> str:
        return str(parse_rule(value))


class EvaluateOptions(_Table):
    """``[[evaluate]]``: odirkit's own keys of an external validation (another collection on
    which a finished variant's reported checkpoint is scored); the dataset plugin's keys sit
    beside them, as in ``[data]``."""

    name: str | None = Field(
        None,
        pattern=NAME_PATTERN,
        description="the result's folder, <variant>/external/<name>; default: the folder name "
        "of root",
    )
    dataset: str = Field(..., description="dataset plugin of the collection")
    root: str = Field(..., description="the collection's folder")
    split: Literal["auto", "all", "test"] = Field(
        "auto",
        description="auto: the collection's test split when it comes split, else every image; "
        "all: every image; test: its test split (an error when it has none)",
    )
    fundus_check: Literal["warn", "skip", "error", "off"] | None = Field(
        None, description="photographs failing the fundus check; default: as the run"
    )
    on_bad_image: Literal["error", "skip"] | None = Field(
        None, description="unreadable images; default: as the run"
    )
    cache_dir: str | None = Field(
        None, description="preprocessed-image cache; default: <root>/.odirkit-cache"
    )


COMPARED_METRICS = ("f1_micro", "f1_macro", "recall_macro", "auc_macro")
PER_LABEL_METRIC = re.compile(rf"(f1|recall|specificity|auc)_[{''.join(LABELS)}]")


class CompareConfig(_Table):
    """``[compare]``: how variants are compared."""

    baseline: str | None = Field(
        None, description="the variant the others are tested against; default: the first"
    )
    metrics: list[str] = Field(
        default_factory=lambda: ["f1_micro", "auc_macro"],
        min_length=1,
        description="metrics whose paired differences are tested: f1_micro, f1_macro, "
        "recall_macro, auc_macro, or one label's f1_<L>, recall_<L>, specificity_<L>, "
        "auc_<L> (the paper's Normal-vs-Diabetes figures: f1_D, recall_D)",
    )
    require_learning: bool = Field(
        True,
        description="no verdict on a comparison in which a run did not learn (odirkit.learning); "
        "false tests the difference anyway, saying which runs did not learn",
    )

    @pydantic.field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str]) -> list[str]:
        for metric in value:
            if metric not in COMPARED_METRICS and not PER_LABEL_METRIC.fullmatch(metric):
                raise ValueError(
                    f"unknown metric {metric!r}; known: {', '.join(COMPARED_METRICS)}, or "
                    "f1_<L>, recall_<L>, specificity_<L>, auc_<L> for a label L"
                )
        return value


class LauncherConfig(_Table):
    """``[launcher]``: where ``odirkit run`` runs the variants (seeds, folds) of a file."""

    kind: Literal["local", "pool", "slurm"] = Field(
        "local",
        description="local: one after another here; pool: --jobs processes here; slurm: one "
        "SLURM job each (submitit)",
    )
    jobs: int = Field(1, ge=1, le=1024, description="pool: how many runs at once")
    gpus_per_run: int = Field(
        1, ge=1, le=64, description="GPUs per run on CUDA; above 1 each run is a DDP job"
    )
    partition: str | None = Field(None, description="slurm: the partition")
    time: int = Field(240, ge=1, description="slurm: minutes per job before it is requeued")
    mem_gb: int | None = Field(None, ge=1, description="slurm: memory per job")
    cpus_per_run: int | None = Field(None, ge=1, description="slurm: CPU cores per run")
    account: str | None = Field(None, description="slurm: the account charged")
    sbatch: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description='slurm: further #SBATCH options, { qos = "high" }'
    )
    cluster: Literal["slurm", "local"] = Field(
        "slurm",
        description="slurm: submit to SLURM; local: submitit's local executor (real jobs and "
        "requeueing on this machine, for trying it without a cluster)",
    )


#: a search range of ``[tune]``: a dotted key = one of these
class TuneRange(_Table):
    model_config = pydantic.ConfigDict(
        extra="forbid", strict=True, populate_by_name=True, allow_inf_nan=False
    )

    log: list[float] | None = Field(
        None, min_length=2, max_length=2, description="log-uniform between two numbers"
    )
    range: list[float] | None = Field(
        None, min_length=2, max_length=2, description="uniform between two numbers"
    )
    integer: list[int] | None = Field(
        None, alias="int", min_length=2, max_length=2, description="an integer in [low, high]"
    )
    choice: list[str | int | float | bool] | None = Field(
        None, min_length=1, description="one of these values"
    )

    @pydantic.model_validator(mode="after")
    def _one_kind(self) -> TuneRange:
        given = [k for k in ("log", "range", "integer", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of log, range, int, choice")
        kind = given[0]
        bounds = getattr(self, kind)
        if kind != "choice" and not bounds[0] < bounds[1]:
            raise ValueError(f"[{bounds[0]}, {bounds[1]}]: the low end must come first")
        if kind == "log" and bounds[0] <= 0:
            raise ValueError("a log range must be positive")
        return self


class TuneConfig(_Table):
    """``[tune]``: the hyperparameter search of ``odirkit tune``; any dotted key
    (``"train.lr"``) is a parameter with its range."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    metric: str = Field("", description="the validation metric to optimise; default: train.monitor")
    direction: Literal["maximize", "minimize", "auto"] = Field(
        "auto", description="auto: minimize a loss, maximize anything else"
    )
    storage: str = Field(
        "", description="Optuna storage URL; default: a SQLite file in the tune folder"
    )
    study: str = Field("", description="the study's name; default: the experiment's")
    prune: bool = Field(True, description="stop unpromising trials (median pruner)")
    startup_trials: int = Field(2, ge=0, description="trials never pruned, to learn from")
    params: dict[str, TuneRange] = Field(default_factory=dict)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _dotted_keys_are_params(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        fixed = {k: v for k, v in value.items() if "." not in k}
        params = {k: v for k, v in value.items() if "." in k}
        if params:
            fixed["params"] = {**fixed.get("params", {}), **params}
        return fixed


#: odirkit's own keys in the entries of a plugin list, per kind
ENTRY_OPTIONS: dict[str, type[pydantic.BaseModel]] = {"explainer": ExplainOptions}


class ExperimentConfig(_Table):
    """The top level of an experiment file."""

    name: str = Field(..., pattern=NAME_PATTERN, description="experiment name (run folder)")
    description: str = Field("", description="free text, shown in the report")
    seed: int = Field(0, ge=0, description="seeds every random generator")
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        min_length=1,
        description="run each variant once per seed (variants named <variant>-seed<k>)",
    )
    repeats: int | None = Field(
        None, ge=1, le=100, description="run each variant with seeds seed, seed+1, ..."
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
        description="auto (CUDA when present, else CPU), cpu, cuda, cuda:N",
    )
    data: DataConfig = Field(default_factory=DataConfig)  # type: ignore[arg-type]
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[arg-type]
    train: TrainConfig = Field(default_factory=TrainConfig)  # type: ignore[arg-type]
    eval: EvalConfig = Field(default_factory=EvalConfig)  # type: ignore[arg-type]
    compare: CompareConfig = Field(default_factory=CompareConfig)  # type: ignore[arg-type]
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)  # type: ignore[arg-type]
    tune: TuneConfig = Field(default_factory=TuneConfig)  # type: ignore[arg-type]
    augment: list[dict[str, Any]] = Field(default_factory=list, description="augmenter plugins")
    explain: list[dict[str, Any]] = Field(default_factory=list, description="explainer plugins")
    log: list[dict[str, Any]] = Field(
        default_factory=list, description="logger plugins (experiment trackers)"
    )
    evaluate: list[dict[str, Any]] = Field(
        default_factory=list,
        description="external validation after training: collections each variant's reported "
        "checkpoint is scored on",
    )
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="overrides merged onto the base, one run each"
    )

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if self.seeds is not None and self.repeats is not None:
            raise ValueError("set seeds or repeats, not both")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must not repeat")
        if self.data.val_fraction == 0:
            needs = []
            if self.eval.threshold != "0.5":
                needs.append(f'eval.threshold = "{self.eval.threshold}"')
            if self.eval.calibrate:
                needs.append("eval.calibrate = true")
            if self.train.patience:
                needs.append(f"train.patience = {self.train.patience}")
            if needs:
                raise ValueError(
                    f"{', '.join(needs)} need(s) validation patients: set data.val_fraction > 0"
                )
        return self

    @property
    def run_seeds(self) -> list[int] | None:
        """The seeds each variant runs with, when more than the one ``seed``."""
        if self.seeds is not None:
            return list(self.seeds)
        if self.repeats is not None:
            return [self.seed + i for i in range(self.repeats)]
        return None


#: tables whose extra keys are plugin parameters, and the key naming the plugin
PLUGIN_TABLES: dict[str, tuple[str, str]] = {
    "data": ("dataset", "dataset"),
    "model": ("model", "name"),
}


@dataclass(frozen=True)
class PluginCall:
    """A plugin named by an experiment, with its validated parameters."""

    spec: PluginSpec
    params: dict[str, Any]
    where: Where | None = None
    options: dict[str, Any] = field(default_factory=dict)  # odirkit's own keys of the entry

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def meta(self) -> dict[str, Any]:
        """The plugin's meta, completed by its ``meta_for(params)`` when it has one."""
        return self.spec.meta_for(self.params, where=self.where)

    def build(self, **supplied: Any) -> Any:
        """Call the plugin's factory; its errors name the experiment table that chose it."""
        try:
            return self.spec.build(**supplied, **self.params)
        except OdirkitError as exc:
            if self.where is None:
                raise
            raise type(exc)(f"{self.where} {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.spec.name, **self.options, **self.params}


@dataclass
class Experiment:
    """One variant of an experiment, resolved: every default filled in, every plugin found."""

    config: ExperimentConfig
    variant: str
    dataset: PluginCall
    model: PluginCall
    augmenters: list[PluginCall]
    explainers: list[PluginCall]
    source: str | None = None
    loggers: list[PluginCall] = field(default_factory=list)
    tta_augmenters: list[PluginCall] = field(default_factory=list)  # [eval] tta plugin views
    external: list[ExternalData] = field(default_factory=list)  # [[evaluate]] collections

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def image_size(self) -> int:
        assert self.config.data.image_size is not None
        return self.config.data.image_size

    @property
    def labels(self) -> list[str]:
        return list(self.config.data.labels)

    @property
    def eyes(self) -> int:
        """2 for a model that sees both eyes of a patient at once (``odirkit.eyes``), else 1."""
        return int(self.model.meta.get("eyes", 1))

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration: a valid experiment document of its own."""
        doc = self.config.model_dump(
            mode="json", exclude={"variants", "augment", "explain", "log", "evaluate"}
        )
        doc["data"].update(self.dataset.params)
        doc["model"].update(self.model.params)
        doc["augment"] = [a.to_dict() for a in self.augmenters]
        doc["explain"] = [e.to_dict() for e in self.explainers]
        doc["log"] = [log.to_dict() for log in self.loggers]
        doc["evaluate"] = [e.to_dict() for e in self.external]
        return doc

    def fingerprint(self) -> str:
        """What the variant computes: where it runs ([launcher]), how it was searched
        ([tune]) and where it is validated after training ([[evaluate]]) are left out, so a
        run may resume elsewhere."""
        skip = ("launcher", "tune", "evaluate")
        doc = {k: v for k, v in self.to_dict().items() if k not in skip}
        return json.dumps(doc, sort_keys=True)


# -- loading ---------------------------------------------------------------


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a syntax error names the file, line and column."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8-sig")  # a byte-order mark (Windows editors) is fine
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such experiment file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not an experiment file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    if not doc:
        raise ConfigError(
            f"{path}: the experiment file is empty (no key, only comments or nothing); "
            "start from experiments/quickstart.toml, or see docs/experiments.md"
        )
    return doc


def parse_override(text: str) -> tuple[list[str | int], Any]:
    """``"train.epochs=2"`` -> ``(["train", "epochs"], 2)``; values are TOML values.

    A value that is not valid TOML is taken as a string, so
    ``data.root=data/odir5k`` needs no quotes; so is one that TOML reads as a date or a
    time (``data.root=2024-06-01``): no odirkit key takes a date.
    """
    key, sep, raw_value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.epochs=2")
    parts: list[str | int] = []
    for part in key.split("."):
        if not part:
            raise ConfigError(f"--set {text!r}: empty part in key {key!r}")
        parts.append(int(part) if part.isdigit() else part)
    raw_value = raw_value.strip()
    try:
        value = tomllib.loads(f"v = {raw_value}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw_value
    if isinstance(value, datetime.date | datetime.time):  # datetime is a date too
        value = raw_value
    return parts, value


def apply_override(doc: dict[str, Any], path: Sequence[str | int], value: Any, text: str) -> None:
    """Set ``doc[path] = value``, creating tables on the way."""
    node: Any = doc
    for i, part in enumerate(path[:-1]):
        nxt = path[i + 1]
        if isinstance(node, list):
            if not isinstance(part, int) or part >= len(node):
                raise ConfigError(f"--set {text!r}: no item {part} in {_dotted(path[:i])}")
            node = node[part]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {text!r}: {_dotted(path[:i])} is not a table")
        if part not in node:
            node[part] = [] if isinstance(nxt, int) else {}
        node = node[part]
    last = path[-1]
    if isinstance(node, list):
        if not isinstance(last, int) or last > len(node):
            raise ConfigError(f"--set {text!r}: no item {last} in {_dotted(path[:-1])}")
        if last == len(node):
            node.append(value)
        else:
            node[last] = value
    elif isinstance(node, dict):
        node[str(last)] = value
    else:
        raise ConfigError(f"--set {text!r}: {_dotted(path[:-1])} is not a table")


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Tables merge key by key; any other value (arrays included) is replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_experiment(
    path: str | Path,
    registry: Registry,
    *,
    overrides: Iterable[str] = (),
    variants: Iterable[str] | None = None,
) -> list[Experiment]:
    """Read, override, merge and validate an experiment file: one result per variant."""
    doc = read_toml(path)
    doc.setdefault("name", Path(path).stem)
    return resolve_document(doc, registry, source=str(path), overrides=overrides, variants=variants)


def resolve_document(
    doc: dict[str, Any],
    registry: Registry,
    *,
    source: str | None,
    overrides: Iterable[str] = (),
    variants: Iterable[str] | None = None,
) -> list[Experiment]:
    """Validate a parsed experiment document (see :func:`load_experiment`)."""
    doc = copy.deepcopy(doc)
    parsed = [(text, *parse_override(text)) for text in overrides]
    # "--set variants.gan.x=1" edits one variant; any other key edits every variant.
    for text, key, value in parsed:
        if key[0] == "variants":
            apply_override(doc, key, value, text)
    later = [(text, key, value) for text, key, value in parsed if key[0] != "variants"]

    variant_tables = doc.pop("variants", {})
    if not isinstance(variant_tables, dict):
        raise ConfigError(
            f"{source}: 'variants' must be a table of tables, e.g. [variants.augmented]"
        )
    for vname, table in variant_tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [variants.{vname}] must be a table")
        if not _matches_name(vname):
            raise ConfigError(
                f"{source}: [variants.{vname}] variant names use letters, digits, '_', '-', '.'"
            )
        for forbidden in ("name", "variants"):
            if forbidden in table:
                raise ConfigError(f"{source}: [variants.{vname}] cannot set {forbidden!r}")

    names = list(variant_tables) or ["default"]
    if variants is not None:
        wanted = list(variants)
        for v in wanted:
            if v not in names:
                raise ConfigError(
                    f"{source}: no variant {v!r}{closest(v, names)}; variants: {', '.join(names)}"
                )
        names = [n for n in names if n in wanted]

    resolved = []
    for vname in names:
        vtable = variant_tables.get(vname, {})
        merged = deep_merge(doc, vtable)
        for text, key, value in later:
            apply_override(merged, key, value, text)
        origin = _Origin(
            source, vname if variant_tables else None, vtable, [k for _, k, _ in later]
        )
        for exp in _expand_seeds(_resolve_variant(merged, registry, vname, origin)):
            resolved.extend(_expand_folds(exp))
    every = list(variant_tables) or ["default"]
    for exp in resolved[:1]:
        labels = exp.config.data.labels
        for metric in exp.config.compare.metrics:
            if PER_LABEL_METRIC.fullmatch(metric) and metric[-1] not in labels:
                raise ConfigError(
                    f"{source}: [compare] metrics names {metric!r}, but the experiment's "
                    f"labels are {', '.join(labels)}"
                )
    baseline = resolved[0].config.compare.baseline if resolved else None
    if baseline is not None and baseline not in every:
        raise ConfigError(
            f"{source}: [compare] baseline = {baseline!r} is not a variant"
            f"{closest(baseline, every)}; variants: {', '.join(every)}"
        )
    return resolved


def _expand_seeds(exp: Experiment) -> list[Experiment]:
    """``seeds = [...]`` or ``repeats = N``: one experiment per seed, ``<variant>-seed<k>``."""
    seeds = exp.config.run_seeds
    if seeds is None:
        return [exp]
    expanded = []
    for seed in seeds:
        config = exp.config.model_copy(deep=True)
        config.seed = seed
        config.seeds = config.repeats = None  # the expanded run is one seed (and resumes as one)
        expanded.append(replace(exp, config=config, variant=f"{exp.variant}-seed{seed}"))
    return expanded


def _expand_folds(exp: Experiment) -> list[Experiment]:
    """``data.folds = k`` without ``data.fold``: one experiment per held-out fold."""
    data = exp.config.data
    if not data.folds or data.fold is not None:
        return [exp]
    expanded = []
    for fold in range(data.folds):
        config = exp.config.model_copy(deep=True)
        config.data.fold = fold
        expanded.append(replace(exp, config=config, variant=f"{exp.variant}-fold{fold}"))
    return expanded


@dataclass
class _Origin:
    """Where each key of a merged variant came from, for error messages."""

    file: str | None
    variant: str | None
    variant_table: dict[str, Any]
    override_keys: list[list[str | int]]

    def where(self, table: str, key: str | None = None) -> Where:
        """The table that set ``table.key``: --set, the variant's table or the base."""
        path = [p for p in [*table.split("."), key or ""] if p]
        for okey in self.override_keys:
            okey_parts = [str(p) for p in okey]
            if okey_parts[: len(path)] == path[: len(okey_parts)]:
                return Where(self.file, table, "from --set")
        if self.variant is None:
            return Where(self.file, table)
        if _has_path(self.variant_table, path):
            return Where(
                self.file, ".".join(["variants", self.variant, *table.split(".")]).rstrip(".")
            )
        return Where(self.file, table, f"variant {self.variant!r}")


def _has_path(table: Mapping[str, Any], path: Sequence[str]) -> bool:
    node: Any = table
    for part in path:
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
        else:
            return False
    return True


def _resolve_variant(
    doc: dict[str, Any], registry: Registry, variant: str, origin: _Origin
) -> Experiment:
    core_doc = copy.deepcopy(doc)
    plugin_params: dict[str, dict[str, Any]] = {}
    for table in PLUGIN_TABLES:
        value = core_doc.get(table, {})
        if not isinstance(value, dict):
            raise ConfigError(f"{origin.where('')} {table!r} must be a table, got {value!r}")
        fields = _fields(ExperimentConfig.model_fields[table].annotation)
        plugin_params[table] = {k: v for k, v in value.items() if k not in fields}
        core_doc[table] = {k: v for k, v in value.items() if k in fields}
    try:
        config = ExperimentConfig(**core_doc)
    except pydantic.ValidationError as exc:
        raise ConfigError(_core_message(exc, origin)) from None

    dataset = _resolve_plugin(
        registry,
        "dataset",
        config.data.dataset,
        plugin_params["data"],
        origin,
        "data",
        core_keys=_fields(DataConfig),
        name_key="dataset",
    )
    model = _resolve_plugin(
        registry,
        "model",
        config.model.name,
        plugin_params["model"],
        origin,
        "model",
        core_keys=_fields(ModelConfig),
        name_key="name",
    )
    augmenters = [
        _resolve_entry(registry, "augmenter", entry, origin, f"augment.{i}")
        for i, entry in enumerate(config.augment)
    ]
    explainers = [
        _resolve_entry(registry, "explainer", entry, origin, f"explain.{i}")
        for i, entry in enumerate(config.explain)
    ]
    loggers = [
        _resolve_entry(registry, "logger", entry, origin, f"log.{i}")
        for i, entry in enumerate(config.log)
    ]
    tta_augmenters = []
    for i, entry in enumerate(config.eval.tta):
        if not isinstance(entry, dict):
            continue
        call = _resolve_entry(registry, "augmenter", entry, origin, f"eval.tta.{i}")
        if not call.spec.meta.get("deterministic", False):
            raise ConfigError(
                f"{origin.where('eval', 'tta')} augmenter {call.name!r} does not declare itself "
                "deterministic per call (register(..., deterministic=True)), so it cannot be "
                'a test-time view; use "rotate:DEG"'
            )
        tta_augmenters.append(call)
    _settle_image_size(config, model, plugin_params["model"])
    if model.meta.get("eyes", 1) == 2 and config.data.level != "patient":
        raise ConfigError(
            f"{origin.where('model', 'name')} {model.name!r} sees both eyes of a patient and "
            'predicts the patient\'s labels: set data.level = "patient"'
        )
    external = [
        _resolve_external(registry, entry, origin, f"evaluate.{i}")
        for i, entry in enumerate(config.evaluate)
    ]
    names = [e.name for e in external]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(
                f"{origin.where('evaluate')} two [[evaluate]] entries are named {name!r}; give "
                'each its own name = "..."'
            )
    return Experiment(
        config=config,
        variant=variant,
        dataset=dataset,
        model=model,
        augmenters=augmenters,
        explainers=explainers,
        source=origin.file,
        loggers=loggers,
        tta_augmenters=tta_augmenters,
        external=external,
    )


@dataclass(frozen=True)
class ExternalData:
    """A collection on which a finished variant is validated: an ``[[evaluate]]`` entry, or
    ``odirkit evaluate --data``. ``dataset`` is its dataset plugin with its parameters."""

    name: str
    options: EvaluateOptions
    dataset: PluginCall
    where: str = ""  # the table that named it, for messages

    @property
    def root(self) -> str:
        return self.options.root

    def to_dict(self) -> dict[str, Any]:
        own = self.options.model_dump(mode="json", exclude_none=True)
        return {**own, "name": self.name, **self.dataset.params}


#: keys of [data] that describe training, not a collection: ignored by odirkit evaluate --data
TRAINING_DATA_KEYS = tuple(
    k for k in DataConfig.model_fields if k not in EvaluateOptions.model_fields
)


def resolve_external(
    table: Mapping[str, Any],
    registry: Registry,
    *,
    source: str | None,
    table_name: str = "data",
    overrides: Sequence[str] = (),
) -> ExternalData:
    """An external collection from a ``[data]``-like table (``odirkit evaluate --data FILE``):
    odirkit's keys of ``[[evaluate]]`` and the dataset plugin's; keys of ``[data]`` that only
    concern training (labels, image_size, ...) are left out, since the run's own apply."""
    entry = {k: v for k, v in table.items() if k not in TRAINING_DATA_KEYS}
    origin = _Origin(source, None, {}, [parse_override(o)[0] for o in overrides])
    return _resolve_external(registry, entry, origin, table_name)


def _resolve_external(
    registry: Registry, entry: Mapping[str, Any], origin: _Origin, table: str
) -> ExternalData:
    entry = dict(entry)
    own = {k: entry.pop(k) for k in list(entry) if k in EvaluateOptions.model_fields}
    try:
        options = EvaluateOptions(**own)
    except pydantic.ValidationError as exc:
        raise ConfigError(
            "\n".join(
                describe_error(
                    err,
                    where=origin.where(table, str(err["loc"][0]) if err["loc"] else None),
                    key=".".join(str(p) for p in err["loc"]) or "(table)",
                    valid_keys=EvaluateOptions.model_fields,
                )
                for err in exc.errors()
            )
        ) from None
    call = _resolve_plugin(
        registry,
        "dataset",
        options.dataset,
        entry,
        origin,
        table,
        core_keys=list(EvaluateOptions.model_fields),
        name_key="dataset",
    )
    name = options.name or _folder_name(options.root) or options.dataset
    return ExternalData(name, options, call, str(origin.where(table)))


def _folder_name(root: str) -> str:
    """The last part of ``root`` as a result name (letters, digits, '_', '-', '.')."""
    name = re.sub(r"[^A-Za-z0-9_.\-]+", "-", Path(root).resolve().name).strip("-.")
    return name if _matches_name(name) else ""


def _settle_image_size(config: ExperimentConfig, model: PluginCall, model_table: dict) -> None:
    """One image size for data and model: data.image_size, else the model's own."""
    takes_size = any(p.name == "input_size" for p in model.spec.params)
    if config.data.image_size is None:
        if takes_size and "input_size" in model_table:
            size = model.params["input_size"]
        else:
            size = model.meta.get("input_size") or (
                model.params.get("input_size") if takes_size else None
            )
        config.data.image_size = int(size or DEFAULT_IMAGE_SIZE)
    if takes_size and "input_size" not in model_table:
        model.params["input_size"] = config.data.image_size


def _resolve_plugin(
    registry: Registry,
    kind: str,
    name: str,
    params: dict[str, Any],
    origin: _Origin,
    table: str,
    *,
    core_keys: Iterable[str],
    name_key: str,
) -> PluginCall:
    spec = registry.get(kind, name, where=origin.where(table, name_key))
    plugin_keys = [p.name for p in spec.params]
    valid = sorted({*core_keys, *plugin_keys})
    for key in params:
        if key not in plugin_keys:
            raise ConfigError(
                f"{origin.where(table, key)} unknown key {key!r} for {spec.label}"
                f"{closest(key, valid)}; valid keys: {', '.join(valid)}"
            )
    try:
        validated = spec.validate(params, where=origin.where(table))
    except ConfigError as exc:
        # Re-point the message at the table that set the offending key.
        raise ConfigError(_repoint(str(exc), origin, table, params)) from None
    return PluginCall(spec, validated, Where(origin.file, table))


def _resolve_entry(
    registry: Registry, kind: str, entry: dict[str, Any], origin: _Origin, table: str
) -> PluginCall:
    entry = dict(entry)
    name = entry.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(
            f'{origin.where(table)} each {table.split(".")[0]} entry needs name = "<{kind} plugin>"'
        )
    options_model = ENTRY_OPTIONS.get(kind)
    options: dict[str, Any] = {}
    if options_model is not None:
        own = {k: entry.pop(k) for k in list(entry) if k in options_model.model_fields}
        try:
            options = options_model(**own).model_dump()
        except pydantic.ValidationError as exc:
            raise ConfigError(
                "\n".join(
                    describe_error(
                        err,
                        where=origin.where(table, str(err["loc"][0])),
                        key=".".join(str(p) for p in err["loc"]),
                        valid_keys=options_model.model_fields,
                    )
                    for err in exc.errors()
                )
            ) from None
    core = ["name", *(options_model.model_fields if options_model else [])]
    call = _resolve_plugin(
        registry, kind, name, entry, origin, table, core_keys=core, name_key="name"
    )
    return PluginCall(call.spec, call.params, call.where, options)


def _repoint(message: str, origin: _Origin, table: str, params: Mapping[str, Any]) -> str:
    base = str(origin.where(table))
    for key in params:
        specific = str(origin.where(table, key))
        if specific != base and f" {key}:" in message:
            return message.replace(base, specific, 1)
    return message


def _core_message(exc: pydantic.ValidationError, origin: _Origin) -> str:
    lines = []
    tables = ("data", "model", "train", "eval", "compare")
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        if len(loc) == 1 and loc[0] in tables and err["type"] == "value_error":
            # a rule across a table's keys: the table, and the rule's own words
            lines.append(f"{origin.where(loc[0])} {err['msg'].removeprefix('Value error, ')}")
            continue
        if len(loc) > 1 and loc[0] in tables:
            table, key = loc[0], ".".join(loc[1:])
        else:
            table, key = "", ".".join(loc)
        valid = _fields(_model_at([table] if table else []))
        where = origin.where(table, key.split(".")[0])
        lines.append(describe_error(err, where=where, key=key, valid_keys=valid))
    return "\n".join(lines)


def _model_at(parts: Sequence[str]) -> type[pydantic.BaseModel] | None:
    model: Any = ExperimentConfig
    for part in parts:
        fields = getattr(model, "model_fields", None)
        if not fields or part not in fields:
            return None
        model = fields[part].annotation
    return model if isinstance(model, type) and issubclass(model, pydantic.BaseModel) else None


def _fields(model: Any) -> list[str]:
    fields = getattr(model, "model_fields", None)
    return list(fields) if fields else []


def _dotted(path: Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path) or "the top level"


def _matches_name(name: str) -> bool:
    import re

    return re.match(NAME_PATTERN, name) is not None


def describe_tables() -> dict[str, type[pydantic.BaseModel]]:
    """The core tables, for ``odirkit describe`` and the TOML reference."""
    return {
        "top level": ExperimentConfig,
        "data": DataConfig,
        "model": ModelConfig,
        "train": TrainConfig,
        "eval": EvalConfig,
        "compare": CompareConfig,
        "launcher": LauncherConfig,
        "tune": TuneConfig,
        "evaluate": EvaluateOptions,
    }


__all__ = [
    "DataConfig",
    "EvaluateOptions",
    "Experiment",
    "ExperimentConfig",
    "ExternalData",
    "ModelConfig",
    "OdirkitError",
    "PluginCall",
    "TrainConfig",
    "load_experiment",
    "parse_override",
    "read_toml",
    "resolve_document",
    "resolve_external",
]
