"""``run``, ``tune`` and the hidden ``job``: their options, a call to
:mod:`odirkit.orchestration` (which starts, resumes and launches experiments) and the
tables of what came back."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from odirkit import orchestration
from odirkit.cli.common import (
    SetOption,
    _cells,
    _fmt,
    _with_interval,
    app,
    state,
)
from odirkit.console import out, plain
from odirkit.orchestration import Submitted
from odirkit.runs.names import ReportFiles


class Launcher(StrEnum):
    """Where a run's variants run: here one after another, a pool of processes, or SLURM."""

    local = "local"
    pool = "pool"
    slurm = "slurm"


@app.command()
def run(
    ctx: typer.Context,
    file: Annotated[Path | None, typer.Argument(help="Experiment TOML file.")] = None,
    set_: SetOption = None,
    variant: Annotated[
        list[str] | None, typer.Option("--variant", help="Run only this variant (repeatable).")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder that receives runs/<name>/<timestamp>.")
    ] = Path("runs"),
    resume: Annotated[
        Path | None,
        typer.Option(
            "--resume", help="Continue an interrupted run folder from its last checkpoint."
        ),
    ] = None,
    launcher: Annotated[
        Launcher | None,
        typer.Option(
            "--launcher",
            help=plain(
                "Where the variants run: local (one after another), pool (--jobs processes "
                "here), slurm (submitit). Default: [launcher] kind."
            ),
        ),
    ] = None,
    jobs: Annotated[
        int | None,
        typer.Option("--jobs", min=1, help=plain("pool: runs at once ([launcher] jobs).")),
    ] = None,
    wait: Annotated[
        bool | None,
        typer.Option(
            "--wait/--no-wait",
            help=plain(
                "slurm: wait for the jobs and print the results (default: only with "
                '[launcher] cluster = "local").'
            ),
        ),
    ] = None,
) -> None:
    """Run an experiment: every variant, then a comparison of them."""
    outcome = orchestration.run(
        file,
        state(ctx).registry,
        overrides=set_ or [],
        variants=variant,
        out=out_dir,
        resume=resume,
        launcher=launcher.value if launcher is not None else None,
        jobs=jobs,
        wait=wait,
    )
    if isinstance(outcome, Submitted):
        out.print(
            plain(f"{outcome.count} job(s) submitted; follow them: odirkit status {outcome.where}")
        )
    elif outcome is not None:
        _print_results(outcome)


def _print_results(result: Any) -> None:
    """The end of a run: each run's test figures (for Normal vs Diabetes the paper's F1 and
    recall of D first), the answer in words, and where the report is."""
    from odirkit.comparison import metric_name, metric_value

    first = result.variants[0].config
    level = round(first.eval.confidence * 100)
    scored = [r.metrics for r in result.results if r.metrics is not None]
    single = all(m.single_label for m in scored)
    labels = list(scored[0].labels) if scored else []
    metrics = ["f1_micro", "f1_macro", "recall_macro", "auc_macro"]
    if single and len(labels) == 2:  # the paper's figures first
        metrics = [f"f1_{labels[1]}", f"recall_{labels[1]}", "f1_micro", "auc_macro"]
    names = [r.variant for r in result.results]
    table = Table(
        title=plain(f"{first.name}: test patients, scored once ({level}% bootstrap intervals)")
    )
    table.add_column("run", no_wrap=True, min_width=max(map(len, names), default=3))
    table.add_column("learned", no_wrap=True)
    for metric in metrics:
        table.add_column(metric_name(metric, single_label=single), justify="right")
    for r in result.results:
        if r.metrics is None:
            continue
        scores, learned = r.metrics.final, r.metrics.learned
        table.add_row(
            plain(r.variant),
            "" if learned is None else "yes" if learned else "no",
            *(_with_interval(metric_value(scores, m), scores.interval(m)) for m in metrics),
        )
    out.print(table)
    if result.comparison is not None:
        for sentence in result.comparison.answer:
            out.print(plain(sentence), highlight=False)
    out.print(plain(f"report: {result.directory.path / ReportFiles.HTML}"), highlight=False)


@app.command()
def tune(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help=plain("Experiment TOML file with a [tune] table."))],
    trials: Annotated[
        int, typer.Option("--trials", min=1, help="Trials in the study, all workers together.")
    ] = 20,
    storage: Annotated[
        str | None,
        typer.Option(
            "--storage", help="Optuna storage URL shared by the workers (default: SQLite file)."
        ),
    ] = None,
    study: Annotated[
        str | None, typer.Option("--study", help="Study name (default: the experiment's).")
    ] = None,
    set_: SetOption = None,
    variant: Annotated[
        str | None, typer.Option("--variant", help="The variant to search (one).")
    ] = None,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder that receives <name>/tune/<study>.")
    ] = Path("runs"),
    final: Annotated[
        bool,
        typer.Option(
            "--final/--no-final",
            help="Train the best trial's experiment once more and score its test patients.",
        ),
    ] = True,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="Workers sharing the study.")
    ] = 1,
    launcher: Annotated[
        Launcher | None,
        typer.Option(
            "--launcher",
            help=plain(
                "Where the workers run: local (this process; one worker), pool (processes "
                "here), slurm (submitit jobs, [launcher] settings). Default: pool for "
                "--workers > 1."
            ),
        ),
    ] = None,
    wait: Annotated[
        bool | None,
        typer.Option("--wait/--no-wait", help="slurm: wait for the workers."),
    ] = None,
) -> None:
    """Search hyperparameters on the validation patients (Optuna); the best trial becomes
    an experiment file, scored on the test patients once, at the end."""
    outcome = orchestration.tune(
        file,
        state(ctx).registry,
        trials=trials,
        out=out_dir,
        overrides=set_ or [],
        variant=variant,
        storage=storage,
        study=study,
        final=final,
        workers=workers,
        launcher=launcher.value if launcher is not None else None,
        wait=wait,
    )
    if isinstance(outcome, Submitted):
        out.print(plain(f"{outcome.count} worker job(s) submitted; the study: {outcome.where}"))
        return
    table = Table(
        title=plain(f"study {outcome.study}: validation {outcome.metric} ({outcome.direction})")
    )
    for column in ("trial", "state", "value", "epochs", "parameters"):
        table.add_column(column, justify="right" if column in ("trial", "value") else "left")
    for row in outcome.trials:
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in row["params"].items()
        )
        table.add_row(
            *_cells(row["number"], row["state"], _fmt(row["value"]), row["epochs"], params)
        )
    out.print(table)
    out.print(plain(f"storage: {outcome.storage}"), highlight=False)
    if outcome.waiting:
        out.print("other workers are still running trials; the last to end writes best.toml")
        return
    best = outcome.best or {}
    out.print(
        plain(f"best: trial {best.get('number')} ({outcome.metric} {_fmt(best.get('value'))})")
    )
    out.print(plain(f"best experiment: {outcome.best_file}  (odirkit run {outcome.best_file})"))
    if hasattr(outcome.final, "results"):
        _print_results(outcome.final)
    elif outcome.final:
        out.print(plain(f"scored on the test patients in: {outcome.final}"))


@app.command("job", hidden=True)
def job(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(help="The run folder.")],
    variant: Annotated[str, typer.Argument(help="The variant this job runs.")],
) -> None:
    """One variant of a run folder, as a launcher's job (odirkit run --launcher pool)."""
    status = orchestration.job(run_dir, variant, state(ctx).registry)
    if status is not None:
        out.print(plain(f"{variant}: {status}"))
