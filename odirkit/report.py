"""Figures and reports: per run, and compared across variants or runs.

The comparison figure puts F1 and recall per epoch of several runs side by
side, the way Thiry et al. (2021) compare no augmentation, classic
augmentation and DCGAN images (their Figures 2 and 3).
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from odirkit.engine.checkpoint import atomic_write, write_text
from odirkit.labels import LABEL_NAMES


def save_figure(fig: Any, path: Path) -> None:
    """Save a matplotlib figure as PNG, atomically, and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    atomic_write(path, lambda fh: fh.write(buffer.getvalue()))


def plot_run(history: pd.DataFrame, labels: Sequence[str], out_dir: Path, title: str) -> list[Path]:
    """F1 per epoch, recall per class per epoch, losses, and final recall per class."""
    out_dir.mkdir(parents=True, exist_ok=True)
    epochs = history["epoch"]
    written = []

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, history["f1_micro"], marker="o", label="micro F1")
    ax.plot(epochs, history["f1_macro"], marker="s", label="macro F1")
    _style(ax, f"{title}: held-out F1", "F1")
    save_figure(fig, out_dir / "f1_per_epoch.png")
    written.append(out_dir / "f1_per_epoch.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for label in labels:
        ax.plot(
            epochs, history[f"recall_{label}"], marker=".", label=f"{label} ({LABEL_NAMES[label]})"
        )
    _style(ax, f"{title}: held-out recall per class", "recall")
    save_figure(fig, out_dir / "recall_per_epoch.png")
    written.append(out_dir / "recall_per_epoch.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(epochs, history["train_loss"], marker="o", label="training")
    ax.plot(epochs, history["test_loss"], marker="s", label="held-out")
    _style(ax, f"{title}: loss", "loss", unit_range=False)
    save_figure(fig, out_dir / "loss_per_epoch.png")
    written.append(out_dir / "loss_per_epoch.png")

    last = history.iloc[-1]
    fig, ax = plt.subplots(figsize=(6, 4))
    values = [last[f"recall_{label}"] for label in labels]
    bars = ax.bar(list(labels), values, color="tab:blue")
    ax.bar_label(bars, fmt="%.2f")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title(f"{title}: recall per class (epoch {int(last['epoch'])})")
    save_figure(fig, out_dir / "recall_per_class.png")
    written.append(out_dir / "recall_per_class.png")
    return written


def _style(ax: Any, title: str, ylabel: str, *, unit_range: bool = True) -> None:
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if unit_range:
        ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


@dataclass
class RunSummary:
    """What a comparison needs of one run: its name, per-epoch history and final metrics."""

    label: str
    history: pd.DataFrame
    final: dict[str, Any]
    labels: list[str]


def comparison_table(runs: Sequence[RunSummary]) -> pd.DataFrame:
    """One row per run: final micro/macro F1, recall per class, best epoch."""
    rows = []
    for run in runs:
        final = run.final.get("final") or {}
        best = run.final.get("best") or {}
        row: dict[str, Any] = {
            "run": run.label,
            "epochs": int(run.history["epoch"].max()) if len(run.history) else 0,
            "f1_micro": final.get("f1_micro"),
            "f1_macro": final.get("f1_macro"),
            "recall_macro": final.get("recall_macro"),
            "auc_macro": final.get("auc_macro"),
            "best_epoch": best.get("epoch"),
            f"best_{best.get('monitor', 'f1_micro')}": best.get("value"),
        }
        for label in run.labels:
            row[f"recall_{label}"] = final.get("per_class", {}).get(label, {}).get("recall")
        rows.append(row)
    return _with_fold_means(pd.DataFrame(rows))


def _with_fold_means(table: pd.DataFrame) -> pd.DataFrame:
    """Add, for cross-validated variants (``<name>-fold<i>``), the mean over their folds
    and the standard deviation of the micro F1."""
    if table.empty:
        return table
    base = table["run"].astype(str).str.extract(r"^(.*)-fold\d+$")[0]
    extra = []
    for name, group in table.groupby(base, sort=False):
        if len(group) < 2:
            continue
        numbers = group.select_dtypes("number")
        row = {"run": f"{name} (mean of {len(group)} folds)", **numbers.mean().to_dict()}
        row["f1_micro_std"] = float(group["f1_micro"].std(ddof=1))
        extra.append(row)
    return pd.concat([table, pd.DataFrame(extra)], ignore_index=True) if extra else table


def plot_comparison(runs: Sequence[RunSummary], path: Path, title: str) -> None:
    """F1 and recall per epoch for every run, side by side, plus recall per class."""
    labels: list[str] = []
    for run in runs:
        labels += [label for label in run.labels if label not in labels]
    columns = 2 + len(labels)
    ncols = min(4, columns)
    nrows = math.ceil(columns / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.4 * nrows), squeeze=False)
    flat = axes.ravel()
    panels = [("f1_micro", "micro F1"), ("recall_macro", "macro recall")] + [
        (f"recall_{label}", f"recall {label} ({LABEL_NAMES[label]})") for label in labels
    ]
    for ax, (column, name) in zip(flat, panels, strict=False):
        for run in runs:
            if column in run.history:
                ax.plot(run.history["epoch"], run.history[column], marker=".", label=run.label)
        _style(ax, name, "recall" if column.startswith("recall_") else name)
    for ax in flat[len(panels) :]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path)


def plot_recall_per_class(runs: Sequence[RunSummary], path: Path, title: str) -> None:
    """Final recall per class, one group of bars per class, one bar per run (the paper's
    Figure 4)."""
    labels: list[str] = []
    for run in runs:
        labels += [label for label in run.labels if label not in labels]
    width = 0.8 / max(len(runs), 1)
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels) * max(1, len(runs)) ** 0.5), 4))
    for i, run in enumerate(runs):
        per_class = run.final.get("final", {}).get("per_class", {})
        values = [per_class.get(label, {}).get("recall", float("nan")) for label in labels]
        positions = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(positions, values, width=width, label=run.label)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("recall")
    ax.set_title(f"{title}: recall per class")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, path)


def write_report(
    out_dir: Path,
    *,
    title: str,
    description: str,
    runs: Sequence[RunSummary],
    figures: dict[str, str],
) -> pd.DataFrame:
    """comparison.csv, comparison.png and report.md in ``out_dir``; return the table."""
    table = comparison_table(runs)
    write_text(out_dir / "comparison.csv", table.to_csv(index=False))
    if runs:
        plot_comparison(runs, out_dir / "comparison.png", title)
        plot_recall_per_class(runs, out_dir / "recall_per_class.png", title)
    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    lines += ["## Held-out results (last epoch)", "", _markdown(table), ""]
    if runs:
        lines += [
            "## F1 and recall per epoch",
            "",
            "![comparison](comparison.png)",
            "",
            "## Recall per class",
            "",
            "![recall per class](recall_per_class.png)",
            "",
        ]
    for run in runs:
        link = figures.get(run.label)
        if link:
            lines += [
                f"## {run.label}",
                "",
                f"![F1 per epoch]({link}/f1_per_epoch.png) "
                f"![recall per class]({link}/recall_per_class.png)",
                "",
            ]
    write_text(out_dir / "report.md", "\n".join(lines))
    return table


def _markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "(no finished runs)"
    head = "| " + " | ".join(table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = [
        "| " + " | ".join(_cell(v) for v in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join([head, rule, *body])


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)
