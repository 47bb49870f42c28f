"""The schema of [eval], [[evaluate]] and [compare]. The grammars of threshold rules and of
test-time views are those of the code that applies them (:mod:`odirkit.thresholds`,
:mod:`odirkit.tta`).
"""

from __future__ import annotations

import re
from typing import Any, Literal

import pydantic
from pydantic import Field

from odirkit.config.schema import (
    NAME_PATTERN,
    _Table,
)
from odirkit.labels import LABELS
from odirkit.thresholds import parse_rule
from odirkit.tta import DEFAULT_TTA, is_builtin_test_time_view


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
            if isinstance(view, str) and not is_builtin_test_time_view(view):
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
