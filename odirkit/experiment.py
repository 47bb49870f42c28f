"""An experiment's run: every variant trained (engine), explained, then compared.

The run folder is created (or re-opened with ``--resume``) and described by
:class:`~odirkit.runs.RunDirectory`; each variant is trained by
:func:`odirkit.engine.variant.run_variant`; the ``[[explain]]`` explainers run
on each trained model (:mod:`odirkit.explain`), and the ``[[evaluate]]``
collections score it (:mod:`odirkit.external`); and the variants are compared
and tested against the baseline (:mod:`odirkit.report`).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from odirkit.config import ResolvedVariant, resolve_document
from odirkit.console import info, warn
from odirkit.engine import distributed
from odirkit.engine.interrupt import RunInterrupted
from odirkit.engine.models import build_reinitialised
from odirkit.engine.variant import VariantResult, run_variant
from odirkit.errors import OdirkitError, RunError
from odirkit.explain import explain, explain_run, inputs_from_data
from odirkit.external import evaluate_external
from odirkit.files import remove_stale_temporaries, write_text
from odirkit.plugins import Registry
from odirkit.report import Comparison, RunSummary, write_report
from odirkit.runs import RunDirectory, VariantDirectory, finished_variants
from odirkit.runs.names import ExplainFiles, ReportFiles
from odirkit.runs.records import Failure, RunDescription, RunningMarker, VariantConfig
from odirkit.seeding import Stream, derive_seed


@dataclass
class ExperimentRun:
    """A run of every variant of one experiment, in one timestamped folder."""

    directory: RunDirectory
    variants: list[ResolvedVariant]
    results: list[VariantResult] = field(default_factory=list)
    comparison: Comparison | None = None


def start_run(
    variants: Sequence[ResolvedVariant],
    *,
    out: Path,
    source_text: str | None,
    overrides: Sequence[str],
    label: str | None = None,
) -> ExperimentRun:
    """Create the run folder ``out/<label, or the experiment's name>/<timestamp>`` and write
    what defines it, before any training.

    Under ``torchrun`` rank 0 creates it and tells the others where it is.
    """
    first = variants[0]

    def fill(run: RunDirectory) -> None:  # in a staging folder: the run appears whole
        if source_text is not None:
            write_text(run.experiment_file, source_text)
        RunDescription(
            name=first.name,
            source=first.source,
            overrides=list(overrides),
            variants=[e.variant for e in variants],
            started=datetime.now().isoformat(timespec="seconds"),
        ).write(run.run_file)
        for exp in variants:
            VariantConfig(**exp.to_dict()).write(run.variant(exp.variant).config_file)

    created = None
    if distributed.is_main():
        created = RunDirectory.create(out, label or first.name, fill).path
    run = RunDirectory(distributed.broadcast(str(created) if created else None))
    return ExperimentRun(run, list(variants))


def load_run(path: Path, registry: Registry) -> ExperimentRun:
    """Re-open a run folder (the whole experiment, or one variant) to resume it.

    Raises :class:`RunError` when ``path`` does not exist (or is no run folder)."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such run folder")
    variant = VariantDirectory(path)
    if variant.exists:  # one variant
        clear_stale_temporaries([variant])
        return ExperimentRun(variant.run, [load_variant(variant, registry)])
    run = RunDirectory(path)
    variants = run.variants()
    for stale in sorted(run.path.glob(".*.tmp")):  # the run's own files: report, comparison
        stale.unlink(missing_ok=True)
    clear_stale_temporaries(variants)
    return ExperimentRun(run, [load_variant(v, registry) for v in variants])


def clear_stale_temporaries(variants: Sequence[VariantDirectory]) -> None:
    """Delete what killed writers left in the variants no live process runs (their
    explanations and figures too, not only the checkpoints a resumed training clears)."""
    for vdir in variants:
        if vdir.running() is None:
            remove_stale_temporaries(vdir.path)


def load_variant(vdir: VariantDirectory, registry: Registry) -> ResolvedVariant:
    """A variant's experiment from its ``config.json``."""
    (exp,) = resolve_document(vdir.config().to_json(), registry, source=str(vdir.config_file))
    exp.variant = vdir.name
    return exp


def run_experiment(
    run: ExperimentRun, *, registry: Registry, compare: bool = True
) -> ExperimentRun:
    """Run every variant (and explain it), then compare them in the run folder (a launcher's
    job runs one variant and leaves the comparison to :mod:`odirkit.launch`)."""
    for exp in run.variants:
        vdir = run.directory.variant(exp.variant)
        info(f"variant {exp.variant!r} -> {vdir}")
        if distributed.is_main() and not vdir.finished:
            running_marker().write(vdir.running_file)
        try:
            result = run_variant(exp, vdir, registry=registry)
        except RunInterrupted:
            raise
        except BaseException as exc:
            # Ctrl-C aborts and SystemExit is a job being requeued (submitit): neither failed
            if distributed.is_main() and not isinstance(exc, KeyboardInterrupt | SystemExit):
                Failure(
                    error=f"{type(exc).__name__}: {exc}",
                    time=datetime.now().isoformat(timespec="seconds"),
                    log=os.environ.get("ODIRKIT_JOB_LOG", ""),
                    resume=f"odirkit run --resume {run.directory}",
                ).write(vdir.failed_file)
            raise
        finally:
            if distributed.is_main():
                vdir.running_file.unlink(missing_ok=True)
        vdir.failed_file.unlink(missing_ok=True)
        if exp.explainers and distributed.is_main():
            if result.model is not None:
                explain_result(exp, result)
            elif not (vdir.explain_dir / ExplainFiles.SUMMARY).exists():
                explain_again(exp, vdir, registry)
        if exp.external and distributed.is_main():  # [[evaluate]]: external validation
            validate_externally(exp, vdir, registry, result)
        distributed.barrier()
        run.results.append(result)
    if distributed.is_main():
        if compare:
            run.comparison = write_comparison(run)
        report = [run.directory.path / name for name in (ReportFiles.MARKDOWN, ReportFiles.HTML)]
        for result in run.results:
            if result.tracker is not None:
                explained = sorted(result.directory.explain_dir.glob("*.png"))
                sanity = sorted(result.directory.explain_dir.glob("*.csv"))
                result.tracker.files([*explained, *sanity, *(report if compare else [])])
                result.tracker.close()
    return run


def validate_externally(
    exp: ResolvedVariant, vdir: VariantDirectory, registry: Registry, result: VariantResult
) -> None:
    """The experiment's ``[[evaluate]]`` collections on a finished variant. The training is
    kept whatever happens here: a collection that cannot be scored (changed since it was
    checked) is a warning saying how to score it later."""
    for external in exp.external:
        try:
            evaluate_external(vdir, external, registry, tracker=result.tracker, reuse=True)
        except OdirkitError as exc:
            warn(
                f"{vdir.name}: external validation {external.name!r} failed ({exc}); the run "
                f"is kept: fix the collection and score it with odirkit evaluate {vdir.path} "
                "--data FILE"
            )


def running_marker() -> RunningMarker:
    """Who runs a variant: ``running.json`` while it trains (see ``odirkit status``)."""
    return RunningMarker(
        pid=os.getpid(),
        host=socket.gethostname(),
        job=os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID"),
        log=os.environ.get("ODIRKIT_JOB_LOG", ""),
        started=datetime.now().isoformat(timespec="seconds"),
    )


def explain_result(exp: ResolvedVariant, result: VariantResult) -> None:
    """The experiment's ``[[explain]]`` explainers on a variant just trained."""

    assert result.model is not None and result.data is not None and result.view is not None
    limit = max(c.options.get("max_images", 64) for c in exp.explainers)

    def random_model() -> nn.Module:
        torch.manual_seed(derive_seed(exp.config.seed, Stream.EXPLAIN))
        return build_reinitialised(exp, result.data.task.num_classes)  # type: ignore[union-attr]

    explained = explain(
        model=result.model,
        view=result.view,
        calls=exp.explainers,
        inputs=inputs_from_data(result.data, result.view, limit),
        device=result.device or torch.device("cpu"),
        out_dir=result.directory.explain_dir,
        seed=exp.config.seed,
        random_model=random_model,
    )
    for line in explained.flagged():
        warn(f"{exp.variant}: {line}")


def explain_again(exp: ResolvedVariant, vdir: VariantDirectory, registry: Registry) -> None:
    """A variant finished earlier whose ``[[explain]]`` results were never written whole
    (the run was stopped while writing them; ``summary.json`` comes last): explained now,
    from its reported checkpoint, as :func:`explain_result` would have."""

    info(f"{vdir.name}: finished, its explanations not: explaining it from its checkpoint")
    limit = max(c.options.get("max_images", 64) for c in exp.explainers)
    explained = explain_run(vdir, registry, max_images=limit, out_dir=vdir.explain_dir)
    for line in explained.flagged():
        warn(f"{exp.variant}: {line}")


def write_comparison(run: ExperimentRun) -> Comparison:
    """comparison.csv/.json, figures and the reports across the finished variants of the
    whole run folder (not only those this process ran), with the paired tests of
    ``[compare]``: rebuilt from the folder's files, as every launcher's last job does."""
    return rebuild_report(run.directory.path)[1]


def summaries_from_dirs(paths: Sequence[Path]) -> list[RunSummary]:
    """Finished variants under the given folders (run folders or variant folders)."""
    found = finished_variants(list(paths))
    labels = [label for _, label in found]
    summaries = []
    for vdir, label in found:
        unique = label if labels.count(label) == 1 else str(vdir)
        metrics = vdir.metrics()
        summaries.append(RunSummary(unique, vdir.history(), metrics, metrics.labels, vdir.path))
    return summaries


def rebuild_report(path: Path) -> tuple[RunDirectory, Comparison]:
    """report.md, report.html and the comparison of a run folder, from its files alone
    (a finished run, or an interrupted one: its unfinished variants are listed).

    Raises :class:`RunError` for a run folder that lists no variant."""
    run = RunDirectory(path)
    variants = run.variants()
    if not variants:
        raise RunError(f"{path}: the run lists no variant")
    first = variants[0].settings()
    summaries, unfinished = [], []
    for vdir in variants:
        if vdir.finished:
            metrics = vdir.metrics()
            summaries.append(
                RunSummary(vdir.name, vdir.history(), metrics, metrics.labels, vdir.path)
            )
            continue
        done = vdir.epochs_done()
        state = "failed" if vdir.failed_file.exists() else "stopped"
        unfinished.append(
            f"{vdir.name}: {state} after epoch {done}; continue with "
            f"odirkit run --resume {run.path}"
        )
    ev, compare = first.eval, first.compare
    comparison = write_report(
        run.path,
        title=first.name,
        description=first.description,
        runs=summaries,
        figures={s.label: f"{s.label}/figures" for s in summaries},
        baseline=compare.baseline,
        metrics=compare.metrics,
        resamples=ev.bootstrap,
        confidence=ev.confidence,
        seed=derive_seed(first.seed, Stream.COMPARISON),
        unfinished=unfinished,
        require_learning=compare.require_learning,
    )
    return run, comparison
