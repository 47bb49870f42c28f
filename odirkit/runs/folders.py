"""Finding a variant from a path, finished variants, and the folders no command may write into."""

from __future__ import annotations

from pathlib import Path

from odirkit.errors import ConfigError, RunError, closest
from odirkit.runs.layout import (
    RunDirectory,
    VariantDirectory,
)


def run_folder_around(path: str | Path) -> Path | None:
    """The odirkit run folder ``path`` lies in (or is), if any: the nearest folder at or
    above it that holds a ``run.json`` or a variant's ``config.json``."""
    here = Path(path).resolve()
    for folder in (here, *here.parents):
        if (folder / RunDirectory.RUN).is_file():
            return folder
        if (folder / VariantDirectory.CONFIG).is_file() and (
            folder / VariantDirectory.ENVIRONMENT
        ).is_file():
            return folder
    return None


def refuse_run_folder(target: str | Path, option: str = "--out") -> None:
    """Refuse to write ``target`` inside a run folder: no command writes into a run
    folder it did not create. Raises :class:`odirkit.errors.ConfigError` naming both."""

    found = run_folder_around(target)
    if found is not None:
        raise ConfigError(
            f"{option} {target}: inside the run folder {found}, which this command did not "
            "create; odirkit never writes over a run's files. Choose a path outside it"
        )


def find_variant(path: str | Path, variant: str | None = None) -> VariantDirectory:
    """The variant folder a command works on: ``path`` itself when it is one; else, in the
    run folder ``path``, the variant named ``variant`` (``--variant``), or its only one.

    Raises :class:`RunError` naming the variants there when ``path`` holds several and
    none is named, when ``variant`` is not among them, or when ``path`` is no run folder.
    """
    path = Path(path)
    if VariantDirectory(path).exists:
        if variant is not None and variant != path.name:
            raise RunError(
                f"{path} is the folder of variant {path.name!r}, not {variant!r}: pass its run "
                f"folder {path.parent} with --variant {variant}, or drop --variant"
            )
        return VariantDirectory(path)
    variants = sorted(p for p in path.glob("*") if VariantDirectory(p).exists)
    if not variants:
        raise RunError(f"{path}: not an odirkit run folder (no {VariantDirectory.CONFIG})")
    names = [p.name for p in variants]
    if variant is not None:
        if variant in names:
            return VariantDirectory(path / variant)
        # the experiment file's variant name, as odirkit run --variant takes it
        seeds = [
            n for n in names if n.startswith(f"{variant}-seed") or n.startswith(f"{variant}-fold")
        ]
        if len(seeds) == 1:
            return VariantDirectory(path / seeds[0])
        if seeds:
            raise RunError(
                f"{path}: variant {variant!r} ran {len(seeds)} times ({', '.join(seeds)}); "
                f"name one with --variant (e.g. --variant {seeds[0]})"
            )
        raise RunError(
            f"{path}: no variant {variant!r}{closest(variant, names)}; its variants: "
            f"{', '.join(names)}"
        )
    if len(variants) == 1:
        return VariantDirectory(variants[0])
    raise RunError(
        f"{path}: holds {len(names)} variants ({', '.join(names)}); name one with --variant "
        f"NAME (e.g. --variant {names[0]}), or pass its folder"
    )


def finished_variants(paths: list[Path]) -> list[tuple[VariantDirectory, str]]:
    """The finished variant folders given, or found inside the given run folders, each with
    a label ``<timestamp>/<variant>``.

    Raises :class:`RunError` for a path that does not exist, or when none is finished."""
    found: list[tuple[VariantDirectory, str]] = []
    for path in map(Path, paths):
        if not path.exists():
            raise RunError(f"{path}: no such run folder")
        variant = VariantDirectory(path)
        if variant.finished:
            found.append((variant, f"{path.parent.parent.name}/{path.name}"))
        elif path.is_dir():
            for child in RunDirectory(path).finished_variants():
                found.append((child, f"{path.parent.name}/{child.name}"))
    if not found:
        raise RunError(
            "no finished run in "
            + ", ".join(str(p) for p in paths)
            + f" (a finished variant folder holds {VariantDirectory.METRICS})"
        )
    return found
