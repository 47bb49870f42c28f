"""An experiment's run: every variant trained (engine), explained, then compared.

The run folder is created (or re-opened with ``--resume``) and described by
:class:`~odirkit.engine.rundir.RunDirectory`; each variant is trained by
:func:`odirkit.engine.variant.run_variant`; the ``[[explain]]`` explainers run
on each trained model (:mod:`odirkit.explain`); and the variants are compared
and tested against the baseline (:mod:`odirkit.report`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import torch
from torch import nn

from odirkit.config import Experiment, resolve_document
from odirkit.console import info, warn
from odirkit.engine import distributed
from odirkit.engine.models import build_model
from odirkit.engine.rundir import RunDirectory, VariantDirectory, finished_variants
from odirkit.engine.variant import VariantResult, finished_result, run_variant
from odirkit.errors import RunError
from odirkit.files import write_json, write_text
from odirkit.plugins import Registry
from odirkit.report import Comparison, RunSummary, write_report
from odirkit.seeding import derive_seed


@dataclass
class ExperimentRun:
    """A run of every variant of one experiment, in one timestamped folder."""

    directory: RunDirectory
    experiments: list[Experiment]
    results: list[VariantResult] = field(default_factory=list)
    comparison: Comparison | None = None


def start_run(
    experiments: Sequence[Experiment],
    *,
    out: Path,
    source_text: str | None,
    overrides: Sequence[str],
) -> ExperimentRun:
    """Create the run folder and write what defines it, before any training.

    Under ``torchrun`` rank 0 creates it and tells the others where it is.
    """
    first = experiments[0]
    created = RunDirectory.create(out, first.name).path if distributed.is_main() else None
    run = RunDirectory(distributed.broadcast(str(created) if created else None))
    if not distributed.is_main():
        return ExperimentRun(run, list(experiments))
    if source_text is not None:
        write_text(run.experiment_file, source_text)
    write_json(
        run.run_file,
        {
            "name": first.name,
            "source": first.source,
            "overrides": list(overrides),
            "variants": [e.variant for e in experiments],
            "started": datetime.now().isoformat(timespec="seconds"),
        },
    )
    for exp in experiments:
        write_json(run.variant(exp.variant).config_file, exp.to_dict())
    return ExperimentRun(run, list(experiments))


def load_run(path: Path, registry: Registry) -> ExperimentRun:
    """Re-open a run folder (the whole experiment, or one variant) to resume it."""
    path = Path(path)
    if not path.is_dir():
        raise RunError(f"{path}: no such run folder")
    variant = VariantDirectory(path)
    if variant.exists:  # one variant
        return ExperimentRun(variant.run, [load_variant(variant, registry)])
    run = RunDirectory(path)
    return ExperimentRun(run, [load_variant(v, registry) for v in run.variants()])


def load_variant(vdir: VariantDirectory, registry: Registry) -> Experiment:
    """A variant's experiment from its ``config.json``."""
    (exp,) = resolve_document(vdir.config(), registry, source=str(vdir.config_file))
    exp.variant = vdir.name
    return exp


def run_experiment(run: ExperimentRun, *, registry: Registry) -> ExperimentRun:
    """Run every variant (and explain it), then compare them in the run folder."""
    for exp in run.experiments:
        vdir = run.directory.variant(exp.variant)
        info(f"variant {exp.variant!r} -> {vdir}")
        result = run_variant(exp, vdir, registry=registry)
        if exp.explainers and result.model is not None and distributed.is_main():
            explain_result(exp, result)
        distributed.barrier()
        run.results.append(result)
    if distributed.is_main():
        run.comparison = write_comparison(run)
    return run


def explain_result(exp: Experiment, result: VariantResult) -> None:
    """The experiment's ``[[explain]]`` explainers on a variant just trained."""
    from odirkit.explain import explain, inputs_from_data

    assert result.model is not None and result.data is not None and result.view is not None
    limit = max(c.options.get("max_images", 64) for c in exp.explainers)

    def random_model() -> nn.Module:
        torch.manual_seed(derive_seed(exp.config.seed, 7))
        return build_model(exp, result.data.task.num_classes)  # type: ignore[union-attr]

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


def write_comparison(run: ExperimentRun) -> Comparison:
    """comparison.csv/.json, figures and report.md across the run's finished variants, with
    the paired tests of ``[compare]``."""
    summaries = []
    for exp in run.experiments:
        vdir = run.directory.variant(exp.variant)
        if vdir.finished:
            done = finished_result(exp.variant, vdir)
            summaries.append(
                RunSummary(done.variant, done.history, done.final, done.final["labels"], vdir.path)
            )
    first = run.experiments[0]
    cfg = first.config
    return write_report(
        run.directory.path,
        title=first.name,
        description=cfg.description,
        runs=summaries,
        figures={s.label: f"{s.label}/figures" for s in summaries},
        baseline=cfg.compare.baseline,
        metrics=cfg.compare.metrics,
        resamples=cfg.eval.bootstrap,
        confidence=cfg.eval.confidence,
        seed=derive_seed(cfg.seed, 6),
    )


def summaries_from_dirs(paths: Sequence[Path]) -> list[RunSummary]:
    """Finished variants under the given folders (run folders or variant folders)."""
    found = finished_variants(list(paths))
    labels = [label for _, label in found]
    summaries = []
    for vdir, label in found:
        unique = label if labels.count(label) == 1 else str(vdir)
        final = vdir.metrics()
        summaries.append(RunSummary(unique, vdir.history(), final, final["labels"], vdir.path))
    return summaries
