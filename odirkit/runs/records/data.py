"""What a run trained and was tested on: a variant's ``data.json`` (:class:`DataReport`) and
an external collection's (:class:`CollectionReport`), each also kept as ``data`` in the
``metrics.json`` beside it.

Their fields are declared in the order the writers give them, so that a file read and written
again is the same text; the parts a dataset plugin writes (``dataset``) stay free-form.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from odirkit.runs.records.base import Record


class FundusCheck(Record):
    """The fundus check of the photographs (``data.fundus_check``): how many were looked at,
    how many failed and which."""

    DOCUMENT: ClassVar[str] = "a fundus check report"

    #: ``off``, ``warn`` (failures kept), ``skip`` (left out) or ``error``
    mode: str = ""
    #: photographs checked (a collection's report leaves the count out)
    checked: int | None = None
    #: photographs that failed
    failed: int | None = None
    #: the first 200 failures: ``{"path", "reason"}``
    failures: list[dict[str, str]] = Field(default_factory=list)
    #: photographs left out for failing (``skip`` only)
    left_out: int | None = None


class PatientTruth(Record):
    """Where the patients' labels came from (``data.patient_truth``): the union of their
    eyes' labels, or the dataset's own patient labels."""

    DOCUMENT: ClassVar[str] = "a patient truth report"

    #: the source, in words
    source: str = ""
    #: patients labelled
    patients: int | None = None
    #: with the dataset's patient labels: patients on whom they and the eyes' union differ
    disagree_with_eye_labels: int | None = None
    #: up to ten of them: ``{"patient_id", "dataset", "eyes"}`` (labels as letters)
    examples: list[dict[str, str]] = Field(default_factory=list)


class AgeNormalisation(Record):
    """The training images' age, in years, that metadata fusion standardises with."""

    DOCUMENT: ClassVar[str] = "an age normalisation"

    mean: float = 0.0
    #: the standard deviation (1.0 where fewer than two training images had an age)
    std: float = 1.0


class DataReport(Record):
    """Data report: a variant's ``data.json``, the images and patients of each side of the
    split, what was left out and why (also ``data`` in its ``metrics.json``).

    Counts are of images (photographs), or of patients where a both-eyes model's samples
    are patients (``samples``; the photographs' counts are then ``*_images``).
    """

    DOCUMENT: ClassVar[str] = "a data report"
    WRITTEN: ClassVar[Literal["json", "python"]] = "python"

    #: photographs used (after the task's selection and the checks)
    images: int | None = None
    patients: int | None = None
    train_images: int | None = None
    val_images: int | None = None
    test_images: int | None = None
    train_patients: int | None = None
    val_patients: int | None = None
    test_patients: int | None = None
    #: images with none of the task's labels (a single-label task)
    dropped_without_label: int | None = None
    #: images with several of them (a single-label task)
    dropped_with_several_labels: int | None = None
    skipped_unreadable: int | None = None
    fundus_check: FundusCheck | None = None
    #: the preprocessed images' cache folder
    cache: str | None = None
    #: ``single_label`` or ``multi_label``
    task: str = ""
    labels: list[str] = Field(default_factory=list)
    #: per label, the images of each side showing it
    train_counts: dict[str, int] = Field(default_factory=dict)
    val_counts: dict[str, int] = Field(default_factory=dict)
    test_counts: dict[str, int] = Field(default_factory=dict)
    patient_truth: PatientTruth | None = None
    #: ``patients (both eyes)`` where a both-eyes model's samples are patients
    samples: str | None = None
    #: a both-eyes model: patients with both eyes, one eye, left out (``odirkit.data.pairs``)
    both_eyes: dict[str, Any] | None = None
    #: cross-validation: ``{"folds", "test_fold"}``
    fold: dict[str, int] | None = None
    #: set where the dataset came split (its own train, val, test)
    split_source: str | None = None
    #: the dataset plugin's own report, as it gave it
    dataset: dict[str, Any] | None = None
    age_normalisation: AgeNormalisation | None = None
    #: training images added by offline augmenters, by augmenter
    extra_train_images: dict[str, int] = Field(default_factory=dict)

    @property
    def single_label(self) -> bool:
        """Whether the task is single-label (softmax over its labels)."""
        return self.task == "single_label"

    def side(self, side: str) -> tuple[int | None, int | None, dict[str, int]]:
        """Images, patients and per-label counts of ``train``, ``val`` or ``test``."""
        return {
            "train": (self.train_images, self.train_patients, self.train_counts),
            "val": (self.val_images, self.val_patients, self.val_counts),
            "test": (self.test_images, self.test_patients, self.test_counts),
        }[side]


class CollectionReport(Record):
    """Collection report: an external validation's ``data.json``, the collection's images
    as scored (also ``data`` in its ``metrics.json``)."""

    DOCUMENT: ClassVar[str] = "a collection report"
    WRITTEN: ClassVar[Literal["json", "python"]] = "python"

    #: images scored
    images: int | None = None
    patients: int | None = None
    #: per label, the images showing it
    counts: dict[str, int] = Field(default_factory=dict)
    #: the labels the collection grades (the dataset plugin's ``graded_labels``)
    graded_labels: list[str] | None = None
    dropped_without_label: int | None = None
    dropped_with_several_labels: int | None = None
    skipped_unreadable: int | None = None
    fundus_check: FundusCheck | None = None
    #: the dataset plugin's own report (``scored``: which images, in words)
    dataset: dict[str, Any] = Field(default_factory=dict)
    patient_truth: PatientTruth | None = None
    cache: str | None = None

    @property
    def scored(self) -> str:
        """Which of the collection's images were scored, in words."""
        return str(self.dataset.get("scored", "every image"))
