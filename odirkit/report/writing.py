"""Writing a run's report: comparison.json, report.md, the figures and report.html."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from odirkit.comparison import FinishedRun, compare_variants
from odirkit.external_report import markdown_section
from odirkit.files import write_json, write_text
from odirkit.learning import LOSS_MARGIN
from odirkit.report.answer import (
    Comparison,
    answer_of,
)
from odirkit.report.html import (
    write_html,
)
from odirkit.report.lines import (
    _explanation_flags,
    _left_out,
    _markdown,
    _screening,
    learning_lines,
    shown_table,
    tta_line,
)
from odirkit.report.plots import (
    plot_comparison,
    plot_recall_per_class,
)
from odirkit.report.summary import (
    RunSummary,
    comparison_table,
)
from odirkit.runs.names import ReportFiles


def write_report(
    out_dir: Path,
    *,
    title: str,
    description: str,
    runs: Sequence[RunSummary],
    figures: dict[str, str],
    baseline: str | None = None,
    metrics: Sequence[str] = ("f1_micro", "auc_macro"),
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    unfinished: Sequence[str] = (),
    require_learning: bool = True,
) -> Comparison:
    """comparison.csv, comparison.json, the figures, report.md and report.html in
    ``out_dir``."""

    table = comparison_table(
        runs, resamples=resamples, confidence=confidence, seed=seed, metrics=metrics
    )
    tests = compare_variants(
        [FinishedRun(r.label, r.metrics, r.directory) for r in runs],
        baseline=baseline,
        metrics=metrics,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
        require_learning=require_learning,
    )
    verdicts = [line for test in tests for line in test.verdicts(confidence)]
    answer = answer_of(runs, table, tests, metrics=metrics, confidence=confidence)
    if unfinished and runs:  # said before the verdicts, not only at the end of the page
        names = ", ".join(u.split(":")[0] for u in unfinished)
        answer.sentences.insert(
            0, f"Not every run finished ({names}): this answer covers the finished runs only."
        )
    write_text(out_dir / ReportFiles.TABLE, table.to_csv(index=False))
    write_json(
        out_dir / ReportFiles.ANSWER,
        {
            "answer": answer.sentences,
            "tests": [t.to_dict() for t in tests],
            "verdicts": verdicts,
            "confidence": confidence,
        },
    )
    drawn_val = drawn_test = False
    if runs:
        drawn_val = plot_comparison(runs, out_dir / ReportFiles.CURVES, title, "val")
        drawn_test = plot_comparison(runs, out_dir / ReportFiles.TEST_CURVES, title, "test")
        plot_recall_per_class(runs, out_dir / ReportFiles.RECALL, title, table)
    level = round(confidence * 100)
    shown = shown_table(table, runs)
    lines = [f"# {title}", ""]
    if description:
        lines += [description, ""]
    if runs:
        lines += ["## The answer", ""]
        lines += [line for sentence in answer.sentences for line in (sentence, "")]
        lines += [_markdown(answer.table), ""]
        lines += [
            f"Brackets: {level}% intervals (over test patients for one run; over the runs "
            "and their test patients for a mean).",
            "",
        ]
    learning = learning_lines(runs)
    if learning:
        lines += ["## Did each run learn?", "", *[f"- {line}" for line in learning], ""]
        lines += [
            "A run learned when its training loss ended at least "
            f"{LOSS_MARGIN:.0%} below chance (the loss of the best constant answer), the "
            "interval of its validation AUC lies above 0.5, and it does not give every "
            "test patient the same answer; no verdict is drawn from a run that did not.",
            "",
        ]
    lines += ["## Is the difference real?", ""]
    lines += [f"- {v}" for v in verdicts] or ["(one variant: nothing to compare)"]
    lines += [
        "",
        "## Test results",
        "",
        "Each run's test patients, scored once, for the checkpoint chosen on the validation "
        f"patients; [low, high] is the {level}% bootstrap interval over test patients. Rows "
        "'mean of N runs' give the mean over seeds or folds, with an interval from resampling "
        "the runs and their test patients (it stays within the measure's range).",
        "",
        _markdown(shown),
        "",
    ]
    lines += markdown_section(out_dir, runs)
    with_tta = [line for run in runs if (line := tta_line(run.label, run.metrics))]
    if with_tta:
        lines += ["## With and without test-time augmentation", ""]
        lines += [f"- {line}" for line in with_tta] + [""]
    if drawn_val:
        lines += [
            "## F1 and recall per epoch (validation)",
            "",
            "![comparison](comparison.png)",
            "",
        ]
    if drawn_test:
        lines += [
            "## F1 and recall per epoch on the test patients",
            "",
            "Drawn because the experiment asked for them (`train.test_every_epoch`); no "
            "choice was made on them.",
            "",
            "![test per epoch](comparison_test.png)",
            "",
        ]
    if runs:
        lines += ["## Recall per class (test)", "", "![recall per class](recall_per_class.png)", ""]
    for run in runs:
        link = figures.get(run.label)
        if link:
            lines += [
                f"## {run.label}",
                "",
                f"![F1 per epoch]({link}/f1_per_epoch.png) "
                f"![recall per class]({link}/recall_per_class.png) "
                f"![reliability]({link}/reliability.png)",
                "",
                _screening(run),
                "",
                *_left_out(run),
                *_explanation_flags(run),
            ]
    if unfinished:
        lines += ["## Not finished", "", *[f"- {u}" for u in unfinished], ""]
    write_text(out_dir / ReportFiles.MARKDOWN, "\n".join(lines))

    write_html(
        out_dir,
        title=title,
        description=description,
        runs=runs,
        results=shown,
        verdicts=verdicts,
        answer=answer,
        unfinished=unfinished,
        learning=learning,
    )
    return Comparison(table, tests, verdicts, answer.sentences)
