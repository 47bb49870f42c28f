"""Typed records of a run folder's documents (pydantic, as timm types its
``PretrainedCfg``), each read and written through one schema.

- :mod:`~odirkit.runs.records.base`: :class:`Record`, reading with a clear error, writing;
- :mod:`~odirkit.runs.records.results`: ``metrics.json`` (:class:`RunMetrics`,
  :class:`EnsembleMetrics`, :class:`ExternalMetrics`; their :class:`Scores`,
  :class:`Learning`, :class:`CheckpointScores`, :class:`BestEpoch`);
- :mod:`~odirkit.runs.records.data`: ``data.json`` of a variant (:class:`DataReport`) and of
  an external validation (:class:`CollectionReport`);
- :mod:`~odirkit.runs.records.variant`: ``config.json`` (:class:`VariantConfig`) and
  ``environment.json`` (:class:`Environment`);
- :mod:`~odirkit.runs.records.bookkeeping`: ``run.json`` (:class:`RunDescription`,
  :class:`TrialDescription`), ``running.json`` (:class:`RunningMarker`), ``failed.json``
  (:class:`Failure`), ``jobs.json`` (:class:`Launch` of :class:`Job`).
"""

from __future__ import annotations

from odirkit.runs.records.base import Record
from odirkit.runs.records.bookkeeping import (
    Failure,
    Job,
    Launch,
    RunDescription,
    RunningMarker,
    TrialDescription,
    read_description,
)
from odirkit.runs.records.data import (
    AgeNormalisation,
    CollectionReport,
    DataReport,
    FundusCheck,
    PatientTruth,
)
from odirkit.runs.records.results import (
    BestEpoch,
    CheckpointScores,
    EnsembleMetrics,
    ExternalMetrics,
    Learning,
    RunMetrics,
    Scores,
)
from odirkit.runs.records.variant import (
    BrokenPlugin,
    Environment,
    GitRevision,
    PluginVersion,
    VariantConfig,
)

__all__ = [
    "AgeNormalisation",
    "BestEpoch",
    "BrokenPlugin",
    "CheckpointScores",
    "CollectionReport",
    "DataReport",
    "EnsembleMetrics",
    "Environment",
    "ExternalMetrics",
    "Failure",
    "FundusCheck",
    "GitRevision",
    "Job",
    "Launch",
    "Learning",
    "PatientTruth",
    "PluginVersion",
    "Record",
    "RunDescription",
    "RunMetrics",
    "RunningMarker",
    "Scores",
    "TrialDescription",
    "VariantConfig",
    "read_description",
]
