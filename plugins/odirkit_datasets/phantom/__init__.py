"""The phantom: a deterministic synthetic ODIR-5K, lesion masks included.

It writes the official ODIR-5K layout — the annotation workbook
``ODIR-5K_Training_Annotations(Updated)_V2.xlsx`` (one row per patient, the
official columns, diagnostic keywords from the real vocabulary joined by the
full-width comma the official file uses) beside ``ODIR-5K_Training_Dataset/``
holding ``<ID>_left.jpg`` and ``<ID>_right.jpg`` — plus what the real data
lacks: ``phantom_images.csv`` with per-eye labels and ``masks/<ID>_<eye>_<L>.png``,
one lesion mask per eye and label, the ground truth for judging explanations.

Label frequencies follow ODIR-5K's training set (within a few per cent, by
construction), a disease sits in one or both eyes, and age
and sex depend on the labels (older patients for A and C, younger for M), so
metadata carries some signal. ``difficulty = "realistic"`` (the default) draws
disease as a continuum from barely visible to severe, mild cases the most
common, with overlapping features, benign look-alikes and acquisition
variation, and gives a stated share of eyes keywords that disagree with their
lesions (``label_noise``): ``phantom_images.csv`` says per eye what is drawn
(``drawn_<L>``) and whether the label is noisy. ``difficulty = "easy"`` is the
first version's look: florid lesions, classes apart, for fast tests.
``phantom.json`` records every generator parameter. Each patient is drawn from
random streams of its own, one per purpose (the diseases, the label noise and
camera, each eye's photograph; :func:`stream`), seeded by ``(seed, patient,
purpose)``: same seed, same bytes, adding patients leaves the first ones
unchanged, and nothing the camera does depends on the diagnosis
(``difficulty.acquisition_shortcuts`` measures it). Each label's share of
patients is ODIR-5K's (:func:`draw_diseases`).

One job per module: ``patients`` (who is drawn), ``folder`` (the files written and
checked), ``dataset`` (the plugin's factory and registration); the photographs are
``fundus_render``'s.
"""

from odirkit_datasets.phantom.dataset import odirkit_register_datasets, phantom
from odirkit_datasets.phantom.folder import (
    IMAGE_DIR,
    IMAGE_TABLE,
    MANIFEST,
    MASK_DIR,
    WORKBOOK,
    Settings,
    generate,
    load_table,
    needs_generation,
    read_manifest,
    workbook_table,
    write_patient_images,
    write_workbook,
)
from odirkit_datasets.phantom.patients import (
    AGE_SHIFT,
    BOTH_EYES,
    DISEASE_COUNT,
    GENERATOR_VERSION,
    KEYWORD_SEPARATOR,
    KEYWORDS,
    LABEL_SET_P,
    LABEL_SETS,
    NON_DECISIVE,
    NORMAL_RATE,
    PATIENT_RATE,
    PhantomPatient,
    Stream,
    draw_diseases,
    draw_patient,
    place_in_eyes,
    stream,
)

__all__ = [
    "AGE_SHIFT",
    "BOTH_EYES",
    "DISEASE_COUNT",
    "GENERATOR_VERSION",
    "IMAGE_DIR",
    "IMAGE_TABLE",
    "KEYWORDS",
    "KEYWORD_SEPARATOR",
    "LABEL_SETS",
    "LABEL_SET_P",
    "MANIFEST",
    "MASK_DIR",
    "NON_DECISIVE",
    "NORMAL_RATE",
    "PATIENT_RATE",
    "WORKBOOK",
    "PhantomPatient",
    "Settings",
    "Stream",
    "draw_diseases",
    "draw_patient",
    "generate",
    "load_table",
    "needs_generation",
    "odirkit_register_datasets",
    "phantom",
    "place_in_eyes",
    "read_manifest",
    "stream",
    "workbook_table",
    "write_patient_images",
    "write_workbook",
]
