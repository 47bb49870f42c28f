"""Comparison reports: variants (or finished runs) side by side, tested against a baseline.

``report.md`` opens with the verdicts (is each difference real?), then the
test results with their intervals, the external validations (internal against
external per metric: :mod:`odirkit.external_report`), the validation curves
per epoch (and the test curves where a run asked for them), and each run's
own figures (:mod:`odirkit.figures`). ``comparison.csv`` and ``comparison.json`` hold the
numbers.

The report's page, ``report.html``: the whole comparison in one self-contained page.

It opens from disk with no network: every figure is inlined as a PNG data URI,
the few lines of script (sorting a table by a click on its header) and the
styles are in the page. Order: the answer (in the study's terms: per variant the
disease's F1 and recall with intervals, whether its runs learned, the verdict in
words), whether each run learned, the verdicts, the test results with intervals,
the curves per epoch, test recall per class; then, per variant, its data,
operating points and per-class figures, calibration, confusion, ROC and
precision-recall, the training images its augmenters produced, explanations
(gallery with lesion outlines and a colour bar, localisation read against its
random baseline, sanity checks with their columns explained), what the
augmenters report (GAN samples by class and epoch, in order, and whether the GAN
converged), skipped images, the resolved configuration and the environment.

One colour per variant, the same as in the figures; every figure has a caption;
every table scrolls inside its own box, so the page never scrolls sideways.
"""

from __future__ import annotations

from odirkit.report.answer import (
    Answer,
    Comparison,
    answer_of,
    read_comparison,
)
from odirkit.report.html import (
    write_html,
)
from odirkit.report.html_parts import (
    COUNTS,
    LOCALISATION_COLUMNS,
    RUN_FIGURES,
    SANITY_COLUMNS,
    SCRIPT,
    STYLE,
    TAB10,
    localisation_reading,
    operating_point,
    table,
)
from odirkit.report.lines import (
    learning_lines,
    shown_table,
    tta_line,
)
from odirkit.report.plots import (
    plot_comparison,
    plot_recall_per_class,
)
from odirkit.report.summary import (
    WITH_INTERVALS,
    RunSummary,
    comparison_table,
    disease_metrics,
    variants_of,
)
from odirkit.report.writing import (
    write_report,
)

__all__ = [
    "COUNTS",
    "LOCALISATION_COLUMNS",
    "RUN_FIGURES",
    "SANITY_COLUMNS",
    "SCRIPT",
    "STYLE",
    "TAB10",
    "WITH_INTERVALS",
    "Answer",
    "Comparison",
    "RunSummary",
    "answer_of",
    "comparison_table",
    "disease_metrics",
    "learning_lines",
    "localisation_reading",
    "operating_point",
    "plot_comparison",
    "plot_recall_per_class",
    "read_comparison",
    "shown_table",
    "table",
    "tta_line",
    "variants_of",
    "write_html",
    "write_report",
]
