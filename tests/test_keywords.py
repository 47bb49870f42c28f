"""ODIR-5K's keyword rules, one keyword and one eye at a time.

The rules are the dataset's published ones (the ODIR-5K challenge's annotation notes,
restated in plugins/odirkit_datasets/keywords.py); the keywords below are spelled as the
released workbook spells them. test_odir5k.py checks the same rules through whole
workbooks on disk.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from odirkit_datasets.keywords import (
    diagnose_eye,
    keyword_label,
    one_hot,
    patient_labels,
    split_keywords,
)

from odirkit import LABELS

#: keyword -> label, as the released workbook writes them ("" decides nothing, None: the
#: photograph is not a fundus)
KEYWORDS = {
    "normal fundus": "N",
    "mild nonproliferative retinopathy": "D",
    "moderate non proliferative retinopathy": "D",
    "severe non-proliferative retinopathy": "D",
    "proliferative diabetic retinopathy": "D",
    "diabetic retinopathy": "D",
    "proliferative retinopathy": "D",
    "hypertensive retinopathy": "H",
    "pathological myopia": "M",
    "myopia retinopathy": "M",
    "myopic maculopathy": "M",
    "glaucoma": "G",
    "suspected glaucoma": "G",
    "cataract": "C",
    "suspected cataract": "C",
    "dry age-related macular degeneration": "A",
    "wet age related macular degeneration": "A",
    "suspected diabetic retinopathy": "D",
    "epiretinal membrane": "O",
    "drusen": "O",
    "laser spot": "O",
    "retinopathy": "O",  # a retinopathy of no named kind is another disease, not D
    "hypertensive": "O",  # nor is "hypertensive" without a retinopathy H
    "lens dust": "",
    "low image quality": "",
    "image offset": "",
    "optic disk photographically invisible": "",
    "optic disc photographically invisible": "",
    "anterior segment image": None,
    "no fundus image": None,
}


@pytest.mark.parametrize("keyword", list(KEYWORDS))
def test_each_keyword_of_the_released_workbook_has_its_label(keyword):
    assert keyword_label(keyword) == KEYWORDS[keyword]


def test_a_keyword_is_read_whatever_its_case_and_surrounding_spaces():
    assert keyword_label("  Hypertensive Retinopathy ") == "H"
    assert keyword_label("SUSPECTED glaucoma") == "G"
    # "suspected" is dropped only in front of a keyword; inside one it is just a word
    assert keyword_label("glaucoma suspected") == "G"
    assert keyword_label("suspected") == "O"


def test_non_decisive_and_not_fundus_phrases_win_over_a_disease_word_beside_them():
    # one keyword cell that names both (the release has e.g. "lens dust" beside a disease
    # in one keyword when a separator is missing): the photograph's quality phrase decides
    assert keyword_label("lens dust glaucoma") == ""
    assert keyword_label("no fundus image cataract") is None
    assert keyword_label("anterior segment image of the left eye") is None
    # a not-fundus phrase decides only at the start of the keyword
    assert keyword_label("epiretinal membrane no fundus image") == "O"
    # "normal fundus" inside a quality phrase is still the quality phrase
    assert keyword_label("low image quality normal fundus") == ""


def test_hypertensive_retinopathy_is_h_not_d_and_diabetic_kinds_are_d_not_o():
    assert keyword_label("hypertensive retinopathy") == "H"
    assert keyword_label("diabetic  retinopathy") == "D"
    assert split_keywords("Diabetic  \tRetinopathy") == ["diabetic retinopathy"]
    assert keyword_label("nonproliferative diabetic retinopathy") == "D"
    assert keyword_label("non-proliferative retinopathy") == "D"


def test_the_three_comma_kinds_and_semicolons_separate_keywords():
    text = "Glaucoma，lens dust,  Drusen、myopic   maculopathy；cataract;"
    assert split_keywords(text) == [
        "glaucoma",
        "lens dust",
        "drusen",
        "myopic maculopathy",
        "cataract",
    ]
    assert split_keywords(float("nan")) == [] and split_keywords(None) == []
    assert split_keywords(" ，, ") == []


def test_an_eye_is_normal_only_when_no_keyword_names_a_disease():
    assert diagnose_eye("normal fundus").labels == {"N"}
    assert diagnose_eye("lens dust").labels == {"N"}  # nothing decisive: no disease named
    assert diagnose_eye(float("nan")).labels == {"N"}
    # "normal fundus" beside a disease, before or after it: the disease, and not N
    assert diagnose_eye("normal fundus，glaucoma").labels == {"G"}
    assert diagnose_eye("cataract，normal fundus").labels == {"C"}
    assert diagnose_eye("lens dust，hypertensive retinopathy").labels == {"H"}
    eye = diagnose_eye("moderate non proliferative retinopathy，pathological myopia")
    assert eye.labels == {"D", "M"} and eye.diseases == {"D", "M"}
    assert diagnose_eye("normal fundus").diseases == set()


def test_keywords_that_fall_to_other_are_kept_in_their_order_and_only_those():
    eye = diagnose_eye("epiretinal membrane，glaucoma，laser spot，lens dust")
    assert eye.labels == {"O", "G"}
    assert eye.unknown == ["epiretinal membrane", "laser spot"]
    assert eye.fundus
    assert diagnose_eye("glaucoma").unknown == []


def test_a_photograph_that_is_not_a_fundus_is_marked_whatever_else_it_says():
    eye = diagnose_eye("anterior segment image")
    assert not eye.fundus and eye.labels == {"N"} and eye.unknown == []
    eye = diagnose_eye("glaucoma，no fundus image")
    assert not eye.fundus and eye.labels == {"G"}
    assert diagnose_eye("glaucoma").fundus and diagnose_eye(None).fundus


def test_a_patient_is_normal_only_when_neither_eye_has_a_disease():
    normal, glaucoma = diagnose_eye("normal fundus"), diagnose_eye("glaucoma")
    assert patient_labels(normal, normal) == {"N"}
    assert patient_labels(glaucoma, normal) == {"G"}
    assert patient_labels(normal, glaucoma) == {"G"}
    both = patient_labels(diagnose_eye("diabetic retinopathy，drusen"), diagnose_eye("cataract"))
    assert both == {"D", "O", "C"}


def test_one_hot_has_every_label_in_the_papers_order():
    encoded = one_hot({"G", "O"})
    assert list(encoded) == list(LABELS)
    assert encoded == {label: int(label in "GO") for label in LABELS}
    assert one_hot(set()) == dict.fromkeys(LABELS, 0)


DECISIVE = [k for k, v in KEYWORDS.items() if v is not None]


@given(st.lists(st.sampled_from(DECISIVE), max_size=6), st.randoms(use_true_random=False))
def test_an_eyes_labels_are_its_keywords_diseases_in_any_order(keywords, random):
    expected = {KEYWORDS[k] for k in keywords} - {"", "N"} or {"N"}
    shuffled = list(keywords)
    random.shuffle(shuffled)
    for order in (keywords, shuffled):
        eye = diagnose_eye("，".join(order))
        assert eye.labels == expected and eye.fundus
        assert eye.unknown == [k for k in order if KEYWORDS[k] == "O"]
