"""``folder``: any collection that comes as a folder per class.

::

    <root>/<images>/<class>/*.jpg                 a folder per class
    <root>/<images>/{train,val,test}/<class>/*.jpg the same, already split (RETFound's
                                                  benchmark ships its datasets so)
    <root>/<images>/*_h.jpg, *_dr.JPG, *_g.jpg    classes = "suffix": the class is the end of
                                                  the file name from its last "_" (HRF)

``mapping`` names odirkit's label(s) for each class: ``{ "1_normal" = "N",
"2_cataract" = "C" }``, ``{ "_h" = "N", "_dr" = "D", "_g" = "G" }``. A class the
mapping does not name stops the reading with a message listing every such class
(``unmapped = "skip"`` leaves them out, ``exclude`` leaves named ones out on
purpose); ``"*"`` maps every class not named. Split folders (``train``, ``val``
or ``valid``, ``test``) are the split unless ``splits = false``. Patients come
from the file names by ``pattern``; without it each image is its own patient.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd

import odirkit
from odirkit.api import IMAGE_SUFFIXES, warn
from odirkit_datasets.collection import (
    SPLIT_FOLDERS,
    Exclude,
    ImageIndex,
    LabelMap,
    Mapping,
    Pattern,
    Unmapped,
    class_key,
    collection_table,
    patients_from_names,
    resolve_classes,
    shown_class,
    unmapped_message,
)


def _layout(paths: list[str], classes: str, splits: bool) -> tuple[pd.Series, pd.Series | None]:
    """Each image's class, and its split when the folder is split (else None)."""
    parts = pd.Series(paths).str.split("/")
    tops = {p[0].casefold() for p in parts if len(p) > 1}  # Train/ as train/
    # a train/ folder, or only split folders each holding class folders (a test/ kept alone)
    nested = classes == "folder" and all(len(p) > 2 for p in parts)
    split_layout = bool(tops) and tops <= set(SPLIT_FOLDERS) and ("train" in tops or nested)
    inner = parts.map(lambda p: p[1:]) if split_layout else parts
    if classes == "suffix":
        stems = inner.map(lambda p: p[-1].rsplit(".", 1)[0])
        found = stems.map(lambda s: "_" + s.rsplit("_", 1)[1] if "_" in s else "")
    else:
        found = inner.map(lambda p: class_key(p[0]) if len(p) > 1 else None)
    split = None
    if split_layout and splits:
        split = parts.map(lambda p: SPLIT_FOLDERS.get(p[0].casefold(), ""))
    return found, split


def folder(
    *,
    root: str,
    mapping: Mapping,
    images: str = ".",
    classes: Literal["folder", "suffix"] = "folder",
    unmapped: Unmapped = "error",
    exclude: Exclude = [],  # noqa: B006 - a TOML default, never mutated
    splits: bool = True,
    pattern: Pattern | None = None,
) -> pd.DataFrame:
    """A collection in a folder per class (or classes in the file names), labels by mapping.

    mapping: class -> label(s): { "1_normal" = "N", "2_cataract" = "C" }; "*" takes every
    class not named.
    images: the folder holding the class folders (or the split folders), relative to root.
    classes: "folder" (the folder an image lies in) or "suffix" (the end of the file name
    from its last "_": 01_dr.jpg -> "_dr", as HRF names its files).
    unmapped: a class the mapping does not name stops the reading ("error") or its images
    are left out ("skip"); either way data.json lists them.
    exclude: classes whose images are left out on purpose.
    splits: train/, val/ (or valid/), test/ folders are the split (false: pool them).
    pattern: a regular expression with (?P<patient>...) and optionally (?P<eye>...),
    searched in each file name: patient and eye (default: each image its own patient).
    """
    base = Path(root) / images
    if not base.is_dir():
        raise odirkit.DataError(
            f"{base}: no such folder; data.root (and images) should name the folder holding "
            "one folder per class (or train/, val/, test/ folders of them)"
        )
    label_map = LabelMap.parse(mapping, exclude)
    index = ImageIndex(base)
    if not len(index):
        raise odirkit.DataError(f"{base}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found")
    found, split = _layout(index.paths, classes, splits)
    outside = found.isna()
    if outside.all():
        raise odirkit.DataError(
            f"{base}: the images lie directly in the folder, not in a folder per class; "
            'point data.images at the folder of class folders, or set classes = "suffix"'
        )
    if outside.any():
        warn(
            f"folder: {int(outside.sum())} image(s) lie outside the class folders of {base} "
            f"and are left out (e.g. {index.paths[int(outside.to_numpy().argmax())]})"
        )
    keep = ~outside
    paths = [p for p, k in zip(index.paths, keep, strict=True) if k]
    found = found[keep].reset_index(drop=True)
    split = split[keep].reset_index(drop=True) if split is not None else None
    resolved = resolve_classes(found, label_map)
    what = "class folder(s)" if classes == "folder" else "file-name suffix(es)"
    if resolved.unmapped and unmapped == "error":
        raise odirkit.DataError(
            unmapped_message(f"{base}:", what, resolved.unmapped, label_map.exact)
        )
    if resolved.unmapped:
        warn(
            f"folder: {sum(resolved.unmapped.values())} image(s) of unmapped "
            f"{what} {', '.join(shown_class(k) for k in sorted(resolved.unmapped))} left out"
        )
    chosen = found.isin(list(resolved.labels)).to_numpy()
    if not chosen.any():
        raise odirkit.DataError(f"{base}: every image was left out (unmapped or excluded)")
    paths = [p for p, k in zip(paths, chosen, strict=True) if k]
    found = found[chosen].reset_index(drop=True)
    split = split[chosen].reset_index(drop=True) if split is not None else None
    relative = Path(images)
    stored = [(relative / p).as_posix() if str(relative) != "." else p for p in paths]
    patients = eyes = None
    if pattern is not None:
        patients, eyes = patients_from_names(pd.Series(paths), pattern, str(base))
    return collection_table(
        dataset="folder",
        paths=stored,
        labels=[resolved.labels[c] for c in found],
        patients=patients,
        eyes=eyes,
        patient_source=f"from the file names (pattern {pattern!r})",
        split=split,
        classes=found,
        report={
            "folder": str(base),
            "classes_from": classes,
            "classes": {k: resolved.counts[k] for k in sorted(resolved.counts)},
            "mapping": {k: list(v) for k, v in sorted(resolved.labels.items())},
            "graded_labels": label_map.labels,
            "unmapped_left_out": dict(sorted(resolved.unmapped.items())),
            "excluded": dict(sorted(resolved.excluded.items())),
            "images_outside_class_folders": int(outside.sum()),
        },
    )


def write_test_data(root: Path) -> None:
    """A miniature collection split in train/ and test/, two classes (conformance)."""
    from odirkit_datasets.miniature import write_fundus

    for i, (split, name) in enumerate(
        [("train", "0_normal"), ("train", "1_dr"), ("train", "0_normal"), ("test", "1_dr")]
    ):
        write_fundus(Path(root) / split / name / f"img{i}.png", seed=i)


@odirkit.hookimpl
def odirkit_register_datasets(register):
    register(
        "folder",
        folder,
        summary="Any collection in a folder per class (optionally train/val/test); mapping",
        test_params={"mapping": {"0_normal": "N", "1_dr": "D"}},
        test_setup=write_test_data,
    )
