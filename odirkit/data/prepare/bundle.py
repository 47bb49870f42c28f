"""Everything a run trains and scores on (DataBundle): rows, targets, split, patient truth and
the images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from odirkit.config import ResolvedVariant
from odirkit.console import progress_bar, warn
from odirkit.data.images import ImageCache, PreparedImages, prepare_images
from odirkit.data.pairs import patients_as_samples
from odirkit.data.prepare.cache import (
    cache_root,
    preprocessing_of,
)
from odirkit.data.prepare.checking import (
    _fundus_check,
)
from odirkit.data.prepare.samples import (
    _counts,
    age_statistics,
    assign_split,
    load_samples,
    patient_truth,
)
from odirkit.data.prepare.store import (
    PRELOAD_LIMIT_BYTES,
    ImageStore,
    _StoreDataset,
)
from odirkit.data.split import (
    undersample,
    undersample_multilabel,
)
from odirkit.data.table import Task
from odirkit.errors import DataError
from odirkit.labels import LABELS
from odirkit.runs.records import AgeNormalisation, DataReport
from odirkit.seeding import Stream, derive_seed


@dataclass
class DataBundle:
    """Everything a run needs from the data: rows, targets, split and images.

    The rows are photographs, or patients (both eyes) for a model with ``eyes = 2``.
    """

    @property
    def per_patient(self) -> bool:
        """Whether each sample is a patient with both eyes (else a photograph)."""
        return self.photos is not None

    table: pd.DataFrame
    task: Task
    targets: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray
    test_idx: np.ndarray
    store: ImageStore
    report: DataReport = field(default_factory=DataReport)  # data.json
    skipped: list[dict[str, str]] = field(default_factory=list)
    patients: pd.DataFrame | None = None  # patient labels, for patient-level evaluation
    photos: pd.DataFrame | None = None  # the photographs, when the samples are patients
    age_stats: tuple[float, float] = (0.0, 1.0)  # training images' age mean and deviation

    def add_training_samples(
        self,
        table: pd.DataFrame,
        images: torch.Tensor,
        targets: np.ndarray,
        *,
        source: str,
        spill_dir: Path,
    ) -> np.ndarray:
        """Append synthetic or augmented samples to the training set only: ``table`` their rows
        (missing columns filled), ``images`` ``uint8 [N, 3, S, S]``, ``targets`` ``[N]`` class
        indices or ``[N, C]`` 0/1 labels. Returns their row indices ``[N]``.

        Raises :class:`odirkit.errors.DataError` from a store that takes no single photographs
        (a both-eyes model's)."""
        rows = table.reset_index(drop=True).copy()
        for column, default in (
            ("patient_id", None),
            ("eye", ""),
            ("path", ""),
            ("image_path", ""),
            ("age", np.nan),
            ("sex", ""),
        ):
            if column not in rows.columns:
                rows[column] = (
                    [f"{source}-{i}" for i in range(len(rows))]
                    if column == "patient_id"
                    else default
                )
        rows["patient_id"] = rows["patient_id"].astype(str)
        if "source" not in rows.columns:
            rows["source"] = source
        for label in LABELS:
            if label not in rows.columns:
                rows[label] = 0
        new = self.store.append(images, spill_dir)
        self.table = pd.concat([self.table, rows], ignore_index=True)
        self.targets = np.concatenate([self.targets, targets.astype(self.targets.dtype)])
        self.train_idx = np.concatenate([self.train_idx, new])
        added = self.report.extra_train_images
        self.report.extra_train_images = {**added, source: added.get(source, 0) + len(new)}
        self.report.train_images = len(self.train_idx)
        return new

    def targets_tensor(self, indices: np.ndarray) -> torch.Tensor:
        """The targets of ``indices`` (``[B]``) as a tensor: class indices ``int64 [B]``, or 0/1
        per label ``float32 [B, C]``."""
        values = self.targets[indices]
        if self.task.single_label:
            return torch.from_numpy(values.astype(np.int64))
        return torch.from_numpy(values.astype(np.float32))

    def batches(
        self,
        chunks: list[np.ndarray],
        *,
        num_workers: int = 0,
        pin_memory: bool = False,
    ) -> Iterator[tuple[np.ndarray, torch.Tensor, torch.Tensor]]:
        """``(row indices [B], uint8 images [B, 3, S, S], targets)`` for each chunk of row
        indices, in order (a both-eyes model's images are ``[2B, 3, S, S]``, left and right
        interleaved); targets as :meth:`targets_tensor` gives them."""
        if self.store.tensor is not None or num_workers == 0:
            for chunk in chunks:
                yield chunk, self.store.batch(chunk), self.targets_tensor(chunk)
            return
        loader = torch.utils.data.DataLoader(
            _StoreDataset(self.store),
            batch_sampler=[c.tolist() for c in chunks],
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=False,
        )
        for chunk, images in zip(chunks, loader, strict=True):
            if images.dim() == 5:  # patients: [B, 2, 3, S, S] -> left, right interleaved
                images = images.flatten(0, 1)
            yield chunk, images, self.targets_tensor(chunk)


def prepare_data(
    exp: ResolvedVariant, *, images: bool = True, both_eyes: bool = False
) -> DataBundle:
    """Build the sample table, choose the task, preprocess the images and split by patient.

    ``images=False`` skips the images (for baselines that use the table alone).
    ``both_eyes=True`` makes each patient one sample, both eyes together
    (:mod:`odirkit.data.pairs`), for a model with meta ``eyes = 2``.

    Raises :class:`DataError` when images cannot be read (unless ``data.on_bad_image =
    "skip"``), none is usable, or the split leaves a side empty for the task's labels."""
    cfg = exp.config.data
    samples = load_samples(exp)
    selection = samples.selection
    sides = assign_split(exp, samples.table)
    rows = selection.table
    targets = selection.targets

    cache = ImageCache(cache_root(exp), preprocessing_of(exp))
    paths = rows["image_path"].tolist()
    if images:
        with cache.building(), progress_bar() as bar:
            task_id = bar.add_task("Preparing images", total=len(paths), status="")
            prepared = prepare_images(
                paths, cache, progress=lambda n: bar.update(task_id, completed=n)
            )
    else:
        prepared = PreparedImages([None] * len(paths), {})
    skipped: list[dict[str, str]] = []
    if prepared.failures:
        bad = sorted(prepared.failures)
        if cfg.on_bad_image == "error":
            shown = "\n  ".join(prepared.failures[i] for i in bad[:5])
            more = f"\n  ... and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise DataError(
                f"{len(bad)} image(s) could not be read:\n  {shown}{more}\n"
                'Fix or remove them, or set data.on_bad_image = "skip" to leave them out.'
            )
        skipped = [{"path": paths[i], "error": prepared.failures[i]} for i in bad]
        warn(f"skipped {len(bad)} unreadable image(s); first: {prepared.failures[bad[0]]}")
        keep = np.setdiff1d(np.arange(len(rows)), bad)
        rows = rows.iloc[keep].reset_index(drop=True)
        targets = targets[keep]
        prepared.images = [prepared.images[i] for i in keep]
        if rows.empty:
            raise DataError("every image was unreadable; nothing to train on")

    rows, targets, prepared, checked = _fundus_check(exp, cache, rows, targets, prepared, images)
    if rows.empty:
        raise DataError("no photograph passed the fundus check; nothing to train on")

    total_bytes = len(rows) * 3 * exp.image_size**2
    arrays = prepared.images if images and total_bytes <= PRELOAD_LIMIT_BYTES else None
    entries = [cache.entry(p) for p in rows["image_path"]]
    store = ImageStore(arrays, entries, exp.image_size)  # type: ignore[arg-type]

    side = rows["patient_id"].map(sides).to_numpy()
    task = selection.task
    truth, truth_report = patient_truth(samples.table)
    truth = truth[list(task.labels)]
    photos, as_patients = None, None
    image_counts = {split: int((side == split).sum()) for split in ("train", "val", "test")}
    if both_eyes:  # a both-eyes model: patients are the samples
        photos = rows
        as_patients = patients_as_samples(rows, store, side, truth, task)
        rows, targets = as_patients.table, as_patients.targets
        store, side = as_patients.store, as_patients.side
    train_idx = np.flatnonzero(side == "train")
    val_idx = np.flatnonzero(side == "val")
    test_idx = np.flatnonzero(side == "test")
    if cfg.balance == "undersample":
        seed = derive_seed(exp.config.seed, Stream.UNDERSAMPLE)
        if task.single_label:
            train_idx = undersample(train_idx, targets[train_idx], seed=seed)
        else:  # the common label sets capped, no minority label's image removed
            train_idx = undersample_multilabel(train_idx, targets, seed=seed)
    if cfg.shuffle_train_labels:
        targets = targets.copy()
        rng = np.random.default_rng(derive_seed(exp.config.seed, Stream.SHUFFLE_TRAIN_LABELS))
        targets[train_idx] = targets[rng.permutation(train_idx)]
    if cfg.shuffle_test_labels:  # a control: only the test scores may change
        targets = targets.copy()
        rng = np.random.default_rng(derive_seed(exp.config.seed, Stream.SHUFFLE_TEST_LABELS))
        targets[test_idx] = targets[rng.permutation(test_idx)]
        test_patients = truth.index[truth.index.isin(set(rows.loc[test_idx, "patient_id"]))]
        truth = truth.copy()
        truth.loc[test_patients] = truth.loc[rng.permutation(test_patients)].to_numpy()
    if len(train_idx) == 0 or len(test_idx) == 0:
        raise DataError(
            f"the split left {len(train_idx)} training and {len(test_idx)} test image(s) for "
            f"the labels {', '.join(task.labels)}; use more data or another test_fraction"
        )
    if cfg.val_fraction > 0 and len(val_idx) == 0:
        raise DataError(
            f"the split left no validation image for the labels {', '.join(task.labels)}; "
            "use more data, a larger data.val_fraction, or data.val_fraction = 0"
        )

    def patients_of(idx: np.ndarray) -> int:
        return int(rows.loc[idx, "patient_id"].nunique())

    report = DataReport(
        images=len(rows) if photos is None else len(photos),
        patients=int(rows["patient_id"].nunique()),
        train_images=len(train_idx),
        val_images=len(val_idx),
        test_images=len(test_idx),
        train_patients=patients_of(train_idx),
        val_patients=patients_of(val_idx),
        test_patients=patients_of(test_idx),
        dropped_without_label=selection.dropped_none,
        dropped_with_several_labels=selection.dropped_several,
        skipped_unreadable=len(skipped),
        fundus_check=checked,
        cache=str(cache.directory),
        task=task.kind,
        labels=list(task.labels),
        train_counts=_counts(targets[train_idx], task),
        val_counts=_counts(targets[val_idx], task),
        test_counts=_counts(targets[test_idx], task),
        patient_truth=truth_report,
    )
    if as_patients is not None:  # samples are patients: counts of photographs kept apart
        report.train_images = image_counts["train"]
        report.val_images = image_counts["val"]
        report.test_images = image_counts["test"]
        report.samples = "patients (both eyes)"
        report.both_eyes = as_patients.report
    if cfg.folds:
        report.fold = {"folds": cfg.folds, "test_fold": cfg.fold}
    if "split" in samples.table.columns and not cfg.split_file:
        report.split_source = "the dataset's own split (train, val, test)"
    if samples.report:
        report.dataset = samples.report
    bundle = DataBundle(rows, task, targets, train_idx, val_idx, test_idx, store, report, skipped)
    bundle.patients = truth
    bundle.photos = photos
    bundle.age_stats = age_statistics(rows, train_idx)
    report.age_normalisation = AgeNormalisation(mean=bundle.age_stats[0], std=bundle.age_stats[1])
    return bundle
