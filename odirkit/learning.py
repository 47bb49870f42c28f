"""Did a run learn? The question before any verdict about a difference between runs.

A comparison of two runs means something only when both learned: a variant whose
training loss never left chance, whose validation AUC is not above 0.5, or that
calls every test patient one class, is the finding itself, not one side of a
difference. A run learned when all three hold:

1. **Training loss below chance** by ``LOSS_MARGIN`` (relative): the loss of the
   trained model on its training images as stored (evaluation mode: no online
   augmentation, no dropout, the reported checkpoint) is at most
   ``(1 - LOSS_MARGIN)`` times the chance loss, the loss of the best constant
   prediction on the training targets under the run's own loss function (class
   weights included): ``ln 2`` for two balanced classes, the entropy of the prior
   without weights, found numerically for any loss. (The running loss of the
   training batches would hold augmented variants to a harder task: their batches
   are the augmented images, seen with dropout.)
2. **Validation AUC above chance**: the lower end of the bootstrap interval of the
   validation patients' macro ROC AUC lies above 0.5 (not judged where the AUC is
   undefined: validation patients of one class).
3. **Not one answer for all**: the test patients do not all receive the same
   decision.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from odirkit.runs.records import Learning

#: how far below chance the training loss must end, as a share of the chance loss
LOSS_MARGIN = 0.1


@dataclass
class LearningCheck:
    """The three signs of learning of one run, and the verdict."""

    train_loss: float
    chance_loss: float
    val_auc: float | None = None
    val_auc_interval: tuple[float, float] | None = None
    one_answer: str | None = None  # the decision every test patient got, if they all got one
    reasons: list[str] = field(default_factory=list)

    @property
    def learned(self) -> bool:
        """Whether the run learned: no reason against it."""
        return not self.reasons

    def record(self) -> Learning:
        """The check as ``metrics.json`` keeps it, with the verdict and the margin."""
        interval = self.val_auc_interval
        return Learning(
            train_loss=self.train_loss,
            chance_loss=self.chance_loss,
            val_auc=self.val_auc,
            val_auc_interval=None if interval is None else list(interval),
            one_answer=self.one_answer,
            reasons=list(self.reasons),
            learned=self.learned,
            loss_margin=LOSS_MARGIN,
        )

    def to_dict(self) -> dict[str, Any]:
        """The check as ``metrics.json`` keeps it, as a dict."""
        return self.record().model_dump()

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> LearningCheck:
        """The check read back from ``metrics.json``'s ``learning`` as parsed."""
        return cls.from_record(Learning.model_validate(values))

    @classmethod
    def from_record(cls, stored: Learning) -> LearningCheck:
        """The check read back from ``metrics.json`` (a loss it lacks is NaN)."""
        interval = stored.val_auc_interval
        return cls(
            train_loss=_number(stored.train_loss),
            chance_loss=_number(stored.chance_loss),
            val_auc=stored.val_auc,
            val_auc_interval=(_number(interval[0]), _number(interval[1]))
            if interval and len(interval) == 2
            else None,
            one_answer=stored.one_answer,
            reasons=list(stored.reasons),
        )

    def summary(self) -> str:
        """One line: learned, or what says it did not."""
        if self.learned:
            return "learned"
        return "did not learn: " + "; ".join(self.reasons)


def _number(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def chance_loss(loss_fn: nn.Module, targets: torch.Tensor, num_classes: int) -> float:
    """The loss of the best constant prediction of ``targets`` under ``loss_fn``.

    ``targets`` are class indices ``[N]`` (single-label) or 0/1 rows ``[N, C]``; the
    constant logits ``[C]`` are fitted by L-BFGS, so class weights, positive weights
    and soft targets are all accounted for as the run's loss accounts for them.
    """
    if len(targets) == 0:
        return float("nan")
    logits = torch.zeros(num_classes, dtype=torch.float32, requires_grad=True)
    targets = targets.cpu()
    targets = targets.float() if targets.is_floating_point() else targets
    loss_fn = copy.deepcopy(loss_fn).cpu()  # the run's own stays where it is
    for name, value in vars(loss_fn).items():  # weights kept as plain attributes too
        if isinstance(value, torch.Tensor):
            setattr(loss_fn, name, value.detach().cpu().float())
    optimizer = torch.optim.LBFGS([logits], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        value = loss_fn(logits.expand(len(targets), num_classes), targets)
        value.backward()
        return value

    optimizer.step(closure)
    with torch.no_grad():
        return float(loss_fn(logits.expand(len(targets), num_classes), targets))


def check_learning(
    *,
    train_loss: float,
    chance: float,
    val_auc: float | None,
    val_auc_interval: tuple[float, float] | None,
    decisions: np.ndarray,
    labels: tuple[str, ...],
    single_label: bool,
) -> LearningCheck:
    """The three signs of learning (see the module's docstring).

    ``decisions`` are the test patients' decisions: class indices ``[N]``
    (single-label) or 0/1 rows ``[N, C]``.
    """
    check = LearningCheck(train_loss, chance, val_auc, val_auc_interval)
    if not np.isfinite(train_loss) or train_loss > (1 - LOSS_MARGIN) * chance:
        check.reasons.append(
            f"training loss {train_loss:.3f} not below chance ({chance:.3f}) by {LOSS_MARGIN:.0%}"
        )
    defined = val_auc_interval is not None and all(np.isfinite(val_auc_interval))
    if defined and not val_auc_interval[0] > 0.5:  # undefined (one class): nothing to say
        low, high = val_auc_interval
        check.reasons.append(
            f"validation AUC {val_auc:.3f} [{low:.3f}, {high:.3f}] not above chance (0.5)"
        )
    decided = np.asarray(decisions)
    if len(decided) > 1 and (decided == decided[0]).all():
        if single_label:
            answer = labels[int(decided[0])]
        else:
            answer = "".join(x for x, d in zip(labels, decided[0], strict=True) if d) or "none"
        check.one_answer = answer
        check.reasons.append(f"every test patient called {answer}")
    return check
