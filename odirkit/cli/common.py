"""The command group, its shared state and options, and the formatting every command uses."""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from enum import Enum, StrEnum
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup

from odirkit import __version__
from odirkit.console import err, out, plain, quiet, say_once
from odirkit.errors import OdirkitError
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

        waiting = err.status("loading plugins") if err.is_terminal and not quiet() else None
        with waiting or nullcontext():
            return get_registry(strict=self.strict)


def state(ctx: typer.Context) -> CliState:
    """The group's :class:`CliState` (a default one when a command runs alone)."""
    return ctx.obj if isinstance(ctx.obj, CliState) else CliState()


class Checkpoint(StrEnum):
    """Which checkpoint a command reads: the best on validation or the last."""

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
        "--variant",
        help="The variant of a run folder that holds several (e.g. default-seed0, or default "
        "when it ran once).",
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


def _with_interval(value: Any, interval: Any) -> str:
    text = _fmt(value)
    if interval and all(isinstance(v, float) and math.isfinite(v) for v in interval):
        text += f" [{interval[0]:.3f}, {interval[1]:.3f}]"
    return text


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if math.isnan(value) else f"{value:.3f}"
    return "" if value is None else str(value)


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


def _fresh(path: Path) -> Path:
    """``path``, or a timestamped sibling when it exists: earlier results stay."""
    return (
        path if not path.exists() else path.with_name(f"{path.name}-{datetime.now():%Y%m%d-%H%M%S}")
    )
