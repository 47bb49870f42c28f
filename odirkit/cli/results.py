"""``compare``, ``runs``, ``status``, ``report`` and ``ensemble``: reading finished runs."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from odirkit.cli.common import (
    RunDirsArgument,
    _cells,
    _fmt,
    _with_interval,
    app,
)
from odirkit.console import out, plain
from odirkit.errors import ConfigError, closest
from odirkit.runs import (
    VariantDirectory,
    finished_variants,
    list_runs,
    refuse_run_folder,
    run_status,
)
from odirkit.runs.names import ReportFiles


@app.command()
def compare(
    run_dirs: RunDirsArgument,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write the comparison.")
    ] = None,
    baseline: Annotated[
        str | None,
        typer.Option("--baseline", help="The run the others are tested against (default: first)."),
    ] = None,
    require_learning: Annotated[
        bool,
        typer.Option(
            "--require-learning/--verdicts-anyway",
            help="No verdict where a run did not learn (default), or test the difference "
            "anyway, saying which runs did not learn.",
        ),
    ] = True,
) -> None:
    """Compare finished runs: test results with intervals, paired tests, curves side by side."""
    from odirkit.comparison import parse_run_name
    from odirkit.experiment import summaries_from_dirs
    from odirkit.report import write_report

    summaries = summaries_from_dirs(run_dirs)
    names = [s.label for s in summaries]
    if baseline is not None:
        bases = list(dict.fromkeys(parse_run_name(n)[0] for n in names))
        # a variant may be named as in its experiment file ("default"), without the
        # experiment's name the runs carry ("quickstart/default")
        short = [b for b in bases if b.rsplit("/", 1)[-1] == baseline]
        if baseline not in {*names, *bases} and len(short) == 1:
            baseline = short[0]
        elif baseline not in {*names, *bases}:
            raise ConfigError(
                f"--baseline {baseline!r}: not one of the runs{closest(baseline, names)}; "
                f"runs: {', '.join(names)}"
            )
    target = out_dir or Path("runs") / f"compare-{datetime.now():%Y%m%d-%H%M%S}"
    refuse_run_folder(target)
    metrics = _tested_metrics(summaries)
    comparison = write_report(
        target,
        title="comparison",
        description="",
        runs=summaries,
        figures={},
        baseline=baseline,
        metrics=metrics,
        require_learning=require_learning,
    )
    table = comparison.table
    shown = [
        c
        for c in dict.fromkeys(("run", "learned", *metrics, "f1_micro", "auc_macro"))
        if c in table.columns
    ]
    rich_table = Table(title="comparison (test patients; every column in comparison.csv)")
    for column in shown:
        if column == "run":  # names are never cut
            width = max([3, *(len(str(v)) for v in table["run"])])
            rich_table.add_column(column, no_wrap=True, min_width=width)
        else:
            rich_table.add_column(column, justify="right")
    for record in table.to_dict("records"):
        cells = []
        for column in shown:
            low, high = record.get(f"{column}_low"), record.get(f"{column}_high")
            interval = [low, high] if low is not None and high is not None else None
            value = record.get(column)
            if column == "learned":  # yes / no, blank for a mean or a run made before
                value = {True: "yes", False: "no"}.get(value, "")
            cells.append(_with_interval(value, interval))
        rich_table.add_row(*_cells(*cells))
    out.print(rich_table)
    for line in comparison.verdicts:
        out.print(plain(f"  {line}"), highlight=False)
    for sentence in comparison.answer:
        out.print(plain(sentence), highlight=False)
    out.print(plain(f"written to {target}"))


def _tested_metrics(summaries) -> list[str]:
    """The metrics the runs' own experiments test (their ``[compare] metrics``: the
    quickstart's F1 and recall of D), when every run names the same; else the defaults."""
    named = set()
    for summary in summaries:
        found = VariantDirectory(summary.directory).settings() if summary.directory else None
        named.add(tuple(found.compare.metrics) if found and found.compare.metrics else None)
    if len(named) == 1 and None not in named:
        return list(next(iter(named)))
    return ["f1_micro", "auc_macro"]


@app.command()
def runs(
    root: Annotated[
        Path, typer.Argument(help="The folder holding runs/<name>/<timestamp>.")
    ] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The runs under a folder: experiment, start, variants, status, and the best single
    run's headline figure among those that learned (the answer is in each report)."""

    found = list_runs(root)
    if as_json:
        out.print_json(json.dumps(found))
        return
    table = Table(title=plain(f"runs under {root}"))
    for column in ("experiment", "started", "variants", "status", "best run that learned"):
        table.add_column(column, no_wrap=column in ("experiment", "started"))
    for run in found:
        statuses = run["variants"]
        done = sum(s == "finished" for s in statuses.values())
        busy = {s: sum(v == s for v in statuses.values()) for s in ("running", "queued")}
        states = ", ".join(f"{n} {s}" for s, n in busy.items() if n)
        best = run["best"]
        table.add_row(
            *_cells(
                run["experiment"],
                run["started"],
                "-"
                if run["damage"]
                else f"{done}/{len(statuses)} finished" + (f" ({states})" if states else ""),
                run["status"],
                (f"{best['variant']}: {best['metric']} {best['value']:.3f}" if best else "")
                + (f" ({run['not_learned']} did not learn)" if run.get("not_learned") else ""),
            )
        )
    out.print(table)
    for run in found:
        if run["damage"]:
            out.print(plain(f"damaged: {run['damage']}"), highlight=False)
        for variant, error in run["errors"].items():
            out.print(plain(f"{run['folder']}/{variant} failed: {error}"), highlight=False)
        if run["resume"]:
            out.print(plain(f"{run['status']}: {run['resume']}"), highlight=False)


@app.command()
def status(
    run_dir: Annotated[
        Path, typer.Argument(help="A run folder (runs/<name>/<timestamp>) or one of its variants.")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each job of a run: queued, running (epoch), finished or failed (with its log's last
    lines), and the command that retries the ones left."""

    found = run_status(run_dir)
    if as_json:
        out.print_json(json.dumps(found))
        return
    table = Table(title=plain(f"{found['folder']} ({found['launcher']} launcher)"))
    for column in ("variant", "status", "epoch", "job", "log"):
        table.add_column(column, overflow="fold")
    for row in found["variants"]:
        table.add_row(
            *_cells(row["variant"], row["status"], row["epoch"], row["job"] or "", row["log"])
        )
    out.print(table)
    for row in found["variants"]:
        if row["status"] not in ("failed", "damaged"):
            continue
        out.print(f"[bold]{plain(row['variant'])} {row['status']}:[/bold] {plain(row['error'])}")
        if row["status"] == "damaged":  # its checkpoints score it again
            out.print("  delete that file, then resume (below): the test is scored again")
        for line in row.get("log_tail", []):
            out.print(plain(f"  | {line}"), highlight=False)
        if row["log"]:
            out.print(plain(f"  log: {row['log']}"), highlight=False)
    if found["retry"]:
        out.print(plain(f"retry: {found['retry']}"), highlight=False)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<name>/<timestamp>).")],
) -> None:
    """Rebuild report.md and report.html from a run folder's files (finished or not)."""
    from odirkit.experiment import rebuild_report

    run, comparison = rebuild_report(run_dir)
    for sentence in comparison.answer:
        out.print(plain(sentence), highlight=False)
    out.print(plain(f"report: {run.path / ReportFiles.HTML}"), highlight=False)


@app.command()
def ensemble(
    run_dirs: RunDirsArgument,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write the ensemble.")
    ] = None,
) -> None:
    """Average finished runs' probabilities on their shared test images, and score them."""
    from odirkit.ensemble import ensemble as run_ensemble

    members = [vdir for vdir, _ in finished_variants(list(run_dirs))]
    target = out_dir or Path("runs") / f"ensemble-{datetime.now():%Y%m%d-%H%M%S}"
    refuse_run_folder(target)
    result = run_ensemble(members, target)
    table = Table(
        title=plain(
            f"ensemble of {len(members)} runs on {result.shared_test_samples} shared test samples"
        )
    )
    table.add_column("run")
    table.add_column("micro F1", justify="right")
    for member, f1 in result.members_f1_micro.items():
        table.add_row(plain(member), _fmt(f1))
    table.add_row(
        "[bold]ensemble[/bold]",
        _with_interval(result.final.f1_micro, result.final.interval("f1_micro")),
    )
    out.print(table)
    out.print(plain(f"written to {target}"))
