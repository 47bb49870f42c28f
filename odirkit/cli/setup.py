"""``validate``, ``list-plugins``, ``describe`` and ``phantom``: what to run, before running it."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from odirkit.cli.common import (
    DescribeKind,
    Kind,
    SetOption,
    _cells,
    _toml,
    app,
    state,
)
from odirkit.console import err, out, plain
from odirkit.errors import ConfigError, DataError, closest
from odirkit.labels import LABELS
from odirkit.params import Where, type_name


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
        if not exp.dataset.spec.meta.get("creates_root") and not root.is_dir():
            what = "a file, not a folder" if root.exists() else "no such folder"
            raise DataError(
                f"{file}: [data] root = {str(root)!r}: {what} (dataset "
                f"{exp.dataset.name!r} reads its data from there)"
            )
    for exp in experiments:
        cfg = exp.config
        augment = ", ".join(a.name for a in exp.augmenters) or "none"
        explain = ", ".join(e.name for e in exp.explainers) or "none"
        epochs = f"{cfg.train.epochs} epoch{'s' if cfg.train.epochs != 1 else ''}"
        out.print(
            "[green]ok[/green] "
            + plain(
                f"{exp.name}/{exp.variant}: dataset {exp.dataset.name!r} at "
                f"{cfg.data.root}, labels {''.join(cfg.data.labels)}, model "
                f"{exp.model.name!r} at {exp.image_size}px, {epochs}, augment: {augment}, "
                f"explain: {explain}"
            )
        )


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

    from odirkit.config import describe_tables

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


@app.command()
def phantom(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Argument(help="Folder to write (new or empty).")],
    patients: Annotated[int, typer.Option(help="Number of patients (two eyes each).")] = 400,
    seed: Annotated[int, typer.Option(help="Generator seed: same seed, same bytes.")] = 0,
    size: Annotated[int, typer.Option(help="Image height in pixels.")] = 256,
) -> None:
    """Write a synthetic ODIR-5K-layout dataset with lesion masks."""

    spec = state(ctx).registry().get("dataset", "phantom")
    params = spec.validate(
        {"patients": patients, "seed": seed, "size": size}, where=Where(None, "phantom")
    )
    table = spec.build(root=str(directory), **params)
    counts = ", ".join(f"{label} {int(table[label].sum())}" for label in LABELS)
    out.print(
        plain(
            f"{directory}: {table['patient_id'].nunique()} patients, {len(table)} images "
            f"(per eye: {counts})"
        )
    )
