"""What the ``folder`` and ``table`` datasets share.

- :class:`LabelMap`: a collection's classes, grades or columns mapped to odirkit's
  labels (``{ "0" = "N", "1-4" = "D" }``), with the classes left out on purpose;
- :class:`ImageIndex`: every image under a folder, found by one walk and looked up
  by relative path, file name or stem (no walk or stat per row);
- :func:`patients_from_names`: patient and eye from file names by a pattern
  (``(?P<patient>\\d+)_(?P<eye>left|right)`` for EyePACS);
- :func:`collection_table`: the sample table and its report (counts per label,
  classes, what was left out) in the form odirkit's core checks.

The mapping and the pattern are checked when the experiment is read (pydantic
validators on the factories' parameters), so a mistake in them is reported before
any data is read or any folder made.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from pydantic import AfterValidator, Field

import odirkit
from odirkit import LABELS
from odirkit.api import IMAGE_SUFFIXES, warn

Label = Literal["N", "D", "G", "C", "A", "H", "M", "O"]
#: the key of a mapping that takes every class the others do not name
REST = "*"
#: a range of grades: "1-4" (both ends included)
RANGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*-\s*(\d+(?:\.\d+)?)\s*$")
#: folders and files never read as images: odirkit's own cache, hidden folders, and the
#: hidden files a Mac writes (``._name.jpg`` resource forks, inside ``__MACOSX/`` in a zip)
SKIP_PREFIXES = (".",)
SKIP_FOLDERS = ("__MACOSX",)
#: names of split folders (RETFound's benchmark: train/, val/, test/) and their split
SPLIT_FOLDERS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}
#: how collections write the eye
EYES = {"left": "left", "l": "left", "os": "left", "right": "right", "r": "right", "od": "right"}


def class_key(value: object) -> str:
    """A class, grade or cell as the text a mapping's key is compared with: stripped,
    whole numbers without decimals (``2``, ``2.0`` and ``" 2"`` are ``"2"``), blanks ``""``."""
    if value is None:
        return ""
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return ""
        return str(int(value)) if float(value).is_integer() else repr(float(value))
    if isinstance(value, int | np.integer) and not isinstance(value, bool):
        return str(int(value))
    text = " ".join(str(value).split())
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer() and re.fullmatch(r"[+-]?\d+(\.0*)?", text):
        return str(int(number))
    return text


def _grade(text: str) -> float | None:
    try:
        number = float(text)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _check_range(key: str) -> None:
    match = RANGE.match(key)
    if match and float(match[1]) > float(match[2]):
        raise ValueError(f"range {key!r}: the low end comes first (e.g. '1-4')")


def check_mapping(mapping: dict[str, Any]) -> dict[str, Any]:
    """A mapping's keys are classes, grade ranges (``"1-4"``) or ``"*"``; each value is a
    label or a list of labels. Raises ``ValueError`` (pydantic reports it with the key)."""
    if not mapping:
        raise ValueError(
            'give at least one class, e.g. mapping = { "0" = "N", "1-4" = "D" } '
            "(classes, grades or grade ranges -> labels N D G C A H M O)"
        )
    seen: dict[str, tuple[str, Any]] = {}
    for key, value in mapping.items():
        _check_range(key)
        if isinstance(value, list) and not value:
            raise ValueError(
                f"class {key!r} maps to no label; to leave its images out, list it in exclude"
            )
        # "2" and "2.0" (or " 2") are one class once read: two keys for it would leave
        # whichever came last in force, silently
        same = seen.get(class_key(key))
        labels = {value} if isinstance(value, str) else set(value)
        if same is not None and same[1] != labels:
            raise ValueError(
                f"classes {same[0]!r} and {key!r} are the same class once read "
                f"({class_key(key)!r}) but map to different labels; keep one of them"
            )
        seen[class_key(key)] = (key, labels)
    return mapping


def check_exclude(keys: list[str]) -> list[str]:
    for key in keys:
        _check_range(key)
    return keys


def check_pattern(pattern: str) -> str:
    """A regular expression with a named group ``patient`` (and optionally ``eye``)."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"not a regular expression ({exc})") from None
    if "patient" not in compiled.groupindex:
        raise ValueError(
            "the pattern needs a named group (?P<patient>...) (and may have (?P<eye>...)), "
            r"e.g. '(?P<patient>\d+)_(?P<eye>left|right)'"
        )
    return pattern


Mapping = Annotated[
    dict[str, Label | list[Label]],
    AfterValidator(check_mapping),
    Field(description="the collection's classes -> odirkit's labels"),
]
Exclude = Annotated[list[str], AfterValidator(check_exclude)]
Pattern = Annotated[str, AfterValidator(check_pattern)]
Unmapped = Literal["error", "skip"]


@dataclass(frozen=True)
class LabelMap:
    """The classes of a collection mapped to labels; ``lookup`` answers for one class."""

    exact: dict[str, tuple[str, ...]]
    ranges: tuple[tuple[float, float, tuple[str, ...]], ...]
    rest: tuple[str, ...] | None
    excluded: frozenset[str]
    excluded_ranges: tuple[tuple[float, float], ...]

    @classmethod
    def parse(cls, mapping: dict[str, Any], exclude: Iterable[str] = ()) -> LabelMap:
        exact: dict[str, tuple[str, ...]] = {}
        ranges = []
        rest = None
        for key, value in mapping.items():
            labels = tuple(sorted({value} if isinstance(value, str) else set(value), key=_order))
            if key == REST:
                rest = labels
                continue
            exact[class_key(key)] = labels
            match = RANGE.match(key)
            if match:
                ranges.append((float(match[1]), float(match[2]), labels))
        excluded, excluded_ranges = set(), []
        for key in exclude:
            excluded.add(class_key(key))
            match = RANGE.match(key)
            if match:
                excluded_ranges.append((float(match[1]), float(match[2])))
        return cls(exact, tuple(ranges), rest, frozenset(excluded), tuple(excluded_ranges))

    def is_excluded(self, key: str) -> bool:
        if key in self.excluded:
            return True
        grade = _grade(key)
        return grade is not None and any(lo <= grade <= hi for lo, hi in self.excluded_ranges)

    def lookup(self, key: str) -> tuple[str, ...] | None:
        """The labels of class ``key`` (already :func:`class_key`-normalised), or None."""
        if key in self.exact:
            return self.exact[key]
        grade = _grade(key)
        if grade is not None:
            for lo, hi, labels in self.ranges:
                if lo <= grade <= hi:
                    return labels
        return self.rest

    @property
    def labels(self) -> list[str]:
        """Every label the mapping can give, in odirkit's order."""
        found = {label for labels in self.exact.values() for label in labels}
        found |= set(self.rest or ())
        return sorted(found, key=_order)


def _order(label: str) -> int:
    return LABELS.index(label)


@dataclass
class Resolution:
    """Each class of a collection: its labels, excluded, or unmapped, with its image count."""

    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    excluded: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)
    counts: Counter[str] = field(default_factory=Counter)


def resolve_classes(classes: pd.Series, label_map: LabelMap) -> Resolution:
    """Look each distinct class up once (a 10,000-row table has a handful)."""
    result = Resolution()
    for key, count in classes.value_counts(sort=False).items():
        key = str(key)
        result.counts[key] = int(count)
        if label_map.is_excluded(key):
            result.excluded[key] = int(count)
            continue
        labels = label_map.lookup(key)
        if labels is None:
            result.unmapped[key] = int(count)
        else:
            result.labels[key] = labels
    return result


def shown_class(key: str) -> str:
    return repr(key) if key else "'' (blank)"


def unmapped_message(where: str, what: str, unmapped: Counter[str], mapped: Iterable[str]) -> str:
    """``<file>: column 'x' holds class(es) ... not in data.mapping: ...`` and what to do."""
    listed = ", ".join(
        f"{shown_class(k)} ({n} image{'s' if n != 1 else ''})"
        for k, n in sorted(unmapped.items(), key=lambda kv: (-kv[1], kv[0]))[:20]
    )
    more = f" and {len(unmapped) - 20} more" if len(unmapped) > 20 else ""
    known = ", ".join(shown_class(k) for k in mapped) or "none"
    example = next(iter(sorted(unmapped)), "x")
    return (
        f"{where} {what} not in data.mapping: {listed}{more} (mapped: {known}). Map them "
        f'(mapping = {{ "{example}" = "O", ... }}, a range such as "1-4", or "*" for every '
        'other class), list them in exclude = [...], or set unmapped = "skip" to leave them out'
    )


# -- images ----------------------------------------------------------------------------------


class ImageIndex:
    """Every image below a folder, by one walk: looked up by relative path, by file name and
    by stem (each also without regard to case). Hidden folders (odirkit's cache), hidden
    files (a Mac's ``._name.jpg``, which are no images) and ``__MACOSX/`` are skipped."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.paths: list[str] = []  # relative to folder, posix
        for current, dirs, files in os.walk(self.folder):
            dirs[:] = sorted(
                d for d in dirs if not d.startswith(SKIP_PREFIXES) and d not in SKIP_FOLDERS
            )
            relative = os.path.relpath(current, self.folder)
            prefix = "" if relative == "." else relative.replace(os.sep, "/") + "/"
            for name in sorted(files):
                if name.startswith(SKIP_PREFIXES):
                    continue
                if os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
                    self.paths.append(prefix + name)
        self._keys: dict[str, dict[str, list[str]]] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def _table(self, kind: str) -> dict[str, list[str]]:
        if kind not in self._keys:
            table: dict[str, list[str]] = {}
            for path in self.paths:
                name = path.rsplit("/", 1)[-1]
                key = {
                    "path": path,
                    "name": name,
                    "stem": os.path.splitext(name)[0],
                }[kind.removesuffix("_fold")]
                if kind.endswith("_fold"):
                    key = key.casefold()
                table.setdefault(key, []).append(path)
            self._keys[kind] = table
        return self._keys[kind]

    def find(self, reference: str) -> tuple[str | None, list[str]]:
        """The image a table names (a relative path, a file name, or a name without its
        suffix): its relative path, or None with the candidates when several match."""
        reference = reference.strip().replace("\\", "/").removeprefix("./")
        name = reference.rsplit("/", 1)[-1]
        has_suffix = os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES
        attempts = [("path", reference), ("name", name)]
        if not has_suffix:
            attempts.append(("stem", name))
        for kind, key in [*attempts, *((k + "_fold", v.casefold()) for k, v in attempts)]:
            found = self._table(kind).get(key)
            if found:
                if len(found) == 1:
                    return found[0], []
                return None, found
        return None, []


def patients_from_names(names: pd.Series, pattern: str, where: str) -> tuple[pd.Series, pd.Series]:
    """``patient`` and ``eye`` (``left``/``right``, or ``""``) of each name by ``pattern``
    (searched in the file's stem). Raises :class:`odirkit.DataError` naming the names that do
    not match and the eyes that are neither left nor right."""
    stems = names.map(lambda n: os.path.splitext(str(n).replace("\\", "/").rsplit("/", 1)[-1])[0])
    groups = stems.str.extract(pattern)
    missing = groups["patient"].isna()
    if missing.any():
        examples = ", ".join(stems[missing].head(5))
        raise odirkit.DataError(
            f"{where}: {int(missing.sum())} of {len(stems)} file name(s) do not match "
            f"pattern {pattern!r} (e.g. {examples}); fix the pattern (searched in each file "
            "name without its suffix) or leave it out to make each image its own patient"
        )
    eyes = pd.Series("", index=names.index)
    if "eye" in groups.columns:
        raw = groups["eye"].fillna("").astype(str).str.strip().str.lower()
        eyes = raw.map(EYES)
        bad = eyes.isna() & (raw != "")
        if bad.any():
            raise odirkit.DataError(
                f"{where}: pattern {pattern!r} gives eye(s) "
                f"{', '.join(sorted(set(raw[bad]))[:5])}; an eye is left, right, L, R, OS or OD"
            )
        eyes = eyes.fillna("")
    return groups["patient"].astype(str), eyes


def normalise_eyes(values: pd.Series, where: str) -> pd.Series:
    """A column of eyes as ``left``/``right`` (``""`` where blank); anything else is an error."""
    raw = values.map(class_key).str.lower()
    eyes = raw.map(EYES)
    bad = eyes.isna() & (raw != "")
    if bad.any():
        raise odirkit.DataError(
            f"{where}: holds {', '.join(sorted(set(raw[bad]))[:5])}; an eye is left, right, "
            "L, R, OS or OD"
        )
    return eyes.fillna("")


# -- the sample table ----------------------------------------------------------------------


def collection_table(
    *,
    dataset: str,
    paths: Sequence[str],
    labels: Sequence[Sequence[str]],
    patients: pd.Series | None,
    eyes: pd.Series | None,
    patient_source: str,
    age: pd.Series | None = None,
    sex: pd.Series | None = None,
    split: pd.Series | None = None,
    classes: pd.Series | None = None,
    report: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """The sample table (one row per image, ``N``..``O`` as 0/1) with its report in
    ``attrs["odirkit_report"]``: counts per label, patients, eyes, classes.

    Without ``patients`` each image is its own patient (its path without the suffix), and
    the report and one warning say so. An eye not given is recorded as ``left``.
    """
    n = len(paths)
    frame = pd.DataFrame({"path": list(paths)})
    if patients is None:
        frame["patient_id"] = [os.path.splitext(p)[0] for p in paths]
        warn(
            f"{dataset}: the collection gives no patient IDs: each image is its own patient "
            "(two photographs of one person may then fall on both sides of the split)"
        )
    else:
        frame["patient_id"] = patients.astype(str).to_numpy()
    given_eyes = eyes is not None and (eyes != "").any()
    frame["eye"] = eyes.replace("", "left").to_numpy() if eyes is not None else "left"
    frame["age"] = pd.to_numeric(age, errors="coerce").to_numpy() if age is not None else np.nan
    frame["sex"] = sex.map(class_key).to_numpy() if sex is not None else ""
    matrix = np.zeros((n, len(LABELS)), dtype=np.int64)
    position = {label: i for i, label in enumerate(LABELS)}
    for row, image_labels in enumerate(labels):
        for label in image_labels:
            matrix[row, position[label]] = 1
    for i, label in enumerate(LABELS):
        frame[label] = matrix[:, i]
    if split is not None:
        frame["split"] = split.to_numpy()
    if classes is not None:
        frame["class"] = classes.to_numpy()
    counts = {label: int(matrix[:, i].sum()) for i, label in enumerate(LABELS)}
    out = {
        "images": n,
        "counts": counts,
        "patients": int(frame["patient_id"].nunique()),
        "patient_ids": patient_source
        if patients is not None
        else ("none given: each image is its own patient"),
        "eyes": "given" if given_eyes else "not given: recorded as 'left'",
        **(report or {}),
    }
    if split is not None:
        out["split"] = {str(k): int(v) for k, v in split.value_counts().sort_index().items()}
    frame.attrs["odirkit_report"] = out
    return frame


def check_some(count: int, where: str, what: str) -> None:
    if count == 0:
        raise odirkit.DataError(f"{where}: {what}")
