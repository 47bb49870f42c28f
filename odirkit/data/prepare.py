"""From an experiment's ``[data]`` table to tensors: the data bundle a run trains on."""

from __future__ import annotations

import functools
import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import platformdirs
import torch

from odirkit.config import Experiment
from odirkit.console import info, progress_bar, warn
from odirkit.data.fundus_check import CHECK_VERSION, REASONS, check_fundus
from odirkit.data.images import ImageCache, PreparedImages, Preprocessing, prepare_images
from odirkit.data.pairs import pair_patients
from odirkit.data.split import (
    carve_validation,
    patient_folds,
    patient_level_split,
    split_file_assignment,
    undersample,
    undersample_multilabel,
    write_split_file,
)
from odirkit.data.table import Task, TaskSelection, check_sample_table, select_task
from odirkit.errors import ConfigError, DataError, RunError
from odirkit.files import write_json
from odirkit.labels import LABELS
from odirkit.seeding import derive_seed

#: preprocessed images are held in memory when they take less than this
PRELOAD_LIMIT_BYTES = 4 * 1024**3
CACHE_FOLDER = ".odirkit-cache"


class ImageStore:
    """Preprocessed images by row index, as ``uint8 [B, 3, S, S]`` batches.

    Small datasets are held in one tensor; larger ones are read from the
    cache per batch (through DataLoader workers when the run asks for them).
    """

    def __init__(self, arrays: list[np.ndarray] | None, entries: list[Path], size: int) -> None:
        self.size = size
        self.entries = entries
        self.tensor: torch.Tensor | None = None
        if arrays is not None:
            stacked = np.stack(arrays) if arrays else np.zeros((0, size, size, 3), np.uint8)
            self.tensor = torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()

    def __len__(self) -> int:
        return len(self.entries) if self.tensor is None else int(self.tensor.shape[0])

    def item(self, index: int) -> torch.Tensor:
        if self.tensor is not None:
            return self.tensor[index]
        return torch.from_numpy(np.load(self.entries[index])).permute(2, 0, 1).contiguous()

    def batch(self, indices: np.ndarray) -> torch.Tensor:
        if self.tensor is not None:
            return self.tensor[torch.from_numpy(np.asarray(indices, dtype=np.int64))]
        return torch.stack([self.item(int(i)) for i in indices])

    def append(self, images: torch.Tensor, spill_dir: Path) -> np.ndarray:
        """Add ``uint8 [N, 3, S, S]`` images (e.g. synthetic ones); return their row indices.

        Held in memory when the store is; otherwise written to ``spill_dir``.
        """
        start = len(self)
        images = images.contiguous()
        if self.tensor is not None:
            self.tensor = torch.cat([self.tensor, images])
        else:
            spill_dir.mkdir(parents=True, exist_ok=True)
            for i, image in enumerate(images):
                entry = spill_dir / f"{start + i}.npy"
                np.save(entry, image.permute(1, 2, 0).numpy())
                self.entries.append(entry)
        return np.arange(start, start + len(images))


class _StoreDataset(torch.utils.data.Dataset):
    def __init__(self, store: ImageStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.store.item(index)


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
    report: dict[str, Any] = field(default_factory=dict)
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
        """Append synthetic or augmented samples to the training set only."""
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
        added = self.report.setdefault("extra_train_images", {})
        added[source] = added.get(source, 0) + len(new)
        self.report["train_images"] = len(self.train_idx)
        return new

    def targets_tensor(self, indices: np.ndarray) -> torch.Tensor:
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
        """``(row indices, uint8 images, targets)`` for each chunk of row indices, in order."""
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


def chunked(indices: np.ndarray, size: int) -> list[np.ndarray]:
    """``indices`` in consecutive chunks of ``size`` (the last may be shorter)."""
    return [indices[i : i + size] for i in range(0, len(indices), size)]


def preprocessing_of(exp: Experiment) -> Preprocessing:
    """How the experiment's photographs become its training images (``[data]``)."""
    cfg = exp.config.data
    return Preprocessing(
        size=exp.image_size, crop_to_fov=cfg.crop_to_fov, circle_crop=cfg.circle_crop
    )


def cache_root(exp: Experiment) -> Path:
    """The folder shared by runs for preprocessed images and other reusable work.

    ``data.cache_dir`` when given; else ``<data.root>/.odirkit-cache``, or, when the
    dataset lies on storage this user cannot write (read-only, shared), a folder of the
    user's cache directory (platformdirs) named after the dataset's path, said once.
    """
    cfg = exp.config.data
    return cache_for(cfg.root, cfg.cache_dir)


def cache_for(root: str | Path, cache_dir: str | None = None) -> Path:
    """The cache folder of the dataset in ``root``: ``cache_dir`` when given (see
    :func:`cache_root`)."""
    if cache_dir:
        return Path(cache_dir)
    return _default_cache(str(Path(root).resolve()))


@functools.cache
def _default_cache(root: str) -> Path:
    beside = Path(root) / CACHE_FOLDER
    if _writable(beside):
        return beside
    digest = hashlib.sha1(root.encode()).hexdigest()[:12]
    fallback = Path(platformdirs.user_cache_dir("odirkit")) / f"{Path(root).name}-{digest}"
    info(f"{root} is not writable: preprocessed images are cached in {fallback}")
    return fallback


def _writable(folder: Path) -> bool:
    """Whether this process may create ``folder`` (if need be) and write a file in it.

    A folder whose permissions grant no one write access is read-only storage, even to
    a process that could write there anyway (root).
    """
    existing = folder if folder.exists() else folder.parent
    try:
        if not existing.stat().st_mode & 0o222:
            return False
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError:
        return False
    return True


@dataclass
class Samples:
    """The dataset plugin's table, checked; the task's selection of it; the plugin's report."""

    table: pd.DataFrame
    selection: TaskSelection
    report: dict[str, Any]


def load_samples(exp: Experiment) -> Samples:
    """The dataset plugin's sample table, checked, narrowed to the experiment's task."""
    cfg = exp.config.data
    root = Path(cfg.root)
    raw = exp.dataset.build(root=str(root))
    report = dict(getattr(raw, "attrs", {}).get("odirkit_report", {}))
    table = check_sample_table(raw, dataset=exp.dataset.name, root=root)
    return Samples(table, select_task(table, list(cfg.labels), cfg.task), report)


def assign_split(exp: Experiment, table: pd.DataFrame) -> pd.Series:
    """``"train"``, ``"val"`` or ``"test"`` for every patient of the full table.

    The split is made on all patients and all eight labels, whatever the task,
    so that experiments with the same seed (or the same split file) share it.
    The test patients are drawn first (or the held-out fold); then
    ``data.val_fraction`` of the remaining patients become validation
    patients, stratified the same way. With ``data.split_file`` an existing
    file is read (a file without ``val`` gets its validation patients drawn
    now), a missing one written. A dataset whose table has a ``split`` column (a collection
    that comes split, as RETFound's benchmark ships its datasets) keeps that split; validation
    patients are drawn from its training ones when it has no ``val``.
    """
    cfg = exp.config.data
    seed = exp.config.seed
    file = Path(cfg.split_file) if cfg.split_file else None

    def with_validation(sides: pd.Series) -> pd.Series:
        if (sides == "val").any():
            return sides
        return carve_validation(
            table,
            sides,
            labels=list(LABELS),
            fraction=cfg.val_fraction,
            seed=derive_seed(seed, 4) % 2**32,
        )

    if "split" in table.columns and not (file is not None and file.exists()):
        # the collection comes split (train/, val/, test/ folders): its split is kept
        if cfg.folds:
            raise ConfigError(
                f"dataset {exp.dataset.name!r} in {cfg.root} comes split into train, val and "
                f"test, so data.folds = {cfg.folds} cannot apply; turn the dataset's own split "
                "off (folder: splits = false) to draw folds"
            )
        given = table.groupby("patient_id")["split"].first().rename("split")
        if not (given == "test").any():
            raise DataError(
                f"dataset {exp.dataset.name!r} in {cfg.root} comes split but has no test "
                "images; add a test/ folder, or turn its split off (folder: splits = false)"
            )
        given = with_validation(given)
        if file is not None:
            write_split_file(file, given)
        return given
    if file is not None and file.exists():
        saved = split_file_assignment(file, table)
        if saved.name == "fold":
            if cfg.fold is None:
                raise ConfigError(
                    f"{file}: this split file has folds; set data.folds and data.fold"
                )
            return with_validation(saved.map(lambda f: "test" if int(f) == cfg.fold else "train"))
        if cfg.folds:
            raise ConfigError(f"{file}: this split file has no folds, but data.folds = {cfg.folds}")
        return with_validation(saved.astype(str))
    if cfg.folds:
        folds = patient_folds(table, labels=list(LABELS), folds=cfg.folds, seed=seed)
        if file is not None:
            write_split_file(file, folds)
        return with_validation(folds.map(lambda f: "test" if int(f) == cfg.fold else "train"))
    train_idx, test_idx = patient_level_split(
        table, labels=list(LABELS), test_fraction=cfg.test_fraction, seed=seed
    )
    sides = pd.concat(
        [
            pd.Series("train", index=table.loc[train_idx, "patient_id"].unique()),
            pd.Series("test", index=table.loc[test_idx, "patient_id"].unique()),
        ]
    ).rename("split")
    sides = with_validation(sides)
    if file is not None:
        write_split_file(file, sides)
    return sides


def eye_union_labels(table: pd.DataFrame) -> pd.DataFrame:
    """Each patient's eight labels as the union of their eyes' (N only when no eye is
    diseased)."""
    per_patient = table.groupby("patient_id")[list(LABELS)].max()
    diseased = per_patient[[label for label in LABELS if label != "N"]].max(axis=1)
    per_patient["N"] = (diseased == 0).astype(int)
    return per_patient.astype(int)


def patient_truth(table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each patient's eight labels, and a report of where they came from.

    A dataset that gives ``patient_<L>`` columns (``odir5k``: the workbook's
    patient columns N..O, the challenge's ground truth) is taken at its word;
    otherwise the patient's labels are the union of their eyes' labels. The
    report counts the patients on whom the two disagree. ``table`` is the whole
    sample table, so a patient's truth does not depend on which eyes a task keeps.
    """
    union = eye_union_labels(table)
    if not all(f"patient_{label}" in table.columns for label in LABELS):
        return union, {"source": "union of the eyes' labels", "patients": len(union)}
    columns = [f"patient_{label}" for label in LABELS]
    given = table.groupby("patient_id")[columns].max().fillna(0).astype(int)
    given.columns = list(LABELS)
    differs = (given != union.loc[given.index]).any(axis=1)
    examples = [
        {
            "patient_id": str(pid),
            "dataset": "".join(x for x in LABELS if given.at[pid, x]),
            "eyes": "".join(x for x in LABELS if union.at[pid, x]),
        }
        for pid in given.index[differs][:10]
    ]
    return given, {
        "source": "the dataset's patient labels (patient_N..patient_O)",
        "patients": len(given),
        "disagree_with_eye_labels": int(differs.sum()),
        "examples": examples,
    }


def prepare_data(exp: Experiment, *, images: bool = True, pairs: bool = False) -> DataBundle:
    """Build the sample table, choose the task, preprocess the images and split by patient.

    ``images=False`` skips the images (for baselines that use the table alone).
    ``pairs=True`` makes each patient one sample, both eyes together
    (:mod:`odirkit.data.pairs`), for a model with meta ``eyes = 2``.
    """
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
    photos, paired = None, None
    image_counts = {
        f"{split}_images": int((side == split).sum()) for split in ("train", "val", "test")
    }
    if pairs:  # a both-eyes model: patients are the samples
        photos = rows
        paired = pair_patients(rows, store, side, truth, task)
        rows, targets, store, side = paired.table, paired.targets, paired.store, paired.side
    train_idx = np.flatnonzero(side == "train")
    val_idx = np.flatnonzero(side == "val")
    test_idx = np.flatnonzero(side == "test")
    if cfg.balance == "undersample":
        seed = derive_seed(exp.config.seed, 1)
        if task.single_label:
            train_idx = undersample(train_idx, targets[train_idx], seed=seed)
        else:  # the common label sets capped, no minority label's image removed
            train_idx = undersample_multilabel(train_idx, targets, seed=seed)
    if cfg.shuffle_train_labels:
        targets = targets.copy()
        rng = np.random.default_rng(derive_seed(exp.config.seed, 2))
        targets[train_idx] = targets[rng.permutation(train_idx)]
    if cfg.shuffle_test_labels:  # a control: only the test scores may change
        targets = targets.copy()
        rng = np.random.default_rng(derive_seed(exp.config.seed, 5))
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

    report = {
        "images": len(rows) if photos is None else len(photos),
        "patients": int(rows["patient_id"].nunique()),
        "train_images": len(train_idx),
        "val_images": len(val_idx),
        "test_images": len(test_idx),
        "train_patients": patients_of(train_idx),
        "val_patients": patients_of(val_idx),
        "test_patients": patients_of(test_idx),
        "dropped_without_label": selection.dropped_none,
        "dropped_with_several_labels": selection.dropped_several,
        "skipped_unreadable": len(skipped),
        "fundus_check": checked,
        "cache": str(cache.directory),
        "task": task.kind,
        "labels": list(task.labels),
        "train_counts": _counts(targets[train_idx], task),
        "val_counts": _counts(targets[val_idx], task),
        "test_counts": _counts(targets[test_idx], task),
        "patient_truth": truth_report,
    }
    if paired is not None:  # samples are patients: counts of photographs kept apart
        report.update(image_counts)
        report["samples"] = "patients (both eyes)"
        report["both_eyes"] = paired.report
    if cfg.folds:
        report["fold"] = {"folds": cfg.folds, "test_fold": cfg.fold}
    if "split" in samples.table.columns and not cfg.split_file:
        report["split_source"] = "the dataset's own split (train, val, test)"
    if samples.report:
        report["dataset"] = samples.report
    bundle = DataBundle(rows, task, targets, train_idx, val_idx, test_idx, store, report, skipped)
    bundle.patients = truth
    bundle.photos = photos
    bundle.age_stats = age_statistics(rows, train_idx)
    report["age_normalisation"] = {"mean": bundle.age_stats[0], "std": bundle.age_stats[1]}
    return bundle


def checked_reasons(
    cache: ImageCache, paths: list[str], images: list[np.ndarray | None]
) -> list[str | None]:
    """The fundus check's reason for each prepared image ("" = usable, None = no image),
    remembered beside the cache: a file per preprocessing and check version, keyed as the
    cache's entries are (source path, size, modification time), so that later runs on the
    same images check none of them again."""
    record = cache.directory / f"fundus-check-v{CHECK_VERSION}.json"
    try:
        known: dict[str, str] = json.loads(record.read_text())
    except (OSError, ValueError):
        known = {}
    reasons: list[str | None] = []
    new = {}
    for path, image in zip(paths, images, strict=True):
        if image is None:
            reasons.append(None)
            continue
        key = cache.entry(path).stem
        if key not in known:
            new[key] = check_fundus(image).reason
        reasons.append(known.get(key, new.get(key)))
    if new:
        with suppress(OSError, RunError):  # a read-only cache only costs the time again
            write_json(record, {**known, **new})
    return reasons


def _fundus_check(
    exp: Experiment,
    cache: ImageCache,
    rows: pd.DataFrame,
    targets: np.ndarray,
    prepared: PreparedImages,
    images: bool,
) -> tuple[pd.DataFrame, np.ndarray, PreparedImages, dict[str, Any]]:
    """Check every prepared photograph (``data.fundus_check``): warn about, leave out, or
    stop on those that are not usable fundus photographs."""
    mode = exp.config.data.fundus_check
    if mode == "off" or not images:
        return rows, targets, prepared, {"mode": mode, "checked": 0, "failed": 0}
    reasons = checked_reasons(cache, list(rows["image_path"]), prepared.images)
    failures = [
        (i, reason, REASONS[reason])
        for i, reason in enumerate(reasons)
        if reason is not None and reason
    ]
    listed = [{"path": str(rows["path"].iloc[i]), "reason": reason} for i, reason, _ in failures]
    report: dict[str, Any] = {
        "mode": mode,
        "checked": len(prepared.images),
        "failed": len(failures),
        "failures": listed[:200],
    }
    if not failures:
        return rows, targets, prepared, report
    first = f"{listed[0]['path']}: {failures[0][2]}"
    if mode == "error":
        raise DataError(
            f"{len(failures)} photograph(s) fail the fundus check, first {first}; set "
            'data.fundus_check = "warn" to keep them or "skip" to leave them out'
        )
    if mode == "warn":
        warn(f"{len(failures)} photograph(s) fail the fundus check (kept), first {first}")
        return rows, targets, prepared, report
    warn(f"{len(failures)} photograph(s) fail the fundus check and are left out, first {first}")
    keep = np.setdiff1d(np.arange(len(rows)), [i for i, _, _ in failures])
    prepared.images = [prepared.images[i] for i in keep]
    report["left_out"] = len(failures)
    return rows.iloc[keep].reset_index(drop=True), targets[keep], prepared, report


def age_statistics(table: pd.DataFrame, train_idx: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation of the training images' ages."""
    age = pd.to_numeric(table["age"].iloc[train_idx], errors="coerce").dropna().to_numpy()
    mean = float(age.mean()) if age.size else 0.0
    std = float(age.std()) if age.size > 1 and age.std() > 0 else 1.0
    return mean, std


def metadata_features(table: pd.DataFrame, mean: float, std: float) -> np.ndarray:
    """Age standardised with the training images' ``mean`` and ``std`` (missing: 0, the
    mean) and sex as 1 (male), 0 (female) or 0.5 (unknown): ``float32 [N, 2]``."""
    age = pd.to_numeric(table["age"], errors="coerce").to_numpy(dtype=np.float64)
    z = np.nan_to_num((age - mean) / std, nan=0.0)
    sex = (
        table["sex"]
        .astype(str)
        .str.strip()
        .str.lower()
        .map({"male": 1.0, "m": 1.0, "female": 0.0, "f": 0.0})
        .fillna(0.5)
        .to_numpy()
    )
    return np.stack([z, sex], axis=1).astype(np.float32)


def _counts(targets: np.ndarray, task: Task) -> dict[str, int]:
    if task.single_label:
        counts = np.bincount(targets.astype(np.int64), minlength=task.num_classes)
    else:
        counts = targets.sum(axis=0)
    return {label: int(c) for label, c in zip(task.labels, counts, strict=True)}
