"""The ``mlflow`` logger: a run per variant in an MLflow tracking store.

Parameters are the resolved configuration, flattened (``train.lr``); metrics
per epoch with ``step = epoch``; the test scores at the end (``test.f1_micro``,
``test.f1_micro.low`` / ``.high`` for its interval); external validations
(``external.<name>.f1_micro``, ``external.<name>.difference.f1_micro``); tags for the experiment,
variant, seed and git commit; the run's figures, configuration and report as
artifacts. The default store is a local SQLite file, ``sqlite:///mlruns.db``, so
``mlflow ui --backend-store-uri sqlite:///mlruns.db`` shows it. A resumed odirkit
run continues the same MLflow run. Needs ``pip install "odirkit[mlflow]"``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import odirkit
from odirkit.api import RunInfo, flatten

#: MLflow's limits on one parameter
MAX_PARAM_VALUE = 6000
BATCH = 100


def _numbers(tree: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """Finite numbers of a nested dict as flat metric names; intervals as .low and .high."""
    out: dict[str, float] = {}
    for key, value in flatten(tree, prefix).items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int | float) and math.isfinite(value):
            out[key] = float(value)
        elif (
            isinstance(value, list | tuple)
            and len(value) == 2
            and all(isinstance(v, int | float) and math.isfinite(v) for v in value)
        ):
            out[f"{key}.low"], out[f"{key}.high"] = float(value[0]), float(value[1])
    return out


class MlflowLogger:
    """Logs one odirkit run to one MLflow run."""

    def __init__(self, tracking_uri: str, experiment: str | None) -> None:
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.client = MlflowClient(tracking_uri=tracking_uri)
        self.run_id: str | None = None

    def start(self, run: RunInfo) -> dict:
        resumed = (run.resumed or {}).get("run_id")
        if resumed:
            self.run_id = resumed
            self.client.update_run(resumed, status="RUNNING")
            return {"run_id": resumed, "tracking_uri": self.tracking_uri}
        name = self.experiment or run.experiment
        found = self.client.get_experiment_by_name(name)
        experiment_id = found.experiment_id if found else self.client.create_experiment(name)
        tags = {
            "odirkit.experiment": run.experiment,
            "odirkit.variant": run.variant,
            "odirkit.seed": str(run.seed),
            "odirkit.directory": str(run.directory),
        }
        if run.git_commit:
            tags["mlflow.source.git.commit"] = run.git_commit
        created = self.client.create_run(experiment_id, run_name=run.variant, tags=tags)
        self.run_id = created.info.run_id
        self._params(flatten(run.config))
        return {"run_id": self.run_id, "tracking_uri": self.tracking_uri}

    def _params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:MAX_PARAM_VALUE]) for k, v in params.items()]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[start : start + BATCH])

    def _metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [
            Metric(k, float(v), stamp, step)
            for k, v in metrics.items()
            if isinstance(v, int | float) and math.isfinite(v)
        ]
        for start in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, metrics=items[start : start + BATCH])

    def log_epoch(self, epoch: int, metrics: Mapping[str, float]) -> None:
        self._metrics(metrics, epoch)

    def log_final(self, final: Mapping[str, Any]) -> None:
        scores = {k: v for k, v in (final.get("final") or {}).items() if k != "reliability"}
        step = int(final.get("checkpoint_epoch") or 0)
        self._metrics(_numbers(scores, "test."), step)

    def log_external(self, name: str, result: Mapping[str, Any]) -> None:
        """An external validation: its scores as ``external.<name>.<metric>`` (with .low and
        .high) and the change from the internal test as ``external.<name>.difference.*``."""
        scores = {k: v for k, v in (result.get("final") or {}).items() if k != "reliability"}
        metrics = _numbers(scores, f"external.{name}.")
        for row in (result.get("comparison") or {}).get("metrics", []):
            key = f"external.{name}.difference.{row['metric']}"
            metrics.update(_numbers({key: row["difference"]}, ""))
            metrics.update(_numbers({key: [row["difference_low"], row["difference_high"]]}, ""))
        self._metrics(metrics, int(result.get("checkpoint_epoch") or 0))

    def log_files(self, paths: Sequence[Path]) -> None:
        for path in paths:
            self.client.log_artifact(self.run_id, str(path))

    def close(self) -> None:
        if self.run_id is not None:
            self.client.set_terminated(self.run_id)


def build_mlflow(
    *, tracking_uri: str = "sqlite:///mlruns.db", experiment: str | None = None
) -> MlflowLogger:
    """Log every variant as an MLflow run.

    tracking_uri: the MLflow tracking store (a local SQLite file by default, relative
    to the working directory; or an http(s) server).
    experiment: the MLflow experiment's name (default: the odirkit experiment's).
    """
    try:
        import mlflow  # noqa: F401
    except ImportError:
        raise odirkit.PluginError(
            'the mlflow logger needs MLflow: pip install "odirkit[mlflow]"'
        ) from None
    return MlflowLogger(tracking_uri, experiment)


@odirkit.hookimpl
def odirkit_register_loggers(register):
    register(
        "mlflow",
        build_mlflow,
        summary="MLflow: parameters, metrics per epoch, test scores, artifacts (SQLite default)",
        test_params={"tracking_uri": "sqlite:///conformance.db"},
    )
