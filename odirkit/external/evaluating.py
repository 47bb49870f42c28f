"""A finished run on another collection: the reported checkpoint, the run's operating points,
the results folder.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from odirkit.config import ExternalData
from odirkit.console import info, progress_bar, warn
from odirkit.data.external import ExternalSamples, external_samples
from odirkit.data.fundus_check import REASONS
from odirkit.data.images import ImageCache, prepare_images
from odirkit.data.prepare import (
    DataBundle,
    ImageStore,
    cache_for,
    checked_reasons,
    chunked,
    patient_truth,
)
from odirkit.data.table import Task, select_task
from odirkit.engine.device import resolve_device
from odirkit.engine.evaluate import (
    at_level,
    predictions_frame,
    scored,
    scored_from_frame,
    thresholds_array,
)
from odirkit.engine.trainer import Evaluation
from odirkit.errors import DataError, RunError
from odirkit.external.scoring import (
    ExternalResult,
    SharedScoring,
    compare_with_internal,
    plot_internal_vs_external,
    verdict,
)
from odirkit.files import write_text
from odirkit.plugins import Registry
from odirkit.predict import load_trained
from odirkit.runs import ExternalDirectory, VariantDirectory
from odirkit.runs.records import CollectionReport, ExternalMetrics, FundusCheck, Scores
from odirkit.seeding import Stream, derive_seed
from odirkit.tracking import RunInfo, Tracker


def _prepared(
    paths: list[str], cache: ImageCache, on_bad_image: str, check: str, where: str
) -> tuple[list[np.ndarray], np.ndarray, list[dict[str, str]], FundusCheck]:
    """The preprocessed images that are used, their positions, the skipped ones, and the
    fundus check's report (the run's modes unless the collection's entry sets others)."""
    with cache.building(), progress_bar() as bar:
        task = bar.add_task(f"Preparing {where}", total=len(paths), status="")
        prepared = prepare_images(paths, cache, progress=lambda n: bar.update(task, completed=n))
    skipped = []
    if prepared.failures:
        bad = sorted(prepared.failures)
        if on_bad_image == "error":
            shown = "\n  ".join(prepared.failures[i] for i in bad[:5])
            raise DataError(
                f"{where}: {len(bad)} image(s) could not be read:\n  {shown}\nFix or remove "
                'them, or set on_bad_image = "skip" to leave them out'
            )
        skipped = [{"path": paths[i], "error": prepared.failures[i]} for i in bad]
        warn(f"{where}: skipped {len(bad)} unreadable image(s); first: {prepared.failures[bad[0]]}")
    failed = []
    if check != "off":  # verdicts remembered beside the cache, as a run's are
        reasons = checked_reasons(cache, paths, prepared.images)
        failed = [(i, r, REASONS[r]) for i, r in enumerate(reasons) if r]
    listed = [{"path": paths[i], "reason": reason} for i, reason, _ in failed]
    report = FundusCheck(mode=check, failed=len(failed), failures=listed[:200])
    if failed and check == "error":
        raise DataError(
            f"{where}: {len(failed)} photograph(s) fail the fundus check, first "
            f"{paths[failed[0][0]]}: {failed[0][2]}"
        )
    if failed:
        kept = "kept" if check == "warn" else "left out"
        warn(f"{where}: {len(failed)} photograph(s) fail the fundus check ({kept})")
    drop = {i for i, _, _ in failed} if check == "skip" else set()
    keep = np.array(
        [i for i, image in enumerate(prepared.images) if image is not None and i not in drop],
        dtype=np.int64,
    )
    return [prepared.images[i] for i in keep], keep, skipped, report  # type: ignore[misc]


@torch.inference_mode()
def _logits(model, view, images, table, device, batch_size) -> np.ndarray:
    extra = view.extra_inputs(table)
    out = []
    for chunk in chunked(np.arange(len(images)), batch_size):
        batch = view.batch([images[i] for i in chunk])
        index = torch.from_numpy(chunk)
        held = [t[index].to(device) for t in extra]
        out.append(view.logits(model, batch, held, device).float().cpu())
    if not out:
        return np.zeros((0, len(view.labels)), dtype=np.float32)
    return torch.cat(out).numpy()


def evaluate_external(
    vdir: VariantDirectory,
    external: ExternalData,
    registry: Registry,
    *,
    tracker: Tracker | None = None,
    reuse: bool = False,
) -> ExternalResult:
    """Score ``vdir``'s reported checkpoint on ``external`` and write the result.

    ``reuse`` (after training, ``[[evaluate]]``) keeps an existing result of the same name
    instead of writing a new one. ``tracker``: the run's open loggers (default: the run's
    ``[[log]]`` plugins are started again, continuing their tracked run). Raises
    :class:`RunError` (no finished run; a both-eyes model), :class:`DataError` (no label
    shared, no usable image) and whatever the collection's dataset plugin raises.
    """
    if not vdir.finished:
        raise RunError(f"{vdir}: not a finished run (no {vdir.METRICS}); train it first")
    if reuse and vdir.external(external.name).finished:
        done = vdir.external(external.name)
        info(f"{vdir.name}: external validation {external.name!r} already in {done.path}")
        return ExternalResult(done, done.metrics(), done.comparison())
    run_metrics = vdir.metrics()  # the run's own metrics.json
    exp, model, view = load_trained(vdir, registry)
    if view.eyes == 2:
        raise RunError(
            f"{vdir}: model {exp.model.name!r} sees both eyes of a patient at once; external "
            "validation scores one photograph at a time and does not pair them yet"
        )
    cfg = exp.config
    samples = external_samples(external)
    labels = list(view.labels)
    shared, not_scored = samples.shared(labels)
    where = f"external collection {external.name!r} ({external.dataset.name} at {external.root})"
    if not shared:
        raise DataError(
            f"{where} grades {', '.join(samples.graded) or 'no label'}; the run learned "
            f"{', '.join(labels)}: no label to score"
        )
    kind = "single_label" if view.single_label else "multi_label"
    selection = select_task(samples.table, labels, kind)
    rows = selection.table
    cache = ImageCache(cache_for(external.root, external.options.cache_dir), view.preprocessing)
    images, keep, skipped, check = _prepared(
        rows["image_path"].tolist(),
        cache,
        external.options.on_bad_image or cfg.data.on_bad_image,
        external.options.fundus_check or cfg.data.fundus_check,
        where,
    )
    rows = rows.iloc[keep].reset_index(drop=True)
    targets = selection.targets[keep]
    if rows.empty:
        raise DataError(f"{where}: no usable image to score")
    device = resolve_device(cfg.device)
    model.to(device).eval()
    logits = _logits(
        model, view, images, rows, device, cfg.train.eval_batch_size or cfg.train.batch_size
    )
    probs = view.probabilities(torch.from_numpy(logits)).numpy()
    task = Task(tuple(labels), kind)  # type: ignore[arg-type]
    everything = np.arange(len(rows))
    bundle = DataBundle(
        rows, task, targets, everything[:0], everything[:0], everything, ImageStore(None, [], 1)
    )
    truth, truth_report = patient_truth(samples.table)
    bundle.patients = truth[labels]
    evaluation = Evaluation(everything, probs, targets, float("nan"), logits)
    level, fusion = cfg.data.level, cfg.data.fusion
    preds = at_level(bundle, evaluation, level=level, fusion=fusion)  # the view's temperature
    scores = run_metrics.final
    thresholds = thresholds_array(labels, scores.thresholds)
    scoring = SharedScoring(tuple(labels), tuple(shared), view.single_label)
    resamples, confidence = cfg.eval.bootstrap, cfg.eval.confidence
    seeds = (
        derive_seed(cfg.seed, Stream.TEST_BOOTSTRAP),
        derive_seed(cfg.seed, Stream.EXTERNAL_BOOTSTRAP),
    )
    metrics = scoring.metrics(preds, thresholds)
    full = scored(preds, thresholds)
    intervals = scoring.intervals(full, resamples=resamples, confidence=confidence, seed=seeds[1])

    internal_frame = vdir.test_predictions()
    internal, _ = scored_from_frame(
        internal_frame,
        labels=labels,
        single_label=view.single_label,
        thresholds=thresholds,
        challenge=preds.challenge,
    )
    comparison = compare_with_internal(
        internal, full, scoring, resamples=resamples, confidence=confidence, seeds=seeds
    )

    out = vdir.new_external(external.name)
    frame = predictions_frame(preds, thresholds)
    ungraded = [f"target_{label}" for label in not_scored if f"target_{label}" in frame]
    frame = frame.drop(columns=ungraded)
    if level == "patient":
        write_text(out.patient_predictions_file, frame.to_csv(index=False))
        images_level = at_level(bundle, evaluation, level="image", fusion=fusion)
        image_frame = predictions_frame(images_level, None)
        image_frame = image_frame.drop(columns=[c for c in ungraded if c in image_frame.columns])
        write_text(out.predictions_file, image_frame.to_csv(index=False))
    else:
        write_text(out.predictions_file, frame.to_csv(index=False))
    if skipped:
        write_text(out.skipped_file, pd.DataFrame(skipped).to_csv(index=False))
    data_report = _data_report(samples, selection, rows, targets, task, skipped, check)
    data_report.patient_truth = truth_report
    data_report.cache = str(cache.directory)
    data_report.write(out.data_file)
    write_text(out.comparison_file, comparison.to_csv(index=False))
    title = f"{exp.name}/{vdir.name}: internal test vs {external.name}"
    plot_internal_vs_external(comparison, out.figure, title, confidence)
    summary = ExternalMetrics(
        experiment=exp.name,
        variant=vdir.name,
        name=out.name,
        collection=external.to_dict(),
        checkpoint=run_metrics.checkpoint,
        checkpoint_epoch=run_metrics.checkpoint_epoch,
        task=task.kind,
        level=level,
        labels=list(task.labels),
        labels_scored=shared,
        labels_not_scored=not_scored,
        images=len(rows),
        patients=int(rows["patient_id"].nunique()),
        final=Scores(
            **metrics,
            intervals=intervals,
            confidence=confidence,
            threshold_rule=scores.threshold_rule,
            thresholds=scores.thresholds,
            temperature=scores.temperature,
        ),
        comparison={
            "internal": "the run's test patients (its own predictions), on the labels scored",
            "metrics": comparison.to_dict("records"),
            "verdicts": [verdict(r, confidence) for r in comparison.to_dict("records")],
            "resamples": resamples,
        },
        tta=[v if isinstance(v, str) else str(v.get("name")) for v in cfg.eval.tta],
        data=data_report,
    )
    summary.write(out.metrics_file)
    _tell_loggers(tracker, exp, vdir, out, summary.to_json())
    info(f"{vdir.name}: external validation on {external.name!r} written to {out.path}")
    if not_scored:
        info(f"{external.name}: the collection does not grade {', '.join(not_scored)}: not scored")
    return ExternalResult(out, summary, comparison)


def _data_report(
    samples: ExternalSamples,
    selection: Any,
    rows: pd.DataFrame,
    targets: np.ndarray,
    task: Task,
    skipped: list[dict[str, str]],
    check: FundusCheck,
) -> CollectionReport:
    counts = (
        np.bincount(targets.astype(np.int64), minlength=task.num_classes)
        if task.single_label
        else np.asarray(targets).sum(axis=0)
    )
    return CollectionReport(
        images=len(rows),
        patients=int(rows["patient_id"].nunique()),
        counts={label: int(c) for label, c in zip(task.labels, counts, strict=True)},
        graded_labels=samples.graded,
        dropped_without_label=selection.dropped_none,
        dropped_with_several_labels=selection.dropped_several,
        skipped_unreadable=len(skipped),
        fundus_check=check,
        dataset=samples.report,
    )


def _tell_loggers(
    tracker: Tracker | None,
    exp: Any,
    vdir: VariantDirectory,
    out: ExternalDirectory,
    summary: dict[str, Any],
) -> None:
    """The run's loggers see the result (``log_external``) and its files; when the run's
    own tracker is not open, its ``[[log]]`` plugins continue their tracked run."""
    own = tracker is None
    if own:
        tracker = Tracker.build(exp.loggers)
        if not tracker:
            return
        tracker.start(
            RunInfo(
                experiment=exp.name,
                variant=vdir.name,
                seed=exp.config.seed,
                config=exp.to_dict(),
                environment=_environment(vdir),
                directory=vdir.path,
            )
        )
    assert tracker is not None
    tracker.external(out.name, summary)
    tracker.files([out.metrics_file, out.comparison_file, out.figure])
    if own:
        tracker.close()


def _environment(vdir: VariantDirectory) -> dict[str, Any]:
    try:
        return vdir.environment().to_json()
    except RunError:
        return {}
