"""A whole experiment's schema ([launcher], [tune] and the top level), plugin calls, and one
variant x seed x fold of it, resolved (ResolvedVariant).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from odirkit.config.evaluation import (
    CompareConfig,
    EvalConfig,
    EvaluateOptions,
)
from odirkit.config.schema import (
    NAME_PATTERN,
    DataConfig,
    ExplainOptions,
    ModelConfig,
    TrainConfig,
    _Table,
)
from odirkit.errors import OdirkitError
from odirkit.params import Where
from odirkit.plugins import PluginSpec


class LauncherConfig(_Table):
    """``[launcher]``: where ``odirkit run`` runs the variants (seeds, folds) of a file."""

    kind: Literal["local", "pool", "slurm"] = Field(
        "local",
        description="local: one after another here; pool: --jobs processes here; slurm: one "
        "SLURM job each (submitit)",
    )
    jobs: int = Field(1, ge=1, le=1024, description="pool: how many runs at once")
    gpus_per_run: int = Field(
        1, ge=1, le=64, description="GPUs per run on CUDA; above 1 each run is a DDP job"
    )
    partition: str | None = Field(None, description="slurm: the partition")
    time: int = Field(240, ge=1, description="slurm: minutes per job before it is requeued")
    mem_gb: int | None = Field(None, ge=1, description="slurm: memory per job")
    cpus_per_run: int | None = Field(None, ge=1, description="slurm: CPU cores per run")
    account: str | None = Field(None, description="slurm: the account charged")
    sbatch: dict[str, str | int | float | bool] = Field(
        default_factory=dict, description='slurm: further #SBATCH options, { qos = "high" }'
    )
    cluster: Literal["slurm", "local"] = Field(
        "slurm",
        description="slurm: submit to SLURM; local: submitit's local executor (real jobs and "
        "requeueing on this machine, for trying it without a cluster)",
    )


#: a search range of ``[tune]``: a dotted key = one of these
class TuneRange(_Table):
    """One hyperparameter's range in ``[tune.params]``: bounds (log scale if asked) or choices."""

    model_config = pydantic.ConfigDict(
        extra="forbid", strict=True, populate_by_name=True, allow_inf_nan=False
    )

    log: list[float] | None = Field(
        None, min_length=2, max_length=2, description="log-uniform between two numbers"
    )
    range: list[float] | None = Field(
        None, min_length=2, max_length=2, description="uniform between two numbers"
    )
    integer: list[int] | None = Field(
        None, alias="int", min_length=2, max_length=2, description="an integer in [low, high]"
    )
    choice: list[str | int | float | bool] | None = Field(
        None, min_length=1, description="one of these values"
    )

    @pydantic.model_validator(mode="after")
    def _one_kind(self) -> TuneRange:
        given = [k for k in ("log", "range", "integer", "choice") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of log, range, int, choice")
        kind = given[0]
        bounds = getattr(self, kind)
        if kind != "choice" and not bounds[0] < bounds[1]:
            raise ValueError(f"[{bounds[0]}, {bounds[1]}]: the low end must come first")
        if kind == "log" and bounds[0] <= 0:
            raise ValueError("a log range must be positive")
        return self


class TuneConfig(_Table):
    """``[tune]``: the hyperparameter search of ``odirkit tune``; any dotted key
    (``"train.lr"``) is a parameter with its range."""

    model_config = pydantic.ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    metric: str = Field("", description="the validation metric to optimise; default: train.monitor")
    direction: Literal["maximize", "minimize", "auto"] = Field(
        "auto", description="auto: minimize a loss, maximize anything else"
    )
    storage: str = Field(
        "", description="Optuna storage URL; default: a SQLite file in the tune folder"
    )
    study: str = Field("", description="the study's name; default: the experiment's")
    prune: bool = Field(True, description="stop unpromising trials (median pruner)")
    startup_trials: int = Field(2, ge=0, description="trials never pruned, to learn from")
    params: dict[str, TuneRange] = Field(default_factory=dict)

    @pydantic.model_validator(mode="before")
    @classmethod
    def _dotted_keys_are_params(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        fixed = {k: v for k, v in value.items() if "." not in k}
        params = {k: v for k, v in value.items() if "." in k}
        if params:
            fixed["params"] = {**fixed.get("params", {}), **params}
        return fixed


#: odirkit's own keys in the entries of a plugin list, per kind
ENTRY_OPTIONS: dict[str, type[pydantic.BaseModel]] = {"explainer": ExplainOptions}


class ExperimentConfig(_Table):
    """The top level of an experiment file."""

    name: str = Field(..., pattern=NAME_PATTERN, description="experiment name (run folder)")
    description: str = Field("", description="free text, shown in the report")
    seed: int = Field(0, ge=0, description="seeds every random generator")
    seeds: list[Annotated[int, Field(ge=0)]] | None = Field(
        None,
        min_length=1,
        description="run each variant once per seed (variants named <variant>-seed<k>)",
    )
    repeats: int | None = Field(
        None, ge=1, le=100, description="run each variant with seeds seed, seed+1, ..."
    )
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?|mps)$",
        description="auto (CUDA when present, else CPU), cpu, cuda, cuda:N",
    )
    data: DataConfig = Field(default_factory=DataConfig)  # type: ignore[arg-type]
    model: ModelConfig = Field(default_factory=ModelConfig)  # type: ignore[arg-type]
    train: TrainConfig = Field(default_factory=TrainConfig)  # type: ignore[arg-type]
    eval: EvalConfig = Field(default_factory=EvalConfig)  # type: ignore[arg-type]
    compare: CompareConfig = Field(default_factory=CompareConfig)  # type: ignore[arg-type]
    launcher: LauncherConfig = Field(default_factory=LauncherConfig)  # type: ignore[arg-type]
    tune: TuneConfig = Field(default_factory=TuneConfig)  # type: ignore[arg-type]
    augment: list[dict[str, Any]] = Field(default_factory=list, description="augmenter plugins")
    explain: list[dict[str, Any]] = Field(default_factory=list, description="explainer plugins")
    log: list[dict[str, Any]] = Field(
        default_factory=list, description="logger plugins (experiment trackers)"
    )
    evaluate: list[dict[str, Any]] = Field(
        default_factory=list,
        description="external validation after training: collections each variant's reported "
        "checkpoint is scored on",
    )
    variants: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="overrides merged onto the base, one run each"
    )

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> ExperimentConfig:
        if self.seeds is not None and self.repeats is not None:
            raise ValueError("set seeds or repeats, not both")
        if self.seeds is not None and len(set(self.seeds)) != len(self.seeds):
            raise ValueError("seeds must not repeat")
        if self.data.val_fraction == 0:
            needs = []
            if self.eval.threshold != "0.5":
                needs.append(f'eval.threshold = "{self.eval.threshold}"')
            if self.eval.calibrate:
                needs.append("eval.calibrate = true")
            if self.train.patience:
                needs.append(f"train.patience = {self.train.patience}")
            if needs:
                raise ValueError(
                    f"{', '.join(needs)} need(s) validation patients: set data.val_fraction > 0"
                )
        return self

    @property
    def run_seeds(self) -> list[int] | None:
        """The seeds each variant runs with, when more than the one ``seed``."""
        if self.seeds is not None:
            return list(self.seeds)
        if self.repeats is not None:
            return [self.seed + i for i in range(self.repeats)]
        return None


#: tables whose extra keys are plugin parameters, and the key naming the plugin
PLUGIN_TABLES: dict[str, tuple[str, str]] = {
    "data": ("dataset", "dataset"),
    "model": ("model", "name"),
}


def split_plugin_params(
    doc: dict[str, Any],
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A document's keys for :class:`ExperimentConfig` and, per plugin table (``[data]``,
    ``[model]``, each a dict), the keys beside the core ones: the parameters of the plugin
    the table names."""
    core = dict(doc)
    params: dict[str, dict[str, Any]] = {}
    for table in PLUGIN_TABLES:
        value = doc.get(table, {})
        fields = ExperimentConfig.model_fields[table].annotation.model_fields  # type: ignore[union-attr]
        params[table] = {k: v for k, v in value.items() if k not in fields}
        core[table] = {k: v for k, v in value.items() if k in fields}
    return core, params


@dataclass(frozen=True)
class PluginCall:
    """A plugin named by an experiment, with its validated parameters."""

    spec: PluginSpec
    params: dict[str, Any]
    where: Where | None = None
    options: dict[str, Any] = field(default_factory=dict)  # odirkit's own keys of the entry

    @property
    def name(self) -> str:
        """The plugin's registered name."""
        return self.spec.name

    @cached_property
    def meta(self) -> dict[str, Any]:
        """The plugin's meta, completed by its ``meta_for(params)`` when it has one."""
        return self.spec.meta_for(self.params, where=self.where)

    def build(self, **supplied: Any) -> Any:
        """Call the plugin's factory; its errors name the experiment table that chose it."""
        try:
            return self.spec.build(**supplied, **self.params)
        except OdirkitError as exc:
            raise exc.at(self.where) from None

    def to_dict(self) -> dict[str, Any]:
        """The call as the experiment file would say it: the name, the options, the parameters."""
        return {"name": self.spec.name, **self.options, **self.params}


@dataclass
class ResolvedVariant:
    """One unit of training: a variant of an experiment file for one seed (and fold),
    resolved, every default filled in, every plugin found (``variant`` is its run's name,
    ``default-seed1-fold0``). A whole ``odirkit run`` of these is an
    :class:`odirkit.experiment.ExperimentRun`; the experiment file itself is
    :class:`ExperimentConfig`."""

    config: ExperimentConfig
    variant: str
    dataset: PluginCall
    model: PluginCall
    augmenters: list[PluginCall]
    explainers: list[PluginCall]
    source: str | None = None
    loggers: list[PluginCall] = field(default_factory=list)
    tta_augmenters: list[PluginCall] = field(
        default_factory=list
    )  # [eval] tta: plugins as test-time views
    external: list[ExternalData] = field(default_factory=list)  # [[evaluate]] collections

    @property
    def name(self) -> str:
        """The experiment's name (``name`` at the top level, or the file's)."""
        return self.config.name

    @property
    def image_size(self) -> int:
        """The side, in pixels, images are resized to (``[data] image_size`` or the model's)."""
        assert self.config.data.image_size is not None
        return self.config.data.image_size

    @property
    def labels(self) -> list[str]:
        """The labels this experiment learns, in order."""
        return list(self.config.data.labels)

    @property
    def eyes(self) -> int:
        """2 for a model that sees both eyes of a patient at once (``odirkit.eyes``), else 1."""
        return int(self.model.meta.get("eyes", 1))

    def to_dict(self) -> dict[str, Any]:
        """The resolved configuration: a valid experiment document of its own."""
        doc = self.config.model_dump(
            mode="json", exclude={"variants", "augment", "explain", "log", "evaluate"}
        )
        doc["data"].update(self.dataset.params)
        doc["model"].update(self.model.params)
        doc["augment"] = [a.to_dict() for a in self.augmenters]
        doc["explain"] = [e.to_dict() for e in self.explainers]
        doc["log"] = [log.to_dict() for log in self.loggers]
        doc["evaluate"] = [e.to_dict() for e in self.external]
        return doc

    def fingerprint(self) -> str:
        """What the variant computes: where it runs ([launcher]), how it was searched
        ([tune]) and where it is validated after training ([[evaluate]]) are left out, so a
        run may resume elsewhere."""
        skip = ("launcher", "tune", "evaluate")
        doc = {k: v for k, v in self.to_dict().items() if k not in skip}
        return json.dumps(doc, sort_keys=True)


@dataclass(frozen=True)
class ExternalData:
    """A collection on which a finished variant is validated: an ``[[evaluate]]`` entry, or
    ``odirkit evaluate --data``. ``dataset`` is its dataset plugin with its parameters."""

    name: str
    options: EvaluateOptions
    dataset: PluginCall
    where: str = ""  # the table that named it, for messages

    @property
    def root(self) -> str:
        """The collection's folder (``[data] root`` of the ``[[evaluate]]`` entry)."""
        return self.options.root

    def to_dict(self) -> dict[str, Any]:
        """The entry as the experiment file would say it."""
        own = self.options.model_dump(mode="json", exclude_none=True)
        return {**own, "name": self.name, **self.dataset.params}
