"""The run folder's typed records (odirkit.runs.records): a document reads back as written,
figures are found by name, and a foreign document is refused naming the file and field."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from conftest import TESTS, undeclared
from pydantic import Field

from odirkit.errors import RunError
from odirkit.learning import LearningCheck
from odirkit.runs import VariantDirectory
from odirkit.runs.records import (
    AgeNormalisation,
    BestEpoch,
    CollectionReport,
    DataReport,
    EnsembleMetrics,
    Environment,
    ExternalMetrics,
    Record,
    RunMetrics,
    Scores,
    VariantConfig,
)

DOCUMENT = {
    "experiment": "e",
    "variant": "default-seed1",
    "task": "single_label",
    "labels": ["N", "D"],
    "epochs": 7,
    "checkpoint": "best",
    "checkpoint_epoch": 5,
    "final": {
        "f1_micro": 0.75,
        "auc_macro": 0.8,
        "per_class": {
            "N": {"recall": 0.9, "f1": 0.8, "support": 40},
            "D": {"recall": 0.4, "f1": 0.5, "support": 12},
        },
        "intervals": {"recall_D": [0.2, 0.6], "f1_micro": [0.6, 0.85], "auc_D": [None, None]},
        "threshold_rule": "specificity:0.9",
        "thresholds": {"D": 0.43},
        "temperature": None,
        "loss": 0.51,
    },
    "learning": {"learned": False, "reasons": ["training loss 0.690 not below chance"]},
    "a_future_field": {"kept": True},
}


def test_a_document_reads_back_as_it_was_written(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(DOCUMENT))
    record = RunMetrics.read(path, "not a finished run")
    assert record.to_json() == DOCUMENT  # nothing added (no defaults), nothing lost
    record.write(tmp_path / "again.json")
    assert json.loads((tmp_path / "again.json").read_text()) == DOCUMENT
    assert record.single_label and record.learned is False
    assert record.checkpoint == "best" and record.checkpoint_epoch == 5
    assert record.final.thresholds == {"D": 0.43} and record.final.temperature is None


def test_figures_are_found_by_name_headline_or_per_label():
    scores = RunMetrics.model_validate(DOCUMENT).final
    assert scores.value("f1_micro") == 0.75
    assert scores.value("recall_D") == 0.4 and scores.value("recall_N") == 0.9
    assert scores.value("f1_D") == 0.5 and scores.value("f1_N") == 0.8
    assert scores.value("recall_G") is None  # a label the run did not learn
    assert scores.value("f1_macro") is None  # not reported
    assert scores.interval("recall_D") == (0.2, 0.6)
    assert scores.interval("auc_D") is None  # undefined on these patients
    assert scores.interval("recall_N") is None
    assert scores.label("D")["support"] == 12 and scores.label("G") == {}
    assert Scores.model_validate({"f1_micro": float("nan")}).value("f1_micro") is None
    assert math.isclose(Scores.model_validate({"f1_micro": 1}).value("f1_micro"), 1.0)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        ({"labels": ["N"]}, "final"),  # no result at all
        ({"final": [0.7]}, "final"),
        ({"final": {"per_class": {"D": 0.4}}}, "final.per_class.D"),
        ({"final": {}, "labels": "ND"}, "labels"),
        ({"final": {"intervals": {"recall_D": "wide"}}}, "final.intervals.recall_D"),
    ],
)
def test_a_foreign_document_is_refused_naming_the_file_and_the_field(tmp_path, document, field):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(document))
    with pytest.raises(RunError) as caught:
        RunMetrics.read(path, "not a finished run")
    message = str(caught.value)
    assert message.startswith(f"{path}: not a run's result as odirkit writes it ({field}:")


def test_a_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(RunError, match="missing \\(not a finished run\\)"):
        RunMetrics.read(tmp_path / "metrics.json", "not a finished run")
    (tmp_path / "metrics.json").write_text('{"final": ')
    with pytest.raises(RunError, match=r"metrics\.json: unreadable"):
        RunMetrics.read(tmp_path / "metrics.json", "not a finished run")


def test_ensemble_and_external_results_are_run_results_with_their_own_fields():
    ensemble = EnsembleMetrics.model_validate(
        {**DOCUMENT, "ensemble_of": ["a", "b"], "members_f1_micro": {"a": 0.7, "b": None}}
    )
    assert ensemble.members_f1_micro == {"a": 0.7, "b": None} and ensemble.final.loss == 0.51
    external = ExternalMetrics.model_validate(
        {
            **DOCUMENT,
            "labels_scored": ["N", "D"],
            "comparison": {"metrics": [{"metric": "f1_micro"}], "verdicts": ["lower"]},
        }
    )
    assert external.comparison_rows == [{"metric": "f1_micro"}]
    assert external.verdicts == ["lower"] and external.labels_not_scored == []
    with pytest.raises(RunError, match="not an external validation's result"):
        ExternalMetrics.from_json({"final": {}, "images": "many"}, "x/metrics.json")


@pytest.mark.parametrize("failed", ["not json", "[1]"])
def test_a_damaged_failed_json_is_a_failed_variant_in_runs_and_status(tmp_path, failed):
    # odirkit runs stopped with a JSONDecodeError traceback (status read it guarded)
    from odirkit.runs import list_runs, run_status

    run = tmp_path / "runs" / "x" / "20250101-000000"
    (run / "v").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"name": "x", "variants": ["v"], "started": "x"}))
    (run / "v" / "config.json").write_text("{}")
    (run / "v" / "failed.json").write_text(failed)
    (found,) = list_runs(tmp_path / "runs")
    assert found["status"] == "failed" and found["errors"] == {"v": ""}
    assert run_status(run)["variants"][0]["status"] == "failed"


def test_run_json_reads_as_a_run_s_or_a_trial_s_description(tmp_path):
    from odirkit.runs.records import RunDescription, TrialDescription, read_description

    path = tmp_path / "run.json"
    path.write_text(json.dumps({"name": "e", "variants": ["default-seed0"], "overrides": []}))
    found = read_description(path)
    assert type(found) is RunDescription and found.variants == ["default-seed0"]
    path.write_text(json.dumps({"name": "e", "trial": 3, "values": {"train.lr": 0.01}}))
    trial = read_description(path)
    assert isinstance(trial, TrialDescription) and trial.trial == 3
    assert trial.values == {"train.lr": 0.01} and trial.variants == []
    path.write_text(json.dumps({"name": "e", "trial": "third"}))
    with pytest.raises(RunError, match="not a search trial's description as odirkit"):
        read_description(path)


def test_a_launch_record_keeps_each_job_and_counts_comparisons(tmp_path):
    from odirkit.launch import _record_launch, _update_jobs
    from odirkit.runs import RunDirectory

    run = RunDirectory(tmp_path)
    assert run.jobs().comparisons == 0 and run.jobs().jobs == {}  # no launcher yet
    _update_jobs(run, "default-seed0", id="41", started="t0")  # into a new record
    assert run.jobs().jobs["default-seed0"].id == "41"
    _record_launch(run, "pool", {"a-seed0": {"log": "a.log"}}, slots=2, owner={"pid": 1})
    _update_jobs(run, "a-seed0", exit_code=0)
    written = json.loads(run.jobs_file.read_text())
    assert written["launcher"] == "pool" and written["slots"] == 2
    assert written["jobs"] == {"a-seed0": {"log": "a.log", "exit_code": 0}}
    run.jobs_file.write_text("[1]")  # damaged: read as no launch, not a traceback
    assert run.jobs().launcher == "local" and run.jobs().jobs == {}


# -- config.json, data.json, environment.json and metrics.json's parts (issue 23) -----------

#: documents written by odirkit before they had records (3fff9b2), on tiny phantom runs (the
#: folders' paths replaced): each must read and write back to the very same text
DOCUMENTS = TESTS / "documents"
WRITTEN_BEFORE = {
    # patient level, test-time views, a best epoch, the learning check, NaN and null figures
    "run_metrics.json": RunMetrics,
    "baseline_metrics.json": RunMetrics,
    "ensemble_metrics.json": EnsembleMetrics,
    "external_metrics.json": ExternalMetrics,
    "config.json": VariantConfig,
    "baseline_config.json": VariantConfig,
    "environment.json": Environment,
    "data.json": DataReport,
    "both_eyes_data.json": DataReport,
    "augmented_data.json": DataReport,
    "fold_data.json": DataReport,
    "external_data.json": CollectionReport,
}


@pytest.mark.parametrize("name", sorted(WRITTEN_BEFORE))
def test_a_document_written_before_reads_and_writes_back_byte_for_byte(tmp_path, name):
    record = WRITTEN_BEFORE[name].read(DOCUMENTS / name, "a test document")
    record.write(tmp_path / name)
    assert (tmp_path / name).read_text() == (DOCUMENTS / name).read_text()
    assert undeclared(record) == []  # every key the code wrote has its field
    if isinstance(record, VariantConfig):  # and the configuration's schema reads it
        assert record.settings(DOCUMENTS / name).eval.bootstrap == 50


def test_the_parts_of_a_result_are_read_as_fields():
    found = RunMetrics.read(DOCUMENTS / "run_metrics.json", "a test document")
    assert found.best == BestEpoch(epoch=1, monitor="f1_micro", value=0.0)
    assert found.checkpoints["last"].epoch == 2 and found.checkpoints["best"].epoch == 1
    assert found.checkpoints["last"].recall["G"] is None  # no test patient shows G
    assert found.learning is not None and found.learning.learned is False
    assert found.learning.loss_margin == 0.1 and len(found.learning.reasons) == 2
    assert found.data.test_counts == {"N": 9, "D": 7, "G": 0} and not found.data.single_label
    assert found.data.age_normalisation == AgeNormalisation(
        mean=58.583333333333336, std=10.459910239682854
    )
    external = ExternalMetrics.read(DOCUMENTS / "external_metrics.json", "a test document")
    assert external.data.graded_labels == list("NDGCAHMO") and external.data.scored == "every image"


#: what every resolved configuration names: its dataset and its model
WHOLE = {"data": {"dataset": "phantom"}, "model": {"name": "cnn"}}


@pytest.mark.parametrize(
    ("config", "missing"),
    [
        ({"data": {"dataset": "phantom"}}, "model.name missing"),
        ({"data": {"root": "x"}, "model": {"name": "cnn"}}, "data.dataset missing"),
        ({"data": {"dataset": "phantom"}, "model": {"name": ""}}, "model.name missing"),
    ],
)
def test_a_config_json_without_its_dataset_or_model_is_refused_not_filled_in(
    tmp_path, config, missing
):
    # every resolved configuration names both; filled with defaults, a resumed or
    # predicting run would build another model than the one it trained
    (tmp_path / "config.json").write_text(json.dumps({"name": "x", **config}))
    for read in (VariantDirectory.settings, VariantDirectory.config):  # config: predict's
        with pytest.raises(RunError, match=rf"config\.json: not a variant's .*\({missing}"):
            read(VariantDirectory(tmp_path))


def test_an_older_variant_folder_without_the_optional_keys_reads(tmp_path):
    # what each reader falls back on when a key is missing; written back, nothing is added
    written = {
        "config.json": {
            "name": "old",
            "data": {"dataset": "phantom", "root": "phantom"},
            "model": {"name": "cnn"},
        },
        "data.json": {"images": 10, "task": "single_label", "train_counts": {"N": 3}},
        "environment.json": {"python": "3.11.4"},
        "metrics.json": {
            "final": {"f1_micro": 0.5},
            "learning": {"learned": True},
            "best": {"epoch": 2},
            "checkpoints": {"last": {"epoch": 3}},
        },
    }
    for name, document in written.items():
        (tmp_path / name).write_text(json.dumps(document))
    vdir = VariantDirectory(tmp_path)
    config, settings = vdir.config(), vdir.settings()
    assert config.data == {"dataset": "phantom", "root": "phantom"} and config.augmenters == []
    assert settings.eval.bootstrap == 1000 and settings.compare.metrics == ["f1_micro", "auc_macro"]
    data = vdir.data_report()
    assert vdir.single_label and vdir.age_stats == (0.0, 1.0)  # no age_normalisation
    assert data.patient_truth is None and data.extra_train_images == {} and data.fold is None
    assert vdir.environment().working_directory is None and vdir.environment().git is None
    final = vdir.metrics()
    assert final.best == BestEpoch(epoch=2) and final.best.monitor == "f1_micro"
    assert final.checkpoints["last"].intervals == {} and final.learned is True
    check = LearningCheck.from_record(final.learning)
    assert check.learned and math.isnan(check.train_loss) and check.val_auc_interval is None
    for name, record in [
        ("config.json", config),
        ("data.json", data),
        ("environment.json", vdir.environment()),
        ("metrics.json", final),
    ]:
        assert record.to_json() == written[name], name


@pytest.mark.parametrize(
    ("name", "document", "field"),
    [
        ("config.json", {"name": "x", "augment": {"name": "classic"}}, "augment"),
        ("config.json", {"name": "x", **WHOLE, "eval": {"bootstrap": "many"}}, "eval.bootstrap"),
        ("config.json", {"name": "x", **WHOLE, "compare": {"metric": ["f1_D"]}}, "compare.metric"),
        ("data.json", {"train_counts": {"N": "many"}}, "train_counts.N"),
        ("data.json", {"age_normalisation": {"mean": "old"}}, "age_normalisation.mean"),
        ("data.json", {"patient_truth": ["union"]}, "patient_truth"),
        ("environment.json", {"command": "odirkit run"}, "command"),
        ("environment.json", {"plugins": [{"name": 3}]}, "plugins.0.name"),
        ("metrics.json", {"final": {}, "learning": {"reasons": "none"}}, "learning.reasons"),
        ("metrics.json", {"final": {}, "best": {"value": "high"}}, "best.value"),
        ("metrics.json", {"final": {}, "data": {"images": "all"}}, "data.images"),
        (
            "metrics.json",
            {"final": {}, "checkpoints": {"last": {"intervals": {"f1_micro": ["a", 1]}}}},
            "checkpoints.last.intervals.f1_micro.0",
        ),
    ],
)
def test_a_foreign_variant_document_is_refused_naming_the_file_and_the_field(
    tmp_path, name, document, field
):
    (tmp_path / name).write_text(json.dumps(document))
    vdir = VariantDirectory(tmp_path)
    read = {
        "config.json": vdir.settings,
        "data.json": vdir.data_report,
        "environment.json": vdir.environment,
        "metrics.json": vdir.metrics,
    }[name]
    with pytest.raises(RunError) as caught:
        read()
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / name}: not ") and f"({field}: " in message


def test_a_report_of_a_run_with_a_foreign_configuration_names_it(cli, tmp_path):
    run = tmp_path / "runs" / "x" / "20250101-000000"
    (run / "v").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"name": "x", "variants": ["v"]}))
    (run / "v" / "config.json").write_text(
        json.dumps({"name": "x", **WHOLE, "eval": {"bootstrap": "all"}})
    )
    result = cli("report", run)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "config.json: not a variant's resolved configuration" in result.output
    assert "(eval.bootstrap: " in result.output


def test_the_typed_parts_of_a_result_write_numbers_as_their_dicts_did():
    # learning, checkpoints and best were dicts of any values before they had records: an int
    # stayed an int, a NaN or an infinity was written null; a run writes the same text now
    class Untyped(Record):
        learning: dict[str, Any] | None = None
        checkpoints: dict[str, dict[str, Any]] = Field(default_factory=dict)
        best: dict[str, Any] | None = None

    nan, inf = float("nan"), float("inf")
    parts = {
        "learning": {
            "train_loss": nan,
            "val_auc": None,
            "val_auc_interval": [nan, 1],
            "loss_margin": 0.1,
        },
        "checkpoints": {
            "last": {
                "epoch": 2,
                "f1_micro": 1,
                "auc_macro": np.float64(0.25),
                "recall": {"N": 1.0, "G": nan},
                "odir_patient": {"kappa": 0, "final": -inf},
                "intervals": {"recall_G": [nan, inf], "f1_micro": [0, 1.0]},
            }
        },
        "best": {"epoch": 1, "monitor": "loss", "value": inf},
    }
    typed = RunMetrics(final=Scores(), **parts).to_json()
    assert json.dumps({k: typed[k] for k in parts}) == json.dumps(Untyped(**parts).to_json())


def test_a_data_report_is_written_as_write_json_wrote_it(tmp_path):
    # data.json, config.json and environment.json were written by write_json: a plugin's
    # report may hold a NaN (written NaN) or a numpy number
    from odirkit.files import write_json

    dataset = {"share": float("nan"), "kept": np.int64(2), "cameras": ("a", "b")}
    DataReport(images=3, dataset=dataset).write(tmp_path / "data.json")
    write_json(tmp_path / "before.json", {"images": 3, "dataset": dataset})
    assert (tmp_path / "data.json").read_text() == (tmp_path / "before.json").read_text()


def test_reliability_counts_are_written_as_whole_numbers_as_before_the_records(tmp_path):
    # the writer gives int counts (engine.evaluate.reliability_table); a run made before the
    # records wrote "count": [7, 9], and the record must not turn them into 7.0, 9.0
    bins = {"mean_probability": [0.47, 0.53], "frequency": [0.14, 0.89], "count": [7, 9]}
    path = tmp_path / "metrics.json"
    RunMetrics.model_validate({"final": {"reliability": {"D": bins}}}).write(path)
    assert '"count": [\n          7,\n          9\n        ]' in path.read_text()
    written = json.loads(path.read_text())["final"]["reliability"]["D"]
    assert written == bins and all(type(n) is int for n in written["count"])


def test_a_run_description_without_its_variants_is_refused_naming_the_file(tmp_path):
    from odirkit.runs.records import read_description

    path = tmp_path / "run.json"
    path.write_text('{"x": 1}')
    with pytest.raises(RunError, match=r"run\.json: not a run's description .*variants"):
        read_description(path)
    path.write_text('{"name": "t", "trial": 3}')  # a search trial made before it listed one
    assert read_description(path).variants == []


def test_a_run_json_nested_too_deep_is_unreadable_not_a_crash(tmp_path):
    from odirkit.runs import list_runs

    run = tmp_path / "runs" / "deep" / "20261130-000000"
    run.mkdir(parents=True)
    (run / "run.json").write_text("[" * 100_000 + "]" * 100_000)
    (found,) = list_runs(tmp_path / "runs")
    assert found["status"] == "damaged" and "run.json: unreadable" in found["damage"]


@pytest.mark.parametrize("pid", ["abc", None, True, 1.5])
def test_a_damaged_pid_in_jobs_json_reads_as_a_launcher_that_has_gone(tmp_path, pid):
    import socket

    from odirkit.runs import list_runs

    run = tmp_path / "runs" / "q" / "20261130-000000"
    (run / "a").mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"name": "q", "variants": ["a"], "started": "s"}))
    (run / "a" / "config.json").write_text("{}")
    owner = {"host": socket.gethostname(), "pid": pid}
    jobs = {"launcher": "pool", "owner": owner, "jobs": {"a": {}}}
    (run / "jobs.json").write_text(json.dumps(jobs))
    (found,) = list_runs(tmp_path / "runs")
    assert found["variants"] == {"a": "not started"}  # not "queued": its launcher is gone
