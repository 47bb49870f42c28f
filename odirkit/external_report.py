"""External validations in the run's reports: ``report.md`` and ``report.html``.

For each variant and each collection it was validated on (``<variant>/external/<name>/``,
:mod:`odirkit.external`): the collection, the labels scored and not scored, a table of
internal test against external collection per metric with intervals, the difference
with its interval and a verdict in words, and the figure of the two side by side.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from odirkit.errors import RunError
from odirkit.runs import ExternalDirectory, VariantDirectory
from odirkit.runs.records import ExternalMetrics


def _results(runs: Sequence[Any]) -> list[tuple[str, ExternalDirectory, ExternalMetrics]]:
    found = []
    for run in runs:
        if run.directory is None:
            continue
        for external in VariantDirectory(run.directory).external_results():
            try:
                found.append((run.label, external, external.metrics()))
            except RunError:
                continue
    return found


def _shown(value: Any, low: Any = None, high: Any = None, signed: bool = False) -> str:
    if not isinstance(value, int | float) or not math.isfinite(value):
        return ""
    text = f"{value:+.3f}" if signed else f"{value:.3f}"
    bounds = [v for v in (low, high) if isinstance(v, int | float) and math.isfinite(v)]
    if len(bounds) == 2:
        text += f" [{low:+.3f}, {high:+.3f}]" if signed else f" [{low:.3f}, {high:.3f}]"
    return text


def _rows(summary: ExternalMetrics) -> list[dict[str, str]]:
    single = summary.single_label
    rows = []
    for row in summary.comparison_rows:
        name = row["metric"]
        if single and name == "f1_micro":
            name = "accuracy"
        rows.append(
            {
                "metric": name,
                "internal test": _shown(row["internal"], row["internal_low"], row["internal_high"]),
                "external": _shown(row["external"], row["external_low"], row["external_high"]),
                "external - internal": _shown(
                    row["difference"], row["difference_low"], row["difference_high"], True
                ),
                "distinguishable": "yes" if row.get("distinguishable") else "no",
            }
        )
    return rows


def left_out(summary: ExternalMetrics) -> str:
    """The collection's images not scored and why (``""`` when none): a single-label run
    scores only images with exactly one of its labels; unreadable images are skipped."""
    data = summary.data
    labels = ", ".join(summary.labels)
    reasons = [
        (data.dropped_without_label, f"with none of the run's labels ({labels})"),
        (data.dropped_with_several_labels, "with several of them (a single-label run)"),
        (data.skipped_unreadable, "unreadable"),
    ]
    parts = [f"{n} {why}" for n, why in reasons if isinstance(n, int) and n > 0]
    return f"left out: {'; '.join(parts)}" if parts else ""


def _heading(label: str, summary: ExternalMetrics) -> tuple[str, str]:
    collection = summary.collection
    title = f"{label} on {summary.name}"
    scored = ", ".join(summary.labels_scored)
    missing = ", ".join(summary.labels_not_scored)
    level = summary.level
    final = summary.final
    temperature = final.temperature
    calibration = (
        f"temperature {temperature:.3f}"
        if isinstance(temperature, int | float)
        else "no temperature"
    )
    which = summary.data.scored
    text = (
        f"{collection.get('dataset')} at {collection.get('root')} ({which}): "
        f"{summary.images} images, {summary.patients} patients, scored per "
        f"{level} with the run's {summary.checkpoint} checkpoint, operating point "
        f"{final.threshold_rule} and {calibration}, as chosen on the run's validation "
        f"patients. Labels scored: {scored}."
        + (f" Not scored (the collection does not grade them): {missing}." if missing else "")
    )
    dropped = left_out(summary)
    if dropped:
        text += f" Images {dropped}."
    return title, text


def markdown_section(out_dir: Path, runs: Sequence[Any]) -> list[str]:
    """``## External validation`` for ``report.md`` (empty when no run was validated)."""
    found = _results(runs)
    if not found:
        return []
    lines = [
        "## External validation",
        "",
        "Each variant's reported checkpoint scored on other collections, with the run's own "
        "preprocessing, fusion, temperature and operating points; the internal figures are "
        "the run's test patients on the same labels. The difference's interval comes from "
        "resampling the two sets of patients independently; it is distinguishable from "
        "noise when it excludes 0.",
        "",
    ]
    for label, external, summary in found:
        title, text = _heading(label, summary)
        rows = _rows(summary)
        lines += [f"### {title}", "", text, ""]
        if rows:
            columns = list(rows[0])
            lines += [
                "| " + " | ".join(columns) + " |",
                "|" + "|".join("---" for _ in columns) + "|",
            ]
            lines += ["| " + " | ".join(row[c] for c in columns) + " |" for row in rows]
            lines.append("")
        lines += [f"- {v}" for v in summary.verdicts[:5]]
        if external.figure.exists():
            link = (
                external.figure.relative_to(out_dir)
                if external.figure.is_relative_to(out_dir)
                else external.figure
            )
            lines += ["", f"![internal vs external]({Path(link).as_posix()})"]
        lines.append("")
    return lines


def html_section(runs: Sequence[Any], table: Any) -> str:
    """The same for ``report.html`` (``table`` renders a frame as a sortable table)."""
    found = _results(runs)
    if not found:
        return ""
    parts = [
        '<h2 id="external">External validation</h2>',
        "<p>Each variant's reported checkpoint scored on other collections with the run's own "
        "preprocessing, fusion, temperature and operating points; internal figures are the "
        "run's test patients on the same labels; brackets are bootstrap intervals, the "
        "difference's from resampling both sets of patients independently.</p>",
    ]
    for i, (label, external, summary) in enumerate(found):
        title, text = _heading(label, summary)
        parts.append(f"<h3>{html.escape(title)}</h3><p>{html.escape(text)}</p>")
        parts.append(table(pd.DataFrame(_rows(summary)), f"external-{i}"))
        verdicts = summary.verdicts[:5]
        parts += [f'<p class="verdict">{html.escape(v)}</p>' for v in verdicts]
        if external.figure.exists():
            data = base64.b64encode(external.figure.read_bytes()).decode("ascii")
            parts.append(
                '<div class="figures wide"><figure><img src="data:image/png;base64,'
                f'{data}" alt="internal vs external"><figcaption>internal vs external: each '
                "metric on the run's test patients and on the collection, with intervals"
                "</figcaption></figure></div>"
            )
    return "".join(parts)
