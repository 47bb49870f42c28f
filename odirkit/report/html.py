"""report.html: the whole comparison in one self-contained page, then a section per variant."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from odirkit.errors import RunError
from odirkit.explain import read_flags
from odirkit.external_report import html_section
from odirkit.files import write_text
from odirkit.report.answer import (
    Answer,
)
from odirkit.report.html_parts import (
    LOCALISATION_COLUMNS,
    RUN_FIGURES,
    SANITY_COLUMNS,
    SCRIPT,
    STYLE,
    TAB10,
    _columns_explained,
    _data_summary,
    _image,
    _mean_rows,
    _per_class,
    _results,
    _variant_of,
    localisation_reading,
    operating_point,
    table,
)
from odirkit.report.lines import (
    tta_line,
)
from odirkit.report.summary import (
    variants_of,
)
from odirkit.runs import VariantDirectory
from odirkit.runs.names import (
    AUGMENT_FOLDER,
    AUGMENTER_REPORT,
    ExplainFiles,
    FigureFiles,
    ReportFiles,
)


def _explanations(vdir: VariantDirectory) -> str:
    folder = vdir.explain_dir
    if not folder.exists():
        return "<p>(no explanations)</p>"
    parts = []
    grid = folder / ExplainFiles.GRID
    if grid.exists():
        parts.append(
            '<div class="figures wide">'
            + _image(
                grid,
                "An example test image per class (left, with the model's prediction and its "
                "probability) and each explainer's map for that class over it, green (low) "
                "to red (high importance, the colour bar); lesion outlines in cyan",
            )
            + "</div>"
        )
    for line in read_flags(folder):
        parts.append(f'<p class="flag">{html.escape(line)}</p>')
    path = folder / ExplainFiles.LOCALISATION
    if path.exists():
        frame = pd.read_csv(path)
        readings = "".join(
            f"<li>{html.escape(localisation_reading(row))}</li>" for row in frame.to_dict("records")
        )
        if {"pointing_game", "random_point"} <= set(frame.columns):
            frame["better_than_chance"] = frame["pointing_game"] > frame["random_point"]
            frame["better_than_chance__shown"] = [
                "yes" if p > c else '<span class="unreliable">no: at or below chance</span>'
                for p, c in zip(frame["pointing_game"], frame["random_point"], strict=True)
            ]
        if "reliable" in frame.columns:
            frame["reliable__shown"] = [
                "yes" if v else '<span class="unreliable">unreliable</span>'
                for v in frame["reliable"]
            ]
        parts.append(
            "<h4>Localisation: do the maps point at the lesions?</h4>"
            "<p>Each score beside what a map that knows nothing would score; above it, the "
            "model's evidence lies on the lesions more than chance allows.</p>"
            f"<ul>{readings}</ul>"
            + table(frame, f"localisation-{vdir.name}")
            + _columns_explained(LOCALISATION_COLUMNS, list(frame.columns))
        )
    path = folder / ExplainFiles.SANITY
    if path.exists():
        frame = pd.read_csv(path)
        if "reliable" in frame.columns:
            frame["reliable__shown"] = [
                "yes" if v else '<span class="unreliable">unreliable</span>'
                for v in frame["reliable"]
            ]
        parts.append(
            "<h4>Sanity checks: do the maps depend on the model and on the image?</h4>"
            + table(frame, f"sanity-{vdir.name}")
            + _columns_explained(SANITY_COLUMNS, list(frame.columns))
        )
    return "".join(parts)


def _augmenters(vdir: VariantDirectory) -> str:
    """What each offline augmenter reports: its figures with their captions, in the order it
    gives (``report.json``: ``figures`` as ``{"file", "caption"}``, ``notes`` as sentences);
    without one, its PNG files, named by their paths."""
    root = vdir.path / AUGMENT_FOLDER
    folders = sorted(p for p in root.iterdir() if p.is_dir()) if root.exists() else []
    parts = []
    for folder in folders:
        name = folder.name.split("-", 1)[-1]
        notes: list[str] = []
        figures: list[tuple[Path, str]] = []
        report = folder / AUGMENTER_REPORT
        if report.exists():
            try:
                found = json.loads(report.read_text())
            except ValueError:
                found = {}
            notes = [str(n) for n in found.get("notes", [])]
            for item in found.get("figures", []):
                path = folder / str(item.get("file", ""))
                if path.is_file() and path.suffix == ".png":
                    figures.append((path, str(item.get("caption") or path.stem)))
        else:
            for path in sorted(folder.rglob("*.png")):
                figures.append((path, f"{name}: {path.relative_to(folder).with_suffix('')}"))
        if not figures and not notes:
            continue
        parts.append(f"<h3>Augmenter {html.escape(name)}</h3>")
        parts += [f'<p class="flag">{html.escape(n)}</p>' for n in notes]
        images = "".join(_image(path, caption) for path, caption in figures[:24])
        parts.append(f'<div class="figures small">{images}</div>')
    return "".join(parts)


def _skipped(vdir: VariantDirectory) -> str:
    if not vdir.skipped_file.exists():
        return ""
    return "<h3>Skipped images</h3>" + table(pd.read_csv(vdir.skipped_file), f"skipped-{vdir.name}")


def _variant(run: Any, colour: str) -> str:
    vdir = VariantDirectory(run.directory)
    metrics = run.metrics
    name = html.escape(run.label)
    head = (
        f'<h2 id="variant-{name}"><span class="swatch" style="background:{colour}"></span>'
        f"{name}</h2>"
    )
    checkpoint = f"<p>{html.escape(operating_point(metrics))}</p>"
    tta = tta_line(run.label, metrics)
    if tta:
        checkpoint += f'<p class="tta">Test-time augmentation: {html.escape(tta)}.</p>'
    figures = "".join(
        _image(vdir.figures / name_, caption)
        for name_, caption in RUN_FIGURES
        if (vdir.figures / name_).exists()
    )
    examples = vdir.figures / FigureFiles.TRAINING_IMAGES
    training = (
        '<h3>Training images</h3><div class="figures wide">'
        + _image(
            examples,
            "Training photographs as stored (first row), after the online augmenters (one "
            "draw of their randomness), and images the offline augmenters added",
        )
        + "</div>"
        if examples.exists()
        else ""
    )
    config = html.escape(json.dumps(vdir.config().to_json(), indent=2)) if vdir.exists else ""
    try:
        environment = html.escape(json.dumps(vdir.environment().to_json(), indent=2))
    except RunError as exc:  # missing or damaged: say which, and how
        environment = html.escape(f"({exc})")
    return (
        head
        + "<h3>Data</h3>"
        + _data_summary(vdir)
        + '<h3 id="operating-points-'
        + name
        + '">Operating points and per-class metrics (test)</h3>'
        + checkpoint
        + table(_per_class(metrics), f"per-class-{name}")
        + f'<h3>Figures</h3><div class="figures">{figures}</div>'
        + training
        + f'<h3 id="explanations-{name}">Explanations</h3>'
        + _explanations(vdir)
        + _augmenters(vdir)
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
    answer: Answer | None = None,
) -> Path:
    """Write ``report.html`` into ``out_dir`` (beside comparison.png and its kin)."""
    out_dir = Path(out_dir)
    variants = variants_of(runs)
    colours = {variant: TAB10[i % 10] for i, variant in enumerate(variants)}
    verdict_html = "".join(f'<p class="verdict">{html.escape(v)}</p>' for v in verdicts) or (
        "<p>One variant: nothing to compare.</p>"
    )
    answer_html = ""
    if answer is not None and runs:
        answer_html = (
            '<section class="answer" id="answer"><h2>The answer</h2>'
            + "".join(f"<p>{html.escape(s)}</p>" for s in answer.sentences)
            + table(_results(answer.table, colours, first="variant"), "answer-table")
            + "<p>Brackets: 95% intervals (over test patients for one run; over the runs and "
            "their test patients for a mean). Details below.</p></section>"
        )
    curves = "".join(
        _image(out_dir / name, caption)
        for name, caption in (
            (
                ReportFiles.CURVES,
                "Per epoch on the validation patients: each variant's mean over its runs "
                "(line) and the range from its lowest to its highest run (band)",
            ),
            (
                ReportFiles.TEST_CURVES,
                "Per epoch on the test patients (asked for by train.test_every_epoch; not "
                "used for any choice)",
            ),
        )
        if (out_dir / name).exists()
    )
    recall = (
        _image(
            out_dir / ReportFiles.RECALL,
            "Test recall per class: per variant the mean over its runs (each run a dot) with "
            "the interval of the mean, or a single run with its bootstrap interval",
        )
        if (out_dir / ReportFiles.RECALL).exists()
        else ""
    )
    pending = (
        "<h2>Not finished</h2><ul>"
        + "".join(f"<li>{html.escape(u)}</li>" for u in unfinished)
        + "</ul>"
        if unfinished
        else ""
    )
    body = (
        f"<h1>{html.escape(title)}</h1>"
        + (f'<p class="description">{html.escape(description)}</p>' if description else "")
        + answer_html
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
        "(tinted in the variant's colour) give the mean over seeds or folds, with an interval "
        "from resampling the runs and their test patients. Click a header to sort.</p>"
        + table(_results(results, colours), "results-table", _mean_rows(results, colours))
        + html_section(runs, table)
        + '<h2 id="curves">Curves and recall per class</h2>'
        + f'<div class="figures wide">{curves}</div>'
        + f'<div class="figures wide">{recall}</div>'
        + pending
        + '<div id="variants">'
        + "".join(
            _variant(run, colours[_variant_of(run.label)])
            for run in runs
            if run.directory is not None
        )
        + "</div>"
    )
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}: odirkit report</title><style>{STYLE}</style></head>"
        f"<body>{body}<script>{SCRIPT}</script></body></html>"
    )
    path = out_dir / ReportFiles.HTML
    write_text(path, page)
    return path
