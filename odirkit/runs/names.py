"""The names of the files in a run folder that other modules write: the report, a
variant's figures, its explanations and augmenters' reports, the loggers' state, and a
search's files. :mod:`odirkit.runs.layout` names a variant's own documents."""

from __future__ import annotations


class ReportFiles:
    """The comparison of a run's variants, in the run folder."""

    MARKDOWN = "report.md"
    HTML = "report.html"
    TABLE = "comparison.csv"
    ANSWER = "comparison.json"  # the answer and the verdicts, as the console states them
    CURVES = "comparison.png"  # validation curves per epoch, a line and a band per variant
    TEST_CURVES = "comparison_test.png"
    RECALL = "recall_per_class.png"


class FigureFiles:
    """One variant's figures, in its ``figures/`` folder."""

    F1 = "f1_per_epoch.png"
    RECALL_PER_EPOCH = "recall_per_epoch.png"
    LOSS = "loss_per_epoch.png"
    RECALL = "recall_per_class.png"
    RELIABILITY = "reliability.png"
    CONFUSION = "confusion.png"
    ROC = "roc.png"
    PR = "pr.png"
    TRAINING_IMAGES = "training_images.png"

    @classmethod
    def curves(cls, kind: str) -> str:
        """The file of the ROC (``kind = "roc"``) or precision-recall (``"pr"``) curves."""
        return {"roc": cls.ROC, "pr": cls.PR}[kind]


class ExplainFiles:
    """An ``explain/`` folder: one explanation of a model."""

    MAPS = "maps.npz"
    GRID = "grid.png"
    LOCALISATION = "localisation.csv"
    SANITY = "sanity.csv"
    SUMMARY = "summary.json"
    OVERLAY = "{patient}_{eye}_{label}.png"  # in a folder per explainer


class SearchFiles:
    """A search's folder (``odirkit tune``)."""

    STUDY = "tune.json"
    BEST = "best.toml"
    WORKER_LOG = "worker-{index}.log"


#: a variant's subfolder where offline augmenters keep what they made, one folder each
AUGMENT_FOLDER = "augment"
#: what an augmenter tells the report, in its folder (figures with captions, notes)
AUGMENTER_REPORT = "report.json"
#: the logger plugins' state in a variant folder, so a resumed run continues its tracking
LOGGERS = "loggers.json"
