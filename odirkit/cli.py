"""The ``odirkit`` command line.

One handler, on the command group (:class:`_Commands`), turns an
:class:`~odirkit.errors.OdirkitError` (a mistake in the input, not a bug) from
any command into one message on stderr and exit code 2, without a traceback;
anything else is a bug and keeps its traceback. Commands find the plugin
registry in ``ctx.obj`` (:class:`CliState`), set up by the group's callback.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.table import Table
from typer.core import TyperGroup

from odirkit import __version__
from odirkit.console import err, out, plain, say_once
from odirkit.errors import ConfigError, DataError, OdirkitError, RunError, closest
from odirkit.plugins import KINDS, Registry, get_registry


class _Commands(TyperGroup):
    """The command group: every command's user errors end here, as one line and exit 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except OdirkitError as exc:
            err.print(f"[bold red]error:[/bold red] {plain(exc)}", highlight=False)
            raise typer.Exit(exc.exit_code) from None


app = typer.Typer(
    name="odirkit",
    cls=_Commands,
    help="Plugin-based experiments for ocular disease recognition from fundus photographs.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@dataclass
class CliState:
    """What the group's options decide for every command (``ctx.obj``)."""

    strict: bool | None = None

    def registry(self) -> Registry:
        """The process's plugin registry; loading it imports every plugin (PyTorch among
        them), seconds on a small machine, so a terminal sees a spinner meanwhile."""
        from contextlib import nullcontext

        from odirkit.console import quiet

        waiting = err.status("loading plugins") if err.is_terminal and not quiet() else None
        with waiting or nullcontext():
            return get_registry(strict=self.strict)


def state(ctx: typer.Context) -> CliState:
    return ctx.obj if isinstance(ctx.obj, CliState) else CliState()


# -- choices and options shared by several commands ------------------------------------


class Checkpoint(StrEnum):
    best = "best"
    last = "last"


Kind = Enum("Kind", {kind: kind for kind in KINDS}, type=str)  # type: ignore[misc]
DescribeKind = Enum(  # type: ignore[misc]
    "DescribeKind", {**{kind: kind for kind in KINDS}, "experiment": "experiment"}, type=str
)

SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a key: --set train.epochs=2 (repeatable)."),
]
CheckpointOption = Annotated[
    Checkpoint | None,
    typer.Option(help="Which checkpoint (default: the one the run reports)."),
]
RunDirArgument = Annotated[
    Path,
    typer.Argument(
        help="A finished run: its variant folder, or the run folder (with --variant when it "
        "holds several)."
    ),
]
VariantOption = Annotated[
    str | None,
    typer.Option(
        "--variant", help="The variant of a run folder that holds several (e.g. default-seed0)."
    ),
]
RunDirsArgument = Annotated[list[Path], typer.Argument(help="Run folders or variant folders.")]


def _version(value: bool) -> None:
    if value:
        out.print(plain(f"odirkit {__version__}"))
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Fail when any installed plugin is broken (or set ODIRKIT_STRICT_PLUGINS=1).",
        ),
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """odirkit: experiments in TOML files, plugins for datasets, models, augmenters, explainers."""
    ctx.obj = CliState(strict=True if strict else None)
    ctx.with_resource(say_once())


# -- run ----------------------------------------------------------------------


class Launcher(StrEnum):
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
    from odirkit.config import load_experiment
    from odirkit.engine import distributed
    from odirkit.engine.rundir import refuse_run_folder
    from odirkit.engine.variant import preflight
    from odirkit.experiment import load_run, run_experiment, start_run
    from odirkit.launch import check_launcher

    if resume is None:
        refuse_run_folder(out_dir)
    distributed.setup()
    reg = state(ctx).registry()
    if resume is not None:
        if set_ or variant:
            raise ConfigError("--resume continues a run as it was: drop --set and --variant")
        started = load_run(resume, reg)
        if file is not None:
            _check_same_experiment(file, started, reg)
        experiments = started.experiments
    else:
        if file is None:
            raise ConfigError("give an experiment file (odirkit run FILE) or --resume RUN_DIR")
        experiments = load_experiment(file, reg, overrides=set_ or [], variants=variant)
        seen: set[str] = set()
        with distributed.rank_zero_first():  # one process writes a phantom, if any
            for exp in experiments:
                preflight(exp, data=True, seen=seen)
    chosen = experiments[0].config.launcher
    kind = launcher.value if launcher is not None else chosen.kind
    settings = chosen.model_copy(update={"jobs": jobs}) if jobs is not None else chosen
    check_launcher(kind, settings)
    if resume is None:
        assert file is not None
        source_text = file.read_text(encoding="utf-8-sig")
        started = start_run(experiments, out=out_dir, source_text=source_text, overrides=set_ or [])
    if kind == "local":
        result = run_experiment(started, registry=reg)
    else:
        result = _launch(started, kind, settings, wait)
        if result is None:
            return
    main = distributed.is_main()
    distributed.teardown()
    if not main:
        return
    _print_results(result)


def _launch(started: Any, kind: str, settings: Any, wait: bool | None) -> Any:
    """Run the variants of a started run as jobs (pool, slurm); the results once they end,
    or None when the jobs were left to run (slurm without --wait)."""
    from odirkit import launch
    from odirkit.engine import distributed
    from odirkit.engine.variant import finished_result
    from odirkit.report import read_comparison

    if distributed.world().distributed:
        raise ConfigError(
            f"--launcher {kind} starts its own processes: run it without torchrun "
            "([launcher] gpus_per_run makes each job a DDP job)"
        )
    run_dir = started.directory
    names = [e.variant for e in started.experiments]
    if kind == "pool":
        launch.run_pool(run_dir, names, settings)
    else:
        submitted = launch.submit_slurm(run_dir, names, settings, started.experiments[0].name)
        if not (wait if wait is not None else settings.cluster == "local"):
            out.print(
                plain(f"{len(submitted)} job(s) submitted; follow them: odirkit status {run_dir}")
            )
            return None
        launch.wait_slurm(run_dir, names, submitted)
    started.results = [finished_result(n, run_dir.variant(n)) for n in names]
    started.comparison = read_comparison(run_dir.path)
    return started


def _check_same_experiment(file: Path, previous: Any, reg: Registry) -> None:
    from odirkit.config import load_experiment

    current = {e.variant: e.fingerprint() for e in load_experiment(file, reg)}
    for exp in previous.experiments:
        if exp.variant in current and current[exp.variant] != exp.fingerprint():
            raise ConfigError(
                f"{file} no longer matches the run in {previous.directory} (variant "
                f"{exp.variant!r} changed); resume without the file, or start a new run"
            )


def _print_results(result: Any) -> None:
    """The end of a run: each run's test figures (for Normal vs Diabetes the paper's F1 and
    recall of D first), the answer in words, and where the report is."""
    from odirkit.comparison import metric_name, metric_value

    first = result.experiments[0].config
    level = round(first.eval.confidence * 100)
    single = all(r.final.get("task") == "single_label" for r in result.results)
    labels = list(result.results[0].final.get("labels", [])) if result.results else []
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
        final = r.final["final"]
        intervals = final.get("intervals", {})
        learned = (r.final.get("learning") or {}).get("learned")
        table.add_row(
            plain(r.variant),
            "" if learned is None else "yes" if learned else "no",
            *(_with_interval(metric_value(final, m), intervals.get(m)) for m in metrics),
        )
    out.print(table)
    if result.comparison is not None:
        for sentence in result.comparison.answer:
            out.print(plain(sentence), highlight=False)
    out.print(plain(f"report: {result.directory.path / 'report.html'}"), highlight=False)


def _with_interval(value: Any, interval: Any) -> str:
    text = _fmt(value)
    if interval and all(isinstance(v, float) and math.isfinite(v) for v in interval):
        text += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    return text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


# -- tune ---------------------------------------------------------------------


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
    from odirkit.engine.rundir import refuse_run_folder
    from odirkit.tune import Search

    refuse_run_folder(out_dir)
    search = Search(
        file,
        state(ctx).registry(),
        out=out_dir,
        overrides=set_ or [],
        variant=variant,
        storage=storage,
        study=study,
    )
    kind = launcher.value if launcher is not None else ("pool" if workers > 1 else "local")
    if kind == "local":
        if workers > 1:
            raise ConfigError("--launcher local runs one worker: use pool or slurm for several")
        outcome = search.run(trials, final=final)
    else:
        from odirkit.tune import run_workers

        found = run_workers(search, trials, workers=workers, launcher=kind, final=final, wait=wait)
        if found is None:
            out.print(plain(f"{workers} worker job(s) submitted; the study: {search.storage}"))
            return
        outcome = found
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


# -- validate -----------------------------------------------------------------


@app.command()
def validate(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Experiment TOML file.")],
    set_: SetOption = None,
) -> None:
    """Check an experiment file (every variant) without running it."""
    from odirkit.config import load_experiment
    from odirkit.engine.variant import preflight

    experiments = load_experiment(file, state(ctx).registry(), overrides=set_ or [])
    for exp in experiments:
        preflight(exp)
        root = Path(exp.config.data.root)
        if not exp.dataset.spec.meta.get("creates_root") and not root.exists():
            raise DataError(
                f"{file}: [data] root = {str(root)!r}: no such folder (dataset "
                f"{exp.dataset.name!r} reads its data from there)"
            )
    for exp in experiments:
        cfg = exp.config
        augment = ", ".join(a.name for a in exp.augmenters) or "none"
        explain = ", ".join(e.name for e in exp.explainers) or "none"
        out.print(
            f"[green]ok[/green] {exp.name}/{exp.variant}: dataset {exp.dataset.name!r} at "
            f"{cfg.data.root}, labels {''.join(cfg.data.labels)}, model {exp.model.name!r} at "
            f"{exp.image_size}px, {cfg.train.epochs} epochs, augment: {augment}, "
            f"explain: {explain}"
        )


# -- list-plugins and describe -------------------------------------------------


@app.command("list-plugins")
def list_plugins(
    ctx: typer.Context,
    kind: Annotated[Kind | None, typer.Option("--kind", help="Only this kind.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show why each broken plugin broke.")
    ] = False,
) -> None:
    """Installed plugins: kind, name, summary, providing distribution and version."""
    reg = state(ctx).registry()
    specs = reg.specs(kind.value if kind else None)
    if as_json:
        doc = {
            "plugins": [
                {
                    "kind": s.kind,
                    "name": s.name,
                    "summary": s.summary,
                    "distribution": s.source.distribution,
                    "version": s.source.version,
                    "entry_point": s.source.plugin,
                }
                for s in specs
            ],
            "broken": [
                {
                    "plugin": b.plugin,
                    "distribution": b.source.distribution,
                    "version": b.source.version,
                    "stage": b.stage,
                    "error": b.error,
                    "details": b.details,
                }
                for b in reg.broken
            ],
        }
        out.print_json(json.dumps(doc))
        return
    rows = [(s.kind, s.name, s.summary, str(s.source)) for s in specs]
    broken = [(b.plugin, str(b.source), b.stage, b.error) for b in reg.broken]
    if not out.is_terminal:  # piped: one tab-separated line per plugin, nothing cut
        for row in rows:
            typer.echo("\t".join(row))
        for plugin, source, stage, error in broken:
            typer.echo(f"broken\t{plugin}\t{source}\t{stage}: {error}")
    else:
        out.print(
            _table("odirkit plugins", ("kind", "name", "summary", "provided by"), rows, 2),
            crop=False,
        )
        if broken:
            columns = ("plugin", "provided by", "stage", "error")
            table = _table("broken plugins (skipped)", columns, broken, 3, style="bold red")
            out.print(table, crop=False)
    if verbose:
        for b in reg.broken:
            if b.details:
                err.print(f"\n{b.plugin} ({b.source}), {b.stage}:", markup=False)
                err.print(b.details.rstrip(), markup=False, highlight=False)
    elif reg.broken:
        err.print("(odirkit list-plugins --verbose shows why each broken plugin broke)")


def _table(
    title: str,
    columns: tuple[str, ...],
    rows: list[tuple[str, ...]],
    wrapped: int,
    style: str = "",
) -> Table:
    """A table whose cells are never cut: every column but ``wrapped`` keeps its full width."""
    table = Table(title=plain(title), title_style=style or None)
    for i, column in enumerate(columns):
        width = max([len(column), *(len(row[i]) for row in rows)])
        if i == wrapped:
            table.add_column(column, overflow="fold")
        else:
            table.add_column(column, no_wrap=True, min_width=width)
    for row in rows:
        table.add_row(*(plain(v) for v in row))
    return table


@app.command()
def describe(
    ctx: typer.Context,
    kind: Annotated[DescribeKind, typer.Argument(help="A plugin kind, or 'experiment'.")],
    name: Annotated[
        str | None,
        typer.Argument(help="The plugin's name; for 'experiment', one table (data, train, ...)."),
    ] = None,
) -> None:
    """A plugin's parameters (types, ranges, defaults), or the experiment file's core keys
    (every table, or the one named: odirkit describe experiment data)."""
    import inspect

    from odirkit.config import describe_tables
    from odirkit.params import type_name

    if kind.value == "experiment":
        tables = describe_tables()
        if name is not None:
            wanted = name.strip("[] ")
            if wanted not in tables:
                raise ConfigError(
                    f"describe experiment {name!r}: no such table{closest(wanted, tables)}; "
                    f"tables: {', '.join(t for t in tables if t != 'top level')}, or none for all"
                )
            tables = {wanted: tables[wanted]}
        for table_name, model in tables.items():
            title = f"[{table_name}]" if table_name != "top level" else "top level"
            table = Table(title=plain(title))
            for column in ("key", "type", "default", "meaning"):
                table.add_column(column)
            for key, info in model.model_fields.items():
                if isinstance(info.annotation, type) and hasattr(info.annotation, "model_fields"):
                    continue
                if (table_name, key) in FILLED_WHEN_READ:
                    default = FILLED_WHEN_READ[(table_name, key)]
                elif info.is_required():
                    default = "(required)"
                else:
                    default = _toml(info.get_default(call_default_factory=True))
                kind_name = type_name(info.annotation, info.metadata)
                table.add_row(*_cells(key, kind_name, default, info.description or ""))
            out.print(table)
        return
    if name is None:
        raise ConfigError(
            f"describe {kind.value}: give the plugin's name, e.g. odirkit describe model cnn"
        )
    spec = state(ctx).registry().get(kind.value, name)
    out.print(f"[bold]{plain(spec.kind)} {plain(spec.name)}[/bold]: {plain(spec.summary)}")
    out.print(plain(f"provided by {spec.source} (entry point {spec.source.plugin!r})"))
    doc = inspect.getdoc(spec.factory)
    if doc:
        out.print(doc, markup=False)
    table = Table(title="parameters")
    for column in ("key", "type", "default"):
        table.add_column(column)
    for p in spec.params:
        default = "(required)" if p.required else _toml(p.default)
        table.add_row(*_cells(p.name, p.type_name, default))
    out.print(table)
    meta = spec.declared_meta()
    if meta:
        out.print("meta: " + ", ".join(f"{k} = {_toml(v)}" for k, v in meta.items()), markup=False)


#: keys the experiment file may leave out although the schema requires them: the loader
#: fills them in (what ``describe experiment`` shows as their default)
FILLED_WHEN_READ = {("top level", "name"): "(the file's name)"}


def _cells(*values: Any) -> list[str]:
    """Table cells shown as written: square brackets are not rich markup here; a missing
    value is an empty cell, never "None"."""
    return [plain("" if v is None else v) for v in values]


def _toml(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value)


# -- phantom --------------------------------------------------------------------


@app.command()
def phantom(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Folder to write (new or empty).")],
    patients: Annotated[int, typer.Option(help="Number of patients (two eyes each).")] = 400,
    seed: Annotated[int, typer.Option(help="Generator seed: same seed, same bytes.")] = 0,
    size: Annotated[int, typer.Option(help="Image height in pixels.")] = 256,
) -> None:
    """Write a synthetic ODIR-5K-layout dataset with lesion masks."""
    from odirkit.labels import LABELS
    from odirkit.params import Where

    spec = state(ctx).registry().get("dataset", "phantom")
    params = spec.validate(
        {"patients": patients, "seed": seed, "size": size}, where=Where(None, "phantom")
    )
    table = spec.build(root=str(directory), **params)
    counts = ", ".join(f"{label} {int(table[label].sum())}" for label in LABELS)
    out.print(
        f"{directory}: {table['patient_id'].nunique()} patients, {len(table)} images "
        f"(per eye: {counts})"
    )


# -- compare --------------------------------------------------------------------


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
    from odirkit.engine.rundir import refuse_run_folder
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
    comparison = write_report(
        target,
        title="comparison",
        description="",
        runs=summaries,
        figures={},
        baseline=baseline,
        require_learning=require_learning,
    )
    table = comparison.table
    shown = [
        c
        for c in ("run", "checkpoint_epoch", "f1_micro", "f1_macro", "recall_macro", "auc_macro")
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
            cells.append(_with_interval(record.get(column), interval))
        rich_table.add_row(*_cells(*cells))
    out.print(rich_table)
    for line in comparison.verdicts:
        out.print(plain(f"  {line}"), highlight=False)
    out.print(plain(f"written to {target}"))


@app.command()
def runs(
    root: Annotated[
        Path, typer.Argument(help="The folder holding runs/<name>/<timestamp>.")
    ] = Path("runs"),
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """The runs under a folder: experiment, start, variants, status, best headline figure."""
    from odirkit.launch import list_runs

    found = list_runs(root)
    if as_json:
        out.print_json(json.dumps(found))
        return
    table = Table(title=plain(f"runs under {root}"))
    for column in ("experiment", "started", "variants", "status", "best"):
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
                f"{done}/{len(statuses)} finished" + (f" ({states})" if states else ""),
                run["status"],
                f"{best['variant']}: {best['metric']} {best['value']:.3f}" if best else "",
            )
        )
    out.print(table)
    for run in found:
        for variant, error in run["errors"].items():
            out.print(plain(f"{run['folder']}/{variant} failed: {error}"), highlight=False)
        if run["resume"]:
            out.print(plain(f"{run['status']}: {run['resume']}"), highlight=False)


@app.command()
def status(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<name>/<timestamp>).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Each job of a run: queued, running (epoch), finished or failed (with its log's last
    lines), and the command that retries the ones left."""
    from odirkit.launch import run_status

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
        if row["status"] != "failed":
            continue
        out.print(f"[bold]{plain(row['variant'])} failed:[/bold] {plain(row['error'])}")
        for line in row.get("log_tail", []):
            out.print(plain(f"  | {line}"), highlight=False)
        if row["log"]:
            out.print(plain(f"  log: {row['log']}"), highlight=False)
    if found["retry"]:
        out.print(plain(f"retry: {found['retry']}"), highlight=False)


@app.command("job", hidden=True)
def job(
    ctx: typer.Context,
    run_dir: Annotated[Path, typer.Argument(help="The run folder.")],
    variant: Annotated[str, typer.Argument(help="The variant this job runs.")],
) -> None:
    """One variant of a run folder, as a launcher's job (odirkit run --launcher pool)."""
    from odirkit.engine import distributed
    from odirkit.launch import run_job

    distributed.setup()
    status = run_job(run_dir, variant, state(ctx).registry())
    main = distributed.is_main()
    distributed.teardown()
    if main:
        out.print(plain(f"{variant}: {status}"))


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<name>/<timestamp>).")],
) -> None:
    """Rebuild report.md and report.html from a run folder's files (finished or not)."""
    from odirkit.experiment import rebuild_report

    run, comparison = rebuild_report(run_dir)
    for sentence in comparison.answer:
        out.print(plain(sentence), highlight=False)
    out.print(plain(f"report: {run.path / 'report.html'}"), highlight=False)


# -- predict and score ------------------------------------------------------------


@app.command()
def predict(
    ctx: typer.Context,
    run_dir: RunDirArgument,
    images: Annotated[
        Path, typer.Argument(help="A folder of <ID>_left/_right images, or a workbook or CSV.")
    ],
    out_file: Annotated[
        Path, typer.Option("--out", help="The CSV to write: ID and the run's labels.")
    ],
    variant: VariantOption = None,
    checkpoint: CheckpointOption = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Predict from photographs that fail the fundus check."),
    ] = False,
) -> None:
    """Per-patient probabilities in the ODIR-2019 submission format; every image checked
    first (written to <out>.images.csv)."""
    from odirkit.engine.rundir import find_variant, refuse_run_folder
    from odirkit.files import write_text
    from odirkit.labels import LABELS
    from odirkit.predict import predict as run_predict

    refuse_run_folder(out_file)
    result = run_predict(
        find_variant(run_dir, variant),
        images,
        state(ctx).registry(),
        checkpoint=checkpoint.value if checkpoint else None,
        force=force,
    )
    table = result.patients
    missing = [label for label in LABELS if label not in table.columns]
    if missing:
        err.print(
            plain(
                f"note: the run learned {', '.join(table.columns[1:])} only, so the file has "
                f"those columns; the challenge's others ({', '.join(missing)}) are left out "
                "(odirkit score scores the labels a file has)"
            ),
            highlight=False,
        )
    write_text(out_file, table.to_csv(index=False))
    report = out_file.with_name(f"{out_file.stem}.images.csv")
    write_text(report, result.images.to_csv(index=False))
    if result.left_out:
        shown = ", ".join(result.left_out[:10])
        more = f" and {len(result.left_out) - 10} more" if len(result.left_out) > 10 else ""
        err.print(
            f"[yellow]warning:[/yellow] {len(result.left_out)} patient(s) have no usable "
            f"photograph and are left out of the submission: {plain(shown)}{more} "
            f"(see {plain(str(report))}; --force predicts them anyway)",
            highlight=False,
        )
    unusable = int((~result.images["usable"]).sum())
    out.print(
        plain(
            f"{len(table)} patients -> {out_file}; {len(result.images)} images checked, "
            f"{unusable} unusable -> {report}"
        )
    )


@app.command()
def score(
    ground_truth: Annotated[Path, typer.Argument(help="Workbook or CSV: ID,N,...,O (0/1).")],
    predictions: Annotated[
        Path, typer.Argument(help="Submission CSV: ID,N,...,O, or ID and some labels.")
    ],
    sort: Annotated[
        bool, typer.Option("--sort", help="Match patients by ID instead of by row order.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score a submission as the ODIR-2019 challenge did: kappa, agreement F1 (the share of
    the flattened 0/1 answers that agree: not a disease's F1), AUC, final score; on the
    labels the submission has (ID,N,D from a two-label run: N and D)."""
    from odirkit.submission import score_files

    report = score_files(ground_truth, predictions, sort=sort)
    if report.missing:
        err.print(
            plain(
                f"note: {predictions} has labels {', '.join(report.labels)} only; scored on "
                f"those (the challenge scored all eight; missing: {', '.join(report.missing)})"
            ),
            highlight=False,
        )
    if as_json:
        out.print_json(json.dumps(report.to_dict(), default=float))
        return
    which = "" if not report.missing else f", labels {', '.join(report.labels)}"
    summary = Table(title=plain(f"ODIR-2019 score over {report.patients} patients{which}"))
    for column in ("kappa", "agreement F1 (challenge)", "AUC", "final score"):
        summary.add_column(column, justify="right")
    odir = report.odir
    summary.add_row(*(_fmt(odir[k]) for k in ("kappa", "f1", "auc", "final")))
    out.print(summary)
    out.print(
        "agreement F1: the share of the flattened 0/1 answers that agree (JSON: odir.f1); "
        f"not the micro F1 of the positive answers, {_fmt(report.metrics['f1_micro'])} "
        "(JSON: metrics.f1_micro)",
        highlight=False,
    )
    per_class = Table(title="per class (threshold 0.5)")
    for column in ("label", "AUC", "F1", "recall", "precision", "positives"):
        per_class.add_column(column, justify="right")
    for label, figures in report.metrics["per_class"].items():
        per_class.add_row(
            plain(label),
            _fmt(figures["auc"]),
            _fmt(figures["f1"]),
            _fmt(figures["recall"]),
            _fmt(figures["precision"]),
            str(figures["support"]),
        )
    out.print(per_class)


# -- external validation ----------------------------------------------------------------


@app.command()
def evaluate(
    ctx: typer.Context,
    run_dir: Annotated[
        Path,
        typer.Argument(help="A finished run: a variant folder, or a run folder (each variant)."),
    ],
    data: Annotated[
        Path | None,
        typer.Option(
            "--data",
            help=plain(
                "TOML file whose [data] table names the collection (an experiment file will "
                "do: its dataset, root and the plugin's keys are read)."
            ),
        ),
    ] = None,
    set_: SetOption = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The result's folder: <variant>/external/<name>."),
    ] = None,
) -> None:
    """External validation: score a finished run's reported checkpoint on another collection,
    with the run's preprocessing, fusion, temperature and operating points, and test the
    change from the internal test."""
    from odirkit.config import TRAINING_DATA_KEYS, apply_override, parse_override, read_toml
    from odirkit.config import resolve_external as resolve
    from odirkit.engine.rundir import RunDirectory, VariantDirectory
    from odirkit.experiment import rebuild_report
    from odirkit.external import evaluate_external, verdict

    doc = read_toml(data) if data is not None else {}
    if not isinstance(doc.get("data", {}), dict):
        raise ConfigError(f"{data}: [data] must be a table")
    document = {"data": dict(doc.get("data", {}))}
    for text in set_ or []:
        key, value = parse_override(text)
        if key[0] != "data":
            raise ConfigError(f"--set {text!r}: odirkit evaluate reads data.* keys only")
        apply_override(document, key, value, text)
    table = document["data"]
    if "dataset" not in table or "root" not in table:
        raise ConfigError(
            "name the collection: --data FILE.toml (its [data] table) or --set data.dataset=... "
            "--set data.root=... (and the dataset's own keys)"
        )
    if name is not None:
        table["name"] = name
    elif data is not None and "name" not in table:
        table["name"] = str(doc.get("name") or data.stem)
    ignored = sorted(k for k in table if k in TRAINING_DATA_KEYS)
    if ignored:
        err.print(
            plain(
                f"note: {', '.join(ignored)} of [data] concern training and are not read: the "
                "run's own preprocessing, labels and evaluation apply"
            ),
            highlight=False,
        )
    reg = state(ctx).registry()
    external = resolve(table, reg, source=str(data) if data else None, overrides=set_ or [])
    variant = VariantDirectory(run_dir)
    if variant.exists:
        targets = [variant]
    else:
        targets = RunDirectory(run_dir).finished_variants() if run_dir.is_dir() else []
        if not targets:
            raise RunError(f"{run_dir}: no finished run (a variant folder with metrics.json)")
    for vdir in targets:
        result = evaluate_external(vdir, external, reg)
        summary = result.summary
        level = round(summary["final"]["confidence"] * 100)
        shown = Table(
            title=plain(
                f"{vdir.name} on {summary['name']}: {summary['images']} images, labels "
                f"{', '.join(summary['labels_scored'])} ({level}% bootstrap intervals)"
            )
        )
        for column in ("metric", "internal test", "external", "external - internal"):
            shown.add_column(column, justify="right")
        for row in result.comparison.to_dict("records"):
            shown.add_row(
                plain(row["metric"]),
                _with_interval(row["internal"], [row["internal_low"], row["internal_high"]]),
                _with_interval(row["external"], [row["external_low"], row["external_high"]]),
                _with_interval(row["difference"], [row["difference_low"], row["difference_high"]])
                + (" *" if row["distinguishable"] else ""),
            )
        out.print(shown)
        for row in result.comparison.to_dict("records")[:5]:
            out.print(f"  {plain(verdict(row, summary['final']['confidence']))}", highlight=False)
        if summary["labels_not_scored"]:
            out.print(
                plain(
                    "not scored (the collection does not grade them): "
                    + ", ".join(summary["labels_not_scored"])
                )
            )
        out.print(plain(f"written to {result.directory.path}"))
    run = targets[0].run
    if run.run_file.exists():
        rebuild_report(run.path)
        out.print(plain(f"report: {run.path / 'report.html'}"))


# -- explain ------------------------------------------------------------------------------


@app.command("explain")
def explain_command(
    ctx: typer.Context,
    run_dir: RunDirArgument,
    explainer: Annotated[
        list[str] | None,
        typer.Option(
            "--explainer",
            help="Explainer plugin (repeatable); default: the run's, else every installed one.",
        ),
    ] = None,
    label: Annotated[
        list[str] | None,
        typer.Option("--label", help="Explain this class (repeatable); default: the predicted."),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            "--images",
            help="Explain these images (a file or folder) instead of the run's test ones.",
        ),
    ] = None,
    layer: Annotated[
        str | None, typer.Option("--layer", help="default, auto, or a dotted module name.")
    ] = None,
    max_images: Annotated[
        int, typer.Option("--max-images", min=1, help="Test images explained at most.")
    ] = 64,
    variant: VariantOption = None,
    checkpoint: CheckpointOption = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Where to write.")] = None,
) -> None:
    """Explain a finished run's decisions: maps, overlays, grid, localisation, sanity."""
    from odirkit.engine.rundir import find_variant
    from odirkit.explain import explain_run

    vdir = find_variant(run_dir, variant)
    target = out_dir or _fresh(vdir.explain_dir)
    result = explain_run(
        vdir,
        state(ctx).registry(),
        explainers=explainer,
        labels=label,
        images=images,
        layer=layer,
        max_images=max_images,
        checkpoint=checkpoint.value if checkpoint else None,
        out_dir=target,
    )
    _print_explanations(result)
    out.print(plain(f"written to {target}"))


def _fresh(path: Path) -> Path:
    """``path``, or a timestamped sibling when it exists: earlier results stay."""
    return (
        path if not path.exists() else path.with_name(f"{path.name}-{datetime.now():%Y%m%d-%H%M%S}")
    )


def _print_explanations(result: Any) -> None:
    if result.localisation is not None:
        table = Table(title="localisation against the lesion masks")
        columns = ("explainer", "label", "images", "pointing game", "random point")
        for column in (*columns, "energy in mask", "uniform map"):
            table.add_column(column, justify="right")
        for row in result.localisation.to_dict("records"):
            unreliable = not row.get("reliable", True)
            table.add_row(
                plain(row["explainer"] + (" (unreliable)" if unreliable else "")),
                plain(row["label"]),
                str(row["images"]),
                _fmt(row["pointing_game"]),
                _fmt(row["random_point"]),
                _fmt(row["energy_in_mask"]),
                _fmt(row["uniform_map"]),
            )
        out.print(table)
    if result.sanity is not None:
        table = Table(title="sanity: rank correlations inside the field of view (low is good)")
        for column in ("explainer", "with a re-initialised model", "across images", "verdict"):
            table.add_column(column, justify="right")
        for row in result.sanity.itertuples(index=False):
            table.add_row(
                plain(row.explainer),
                _fmt(row.rank_correlation_with_random_model),
                _fmt(row.input_dependence),
                "ok" if row.reliable else "[bold red]unreliable[/bold red]",
            )
        out.print(table)
    for line in result.flagged():
        err.print(f"[yellow]warning:[/yellow] {plain(line)}", highlight=False)


# -- baseline and ensemble -------------------------------------------------------------

baseline_app = typer.Typer(
    cls=_Commands, help="Baselines that need no images.", no_args_is_help=True
)
app.add_typer(baseline_app, name="baseline")


@baseline_app.command("metadata")
def baseline_metadata(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Experiment TOML file (its data and split).")],
    set_: SetOption = None,
    variant: Annotated[
        str | None, typer.Option("--variant", help="Take data and split from this variant.")
    ] = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for the run.")] = Path("runs"),
) -> None:
    """Logistic regression on age and sex alone, on the experiment's split and metrics."""
    from odirkit.baseline import fit_metadata_baseline
    from odirkit.config import load_experiment
    from odirkit.engine.rundir import RunDirectory, refuse_run_folder

    experiments = load_experiment(
        file, state(ctx).registry(), overrides=set_ or [], variants=[variant] if variant else None
    )
    exp = experiments[0]
    refuse_run_folder(out_dir)
    vdir = RunDirectory.create(out_dir, exp.name).variant("baseline-metadata")
    result = fit_metadata_baseline(exp, vdir)
    final = result["final"]
    table = Table(
        title=plain(f"{exp.name}: logistic regression on age and sex ({result['level']} level)")
    )
    for column in ("micro F1", "macro F1", "macro recall", "macro AUC"):
        table.add_column(column, justify="right")
    intervals = final.get("intervals", {})
    table.add_row(
        *(
            _with_interval(final[m], intervals.get(m))
            for m in ("f1_micro", "f1_macro", "recall_macro", "auc_macro")
        )
    )
    out.print(table)
    out.print(plain(f"written to {vdir}"))


@app.command()
def ensemble(
    run_dirs: RunDirsArgument,
    out_dir: Annotated[
        Path | None, typer.Option("--out", help="Where to write the ensemble.")
    ] = None,
) -> None:
    """Average finished runs' probabilities on their shared test images, and score them."""
    from odirkit.engine.rundir import finished_variants, refuse_run_folder
    from odirkit.ensemble import ensemble as run_ensemble

    members = [vdir for vdir, _ in finished_variants(list(run_dirs))]
    target = out_dir or Path("runs") / f"ensemble-{datetime.now():%Y%m%d-%H%M%S}"
    refuse_run_folder(target)
    result = run_ensemble(members, target)
    table = Table(
        title=plain(
            f"ensemble of {len(members)} runs on {result['shared_test_samples']} "
            "shared test samples"
        )
    )
    table.add_column("run")
    table.add_column("micro F1", justify="right")
    for member, f1 in result["members_f1_micro"].items():
        table.add_row(plain(member), _fmt(f1))
    intervals = result["final"].get("intervals", {})
    table.add_row(
        "[bold]ensemble[/bold]",
        _with_interval(result["final"]["f1_micro"], intervals.get("f1_micro")),
    )
    out.print(table)
    out.print(plain(f"written to {target}"))


def main() -> None:
    """Entry point of the ``odirkit`` console script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
