"""Figures of one run: curves per epoch, recall per class with intervals, reliability.

Each figure is a PNG written atomically (:func:`save_figure`, which plugins use
too, through :mod:`odirkit.api`). Curves are the validation patients'; the
test patients' curves are drawn only when a run scored them every epoch, and
are labelled so.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

from odirkit.runs.names import FigureFiles
from odirkit.runs.records import RunMetrics

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from odirkit.files import write_bytes
from odirkit.labels import LABEL_NAMES


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG, atomically, and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def _curves(history: pd.DataFrame) -> list[tuple[str, str]]:
    """The per-epoch splits present: validation, and test when it was asked for."""
    found = []
    if "val_f1_micro" in history:
        found.append(("val", "validation"))
    if "test_f1_micro" in history:
        found.append(("test", "test, every epoch (not used for selection)"))
    return found


def plot_run(
    history: pd.DataFrame,
    labels: Sequence[str],
    out_dir: Path,
    title: str,
    metrics: RunMetrics | None = None,
) -> list[Path]:
    """F1 per epoch, recall per class per epoch, losses, and the reported recall per class.

    Curves are the validation patients'; the test patients' curves are added,
    marked as such, only when the run scored them every epoch
    (``train.test_every_epoch``). The bars are the test result of the reported
    checkpoint (``metrics``, its ``metrics.json``), with its bootstrap intervals.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = history["epoch"]
    written = []
    curves = _curves(history)
    styles = {"val": "-", "test": "--"}

    positive = positive_label(labels, metrics)
    if curves:
        fig, ax = plt.subplots(figsize=(6, 4))
        for split, name in curves:
            if positive:  # the paper's Figures 2 and 3: the disease's F1 and recall
                ax.plot(
                    epochs,
                    history[f"{split}_f1_{positive}"],
                    styles[split],
                    marker="o",
                    label=f"F1 {positive}, {name}",
                )
                ax.plot(
                    epochs,
                    history[f"{split}_recall_{positive}"],
                    styles[split],
                    marker="s",
                    label=f"recall {positive}, {name}",
                )
                continue
            ax.plot(
                epochs,
                history[f"{split}_f1_micro"],
                styles[split],
                marker="o",
                label=f"micro F1, {name}",
            )
            ax.plot(
                epochs,
                history[f"{split}_f1_macro"],
                styles[split],
                marker="s",
                label=f"macro F1, {name}",
            )
        what = f"F1 and recall of {positive}" if positive else "F1"
        style_axes(ax, f"{title}: {what} per epoch", "F1 / recall" if positive else "F1")
        save_figure(fig, out_dir / FigureFiles.F1)
        written.append(out_dir / FigureFiles.F1)

        fig, ax = plt.subplots(figsize=(6, 4))
        split, name = curves[0]
        for label in labels:
            ax.plot(
                epochs,
                history[f"{split}_recall_{label}"],
                marker=".",
                label=f"{label} ({LABEL_NAMES[label]})",
            )
        style_axes(ax, f"{title}: recall per class per epoch ({name})", "recall")
        save_figure(fig, out_dir / FigureFiles.RECALL_PER_EPOCH)
        written.append(out_dir / FigureFiles.RECALL_PER_EPOCH)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, history["train_loss"], marker="o", label="training")
    for split, name in curves:
        ax.plot(epochs, history[f"{split}_loss"], styles[split], marker="s", label=name)
    style_axes(ax, f"{title}: loss", "loss", unit_range=False)
    save_figure(fig, out_dir / FigureFiles.LOSS)
    written.append(out_dir / FigureFiles.LOSS)

    if metrics is not None:
        fig, ax = plt.subplots(figsize=(6, 4))
        values = [metrics.final.label(label)["recall"] for label in labels]
        errors = error_bars([metrics.final.interval(f"recall_{label}") for label in labels], values)
        bars = ax.bar(list(labels), values, color="tab:blue", yerr=errors, capsize=4)
        ax.bar_label(bars, fmt="%.2f", padding=2, fontsize=8)  # above each bar, even at 0
        ax.set_ylim(0, 1.05)
        ax.set_ylabel("recall (sensitivity)")
        ax.set_title(
            f"{title}: test recall per class\n({metrics.checkpoint} checkpoint, "
            f"epoch {metrics.checkpoint_epoch}; bars: "
            f"{_percent(metrics)} bootstrap interval)"
        )
        save_figure(fig, out_dir / FigureFiles.RECALL)
        written.append(out_dir / FigureFiles.RECALL)
    return written


def positive_label(labels: Sequence[str], metrics: RunMetrics | None) -> str | None:
    """The disease of a two-class single-label task (``["N", "D"]`` -> ``"D"``), else None."""
    if metrics is None or not metrics.single_label or len(labels) != 2:
        return None
    return labels[1]


def _percent(metrics: RunMetrics) -> str:
    return f"{round(100 * metrics.final.confidence)}%"


def error_bars(intervals: Sequence[Any], values: Sequence[float]) -> Any:
    """Asymmetric error bars from ``[low, high]`` intervals (none where one is missing)."""
    lower, upper = [], []
    for interval, value in zip(intervals, values, strict=True):
        if not interval or not all(map(math.isfinite, interval)):
            lower.append(0.0)
            upper.append(0.0)
        else:
            lower.append(max(0.0, value - interval[0]))
            upper.append(max(0.0, interval[1] - value))
    return np.array([lower, upper])


def plot_reliability(table: dict[str, dict[str, list[float]]], path: Path, title: str) -> None:
    """The reliability diagram: observed frequency against mean probability, per class."""
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for label, bins in table.items():
        if bins["mean_probability"]:
            ax.plot(
                bins["mean_probability"],
                bins["frequency"],
                marker="o",
                label=f"{label} ({LABEL_NAMES.get(label, label)})",
            )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed frequency")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def style_axes(ax: Any, title: str, ylabel: str, *, unit_range: bool = True) -> None:
    """Title, label, grid and (for measures in [0, 1]) the range of a figure's axes."""
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)  # epochs are whole
    ax.set_ylabel(ylabel)
    if unit_range:
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def colour(i: int) -> Any:
    """One colour per run, the same in every figure."""
    return plt.get_cmap("tab10")(i % 10)


def plot_test_curves(
    outcomes: np.ndarray,
    scores: np.ndarray,
    decisions: np.ndarray,
    labels: Sequence[str],
    out_dir: Path,
    title: str,
    *,
    single_label: bool,
) -> list[Path]:
    """The test patients' ROC and precision-recall curves per class, and the confusion
    matrix (single-label: classes x classes; multi-label: one 2 x 2 per label) at the
    reported operating point. ``outcomes`` and ``decisions`` are 0/1 ``[N, C]``."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for kind in ("roc", "pr"):
        fig, ax = plt.subplots(figsize=(5, 4.5))
        for c, label in enumerate(labels):
            y, s = outcomes[:, c], scores[:, c]
            if y.min() == y.max():
                continue
            if kind == "roc":
                x, yy, _ = roc_curve(y, s)
            else:
                precision, recall, _ = precision_recall_curve(y, s)
                x, yy = recall, precision
            ax.plot(x, yy, label=f"{label} ({LABEL_NAMES.get(label, label)})", color=colour(c))
        if kind == "roc":
            ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
            ax.set_xlabel("1 - specificity")
            ax.set_ylabel("sensitivity")
        else:
            ax.set_xlabel("recall")
            ax.set_ylabel("precision")
        ax.set_title(f"{title}: {'ROC' if kind == 'roc' else 'precision-recall'} (test)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no curve where no class has both outcomes
            ax.legend(fontsize=7)
        save_figure(fig, out_dir / FigureFiles.curves(kind))
        written.append(out_dir / FigureFiles.curves(kind))

    if single_label:
        truth, guess = outcomes.argmax(axis=1), decisions.argmax(axis=1)
        n = len(labels)
        matrix = np.zeros((n, n), dtype=np.int64)
        np.add.at(matrix, (truth, guess), 1)
        fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.2 * n + 2))
        _matrix(ax, matrix, list(labels), list(labels))
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    else:
        n = len(labels)
        cols = min(4, n)
        rows = math.ceil(n / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, 2.5 * rows), squeeze=False)
        for c, label in enumerate(labels):
            matrix = np.zeros((2, 2), dtype=np.int64)
            np.add.at(matrix, (outcomes[:, c].astype(int), decisions[:, c].astype(int)), 1)
            ax = axes.ravel()[c]
            _matrix(ax, matrix, ["no", "yes"], ["no", "yes"])
            ax.set_title(label, fontsize=9)
        for ax in axes.ravel()[n:]:
            ax.axis("off")
    fig.suptitle(f"{title}: confusion on the test set")
    fig.tight_layout()
    save_figure(fig, out_dir / FigureFiles.CONFUSION)
    written.append(out_dir / FigureFiles.CONFUSION)
    return written


def _matrix(ax: Any, matrix: np.ndarray, rows: list[str], cols: list[str]) -> None:
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(cols)), cols)
    ax.set_yticks(range(len(rows)), rows)
    top = matrix.max() or 1
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(
            j,
            i,
            str(value),
            ha="center",
            va="center",
            color="white" if value > top / 2 else "black",
            fontsize=8,
        )


def plot_training_images(
    rows: Sequence[tuple[str, np.ndarray, Sequence[str]]], path: Path, title: str
) -> None:
    """A small grid of training images: one row per stage (``(name, images, captions)``,
    ``images`` ``uint8 [n, H, W, 3]``), e.g. as stored, after the online augmenters, and
    images an offline augmenter added; each image captioned (its class)."""
    columns = max(len(images) for _, images, _ in rows)
    fig, axes = plt.subplots(
        len(rows), columns, figsize=(1.7 * columns, 1.95 * len(rows)), squeeze=False
    )
    for r, (name, images, captions) in enumerate(rows):
        for c in range(columns):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(images):
                ax.imshow(images[c])
                ax.set_xlabel(captions[c], fontsize=7)
        axes[r][0].set_ylabel(name, fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
