"""External validation: a finished run scored on another collection (``odirkit evaluate``,
``[[evaluate]]``).

Two tiny runs are trained once per module on the session phantom: a multi-label one
(N, D, G at patient level, thresholds by max F1 and a temperature, both chosen on
validation) and a single-label one (N, D, G per image). The external collection is a
second phantom (another seed, three cameras) filed as EyePACS files it:
``train/<patient>_<eye>.jpeg`` and ``trainLabels.csv`` with ICDR levels, so it grades
N and D only.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import file_digests
from typer.testing import CliRunner

from odirkit import bootstrap
from odirkit.config import load_experiment
from odirkit.experiment import run_experiment, start_run
from odirkit.external import SharedScoring, compare_with_internal
from odirkit.metrics import classification_metrics
from odirkit.plugins import Registry
from odirkit.runs import VariantDirectory

pytestmark = pytest.mark.slow

EYEPACS = """
[data]
dataset = "table"
root = "{root}"
file = "trainLabels.csv"
images = "train"
image_column = "image"
label_column = "level"
mapping = {{ "0" = "N", "1-4" = "D" }}
pattern = '(?P<patient>\\d+)_(?P<eye>left|right)'
"""


def experiment(phantom: Path, name: str, extra: str) -> str:
    return f"""
name = "{name}"
seed = 0
device = "cpu"

[data]
dataset = "phantom"
root = "{phantom.as_posix()}"
patients = 40
size = 96
difficulty = "easy"
labels = ["N", "D", "G"]
image_size = 48
test_fraction = 0.3
val_fraction = 0.25
{extra}

[model]
name = "cnn"
widths = [4, 8, 8, 8]
kernels = [5, 3, 3, 3]
pool = 2
dense = [16]
dropout = 0.0

[train]
epochs = 2
batch_size = 16
optimizer = "adam"
lr = 0.003
"""


def train(folder: Path, text: str) -> VariantDirectory:
    registry = Registry()
    registry.load_entry_points()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "exp.toml").write_text(text)
    with contextlib.chdir(folder):  # MLflow keeps artifacts under the working directory
        experiments = load_experiment(folder / "exp.toml", registry)
        started = start_run(experiments, out=folder / "runs", source_text=text, overrides=[])
        run_experiment(started, registry=registry)
    return started.directory.variant("default")


@pytest.fixture(autouse=True)
def _work_in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # evaluate's loggers write there, never into the checkout


@pytest.fixture(scope="module")
def external_phantom(tmp_path_factory) -> Path:
    registry = Registry()
    registry.load_entry_points()
    root = tmp_path_factory.mktemp("external") / "phantom"
    registry.get("dataset", "phantom").build(
        root=str(root), patients=24, size=96, seed=1, difficulty="easy", camera_shift=True
    )
    return root


@pytest.fixture(scope="module")
def eyepacs(external_phantom, tmp_path_factory) -> Path:
    """The external phantom as EyePACS files it: photographs with N or D only, graded 0-4."""
    root = tmp_path_factory.mktemp("eyepacs") / "eyepacs"
    (root / "train").mkdir(parents=True)
    table = pd.read_csv(external_phantom / "phantom_images.csv", keep_default_na=False)
    rows = []
    for row in table.itertuples(index=False):
        others = sum(getattr(row, label) for label in "GCAHMO")
        if others:
            continue  # EyePACS grades diabetic retinopathy only
        name = f"{row.patient_id}_{row.eye}"
        shutil.copy(external_phantom / row.path, root / "train" / f"{name}.jpeg")
        level = 0 if row.N else 1 + int(row.patient_id) % 4
        rows.append({"image": name, "level": level})
    pd.DataFrame(rows).to_csv(root / "trainLabels.csv", index=False)
    (root / "eyepacs.toml").write_text(EYEPACS.format(root=root.as_posix()))
    return root


@pytest.fixture(scope="module")
def multi_label_run(phantom_root, tmp_path_factory) -> VariantDirectory:
    folder = tmp_path_factory.mktemp("multi")
    uri = f"sqlite:///{(folder / 'mlruns.db').as_posix()}"
    extra = 'task = "multi_label"\nlevel = "patient"\n'
    text = experiment(phantom_root, "multi", extra)
    text += '\n[eval]\nthreshold = "max_f1"\ncalibrate = true\nbootstrap = 300\n'
    text += f'\n[[log]]\nname = "mlflow"\ntracking_uri = "{uri}"\n'
    return train(folder, text)


@pytest.fixture(scope="module")
def single_label_run(phantom_root, tmp_path_factory) -> VariantDirectory:
    folder = tmp_path_factory.mktemp("single")
    text = experiment(phantom_root, "single", 'task = "single_label"\n')
    return train(folder, text + "\n[eval]\nbootstrap = 300\n")


def evaluate(vdir: VariantDirectory, *args: str):
    from odirkit.cli import app

    result = CliRunner().invoke(app, ["evaluate", str(vdir.path), *map(str, args)])
    return result


def newest(vdir: VariantDirectory, name: str):
    return vdir.external(name)


# -- what the run decided stays decided -----------------------------------------------------


def test_external_scores_are_what_predict_gives_and_recompute_from_the_file(
    multi_label_run, eyepacs, tmp_path
):
    vdir = multi_label_run
    result = evaluate(vdir, "--data", eyepacs / "eyepacs.toml", "--name", "eyepacs-check")
    assert result.exit_code == 0, result.output
    out = vdir.external("eyepacs-check")
    summary = out.metrics().to_json()
    run_final = vdir.metrics().to_json()["final"]
    # operating points and temperature: the run's, chosen on its validation patients
    assert summary["final"]["thresholds"] == run_final["thresholds"]
    assert summary["final"]["temperature"] == run_final["temperature"] != 1.0
    assert summary["labels_scored"] == ["N", "D"] and summary["labels_not_scored"] == ["G"]

    # the same checkpoint through odirkit predict on the same photographs
    predicted = tmp_path / "predicted.csv"
    from odirkit.cli import app

    done = CliRunner().invoke(
        app, ["predict", str(vdir.path), str(eyepacs / "train"), "--out", str(predicted)]
    )
    assert done.exit_code == 0, done.output
    by_predict = pd.read_csv(predicted, dtype={"ID": str}).set_index("ID")
    external = pd.read_csv(out.patient_predictions_file, dtype={"ID": str}).set_index("ID")
    assert sorted(external.index) == sorted(by_predict.index)
    for label in ("N", "D", "G"):
        assert np.allclose(external[label], by_predict.loc[external.index, label], atol=1e-6), label

    # score-style recomputation from the predictions file, on the labels scored
    thresholds = np.array([run_final["thresholds"][label] for label in ("N", "D")])
    recomputed = classification_metrics(
        external[["target_N", "target_D"]].to_numpy(),
        external[["N", "D"]].to_numpy(),
        labels=["N", "D"],
        single_label=False,
        thresholds=thresholds,
    )
    for key in ("f1_micro", "f1_macro", "recall_macro", "auc_macro"):
        assert summary["final"][key] == pytest.approx(recomputed[key], abs=1e-5), key
    decided = (external[["N", "D"]].to_numpy() > thresholds).astype(int)
    assert (decided == external[["predicted_N", "predicted_D"]].to_numpy()).all()
    assert "target_G" not in external.columns
    # and G, which the collection does not grade, is named
    assert "not scored (the collection does not grade them): G" in result.output


def test_a_single_label_run_keeps_its_own_decisions_over_every_class(single_label_run, eyepacs):
    vdir = single_label_run
    result = evaluate(vdir, "--data", eyepacs / "eyepacs.toml", "--name", "eyepacs")
    assert result.exit_code == 0, result.output
    out = vdir.external("eyepacs")
    summary = out.metrics().to_json()
    frame = pd.read_csv(out.predictions_file, dtype={"patient_id": str})
    probs = frame[["prob_N", "prob_D", "prob_G"]].to_numpy()
    decided = np.array(["N", "D", "G"])[probs.argmax(axis=1)]
    assert (decided == frame["predicted"]).all()
    truth = frame["target"].to_numpy()
    assert set(truth) <= {"N", "D"}
    # accuracy counts an image called G as wrong; recall and macro figures cover N and D
    assert summary["final"]["f1_micro"] == pytest.approx(float((decided == truth).mean()))
    recall = {label: float((decided[truth == label] == label).mean()) for label in ("N", "D")}
    assert summary["final"]["recall_macro"] == pytest.approx(np.mean(list(recall.values())))
    assert set(summary["final"]["per_class"]) == {"N", "D"}
    comparison = out.comparison().set_index("metric")
    assert comparison.loc["f1_micro", "external"] == pytest.approx(summary["final"]["f1_micro"])


def test_the_internal_side_is_the_run_s_own_test_result(single_label_run, external_phantom):
    vdir = single_label_run
    result = evaluate(
        vdir,
        "--set",
        "data.dataset=phantom",
        "--set",
        f"data.root={external_phantom}",
        "--set",
        "data.patients=24",
        "--set",
        "data.size=96",
        "--set",
        "data.seed=1",
        "--set",
        'data.difficulty="easy"',
        "--set",
        "data.camera_shift=true",
    )
    assert result.exit_code == 0, result.output
    (out,) = [e for e in vdir.external_results() if e.name == "phantom"]
    assert out.metrics().to_json()["labels_not_scored"] == []
    final = vdir.metrics().to_json()["final"]
    comparison = out.comparison().set_index("metric")
    for metric in ("f1_micro", "auc_macro"):
        assert comparison.loc[metric, "internal"] == pytest.approx(final[metric], abs=1e-5)
        low, high = final["intervals"][metric]
        assert comparison.loc[metric, "internal_low"] == pytest.approx(low, abs=1e-5)
        assert comparison.loc[metric, "internal_high"] == pytest.approx(high, abs=1e-5)


def test_evaluating_again_writes_a_new_folder_with_the_same_numbers(single_label_run, eyepacs):
    vdir = single_label_run
    assert evaluate(vdir, "--data", eyepacs / "eyepacs.toml", "--name", "twice").exit_code == 0
    first = vdir.external("twice")
    before = file_digests(first.path)
    assert evaluate(vdir, "--data", eyepacs / "eyepacs.toml", "--name", "twice").exit_code == 0
    second = vdir.external("twice-2")
    assert file_digests(first.path) == before
    assert second.metrics().to_json()["final"] == first.metrics().to_json()["final"]
    assert second.comparison().equals(first.comparison())


def test_the_reports_and_the_loggers_show_the_external_result(multi_label_run, eyepacs):
    from mlflow import MlflowClient

    vdir = multi_label_run
    assert evaluate(vdir, "--data", eyepacs / "eyepacs.toml", "--name", "shown").exit_code == 0
    report = (vdir.run.path / "report.md").read_text()
    assert "## External validation" in report and "### default on shown" in report
    assert "Not scored (the collection does not grade them): G" in report
    assert "default/external/shown/figures/internal_vs_external.png" in report
    page = (vdir.run.path / "report.html").read_text()
    assert 'id="external"' in page and 'alt="internal vs external"' in page
    state = json.loads((vdir.path / "loggers.json").read_text())
    (entry,) = state.values()
    client = MlflowClient(tracking_uri=entry["tracking_uri"])
    tracked = client.get_run(entry["run_id"])  # the run's own MLflow run, continued
    assert tracked.data.metrics["external.shown.f1_micro"] == pytest.approx(
        vdir.external("shown").metrics().to_json()["final"]["f1_micro"]
    )
    assert "external.shown.difference.auc_macro.low" in tracked.data.metrics


def test_every_document_of_a_run_reads_and_writes_back_byte_for_byte(
    multi_label_run, eyepacs, tmp_path
):
    # each record declares every key its writer gives (a key renamed in a writer would be
    # kept as an extra), and a file read and written again is the same text
    from conftest import undeclared

    from odirkit.runs.records import (
        CollectionReport,
        DataReport,
        Environment,
        ExternalMetrics,
        RunMetrics,
        VariantConfig,
    )

    vdir = multi_label_run
    assert evaluate(vdir, "--data", eyepacs / "eyepacs.toml", "--name", "kept").exit_code == 0
    external = vdir.external("kept")
    for path, record in [
        (vdir.config_file, VariantConfig),
        (vdir.data_file, DataReport),
        (vdir.path / vdir.ENVIRONMENT, Environment),
        (vdir.metrics_file, RunMetrics),
        (external.metrics_file, ExternalMetrics),
        (external.data_file, CollectionReport),
    ]:
        found = record.read(path, "a run's document")
        found.write(tmp_path / path.name)
        assert (tmp_path / path.name).read_text() == path.read_text(), path
        assert undeclared(found) == [], path


# -- [[evaluate]] in an experiment ----------------------------------------------------------


def test_an_evaluate_table_runs_after_training(cli, phantom_root, eyepacs, tmp_path):
    collection = tmp_path / "eyepacs"
    shutil.copytree(eyepacs, collection)
    text = experiment(phantom_root, "cross", 'task = "single_label"')
    block = EYEPACS.replace("[data]", '[[evaluate]]\nname = "eyepacs"').format(
        root=collection.as_posix()
    )
    (tmp_path / "exp.toml").write_text(text + block)
    result = cli("run", "exp.toml", "--out", "runs", cwd=tmp_path)
    assert result.exit_code == 0, result.output
    (vdir,) = (tmp_path / "runs").glob("cross/*/default")
    external = VariantDirectory(vdir).external("eyepacs")
    assert external.finished and external.figure.exists()
    config = json.loads((vdir / "config.json").read_text())
    assert config["evaluate"][0]["mapping"] == {"0": "N", "1-4": "D"}
    assert "### default on eyepacs" in (vdir.parent / "report.md").read_text()
    # resuming the finished run does not score it again
    again = cli("run", "--resume", vdir.parent, cwd=tmp_path)
    assert again.exit_code == 0, again.output
    assert [e.name for e in VariantDirectory(vdir).external_results()] == ["eyepacs"]
    # a collection that can no longer be read after training costs a warning, not the run
    shutil.rmtree(external.path)
    (collection / "trainLabels.csv").unlink()
    report = vdir.parent / "report.md"
    report.unlink()
    broken = cli("run", "--resume", vdir.parent, cwd=tmp_path)
    assert broken.exit_code == 0, broken.output
    assert "external validation 'eyepacs' failed" in " ".join(broken.output.split())
    assert report.exists() and (vdir / "metrics.json").exists()


def test_an_evaluate_table_with_a_wrong_column_fails_before_any_folder(
    cli, phantom_root, eyepacs, tmp_path
):
    text = experiment(phantom_root, "cross", "")
    block = EYEPACS.replace("[data]", "[[evaluate]]").replace('"level"', '"grade"')
    (tmp_path / "exp.toml").write_text(text + block.format(root=eyepacs.as_posix()))
    result = cli("run", "exp.toml", "--out", "runs", cwd=tmp_path)
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "trainLabels.csv" in message and "'grade'" in message and "[evaluate.0]" in message
    assert not (tmp_path / "runs").exists()


def test_an_unknown_key_of_evaluate_names_the_entry(cli, tmp_path, phantom_root):
    text = experiment(phantom_root, "cross", "")
    (tmp_path / "exp.toml").write_text(
        text + '\n[[evaluate]]\ndataset = "phantom"\nroot = "x"\nsplitt = "all"\n'
    )
    result = cli("validate", "exp.toml", cwd=tmp_path)
    assert result.exit_code == 2
    assert "[evaluate.0]" in result.output and "did you mean 'split'" in result.output


# -- mistakes -------------------------------------------------------------------------------


def test_evaluate_mistakes_are_exit_2_without_traceback(single_label_run, eyepacs, tmp_path):
    vdir = single_label_run
    empty = tmp_path / "empty.toml"
    empty.write_text('name = "x"\n')
    cases = [
        (["--data", empty], "--set data.dataset"),
        (["--data", eyepacs / "eyepacs.toml", "--set", 'data.mapping={ 0 = "N" }'], "'1'"),
        (["--data", eyepacs / "eyepacs.toml", "--set", "data.root=nowhere"], "nowhere"),
        (["--data", eyepacs / "eyepacs.toml", "--set", "train.epochs=2"], "data.* keys"),
    ]
    for args, expected in cases:
        result = evaluate(vdir, *args)
        assert result.exit_code == 2, (args, result.output)
        assert "Traceback" not in result.output
        assert expected in " ".join(result.output.split()), (args, result.output)
    unfinished = tmp_path / "run" / "default"
    unfinished.mkdir(parents=True)
    (unfinished / "config.json").write_text("{}")
    result = evaluate(VariantDirectory(unfinished), "--data", eyepacs / "eyepacs.toml")
    assert result.exit_code == 2 and "not a finished run" in result.output


def test_a_collection_grading_none_of_the_run_s_labels_is_refused(single_label_run, tmp_path):
    from odirkit_datasets import miniature

    miniature.write_retina(tmp_path / "retina", per_class=1)
    result = evaluate(
        single_label_run,
        "--set",
        "data.dataset=folder",
        "--set",
        f"data.root={tmp_path / 'retina' / 'dataset'}",
        "--set",
        'data.mapping={ "1_normal" = "C", "*" = "O" }',
    )
    assert result.exit_code == 2
    assert "grades C, O" in result.output and "no label to score" in result.output


# -- the comparison is a test --------------------------------------------------------------


def _scored(outcomes: np.ndarray, scores: np.ndarray) -> bootstrap.Scored:
    decisions = (scores > 0.5).astype(float)
    return bootstrap.Scored.build(
        outcomes, decisions, scores, labels=["N", "D"], clusters=np.arange(len(outcomes))
    )


def test_a_real_drop_is_distinguishable_and_a_resample_of_the_same_is_not():
    rng = np.random.default_rng(0)
    outcomes = np.zeros((120, 2))
    outcomes[np.arange(120), rng.integers(0, 2, 120)] = 1
    good = np.clip(outcomes * 0.8 + rng.uniform(0, 0.2, outcomes.shape), 0, 1)
    poor = rng.uniform(0, 1, outcomes.shape)
    scoring = SharedScoring(("N", "D"), ("N", "D"), single_label=False)
    kwargs = {"resamples": 400, "confidence": 0.95, "seeds": (1, 2)}
    drop = compare_with_internal(
        _scored(outcomes, good), _scored(outcomes, poor), scoring, **kwargs
    ).set_index("metric")
    auc = drop.loc["auc_macro"]
    assert auc["difference"] == pytest.approx(auc["external"] - auc["internal"])
    assert auc["internal"] > 0.95 and auc["external"] < 0.65
    assert auc["difference_high"] < 0 and auc["distinguishable"]
    fair = np.clip(outcomes * 0.3 + rng.uniform(0, 0.7, outcomes.shape), 0, 1)
    same = compare_with_internal(
        _scored(outcomes, fair), _scored(outcomes, fair), scoring, **kwargs
    ).set_index("metric")
    assert same.loc["auc_macro", "difference"] == 0
    assert same.loc["auc_macro", "difference_low"] < 0 < same.loc["auc_macro", "difference_high"]
    assert not same["distinguishable"].any()


# -- the cross-dataset examples -------------------------------------------------------------

EXAMPLES = Path(__file__).parents[1] / "experiments"


@pytest.mark.parametrize("name", ["cross_dataset", "cross_dataset_phantom"])
def test_the_cross_dataset_examples_are_valid(cli, name, tmp_path):
    result = cli("validate", EXAMPLES / f"{name}.toml", cwd=tmp_path)
    if name == "cross_dataset":  # ODIR-5K is not on this machine: validate says so ...
        assert result.exit_code == 2 and "no such folder" in result.stderr, result.output
        synthetic = ["--set", "data.dataset=phantom", "--set", f"data.root={tmp_path / 'p'}"]
        result = cli("validate", EXAMPLES / f"{name}.toml", *synthetic, cwd=tmp_path)
    assert result.exit_code == 0, result.output


def test_the_offline_cross_dataset_example_runs_at_a_tiny_size(cli, tmp_path):
    external = tmp_path / "external"
    result = cli(
        "run",
        EXAMPLES / "cross_dataset_phantom.toml",
        "--out",
        tmp_path / "runs",
        "--set",
        f"data.root={tmp_path / 'phantom'}",
        "--set",
        "data.patients=30",
        "--set",
        "data.size=64",
        "--set",
        "data.image_size=32",
        "--set",
        "train.epochs=1",
        "--set",
        f"evaluate.0.root={external}",
        "--set",
        "evaluate.0.patients=12",
        "--set",
        "evaluate.0.size=64",
        "--set",
        f"evaluate.1.root={external}",
        cwd=tmp_path,
    )
    assert result.exit_code == 0, result.output
    (vdir,) = (tmp_path / "runs").glob("cross_dataset_phantom/*/default")
    names = [e.name for e in VariantDirectory(vdir).external_results()]
    assert names == ["eyepacs-style", "other-cameras"]
    styled = VariantDirectory(vdir).external("eyepacs-style").metrics().to_json()
    assert styled["labels_not_scored"] == ["G"]
    assert styled["data"]["dataset"]["patient_ids"].startswith("from the file names")


def test_accuracy_counts_images_called_by_a_class_the_collection_lacks():
    from odirkit.engine.evaluate import LevelPredictions, scored

    # six images graded N or D; the run's classes are N, D, G; two are called G
    probs = np.array(
        [
            [0.7, 0.2, 0.1],  # N, right
            [0.2, 0.7, 0.1],  # D, right
            [0.1, 0.3, 0.6],  # N, called G
            [0.2, 0.2, 0.6],  # D, called G
            [0.6, 0.3, 0.1],  # D, called N
            [0.5, 0.4, 0.1],  # N, right
        ]
    )
    targets = np.array([0, 1, 0, 1, 1, 0])
    keys = pd.DataFrame({"patient_id": [str(i) for i in range(6)]})
    preds = LevelPredictions(
        keys, probs, targets, keys["patient_id"].to_numpy(), ("N", "D", "G"), True, "image"
    )
    scoring = SharedScoring(("N", "D", "G"), ("N", "D"), single_label=True)
    metrics = scoring.metrics(preds, None)
    assert metrics["f1_micro"] == pytest.approx(3 / 6)  # accuracy: G counts as wrong
    assert metrics["recall_macro"] == pytest.approx(np.mean([2 / 3, 1 / 3]))
    assert set(metrics["per_class"]) == {"N", "D"}
    full = scored(preds, None)
    point = scoring.resampled(full, np.ones((1, 6)))
    assert point["f1_micro"][0] == pytest.approx(3 / 6)
    assert point["recall_macro"][0] == pytest.approx(np.mean([2 / 3, 1 / 3]))
    assert "recall_G" not in point


def test_a_figure_that_moves_with_the_case_mix_says_so_when_the_mix_differs():
    from odirkit.engine.evaluate import LevelPredictions, scored
    from odirkit.external.scoring import SharedScoring, compare_with_internal, verdict

    def side(targets: list[int], right: list[bool]) -> object:
        probs = np.array(
            [
                [0.8, 0.2] if (t == 0) == r else [0.2, 0.8]
                for t, r in zip(targets, right, strict=True)
            ]
        )
        keys = pd.DataFrame({"patient_id": [str(i) for i in range(len(targets))]})
        preds = LevelPredictions(
            keys, probs, np.array(targets), keys["patient_id"].to_numpy(), ("N", "D"), True, "image"
        )
        return scored(preds, None)

    # internal: 6 N and 4 D; external: D only (a collection of diabetic eyes)
    internal = side([0] * 6 + [1] * 4, [True] * 5 + [False] + [True] * 3 + [False])
    external = side([1] * 8, [True] * 6 + [False] * 2)
    scoring = SharedScoring(("N", "D"), ("N", "D"), single_label=True)
    table = compare_with_internal(
        internal, external, scoring, resamples=50, confidence=0.95, seeds=(1, 2)
    ).set_index("metric")
    assert (
        table.loc["f1_micro", "case_mix"]
        == "N 60% internal, 0% external; D 40% internal, 100% external"
    )
    assert table.loc["recall_macro", "case_mix"] == ""  # recall does not move with it
    words = verdict({"metric": "f1_micro", **table.loc["f1_micro"].to_dict()}, 0.95)
    assert "the case mix differs (N 60% internal" in words and "compare recall" in words
    assert "case mix" not in verdict({"metric": "auc_D", **table.loc["auc_D"].to_dict()}, 0.95)
    same = compare_with_internal(
        internal, internal, scoring, resamples=0, confidence=0.95, seeds=(1, 2)
    ).set_index("metric")
    assert same.loc["f1_micro", "case_mix"] == ""


def test_a_corrupt_photograph_in_the_collection_is_named_or_skipped(
    single_label_run, eyepacs, tmp_path
):
    copy = tmp_path / "eyepacs"
    shutil.copytree(eyepacs, copy)
    (copy / "eyepacs.toml").write_text(EYEPACS.format(root=copy.as_posix()))
    victim = sorted((copy / "train").glob("*.jpeg"))[0]
    victim.write_bytes(b"not a jpeg")
    before = {e.name for e in single_label_run.external_results()}
    result = evaluate(single_label_run, "--data", copy / "eyepacs.toml", "--name", "corrupt")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert victim.name in result.output and 'on_bad_image = "skip"' in result.output
    assert {e.name for e in single_label_run.external_results()} == before
    result = evaluate(
        single_label_run,
        "--data",
        copy / "eyepacs.toml",
        "--name",
        "corrupt",
        "--set",
        'data.on_bad_image="skip"',
    )
    assert result.exit_code == 0, result.output
    out = single_label_run.external("corrupt")
    skipped = pd.read_csv(out.skipped_file)
    assert list(skipped["path"].map(lambda p: Path(p).name)) == [victim.name]
    assert out.metrics().to_json()["images"] == len(list((copy / "train").glob("*.jpeg"))) - 1


def test_a_preset_experiment_file_serves_as_the_collection(single_label_run, tmp_path):
    from odirkit_datasets import miniature

    miniature.write_hrf(tmp_path / "hrf", per_class=2)
    preset = EXAMPLES / "collections" / "hrf.toml"
    result = evaluate(single_label_run, "--data", preset, "--set", f"data.root={tmp_path / 'hrf'}")
    assert result.exit_code == 0, result.output
    note = " ".join(result.output.split())
    assert "note: labels, test_fraction, val_fraction of [data] concern training" in note
    out = single_label_run.external("hrf")  # named after the preset
    summary = out.metrics().to_json()
    assert summary["labels_scored"] == ["N", "D", "G"] and summary["images"] == 6
    assert summary["collection"]["classes"] == "suffix"
