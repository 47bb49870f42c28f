"""``report.html``: the whole comparison in one self-contained page.

It opens from disk with no network: every figure is inlined as a PNG data URI,
the few lines of script (sorting a table by a click on its header) and the
styles are in the page. Order: the question and its answer (the verdicts), the
test results with intervals, the curves per epoch, test recall per class; then,
per variant, its data, operating points and per-class figures, calibration,
confusion, ROC and precision-recall, explanations (gallery with lesion
outlines, localisation, sanity flags), GAN samples, skipped images, the
resolved configuration and the environment. One colour per variant, the same
as in the figures.
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from odirkit.engine.rundir import VariantDirectory
from odirkit.explain import read_flags
from odirkit.external_report import html_section
from odirkit.files import write_text
from odirkit.report import tta_line

#: the per-run figures shown, in order, with their captions
RUN_FIGURES = (
    ("f1_per_epoch.png", "F1 and recall per epoch"),
    ("recall_per_epoch.png", "recall per class per epoch"),
    ("loss_per_epoch.png", "loss per epoch"),
    ("recall_per_class.png", "test recall per class, with intervals"),
    ("reliability.png", "reliability diagram (test)"),
    ("confusion.png", "confusion at the operating point (test)"),
    ("roc.png", "ROC curves (test)"),
    ("pr.png", "precision-recall curves (test)"),
)
#: matplotlib's tab10, the colours of the comparison figures, in run order
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

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; padding-top: 0.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.85em; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; }
th { background: #f3f3f3; cursor: pointer; user-select: none; }
th[data-order="asc"]::after { content: " \\25B2"; }
th[data-order="desc"]::after { content: " \\25BC"; }
td:first-child, th:first-child { text-align: left; }
.swatch { display: inline-block; width: 0.8em; height: 0.8em; margin-right: 0.4em; }
.figures img { max-width: 48%; margin: 0.3em; border: 1px solid #eee; }
.wide img { max-width: 98%; }
.verdict { margin: 0.3em 0; } .flag { color: #b00020; font-weight: bold; }
.unreliable { color: #b00020; } pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; }
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
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    alt = html.escape(caption)
    return f'<img src="data:image/png;base64,{data}" alt="{alt}" title="{alt}">'


def _number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.3f}"
    return html.escape(str(value))


def table(frame: pd.DataFrame, table_id: str) -> str:
    """A sortable table: every cell keeps its raw value in ``data-value``; a column
    ``<name>__shown`` gives the HTML shown for ``<name>`` where it is set."""
    if frame.empty:
        return "<p>(nothing to show)</p>"
    columns = [c for c in frame.columns if not str(c).endswith("__shown")]
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    rows = []
    for record in frame.to_dict("records"):
        cells = []
        for column in columns:
            value = record[column]
            missing = value is None or (isinstance(value, float) and math.isnan(value))
            shown = record.get(f"{column}__shown")
            text = shown if isinstance(shown, str) else _number(value)
            raw = "" if missing else html.escape(str(value))
            cells.append(f'<td data-value="{raw}">{text}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="sortable" id="{table_id}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _results(frame: pd.DataFrame, colours: dict[str, str]) -> pd.DataFrame:
    """The comparison table as shown: intervals beside their values, the variant's colour."""
    shown = frame[[c for c in frame.columns if not c.endswith(("_low", "_high", "_std"))]].copy()
    out = pd.DataFrame(index=shown.index)
    for column in shown.columns:
        out[column] = shown[column]
        texts = []
        for i, value in shown[column].items():
            text = _number(value) if column != "run" else html.escape(str(value))
            low, high = frame.get(f"{column}_low"), frame.get(f"{column}_high")
            if low is not None and high is not None and _finite(low[i]) and _finite(high[i]):
                text += f" [{low[i]:.3f}, {high[i]:.3f}]"
            if column == "run":
                base = str(value).split(" (mean")[0]
                swatch = colours.get(str(value)) or colours.get(base.rsplit("-seed", 1)[0])
                if swatch:
                    text = f'<span class="swatch" style="background:{swatch}"></span>{text}'
            texts.append(text)
        out = out.copy()
        out[f"{column}__shown"] = texts
    return out


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def _per_class(final: dict[str, Any]) -> pd.DataFrame:
    per_class = (final.get("final") or {}).get("per_class") or {}
    intervals = (final.get("final") or {}).get("intervals") or {}
    rows = []
    for label, figures in per_class.items():
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
            low_high = intervals.get(f"{key}_{label}")
            value = figures.get(key)
            if low_high and _finite(value) and all(_finite(v) for v in low_high):
                row[f"{key}__shown"] = f"{value:.3f} [{low_high[0]:.3f}, {low_high[1]:.3f}]"
        rows.append(row)
    return pd.DataFrame(rows)


def _data_summary(vdir: VariantDirectory) -> str:
    try:
        data = vdir.data_report()
    except Exception:
        return "<p>(no data.json)</p>"
    rows = []
    for side in ("train", "val", "test"):
        counts = data.get(f"{side}_counts") or {}
        rows.append(
            {
                "split": side,
                "images": data.get(f"{side}_images"),
                "patients": data.get(f"{side}_patients"),
                **{label: n for label, n in counts.items()},
            }
        )
    extra = data.get("extra_train_images")
    note = f"<p>Added to training: {html.escape(json.dumps(extra))}</p>" if extra else ""
    truth = data.get("patient_truth") or {}
    truth_note = (
        f"<p>Patient truth: {html.escape(str(truth.get('source', '')))}"
        + (
            f"; {truth['disagree_with_eye_labels']} patient(s) where it disagrees with the eyes"
            if "disagree_with_eye_labels" in truth
            else ""
        )
        + "</p>"
    )
    return table(pd.DataFrame(rows), f"data-{vdir.name}") + note + truth_note


def _explanations(vdir: VariantDirectory) -> str:
    folder = vdir.explain_dir
    if not folder.exists():
        return "<p>(no explanations)</p>"
    parts = []
    grid = folder / "grid.png"
    if grid.exists():
        parts.append(
            '<div class="figures wide">'
            + _image(grid, "an example per class; lesion outlines in cyan")
            + "</div>"
        )
    for line in read_flags(folder):
        parts.append(f'<p class="flag">{html.escape(line)}</p>')
    for name, title in (("localisation.csv", "localisation"), ("sanity.csv", "sanity checks")):
        path = folder / name
        if path.exists():
            frame = pd.read_csv(path)
            if "reliable" in frame.columns:
                frame["reliable__shown"] = [
                    "yes" if v else '<span class="unreliable">unreliable</span>'
                    for v in frame["reliable"]
                ]
            if {"pointing_game", "random_point"} <= set(frame.columns):
                frame["better_than_chance"] = frame["pointing_game"] > frame["random_point"]
                frame["better_than_chance__shown"] = [
                    "yes" if p > c else '<span class="unreliable">no: at or below chance</span>'
                    for p, c in zip(frame["pointing_game"], frame["random_point"], strict=True)
                ]
            parts.append(f"<h4>{title}</h4>" + table(frame, f"{name[:-4]}-{vdir.name}"))
    return "".join(parts)


def _gan_samples(vdir: VariantDirectory) -> str:
    folder = vdir.path / "augment"
    grids = sorted(folder.rglob("*.png")) if folder.exists() else []
    if not grids:
        return ""
    images = "".join(_image(p, f"{p.parent.name}/{p.stem}") for p in grids[:24])
    return f'<h3>Augmenters (GAN samples by epoch, losses)</h3><div class="figures">{images}</div>'


def _skipped(vdir: VariantDirectory) -> str:
    if not vdir.skipped_file.exists():
        return ""
    return "<h3>Skipped images</h3>" + table(pd.read_csv(vdir.skipped_file), f"skipped-{vdir.name}")


def _variant(run: Any, colour: str) -> str:
    vdir = VariantDirectory(run.directory)
    final = run.final
    name = html.escape(run.label)
    scores = final.get("final") or {}
    head = (
        f'<h2 id="variant-{name}"><span class="swatch" style="background:{colour}"></span>'
        f"{name}</h2>"
    )
    checkpoint = (
        f"<p>Reported checkpoint: {html.escape(str(final.get('checkpoint')))} "
        f"(epoch {final.get('checkpoint_epoch')}); operating point "
        f"{html.escape(str(scores.get('threshold_rule', '0.5')))}; "
        f"thresholds {html.escape(json.dumps(scores.get('thresholds') or {}))}; "
        f"temperature {scores.get('temperature')}.</p>"
    )
    tta = tta_line(run.label, final)
    if tta:
        checkpoint += f'<p class="tta">Test-time augmentation: {html.escape(tta)}.</p>'
    figures = "".join(
        _image(vdir.figures / name_, caption)
        for name_, caption in RUN_FIGURES
        if (vdir.figures / name_).exists()
    )
    config = html.escape(json.dumps(vdir.config(), indent=2)) if vdir.exists else ""
    try:
        environment = html.escape(json.dumps(vdir.environment(), indent=2))
    except Exception:
        environment = "(no environment.json)"
    return (
        head
        + "<h3>Data</h3>"
        + _data_summary(vdir)
        + '<h3 id="operating-points-'
        + name
        + '">Operating points and per-class metrics (test)</h3>'
        + checkpoint
        + table(_per_class(final), f"per-class-{name}")
        + f'<h3>Figures</h3><div class="figures">{figures}</div>'
        + f'<h3 id="explanations-{name}">Explanations</h3>'
        + _explanations(vdir)
        + _gan_samples(vdir)
        + _skipped(vdir)
        + f"<details><summary>Resolved configuration</summary><pre>{config}</pre></details>"
        + f"<details><summary>Environment</summary><pre>{environment}</pre></details>"
    )


def write_html(
    out_dir: Path,
    *,
    title: str,
    description: str,
    runs: Sequence[Any],
    results: pd.DataFrame,
    verdicts: Sequence[str],
    unfinished: Sequence[str] = (),
    learning: Sequence[str] = (),
) -> Path:
    """Write ``report.html`` into ``out_dir`` (beside comparison.png and its kin)."""
    out_dir = Path(out_dir)
    bases: list[str] = []
    for run in runs:
        base = run.label.rsplit("-seed", 1)[0].rsplit("-fold", 1)[0]
        if base not in bases:
            bases.append(base)
    colours = {run.label: TAB10[i % 10] for i, run in enumerate(runs)}
    colours.update({base: TAB10[bases.index(base) % 10] for base in bases if base not in colours})
    verdict_html = "".join(f'<p class="verdict">{html.escape(v)}</p>' for v in verdicts) or (
        "<p>One variant: nothing to compare.</p>"
    )
    curves = "".join(
        _image(out_dir / name, caption)
        for name, caption in (
            ("comparison.png", "F1 and recall per epoch, validation patients"),
            ("comparison_test.png", "per epoch on the test patients (not used for selection)"),
            ("recall_per_class.png", "test recall per class"),
        )
        if (out_dir / name).exists()
    )
    pending = (
        "<h2>Not finished</h2><ul>"
        + "".join(f"<li>{html.escape(u)}</li>" for u in unfinished)
        + "</ul>"
        if unfinished
        else ""
    )
    body = (
        f"<h1>{html.escape(title)}</h1><p>{html.escape(description)}</p>"
        + (
            '<h2 id="learning">Did each run learn?</h2><ul>'
            + "".join(f"<li>{html.escape(line)}</li>" for line in learning)
            + "</ul>"
            if learning
            else ""
        )
        + f'<h2 id="verdicts">Is the difference real?</h2>{verdict_html}'
        '<h2 id="results">Test results</h2>'
        "<p>Each run's test patients, scored once, for the checkpoint chosen on the validation "
        "patients; brackets are 95% bootstrap intervals over test patients; rows 'mean of N' "
        "give the mean over seeds or folds, with an interval from resampling the runs and "
        "their test patients. Click a header to sort.</p>"
        + table(_results(results, colours), "results-table")
        + html_section(runs, table)
        + f'<h2 id="curves">Curves and recall per class</h2><div class="figures">{curves}</div>'
        + pending
        + '<div id="variants">'
        + "".join(_variant(run, colours[run.label]) for run in runs if run.directory is not None)
        + "</div>"
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}: odirkit report</title><style>{STYLE}</style></head>"
        f"<body>{body}<script>{SCRIPT}</script></body></html>"
    )
    path = out_dir / "report.html"
    write_text(path, page)
    return path
