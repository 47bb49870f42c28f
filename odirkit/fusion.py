"""Patient fusion: how the probabilities of a patient's eyes become the patient's.

A patient has a disease when at least one eye has it, and is normal only when
every eye is normal. So the two kinds of label fuse differently:

- a disease label (D, G, C, A, H, M, O) fuses by the **maximum** over the
  eyes (``fusion = "max"``, the default), or by their **mean**
  (``fusion = "mean"``: smoother, but a disease seen in one eye only is
  halved, so choose the thresholds on validation patients);
- N fuses by the **minimum** over the eyes under either rule: the patient is
  as normal as their least normal eye.

Taking the maximum of N as well, as a per-label rule would, calls a patient
with one diabetic eye and one normal eye "normal" with the normal eye's
confidence.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

FUSIONS = ("max", "mean")
NORMAL = "N"


def fuse_eyes(
    probs: np.ndarray, patient_ids: Sequence[str], labels: Sequence[str], fusion: str = "max"
) -> pd.DataFrame:
    """Per-patient probabilities ``[P, C]`` from per-image ones ``[N, C]``.

    Returns a frame indexed by patient ID, one column per label, patients in
    the order they first appear in ``patient_ids``.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, got {fusion!r}")
    labels = list(labels)
    frame = pd.DataFrame(np.asarray(probs, dtype=np.float64), columns=labels)
    frame["patient_id"] = list(patient_ids)
    grouped = frame.groupby("patient_id", sort=False)
    fused = grouped[labels].max() if fusion == "max" else grouped[labels].mean()
    if NORMAL in labels:
        fused[NORMAL] = grouped[NORMAL].min()
    return fused
