"""From an experiment's ``[data]`` table to tensors: the data bundle a run trains on."""

from __future__ import annotations

from odirkit.data.prepare.bundle import (
    DataBundle,
    prepare_data,
)
from odirkit.data.prepare.cache import (
    CACHE_FOLDER,
    cache_for,
    cache_root,
    preprocessing_of,
)
from odirkit.data.prepare.checking import (
    checked_reasons,
)
from odirkit.data.prepare.samples import (
    Samples,
    age_statistics,
    assign_split,
    eye_union_labels,
    load_samples,
    metadata_features,
    patient_truth,
)
from odirkit.data.prepare.store import (
    PRELOAD_LIMIT_BYTES,
    ImageStore,
    chunked,
)

__all__ = [
    "CACHE_FOLDER",
    "PRELOAD_LIMIT_BYTES",
    "DataBundle",
    "ImageStore",
    "Samples",
    "age_statistics",
    "assign_split",
    "cache_for",
    "cache_root",
    "checked_reasons",
    "chunked",
    "eye_union_labels",
    "load_samples",
    "metadata_features",
    "patient_truth",
    "prepare_data",
    "preprocessing_of",
]
