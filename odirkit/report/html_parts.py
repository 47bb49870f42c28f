"""Pieces of report.html: styles, script, figures inlined with captions, tables that scroll in
their box, per-class and data summaries.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from odirkit.comparison import parse_run_name
from odirkit.errors import RunError
from odirkit.report.lines import (
    _finite,
)
from odirkit.runs import VariantDirectory
from odirkit.runs.names import FigureFiles
from odirkit.runs.records import PatientTruth, RunMetrics

#: the per-run figures shown, in order, with their captions
RUN_FIGURES = (
    (FigureFiles.F1, "F1 and recall per epoch (validation patients)"),
    (FigureFiles.RECALL_PER_EPOCH, "recall per class per epoch (validation patients)"),
    (FigureFiles.LOSS, "training and validation loss per epoch"),
    (FigureFiles.RECALL, "test recall per class, with bootstrap intervals"),
    (FigureFiles.RELIABILITY, "reliability diagram (test patients): observed against predicted"),
    (FigureFiles.CONFUSION, "confusion at the operating point (test patients)"),
    (FigureFiles.ROC, "ROC curves (test patients)"),
    (FigureFiles.PR, "precision-recall curves (test patients)"),
)


#: matplotlib's tab10, the colours of the comparison figures, one per variant in order
TAB10 = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)


#: table columns that count things: shown as whole numbers
COUNTS = {
    "epochs",
    "checkpoint_epoch",
    "best_epoch",
    "images",
    "patients",
    "pairs",
    "constant_maps",
    "support",
    "runs",
}


#: what each column of the explanations' tables means
LOCALISATION_COLUMNS = {
    "images": "images of the class with a lesion mask, explained",
    "pointing_game": "share of those images where the map's highest point falls on a lesion "
    "(the mask widened by 3% of the image side)",
    "random_point": "the same for a point drawn uniformly in the field of view: the share of "
    "the field the lesions cover, the score of a map that knows nothing",
    "energy_in_mask": "share of the map's total importance that lies on the lesions",
    "uniform_map": "the same for a flat map: the lesions' share of the field of view",
    "reliable": "whether the explainer passed its sanity checks (below)",
    "better_than_chance": "whether the pointing game beats the random point",
}


SANITY_COLUMNS = {
    "pairs": "(image, class) pairs compared",
    "rank_correlation_with_random_model": "Spearman rank correlation, inside the field of "
    "view, between the maps of the trained model and of the same network re-initialised "
    "(Adebayo et al. 2018); a faithful explainer's maps change with the weights, so low is "
    "good",
    "constant_maps": "maps of the re-initialised model that were flat (no correlation defined)",
    "input_dependence": "rank correlation between the maps of images of different classes; "
    "maps that barely change from image to image describe the network, not the image, so "
    "low is good",
    "fails_randomisation": "rank correlation with the random model above 0.5",
    "fails_input_dependence": "input dependence above 0.5",
    "reliable": "passes both checks: its localisation scores can be read",
}


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1200px; color: #222;
       padding: 0 1em; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-top: 0.6em; }
p, li, dd, figcaption, h1, h2, h3, h4 { overflow-wrap: anywhere; }
.answer { background: #f5f8fc; border-left: 4px solid #1f77b4; padding: 0.5em 1em; }
.answer p { font-size: 1.05em; margin: 0.4em 0; }
.description { color: #555; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th[data-order="asc"]::after { content: " \\25B2"; }
th[data-order="desc"]::after { content: " \\25BC"; }
td:first-child, th:first-child { text-align: left; }
tr.mean td { font-weight: bold; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em; }
.figures { display: flex; flex-wrap: wrap; gap: 0.6em; align-items: flex-start; }
figure { margin: 0; flex: 1 1 420px; max-width: 100%; border: 1px solid #eee; padding: 0.3em; }
.wide figure { flex-basis: 100%; }
.small figure { flex: 0 1 260px; }
figure img { max-width: 100%; height: auto; display: block; margin: 0 auto; }
figcaption { font-size: 0.85em; color: #444; padding-top: 0.2em; }
.verdict { margin: 0.3em 0; } .flag { color: #b00020; font-weight: bold; }
.unreliable { color: #b00020; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; max-width: 100%; }
dl.columns { font-size: 0.85em; } dl.columns dt { font-family: monospace; }
dl.columns dd { margin: 0 0 0.3em 1.5em; color: #444; }
details { margin: 0.4em 0; }
"""


SCRIPT = """
function sortTable(th) {
  const table = th.closest("table");
  const index = Array.prototype.indexOf.call(th.parentNode.children, th);
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  const ascending = th.dataset.order !== "asc";
  table.querySelectorAll("th").forEach(h => delete h.dataset.order);
  th.dataset.order = ascending ? "asc" : "desc";
  const key = row => {
    const cell = row.cells[index];
    return cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent;
  };
  rows.sort((a, b) => {
    const x = key(a), y = key(b), nx = parseFloat(x), ny = parseFloat(y);
    const order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
    return ascending ? order : -order;
  });
  rows.forEach(row => body.appendChild(row));
}
document.querySelectorAll("table.sortable th").forEach(th =>
  th.addEventListener("click", () => sortTable(th)));
"""


def _image(path: Path, caption: str) -> str:
    """A PNG inlined as a figure with its caption (which is also its alternative text)."""
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(caption)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}" title="{alt}">'
        f"<figcaption>{alt}</figcaption></figure>"
    )


def _number(value: Any, column: str = "") -> str:
    """A cell as text: yes/no for booleans, counts without decimals, three decimals for
    other numbers, nothing for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if column in COUNTS and value.is_integer():
            return str(int(value))
        return f"{value:.3f}"
    return html.escape(str(value))


def table(frame: pd.DataFrame, table_id: str, row_styles: Sequence[str] | None = None) -> str:
    """A sortable table in a box that scrolls sideways when the table is wider than the page:
    every cell keeps its raw value in ``data-value``; a column ``<name>__shown`` gives the
    HTML shown for ``<name>`` where it is set; ``row_styles`` gives each row a class and
    style (``'class="mean" style="..."'``)."""
    if frame.empty:
        return "<p>(nothing to show)</p>"
    columns = [c for c in frame.columns if not str(c).endswith("__shown")]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    rows = []
    for i, record in enumerate(frame.to_dict("records")):
        cells = []
        for column in columns:
            value = record[column]
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            shown = record.get(f"{column}__shown")
            text = shown if isinstance(shown, str) else _number(value, str(column))
            raw = "" if missing else html.escape(str(value))
            cells.append(f'<td data-value="{raw}">{text}</td>')
        style = f" {row_styles[i]}" if row_styles and row_styles[i] else ""
        rows.append(f"<tr{style}>" + "".join(cells) + "</tr>")
    return (
        f'<div class="scroll"><table class="sortable" id="{table_id}"><thead><tr>{head}</tr>'
        f"</thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _results(frame: pd.DataFrame, colours: dict[str, str], first: str = "run") -> pd.DataFrame:
    """A table as shown: intervals beside their values, the variant's colour by its name."""
    shown = frame[[c for c in frame.columns if not c.endswith(("_low", "_high", "_std"))]].copy()
    out = pd.DataFrame(index=shown.index)
    for column in shown.columns:
        out[column] = shown[column]
        texts = []
        for i, value in shown[column].items():
            text = _number(value, column) if column != first else html.escape(str(value))
            low, high = frame.get(f"{column}_low"), frame.get(f"{column}_high")
            if low is not None and high is not None and _finite(low[i]) and _finite(high[i]):
                text += f" [{low[i]:.3f}, {high[i]:.3f}]"
            if column == first:
                swatch = colours.get(_variant_of(str(value)))
                if swatch:
                    text = f'<span class="swatch" style="background:{swatch}"></span>{text}'
            texts.append(text)
        out = out.copy()
        out[f"{column}__shown"] = texts
    return out


def _variant_of(name: str) -> str:
    """``"gan-seed1"``, ``"gan (mean of 3 seeds)"``, ``"gan (dcgan augmentation)"`` -> ``"gan"``."""

    return parse_run_name(name.split(" (")[0])[0]


def _mean_rows(frame: pd.DataFrame, colours: dict[str, str]) -> list[str]:
    """Rows "mean of N" tinted with their variant's colour."""
    styles = []
    for found in frame.get("run", []):
        name = str(found)
        colour = colours.get(_variant_of(name))
        if " (mean of " in name and colour:
            styles.append(f'class="mean" style="background:{colour}26"')
        else:
            styles.append("")
    return styles


def _per_class(metrics: RunMetrics) -> pd.DataFrame:
    scores = metrics.final
    rows = []
    for label, figures in scores.per_class.items():
        row = {"label": label}
        for key in (
            "recall",
            "specificity",
            "precision",
            "f1",
            "auc",
            "pr_auc",
            "sens_at_spec_90",
            "sens_at_spec_95",
            "spec_at_sens_90",
            "ece",
            "brier",
            "support",
        ):
            row[key] = figures.get(key)
        for key in ("recall", "auc"):
            low_high = scores.interval(f"{key}_{label}")
            value = figures.get(key)
            if low_high and _finite(value) and all(_finite(v) for v in low_high):
                row[f"{key}__shown"] = f"{value:.3f} [{low_high[0]:.3f}, {low_high[1]:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def _data_summary(vdir: VariantDirectory) -> str:
    try:
        data = vdir.data_report()
    except RunError as exc:  # missing or damaged: say which, and how
        return f"<p>({html.escape(str(exc))})</p>"
    rows = []
    for side in ("train", "val", "test"):
        images, patients, counts = data.side(side)
        rows.append({"split": side, "images": images, "patients": patients, **counts})
    extra = data.extra_train_images
    note = (
        "<p>Added to training: "
        + html.escape("; ".join(f"{n} images by {source}" for source, n in extra.items()))
        + " (counted in the training images above, not in the classes).</p>"
        if extra
        else ""
    )
    truth = data.patient_truth or PatientTruth()
    truth_note = (
        f"<p>Patient truth: {html.escape(truth.source)}"
        + (
            f"; {truth.disagree_with_eye_labels} patient(s) where it disagrees with the eyes"
            if truth.disagree_with_eye_labels is not None
            else ""
        )
        + ".</p>"
        if truth.source
        else ""
    )
    return table(pd.DataFrame(rows), f"data-{vdir.name}") + note + truth_note


def operating_point(metrics: RunMetrics) -> str:
    """The reported checkpoint and how its decisions were made, in words."""
    scores = metrics.final
    rule = scores.threshold_rule
    thresholds = scores.thresholds
    epoch = metrics.checkpoint_epoch
    when = f" (epoch {int(epoch)})" if _finite(epoch) else ""
    text = f"Reported checkpoint: {metrics.checkpoint}{when}. "
    if rule[:1].isdigit():
        text += f"Operating point: a fixed threshold of {rule}"
        if metrics.single_label:
            text += " on the disease's probability (two classes), else the most probable class"
    else:
        text += f"Operating point: chosen on the validation patients by {rule}"
    if thresholds:
        text += "; thresholds " + ", ".join(f"{k} {v:.3f}" for k, v in thresholds.items())
    temperature = scores.temperature
    if _finite(temperature):
        text += (
            f". Probabilities scaled by a temperature of {temperature:.3f} fitted on validation."
        )
    else:
        text += ". No temperature scaling."
    return text


def localisation_reading(row: dict[str, Any]) -> str:
    """One sentence: an explainer's localisation on a class against its random baseline."""
    name, label = row["explainer"], row["label"]
    images = int(row.get("images", 0))
    pointing, chance = row.get("pointing_game"), row.get("random_point")
    energy, uniform = row.get("energy_in_mask"), row.get("uniform_map")
    parts = []
    if _finite(pointing) and _finite(chance):
        ratio = (
            f", {pointing / chance:.1f} times chance" if chance > 0 and pointing > chance else ""
        )
        verdict = "" if pointing > chance else ": no better than chance"
        parts.append(
            f"its map's peak fell on a lesion in {pointing:.0%} of the images, against "
            f"{chance:.0%} for a random point of the field of view{ratio}{verdict}"
        )
    if _finite(energy) and _finite(uniform):
        ratio = f", {energy / uniform:.1f} times" if uniform > 0 and energy > uniform else ""
        verdict = "" if energy > uniform else ": no more than chance"
        parts.append(
            f"{energy:.1%} of its importance lay on the lesions, against {uniform:.1%} for a "
            f"flat map{ratio}{verdict}"
        )
    caution = " Few images: read with care." if images < 10 else ""
    unreliable = (
        " It failed a sanity check, so these scores say little."
        if row.get("reliable") is False
        else ""
    )
    return f"{name} on {label} ({images} images): {'; '.join(parts)}.{caution}{unreliable}"


def _columns_explained(columns: dict[str, str], present: Sequence[str]) -> str:
    items = "".join(
        f"<dt>{html.escape(c)}</dt><dd>{html.escape(columns[c])}</dd>"
        for c in present
        if c in columns
    )
    return (
        "<details><summary>What the columns mean</summary>"
        f'<dl class="columns">{items}</dl></details>'
    )
