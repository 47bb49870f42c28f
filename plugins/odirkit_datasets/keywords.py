"""ODIR-5K diagnostic keywords -> labels, following the dataset's published rules.

Each eye of each patient carries diagnostic keywords, separated by commas —
in the official workbook often the full-width comma (U+FF0C). The rules:

- "suspected X" counts as X;
- retinopathy of the nonproliferative, proliferative or diabetic kind is D;
  hypertensive retinopathy is H; myopic keywords are M; glaucoma is G;
  cataract is C; age-related macular degeneration is A; "normal fundus" is N;
- "lens dust", "low image quality", "image offset" and "optic disk
  photographically invisible" decide nothing;
- "anterior segment image" and "no fundus image" mark an image that is not a
  fundus photograph at all: it is left out;
- any other keyword names another disease: O.

An eye is N when none of its keywords names a disease. A patient is N only
when neither eye has a disease; otherwise the patient's labels are the union
of both eyes'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from odirkit import LABELS

SEPARATORS = re.compile(r"[,，、;；]")
NON_DECISIVE = (
    "lens dust",
    "low image quality",
    "image offset",
    "optic disk photographically invisible",
    "optic disc photographically invisible",
)
NOT_FUNDUS = ("anterior segment image", "no fundus image")
DIABETIC = re.compile(
    r"(non[\s-]?proliferative|proliferative|diabetic)\s+(diabetic\s+)?retinopathy"
)


@dataclass
class EyeDiagnosis:
    """The labels one eye's keywords give, and what else they say."""

    labels: set[str] = field(default_factory=set)
    fundus: bool = True
    unknown: list[str] = field(default_factory=list)  # keywords that fell to O

    @property
    def diseases(self) -> set[str]:
        return self.labels - {"N"}


def split_keywords(text: object) -> list[str]:
    """One eye's keyword cell -> normalised keywords (lower case, single spaces)."""
    if not isinstance(text, str):
        return []
    words = (" ".join(part.split()).lower() for part in SEPARATORS.split(text))
    return [w for w in words if w]


def keyword_label(keyword: str) -> str | None:
    """The label of one keyword: a code, ``""`` for a non-decisive one, None for not-fundus."""
    word = keyword.strip().lower()
    # every rule but the not-fundus one finds its words anywhere in the keyword, so
    # "suspected X" is X; no keyword of the release puts "suspected" before a not-fundus one
    if word.startswith(NOT_FUNDUS):
        return None
    if any(w in word for w in NON_DECISIVE):
        return ""
    if "normal fundus" in word:
        return "N"
    if "hypertensive" in word and "retinopathy" in word:
        return "H"
    if DIABETIC.search(word):
        return "D"
    if "myopi" in word:
        return "M"
    if "glaucoma" in word:
        return "G"
    if "cataract" in word:
        return "C"
    if "age-related macular degeneration" in word or "age related macular degeneration" in word:
        return "A"
    return "O"


def diagnose_eye(text: object) -> EyeDiagnosis:
    """All of one eye's keywords -> its labels (N when no disease is named)."""
    result = EyeDiagnosis()
    for word in split_keywords(text):
        label = keyword_label(word)
        if label is None:
            result.fundus = False
        elif label == "O":
            result.labels.add("O")
            result.unknown.append(word)
        elif label:
            result.labels.add(label)
    diseases = result.labels - {"N"}
    result.labels = diseases or {"N"}
    return result


def patient_labels(left: EyeDiagnosis, right: EyeDiagnosis) -> set[str]:
    """N only when neither eye has a disease; otherwise the union of the eyes' diseases."""
    diseases = left.diseases | right.diseases
    return diseases or {"N"}


def one_hot(labels: set[str]) -> dict[str, int]:
    return {label: int(label in labels) for label in LABELS}
