"""Who the phantom's patients are: each label's share of patients (ODIR-5K's), diseases in
one or both eyes, age and sex that depend on them, keywords from the real vocabulary,
label noise and camera, each drawn from a random stream of its own
(:func:`stream`, seeded by ``(seed, patient, purpose)``)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from odirkit import LABELS

GENERATOR_VERSION = 3  # 3: independent streams per purpose; ODIR-5K's label shares
KEYWORD_SEPARATOR = "，"  # U+FF0C, as in the official workbook

#: ODIR-5K training set, patients per label out of 3500 (N is drawn separately)
PATIENT_RATE = {"D": 1128, "G": 215, "C": 212, "A": 164, "H": 103, "M": 174, "O": 979}
NORMAL_RATE = 1138 / 3500
#: how many diseases a diseased patient has: 1.26 on average, as in ODIR-5K's training set
#: (2975 disease labels among 2362 patients who are not normal)
DISEASE_COUNT = {1: 0.77, 2: 0.20, 3: 0.03}
#: probability that a disease of the patient shows in both eyes
BOTH_EYES = {"D": 0.7, "G": 0.6, "C": 0.6, "A": 0.55, "H": 0.6, "M": 0.75, "O": 0.35}
#: years added to a patient's age per label
AGE_SHIFT = {"D": 4.0, "G": 5.0, "C": 12.0, "A": 14.0, "H": 6.0, "M": -12.0, "O": 1.0}

KEYWORDS: dict[str, list[str]] = {
    "N": ["normal fundus"],
    "D": [
        "mild nonproliferative retinopathy",
        "moderate non proliferative retinopathy",
        "severe nonproliferative retinopathy",
        "proliferative diabetic retinopathy",
    ],
    "G": ["glaucoma", "suspected glaucoma"],
    "C": ["cataract"],
    "A": ["dry age-related macular degeneration", "wet age-related macular degeneration"],
    "H": ["hypertensive retinopathy"],
    "M": ["pathological myopia", "myopic retinopathy"],
    "O": [
        "laser spot",
        "retinal pigmentation",
        "chorioretinal atrophy",
        "post laser photocoagulation",
    ],
}
#: keywords that decide nothing, drawn now and then as in the real data
NON_DECISIVE = ["lens dust", "low image quality", "image offset"]


@dataclass(frozen=True)
class PhantomPatient:
    """One synthetic patient: per eye the diseases drawn and the diseases the keywords name
    (they differ where label noise struck), age, sex, keywords and camera."""

    patient_id: int
    age: int
    sex: str
    left: frozenset[str]  # what the keywords say (the labels)
    right: frozenset[str]
    left_keywords: str
    right_keywords: str
    left_dust: bool
    right_dust: bool
    left_drawn: frozenset[str] = frozenset()  # what is drawn in the photograph
    right_drawn: frozenset[str] = frozenset()
    camera: int = 0

    @property
    def labels(self) -> set[str]:
        diseases = set(self.left | self.right)
        return diseases or {"N"}

    def drawn(self, eye: str) -> set[str]:
        return set(self.left_drawn if eye == "left" else self.right_drawn)

    def labelled(self, eye: str) -> set[str]:
        return set(self.left if eye == "left" else self.right)


class Stream(IntEnum):
    """What a patient's random stream is for: each purpose has a stream of its own."""

    DRAW = 1  # diseases, eyes, age, sex, keywords
    NOISE = 2  # label noise and camera
    LEFT_EYE = 3  # rendering each photograph
    RIGHT_EYE = 4


def stream(seed: int, patient_id: int, purpose: Stream) -> np.random.Generator:
    """An independent random stream for one patient and purpose.

    The key ends in the purpose, never zero: NumPy drops trailing zeros from a seed
    list (``[s, p, 2, 0]`` seeds as ``[s, p, 2]``), which in version 2 made the right
    eye's rendering reuse the very numbers that drew the patient's diseases, so the
    right eye's field of view told its label.
    """
    return np.random.default_rng([seed, patient_id, GENERATOR_VERSION, int(purpose)])


def _label_sets() -> tuple[list[frozenset[str]], np.ndarray]:
    """Every set of one to three diseases, and its probability for a diseased patient.

    Chosen so that each label's share of all patients is ODIR-5K's (``PATIENT_RATE``,
    ``NORMAL_RATE``) and a diseased patient has 1.26 diseases on average, as there:
    the number of diseases is drawn from ``DISEASE_COUNT``, and within a count a set's
    weight is the product of per-label weights (diabetes with hypertension favoured),
    fitted by iterative proportional scaling. Exact, deterministic, computed once.
    """
    diseases = list(PATIENT_RATE)
    sets = [
        frozenset(combo) for k in DISEASE_COUNT for combo in itertools.combinations(diseases, k)
    ]
    size = np.array([len(s) for s in sets])
    member = np.array([[label in s for label in diseases] for s in sets], dtype=float)
    bonus = np.array([1.5 if {"D", "H"} <= s else 1.0 for s in sets])
    share = 1.0 - NORMAL_RATE
    target = np.array([PATIENT_RATE[label] / 3500 / share for label in diseases])
    weight = np.ones(len(diseases))
    for _ in range(500):
        product = np.exp(member @ np.log(weight)) * bonus
        p = np.zeros(len(sets))
        for k, chance in DISEASE_COUNT.items():
            within = size == k
            p[within] = chance * product[within] / product[within].sum()
        weight *= (target / (p @ member)) ** 0.5
    return sets, p


LABEL_SETS, LABEL_SET_P = _label_sets()


def draw_diseases(rng: np.random.Generator) -> set[str]:
    """A patient's diseases: none (normal) or a set drawn with ODIR-5K's label shares."""
    if rng.uniform() < NORMAL_RATE:
        return set()
    return set(LABEL_SETS[int(rng.choice(len(LABEL_SETS), p=LABEL_SET_P))])


def draw_patient(
    seed: int, patient_id: int, *, label_noise: float = 0.0, cameras: int = 1
) -> PhantomPatient:
    """The diseases, eyes, age, sex, keywords and camera of one patient.

    With ``label_noise``, that share of patients have keywords drawn afresh, as
    another patient's, whatever their photographs show (a grader's mix-up): each
    label's share of patients stays ODIR-5K's, and an eye whose keywords then
    disagree with its lesions is marked. Noise and camera come from a stream of
    their own, so the drawn patient does not depend on them.
    """
    rng = stream(seed, patient_id, Stream.DRAW)
    diseases = draw_diseases(rng)
    eyes = place_in_eyes(rng, diseases)
    age = rng.normal(55.0, 10.0) + sum(AGE_SHIFT[label] for label in diseases)
    male = rng.uniform() < (0.62 if "H" in diseases else 0.53)
    side = stream(seed, patient_id, Stream.NOISE)
    labelled = {eye: set(found) for eye, found in eyes.items()}
    if label_noise and side.uniform() < label_noise:
        labelled = place_in_eyes(side, draw_diseases(side))
    camera = int(side.integers(0, cameras)) if cameras > 1 else 0
    keywords = {}
    dust = {}
    for eye, found in labelled.items():
        words = [str(rng.choice(KEYWORDS[label])) for label in sorted(found, key=LABELS.index)]
        words = words or list(KEYWORDS["N"])
        dust[eye] = bool(rng.uniform() < 0.06)
        if dust[eye]:
            words.append("lens dust")
        elif rng.uniform() < 0.03:
            words.append(str(rng.choice(NON_DECISIVE[1:])))
        keywords[eye] = KEYWORD_SEPARATOR.join(words)
    return PhantomPatient(
        patient_id=patient_id,
        age=int(np.clip(round(age), 18, 95)),
        sex="Male" if male else "Female",
        left=frozenset(labelled["left"]),
        right=frozenset(labelled["right"]),
        left_keywords=keywords["left"],
        right_keywords=keywords["right"],
        left_dust=dust["left"],
        right_dust=dust["right"],
        left_drawn=frozenset(eyes["left"]),
        right_drawn=frozenset(eyes["right"]),
        camera=camera,
    )


def place_in_eyes(rng: np.random.Generator, diseases: set[str]) -> dict[str, set[str]]:
    """Which eye shows each disease: both with ``BOTH_EYES``' chance, else one at random."""
    eyes: dict[str, set[str]] = {"left": set(), "right": set()}
    for label in sorted(diseases, key=LABELS.index):
        if rng.uniform() < BOTH_EYES[label]:
            eyes["left"].add(label)
            eyes["right"].add(label)
        else:
            eyes[str(rng.choice(["left", "right"]))].add(label)
    return eyes
