"""The report's figures: curves per epoch (a line and a band per variant) and recall per class."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from odirkit.figures import colour, error_bars, save_figure
from odirkit.labels import LABEL_NAMES
from odirkit.report.summary import (
    RunSummary,
    _base,
    _finite,
    _labels_of,
    variants_of,
)


def plot_comparison(runs: Sequence[RunSummary], path: Path, title: str, split: str = "val") -> bool:
    """One panel per metric (the disease's F1 and recall, then accuracy, for a two-label
    task; micro F1, macro recall and each class's recall otherwise), one line per variant:
    the mean over its seeds or folds per epoch, with a band from its lowest to its highest
    run (validation curves, or the test curves of runs that asked for them). The legend
    sits below the panels, off the lines. Returns whether anything was drawn."""
    runs = [r for r in runs if f"{split}_f1_micro" in r.history]
    if not runs:
        return False
    labels = _labels_of(runs)
    single = all(r.metrics.single_label for r in runs)
    if single and len(labels) == 2:  # the paper's Figures 2 and 3: the disease's F1, recall
        positive = labels[1]
        panels = [
            (f"f1_{positive}", f"F1 of {positive} ({LABEL_NAMES[positive]})"),
            (f"recall_{positive}", f"recall of {positive} ({LABEL_NAMES[positive]})"),
            ("f1_micro", "accuracy"),
        ]
    else:
        panels = [("f1_micro", "micro F1"), ("recall_macro", "macro recall")] + [
            (f"recall_{label}", f"recall of {label} ({LABEL_NAMES[label]})") for label in labels
        ]
    variants = variants_of(runs)
    ncols = min(3, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.6 * nrows), squeeze=False)
    flat = axes.ravel()
    handles = {}
    for ax, (column, name) in zip(flat, panels, strict=False):
        key = f"{split}_{column}"
        for i, variant in enumerate(variants):
            members = [r for r in runs if _base(r.label) == variant and key in r.history]
            if not members:
                continue
            curves = pd.concat([r.history[["epoch", key]] for r in members])
            stats = curves.groupby("epoch")[key].agg(["mean", "min", "max", "count"])
            many = len(members) > 1
            (line,) = ax.plot(
                stats.index,
                stats["mean"],
                marker=".",
                color=colour(i),
                label=f"{variant} (mean of {len(members)} runs, band: lowest to highest)"
                if many
                else variant,
            )
            if many:
                ax.fill_between(
                    stats.index, stats["min"], stats["max"], color=colour(i), alpha=0.18, lw=0
                )
            handles.setdefault(variant, line)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel("recall" if column.startswith("recall_") else name.split(" (")[0])
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in flat[len(panels) :]:
        ax.axis("off")
    which = (
        "validation patients"
        if split == "val"
        else "test patients, every epoch (not used for selection)"
    )
    fig.suptitle(f"{title}: {which}")
    fig.tight_layout()
    fig.legend(
        list(handles.values()),
        [h.get_label() for h in handles.values()],
        loc="upper center",
        bbox_to_anchor=(0.5, 0.0),
        ncols=min(3, len(handles)),
        frameon=False,
    )
    save_figure(fig, path)
    return True


def plot_recall_per_class(
    runs: Sequence[RunSummary], path: Path, title: str, table: pd.DataFrame | None = None
) -> None:
    """Test recall per class, one group of bars per class, one bar per variant (the paper's
    Figure 4): a variant run over several seeds or folds is the mean of its runs (each run a
    dot) with the interval of the mean from ``table`` (:func:`comparison_table`'s "mean of"
    rows); a single run is its own value with its bootstrap interval. The legend sits below
    the axes, off the bars."""
    labels = _labels_of(runs)
    variants = variants_of(runs)
    means = {}
    if table is not None and not table.empty:
        for record in table.to_dict("records"):
            name = str(record["run"])
            if " (mean of " in name:
                means[name.split(" (mean of ")[0]] = record
    width = 0.8 / max(len(variants), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(labels) * max(1, len(variants)) ** 0.5), 4))
    for i, variant in enumerate(variants):
        members = [r for r in runs if _base(r.label) == variant]
        per_run = [[r.metrics.final.label(x).get("recall") for x in labels] for r in members]
        values = np.array(
            [[np.nan if v is None else float(v) for v in row] for row in per_run], dtype=float
        )
        positions = np.arange(len(labels)) + (i - (len(variants) - 1) / 2) * width
        summary = means.get(variant)
        if summary is not None:
            shown = [float(summary.get(f"recall_{x}", np.nan)) for x in labels]
            intervals = [
                (summary.get(f"recall_{x}_low"), summary.get(f"recall_{x}_high")) for x in labels
            ]
            name = f"{variant} (mean of {len(members)} runs; dots: each run)"
        else:
            shown = list(values[0])
            intervals = [members[0].metrics.final.interval(f"recall_{x}") for x in labels]
            name = variant
        clean = [i if i and all(_finite(v) for v in i) else None for i in intervals]
        errors = error_bars(clean, [0.0 if not _finite(v) else v for v in shown])
        ax.bar(positions, shown, width=width, label=name, color=colour(i), yerr=errors, capsize=2)
        if len(members) > 1:
            for row in values:
                ax.plot(positions, row, "o", color="black", markersize=2.5, zorder=3)
    ax.set_xticks(
        range(len(labels)),
        [f"{x} ({LABEL_NAMES.get(x, x)})" if len(labels) <= 3 else x for x in labels],
    )
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test recall")
    ax.set_title(f"{title}: test recall per class", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.12),
        ncols=min(2, len(variants)),
        frameon=False,
    )
    save_figure(fig, path)
