"""External validation: a finished run's reported checkpoint scored on another collection.

The question a reviewer asks first of a medical model (TRIPOD-AI, CLAIM) is how it does
on data from elsewhere. :func:`evaluate_external` answers it without touching the model:

1. the run is re-opened as ``odirkit predict`` opens it (:func:`odirkit.predict.load_trained`):
   the reported checkpoint, the run's preprocessing, normalisation, test-time views,
   temperature and patient fusion (:class:`~odirkit.view.ModelView`);
2. the collection's images (its test split when it comes split; :mod:`odirkit.data.external`)
   go through them, and are scored at the run's level with the run's **operating points**,
   chosen on the run's validation patients and never refitted on the external data;
3. only the labels the collection grades are scored; the run's other labels are named as
   not scored. A single-label run keeps its own decisions (the most probable of all its
   classes): an image predicted as a class the collection lacks is an error, and the
   per-class and macro figures cover the shared labels;
4. the same metrics and bootstrap intervals as the run's test are computed, and the
   change from the internal test (the run's own test predictions, on the same labels) is
   tested, not eyeballed: the difference external - internal of each metric with a
   percentile interval from resampling the two patient sets independently.

Results go to ``<variant>/external/<name>/`` (a new folder each time:
:meth:`~odirkit.runs.VariantDirectory.new_external`), to the run's reports
(:mod:`odirkit.report`) and to its logger plugins (``log_external``).
"""

from __future__ import annotations

from odirkit.external.evaluating import (
    evaluate_external,
)
from odirkit.external.scoring import (
    COMPARED,
    ExternalResult,
    SharedScoring,
    compare_with_internal,
    plot_internal_vs_external,
    verdict,
)

__all__ = [
    "COMPARED",
    "ExternalResult",
    "SharedScoring",
    "compare_with_internal",
    "evaluate_external",
    "plot_internal_vs_external",
    "verdict",
]
