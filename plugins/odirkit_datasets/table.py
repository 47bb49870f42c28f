"""``table``: any collection described by a CSV or workbook of file names and grades.

One row per image: a column naming the image (a path, a file name, or an ID to which
``suffix`` is added: APTOS's ``id_code`` + ``.png``), and its labels in one of two forms:

- ``label_column``: one class or grade per image (APTOS ``diagnosis``, EyePACS
  ``level``, IDRiD ``Retinopathy grade``), mapped to labels by ``mapping``, whose
  keys are classes, grades or grade ranges: ``{ "0" = "N", "1-4" = "D" }``;
- no ``label_column``: one 0/1 column per condition (multi-label, as RFMiD), and
  ``mapping``'s keys are those columns: ``{ "DR" = "D", "ARMD" = "A", "*" = "O" }``.
  Every other column holding only 0 and 1 is a condition too, so a condition the
  mapping forgets is not silently read as "normal" (``ignore_columns`` sets columns
  aside; ``"*"`` maps every column not named). An image with no condition is ``N``
  unless a column maps to ``N``.

Patients come from ``patient_column``, or from the file name by ``pattern``
(``(?P<patient>\\d+)_(?P<eye>left|right)`` for EyePACS); without either each image is
its own patient, and the run says so. A class or column the mapping does not name,
a missing column, or a cell that is not 0/1 stops the reading with a message naming
the file, the column and the values. The table is read once and its images indexed
by one walk of the image folder (``benchmarks/datasets.py`` times 10,000 rows).
"""

from __future__ import annotations

import fnmatch
from pathlib import Path

import numpy as np
import pandas as pd

import odirkit
from odirkit.api import warn
from odirkit_datasets.collection import (
    SPLIT_FOLDERS,
    Exclude,
    ImageIndex,
    LabelMap,
    Mapping,
    Pattern,
    Resolution,
    Unmapped,
    class_key,
    collection_table,
    normalise_eyes,
    patients_from_names,
    resolve_classes,
    shown_class,
    unmapped_message,
)

WORKBOOKS = {".xlsx", ".xlsm", ".xls"}


def _normalise(name: object) -> str:
    return " ".join(str(name).split())


def read_rows(path: Path, sheet: str | None) -> pd.DataFrame:
    """The file as text cells (blanks ``""``), headers with their spacing normalised, blank
    rows and unnamed blank columns dropped."""
    try:
        if path.suffix.lower() in WORKBOOKS:
            frame = pd.read_excel(path, sheet_name=sheet if sheet is not None else 0, dtype=object)
            frame = frame.map(class_key)
        else:
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
            if len(frame.columns) == 1 and any(s in str(frame.columns[0]) for s in ";\t"):
                sep = ";" if ";" in str(frame.columns[0]) else "\t"
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
    except Exception as exc:  # pandas and openpyxl raise many kinds for a damaged file
        raise odirkit.DataError(f"{path}: cannot read the table ({exc})") from None
    frame.columns = [_normalise(c) for c in frame.columns]
    frame = frame.fillna("").astype(str).apply(lambda column: column.str.strip())
    blank_unnamed = [
        c for c in frame.columns if c.startswith("Unnamed:") and (frame[c] == "").all()
    ]
    frame = frame.drop(columns=blank_unnamed)
    return frame[(frame != "").any(axis=1)].reset_index(drop=True)


def _column(frame: pd.DataFrame, name: str, key: str, path: Path) -> str:
    """The file's column called ``name`` (spacing normalised; case ignored if need be)."""
    wanted = _normalise(name)
    if wanted in frame.columns:
        return wanted
    folded = {c.casefold(): c for c in frame.columns}
    if wanted.casefold() in folded:
        return folded[wanted.casefold()]
    from difflib import get_close_matches

    close = get_close_matches(wanted, list(frame.columns), n=1, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise odirkit.DataError(
        f"{path}: no column {name!r} (data.{key}){hint}; the file's columns: "
        f"{', '.join(frame.columns[:40])}"
    )


def table(
    *,
    root: str,
    file: str,
    image_column: str,
    mapping: Mapping,
    label_column: str | None = None,
    suffix: str = "",
    images: str = ".",
    sheet: str | None = None,
    patient_column: str | None = None,
    eye_column: str | None = None,
    pattern: Pattern | None = None,
    age_column: str | None = None,
    sex_column: str | None = None,
    split_column: str | None = None,
    ignore_columns: list[str] = [],  # noqa: B006 - a TOML default, never mutated
    unmapped: Unmapped = "error",
    exclude: Exclude = [],  # noqa: B006
) -> pd.DataFrame:
    """A collection described by a CSV or workbook: images by name, labels by mapping.

    file: the CSV or workbook (.xlsx), relative to root.
    image_column: the column naming each image: a path or file name, relative to images,
    or a name without its suffix (then suffix, or the only image of that name).
    mapping: with label_column, class or grade -> label(s) ({ "0" = "N", "1-4" = "D" });
    without, 0/1 column -> label(s) ({ "DR" = "D", "*" = "O" }).
    label_column: the column holding each image's class or grade (default: none, the
    labels are 0/1 columns).
    suffix: added to each image_column cell (".png" for APTOS's id_code).
    images: the folder holding the images, relative to root.
    sheet: the workbook's sheet (default: the first).
    patient_column: the column of patient IDs (default: pattern, else one image each).
    eye_column: the column of eyes (left/right, L/R, OS/OD).
    pattern: a regular expression with (?P<patient>...) and optionally (?P<eye>...),
    searched in each image's file name.
    age_column, sex_column: the patients' age (years) and sex, where the file has them.
    split_column: a column of train / val / test, used as the split.
    ignore_columns: columns (wildcards allowed) that are not conditions (0/1 form).
    unmapped: a class the mapping does not name stops the reading ("error") or its images
    are left out ("skip").
    exclude: classes (or 0/1 columns) whose images are left out on purpose.
    """
    base = Path(root)
    path = base / file
    if not path.is_file():
        raise odirkit.DataError(
            f"{path}: no such file (data.file, relative to data.root {base}); name the CSV or "
            "workbook of image names and grades"
        )
    image_folder = base / images
    if not image_folder.is_dir():
        raise odirkit.DataError(f"{image_folder}: no such folder (data.images)")
    rows = read_rows(path, sheet)
    if rows.empty:
        raise odirkit.DataError(f"{path}: the table has no rows")
    label_map = LabelMap.parse(mapping, exclude)
    image_col = _column(rows, image_column, "image_column", path)
    named = {"image_column": image_col}
    for key, value in (
        ("label_column", label_column),
        ("patient_column", patient_column),
        ("eye_column", eye_column),
        ("age_column", age_column),
        ("sex_column", sex_column),
        ("split_column", split_column),
    ):
        if value is not None:
            named[key] = _column(rows, value, key, path)
    rows = rows[rows[image_col] != ""].reset_index(drop=True)

    if label_column is not None:
        classes = rows[named["label_column"]].map(class_key)
        resolved = resolve_classes(classes, label_map)
        where = f"{path}: column {named['label_column']!r}"
        labels_of, graded, columns_read = _from_classes(classes, resolved), label_map.labels, []
        keep = classes.isin(list(resolved.labels)).to_numpy().copy()
        what = "holds class(es) or grade(s)"
    else:
        resolved, labels_of, keep, columns_read, graded = _from_columns(
            rows, label_map, set(named.values()), ignore_columns, path
        )
        classes = None
        where = f"{path}:"
        what = "0/1 column(s)"
    if resolved.unmapped and unmapped == "error":
        raise odirkit.DataError(unmapped_message(where, what, resolved.unmapped, label_map.exact))
    if resolved.unmapped:
        warn(
            f"table: images of unmapped class(es) "
            f"{', '.join(shown_class(k) for k in sorted(resolved.unmapped))} of {path.name} "
            "are left out"
        )

    index = ImageIndex(image_folder)
    references = rows[image_col] + suffix
    found: dict[str, str | None] = {}
    for reference in references.unique():
        match, candidates = index.find(reference)
        if candidates:
            raise odirkit.DataError(
                f"{path}: column {image_col!r} names {reference!r}, and {image_folder} holds "
                f"several such images ({', '.join(candidates[:4])}); set data.suffix (e.g. "
                "'.png') or use a column with the full file name"
            )
        found[reference] = match
    located = references.map(found)
    missing = located.isna().to_numpy() & keep
    if keep.any() and missing.all():
        example = index.paths[0] if len(index) else "(no images at all)"
        raise odirkit.DataError(
            f"{path}: none of the images column {image_col!r} names is under {image_folder} "
            f"(e.g. {references[keep].iloc[0]!r}; the folder holds e.g. {example!r}); check "
            "data.images and data.suffix"
        )
    not_found = references[missing].tolist()
    if not_found:
        warn(
            f"table: {len(not_found)} of the {int(keep.sum())} images {path.name} names are "
            f"not under {image_folder} and are left out (listed in data.json), "
            f"e.g. {not_found[0]}"
        )
    keep &= ~missing
    if not keep.any():
        raise odirkit.DataError(f"{path}: every row was left out (unmapped or excluded)")
    keep, repeats = _merge_repeats(located, keep, labels_of, path, image_col)
    chosen = rows[keep].reset_index(drop=True)
    prefix = Path(images)
    stored = [(prefix / p).as_posix() if str(prefix) != "." else str(p) for p in located[keep]]
    patients = eyes = None
    source = ""
    if patient_column is not None:
        patients = chosen[named["patient_column"]].map(class_key)
        source = f"from column {named['patient_column']!r}"
    if pattern is not None:
        from_names, eyes = patients_from_names(chosen[image_col], pattern, str(path))
        if patients is None:
            patients, source = from_names, f"from the file names (pattern {pattern!r})"
    if eye_column is not None:
        eyes = normalise_eyes(
            chosen[named["eye_column"]], f"{path}: column {named['eye_column']!r}"
        )
    split = None
    if split_column is not None:
        raw = chosen[named["split_column"]].str.lower()
        split = raw.map(SPLIT_FOLDERS)
        if split.isna().any():
            bad = ", ".join(sorted(set(raw[split.isna()]))[:5])
            raise odirkit.DataError(
                f"{path}: column {named['split_column']!r} holds {bad}; a split is train, "
                "val (valid, validation) or test"
            )
    image_labels = [labels_of[i] for i in np.flatnonzero(keep)]
    return collection_table(
        dataset="table",
        paths=stored,
        labels=image_labels,
        patients=patients,
        eyes=eyes,
        patient_source=source,
        age=chosen[named["age_column"]] if age_column is not None else None,
        sex=chosen[named["sex_column"]] if sex_column is not None else None,
        split=split,
        classes=classes[keep].reset_index(drop=True) if classes is not None else None,
        report={
            "file": str(path),
            "rows": len(rows),
            "columns": named,
            "label_columns_read": columns_read,
            "classes": {k: resolved.counts[k] for k in sorted(resolved.counts)},
            "mapping": {k: list(v) for k, v in sorted(resolved.labels.items())},
            "graded_labels": graded,
            "unmapped_left_out": dict(sorted(resolved.unmapped.items())),
            "excluded": dict(sorted(resolved.excluded.items())),
            "images_not_found": {"count": len(not_found), "examples": not_found[:200]},
            "repeated_rows_merged": repeats,
        },
    )


def _merge_repeats(
    located: pd.Series, keep: np.ndarray, labels_of: list[tuple[str, ...]], path: Path, column: str
) -> tuple[np.ndarray, int]:
    """Rows naming an image an earlier row names: left out when they give it the same labels
    (a repeated row), an error naming the image when they do not. Returns the rows to keep
    and how many repeats were left out."""
    kept = np.flatnonzero(keep)
    named_again = located.iloc[kept].astype(str).duplicated(keep=False).to_numpy()
    first: dict[str, int] = {}
    keep = keep.copy()
    repeats = 0
    for row in kept[named_again]:  # a handful of rows, if any
        image = str(located.iloc[row])
        earlier = first.setdefault(image, int(row))
        if earlier == row:
            continue
        if labels_of[earlier] != labels_of[row]:
            shown = [",".join(labels_of[i]) or "none" for i in (earlier, row)]
            raise odirkit.DataError(
                f"{path}: column {column!r} names image {image} in two rows with different "
                f"labels ({shown[0]} and {shown[1]}); keep one row per image"
            )
        keep[row] = False
        repeats += 1
    if repeats:
        warn(
            f"table: {repeats} row(s) of {path.name} repeat an image an earlier row names with "
            "the same labels; each image is read once (repeated_rows_merged in data.json)"
        )
    return keep, repeats


def _from_classes(classes: pd.Series, resolved: Resolution) -> list[tuple[str, ...]]:
    table = resolved.labels
    return [table.get(c, ()) for c in classes]


def _zero_one(values: pd.Series) -> pd.Series | None:
    """The column as 0/1 integers (blank 0), or None when it holds anything else."""
    keys = values.map(class_key)
    if not keys.isin(["0", "1", ""]).all():
        return None
    return (keys == "1").astype(np.int64)


def _from_columns(
    rows: pd.DataFrame,
    label_map: LabelMap,
    used: set[str],
    ignore: list[str],
    path: Path,
) -> tuple[Resolution, list[tuple[str, ...]], np.ndarray, list[str], list[str]]:
    """0/1 columns: each image's labels, which rows to keep, the columns read, the labels
    the collection grades."""
    named = [k for k in [*label_map.exact, *label_map.excluded] if k not in used]
    lacking = [k for k in named if k not in rows.columns]
    if lacking:
        raise odirkit.DataError(
            f"{path}: data.mapping (or exclude) names column(s) {', '.join(map(repr, lacking))} "
            f"that the file lacks; its columns: {', '.join(rows.columns[:40])}. (To map the "
            "values of one column of classes or grades, set data.label_column.)"
        )
    candidates = [
        c
        for c in rows.columns
        if c not in used and not any(fnmatch.fnmatchcase(c, p) for p in ignore)
    ]
    matrix: dict[str, pd.Series] = {}
    for column in candidates:
        values = _zero_one(rows[column])
        if values is None:
            if column in named:
                bad = rows[column][~rows[column].map(class_key).isin(["0", "1", ""])]
                raise odirkit.DataError(
                    f"{path}: column {column!r} must hold 0 or 1; row(s) "
                    f"{', '.join(str(i + 2) for i in bad.index[:5])} hold "
                    f"{', '.join(map(repr, sorted(set(bad))[:5]))}"
                )
            continue  # not a condition (a grade 0-2, a text column)
        matrix[column] = values
    if not matrix:
        raise odirkit.DataError(f"{path}: no 0/1 column to read labels from; set label_column")
    resolution = Resolution()
    columns = list(matrix)
    for column in columns:
        positives = int(matrix[column].sum())
        resolution.counts[column] = positives
        if label_map.is_excluded(column):
            resolution.excluded[column] = positives
        elif label_map.lookup(column) is None:
            if positives:
                resolution.unmapped[column] = positives
        else:
            resolution.labels[column] = label_map.lookup(column)  # type: ignore[assignment]
    values = np.stack([matrix[c].to_numpy() for c in columns], axis=1).astype(bool)
    excluded = values[:, [columns.index(c) for c in resolution.excluded]].any(axis=1)
    explicit_normal = any("N" in labels for labels in resolution.labels.values())
    # without a column for N, an image with no condition at all (mapped or not) is normal
    normal = ~values.any(axis=1) & (not explicit_normal)
    mapped = [(columns.index(c), labels) for c, labels in resolution.labels.items()]
    labels_of: list[tuple[str, ...]] = []
    for row in range(len(rows)):
        found: set[str] = {"N"} if normal[row] else set()
        for i, labels in mapped:
            if values[row, i]:
                found.update(labels)
        labels_of.append(tuple(sorted(found, key=odirkit.LABELS.index)))
    # an image whose only conditions are unmapped (skipped) or none is left out
    keep = ~excluded & np.array([bool(labels) for labels in labels_of])
    graded = set(label_map.labels) | ({"N"} if not explicit_normal else set())
    return resolution, labels_of, keep, columns, sorted(graded, key=odirkit.LABELS.index)


def write_test_data(root: Path) -> None:
    """A miniature EyePACS: trainLabels.csv (image, level) and <patient>_<eye>.jpeg."""
    from odirkit_datasets.miniature import write_eyepacs

    write_eyepacs(Path(root), patients=3)


@odirkit.hookimpl
def odirkit_register_datasets(register):
    register(
        "table",
        table,
        summary="Any collection described by a CSV or workbook of image names and grades",
        test_params={
            "file": "trainLabels.csv",
            "images": "train",
            "image_column": "image",
            "label_column": "level",
            "mapping": {"0": "N", "1-4": "D"},
            "pattern": r"(?P<patient>\d+)_(?P<eye>left|right)",
        },
        test_setup=write_test_data,
    )
