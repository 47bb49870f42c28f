"""Typed records of a run folder's documents (pydantic, as timm types its
``PretrainedCfg``), each read and written through one schema.

- :mod:`~odirkit.runs.records.base`: :class:`Record`, reading with a clear error, writing;
- :mod:`~odirkit.runs.records.results`: ``metrics.json`` (:class:`RunMetrics`,
  :class:`EnsembleMetrics`, :class:`ExternalMetrics`, their :class:`Scores`);
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
from odirkit.runs.records.results import EnsembleMetrics, ExternalMetrics, RunMetrics, Scores

__all__ = [
    "EnsembleMetrics",
    "ExternalMetrics",
    "Failure",
    "Job",
    "Launch",
    "Record",
    "RunDescription",
    "RunMetrics",
    "RunningMarker",
    "Scores",
    "TrialDescription",
    "read_description",
]
