"""The schema of the core tables [data], [model], [train] and the explainer options (pydantic)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

import pydantic
from pydantic import Field

from odirkit.labels import LABELS, Label

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
        check_unique_labels(labels)
        return labels

    @pydantic.model_validator(mode="after")
    def _folds(self) -> DataConfig:
        check_folds(self.folds, self.fold)
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
        check_finetune_blocks(self.finetune, self.finetune_blocks)
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
        self.lr = recipe_lr(self, lr_given="lr" in self.model_fields_set)
        return self


# -- the rules across keys (plain functions: the validators above call them) ----------------


def check_unique_labels(labels: list[str]) -> None:
    """Raises ValueError when a label is listed twice."""
    if len(set(labels)) != len(labels):
        raise ValueError("labels must not repeat")


def check_folds(folds: int, fold: int | None) -> None:
    """``folds``: 0 (one split) or 2 or more; ``fold``: one of them (0-based), or None for all.

    Raises ValueError otherwise."""
    if folds == 1:
        raise ValueError("folds = 1 is no cross-validation: use 0 (one split) or 2 or more")
    if fold is not None and not folds:
        raise ValueError("fold needs folds >= 2")
    if fold is not None and fold >= folds:
        raise ValueError(f"fold must be below folds ({folds}), got {fold}")


def check_finetune_blocks(finetune: str, blocks: int | None) -> None:
    """``finetune_blocks`` is given exactly when ``finetune = "partial"``; raises ValueError
    otherwise."""
    if finetune == "partial" and blocks is None:
        raise ValueError('finetune = "partial" needs finetune_blocks = <how many>')
    if finetune != "partial" and blocks is not None:
        raise ValueError(f'finetune_blocks applies to finetune = "partial", not "{finetune}"')


def recipe_lr(train: TrainConfig, *, lr_given: bool) -> float:
    """The learning rate of a ``[train]`` table: ``blr * batch_size / 256`` when ``blr`` is
    given (the MAE/RETFound convention), else ``lr``.

    Raises ValueError when lr and blr disagree, warm-up epochs come without the
    ``warmup_cosine`` scheduler or fill the whole run, or ``min_lr`` is not below the rate."""
    lr = train.lr
    if train.blr is not None:
        scaled = train.blr * train.batch_size / 256
        if lr_given and not math.isclose(lr, scaled, rel_tol=1e-9):
            raise ValueError(
                f"give lr or blr, not both: blr = {train.blr:g} makes lr = blr * batch_size "
                f"/ 256 = {scaled:g}, and lr = {lr:g} was given too"
            )
        lr = scaled
    if train.warmup_epochs and train.scheduler != "warmup_cosine":
        raise ValueError(
            f'warmup_epochs needs scheduler = "warmup_cosine" (scheduler is "{train.scheduler}")'
        )
    if train.scheduler == "warmup_cosine" and train.warmup_epochs >= train.epochs:
        raise ValueError(
            f"warmup_epochs ({train.warmup_epochs:g}) must be fewer than epochs "
            f"({train.epochs}): the run would end within the warm-up, its rate never "
            "reaching lr nor the cosine"
        )
    if train.scheduler == "warmup_cosine" and train.min_lr >= lr:
        raise ValueError(f"min_lr ({train.min_lr:g}) must lie below lr ({lr:g}) for warmup_cosine")
    return lr


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
