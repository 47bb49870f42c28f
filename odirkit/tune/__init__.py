"""Hyperparameter search: ``odirkit tune FILE --trials N`` (Optuna).

The experiment's ``[tune]`` table names dotted keys and their ranges. Each trial is the
experiment with one drawn value per key (the ``--set`` mechanism), trained in
``<out>/<name>/tune/<study>/trial-NNNN/`` and judged on its **validation** patients: the
best value over its epochs of ``val_<metric>``, the same column ``train.monitor`` chooses
``best.pt`` on. The test patients are never scored during the search (no per-epoch test
curves, no ``metrics.json``). Optuna's median pruner reads the per-epoch validation value
and stops trials that fall behind.

The study lives in an Optuna storage (a SQLite file in the study folder unless
``--storage``/``[tune] storage`` names another), so several ``odirkit tune`` processes,
here or on cluster nodes, share it: the storage numbers the trials, so none runs twice,
and the study's total (``--trials``) counts every worker's trials. The worker that sees
the search complete writes ``best.toml`` (the whole experiment with the best trial's
values, a file ``odirkit run`` accepts) and ``tune.json``, then runs ``best.toml`` once as
a normal run: its test score, computed once, at the end.
"""

from __future__ import annotations

from odirkit.tune.search import (
    FORBIDDEN,
    TRIAL_OVERRIDES,
    Search,
    TrialFailed,
    TuneOutcome,
    first_values,
    suggest,
    toml_value,
)
from odirkit.tune.workers import (
    TuneWorker,
    run_workers,
    worker_command,
)

__all__ = [
    "FORBIDDEN",
    "TRIAL_OVERRIDES",
    "Search",
    "TrialFailed",
    "TuneOutcome",
    "TuneWorker",
    "first_values",
    "run_workers",
    "suggest",
    "toml_value",
    "worker_command",
]
