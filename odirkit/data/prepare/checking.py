"""The fundus check over a dataset: verdicts remembered beside the cache, the photographs
refused.
"""

from __future__ import annotations

import json
from contextlib import suppress

import numpy as np
import pandas as pd

from odirkit.config import ResolvedVariant
from odirkit.console import warn
from odirkit.data.fundus_check import CHECK_VERSION, REASONS, check_fundus
from odirkit.data.images import ImageCache, PreparedImages
from odirkit.errors import DataError, RunError
from odirkit.files import write_json
from odirkit.runs.records import FundusCheck


def checked_reasons(
    cache: ImageCache, paths: list[str], images: list[np.ndarray | None]
) -> list[str | None]:
    """The fundus check's reason for each prepared image ("" = usable, None = no image),
    remembered beside the cache: a file per preprocessing and check version, keyed as the
    cache's entries are (source path, size, modification time), so that later runs on the
    same images check none of them again.

    ``images`` are ``uint8 [S, S, 3]`` (None where a photograph could not be read), one
    per path."""
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
    exp: ResolvedVariant,
    cache: ImageCache,
    rows: pd.DataFrame,
    targets: np.ndarray,
    prepared: PreparedImages,
    images: bool,
) -> tuple[pd.DataFrame, np.ndarray, PreparedImages, FundusCheck]:
    """Check every prepared photograph (``data.fundus_check``): warn about, leave out, or
    stop on those that are not usable fundus photographs."""
    mode = exp.config.data.fundus_check
    if mode == "off" or not images:
        return rows, targets, prepared, FundusCheck(mode=mode, checked=0, failed=0)
    reasons = checked_reasons(cache, list(rows["image_path"]), prepared.images)
    failures = [
        (i, reason, REASONS[reason])
        for i, reason in enumerate(reasons)
        if reason is not None and reason
    ]
    listed = [{"path": str(rows["path"].iloc[i]), "reason": reason} for i, reason, _ in failures]
    report = FundusCheck(
        mode=mode, checked=len(prepared.images), failed=len(failures), failures=listed[:200]
    )
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
    report.left_out = len(failures)
    return rows.iloc[keep].reset_index(drop=True), targets[keep], prepared, report
