"""Training runs end to end: the run folder, reproducibility, resuming, bad data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_experiment


def run_dirs(out: Path) -> list[Path]:
    """The run folders under ``out`` (not a hidden one still being created)."""
    return sorted(p for p in out.glob("*/*") if p.is_dir() and not p.name.startswith("."))


def start(cli, tmp_path, text, *args):
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    result = cli("run", exp, "--out", tmp_path / "runs", *args)
    return result


@pytest.mark.slow
def test_run_writes_config_metrics_predictions_checkpoints_and_figures(cli, tmp_path, phantom_root):
    result = start(cli, tmp_path, tiny_experiment(phantom_root, epochs=2))
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    variant = run / "default"
    for name in [
        "config.json",
        "environment.json",
        "data.json",
        "split.csv",
        "metrics.csv",
        "metrics.json",
        "predictions.csv",
        "checkpoints/last.pt",
        "checkpoints/best.pt",
        "figures/f1_per_epoch.png",
        "figures/recall_per_epoch.png",
        "figures/recall_per_class.png",
    ]:
        assert (variant / name).exists(), name
    for name in ["experiment.toml", "run.json", "comparison.csv", "comparison.png", "report.md"]:
        assert (run / name).exists(), name

    metrics = pd.read_csv(variant / "metrics.csv")
    assert list(metrics["epoch"]) == [1, 2]
    # Each epoch is scored on the validation patients only (unless test_every_epoch).
    assert {
        "val_f1_micro",
        "val_f1_macro",
        "val_recall_N",
        "val_recall_D",
        "val_precision_D",
        "val_loss",
    } <= set(metrics.columns)
    assert not [c for c in metrics.columns if c.startswith("test_")]

    environment = json.loads((variant / "environment.json").read_text())
    assert environment["device"] == "cpu" and environment["seed"] == 0
    from importlib.metadata import version

    assert environment["packages"]["torch"] == version("torch")
    assert environment["packages"]["odirkit"] == version("odirkit")
    assert {
        "kind": "model",
        "name": "cnn",
        "distribution": "odirkit",
        "version": version("odirkit"),
    } in environment["plugins"]

    config = json.loads((variant / "config.json").read_text())
    assert config["train"]["epochs"] == 2 and config["model"]["widths"] == [4, 8, 8, 8]

    # Predictions cover exactly the test images, and no test patient trained or validated.
    split = pd.read_csv(variant / "split.csv")
    assert set(split["split"]) == {"train", "val", "test"}
    predictions = pd.read_csv(variant / "predictions.csv")
    assert len(predictions) == (split["split"] == "test").sum()
    others = set(split.loc[split["split"] != "test", "patient_id"])
    assert not others & set(predictions["patient_id"])

    final = json.loads((variant / "metrics.json").read_text())
    accuracy = (predictions["target"] == predictions["predicted"]).mean()
    assert final["final"]["f1_micro"] == pytest.approx(accuracy)  # single-label micro F1
    assert final["checkpoint"] == "best" and final["checkpoint_epoch"] == final["best"]["epoch"]
    low, high = final["final"]["intervals"]["f1_micro"]
    assert low <= final["final"]["f1_micro"] <= high
    checkpoint = torch.load(variant / "checkpoints/last.pt", weights_only=True)
    assert checkpoint["epoch"] == 2 and "model" in checkpoint and "optimizer" in checkpoint


def test_same_experiment_same_seed_same_numbers(cli, tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=2)
    assert start(cli, tmp_path, text).exit_code == 0
    assert start(cli, tmp_path, text).exit_code == 0
    first, second = run_dirs(tmp_path / "runs")
    a = pd.read_csv(first / "default/metrics.csv").drop(columns=["seconds"])
    b = pd.read_csv(second / "default/metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)
    assert (first / "default/predictions.csv").read_text() == (
        second / "default/predictions.csv"
    ).read_text()


def test_variants_run_in_one_go_and_are_compared(cli, tmp_path, phantom_root):
    text = (
        tiny_experiment(phantom_root, epochs=1)
        + """
[variants.default]
[variants.sgd]
train = { optimizer = "sgd", lr = 0.01 }
"""
    )
    result = start(cli, tmp_path, text)
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    table = pd.read_csv(run / "comparison.csv")
    assert list(table["run"]) == ["default", "sgd"]
    assert "| sgd |" in (run / "report.md").read_text()
    assert json.loads((run / "sgd/config.json").read_text())["train"]["optimizer"] == "sgd"

    compared = cli("compare", run / "default", run / "sgd", "--out", tmp_path / "cmp")
    assert compared.exit_code == 0, compared.output
    assert (tmp_path / "cmp" / "comparison.png").exists()
    assert "sgd" in compared.stdout


def _odirkit(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    env = {**(env or os.environ), "ODIRKIT_QUIET": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "odirkit", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


def _wait_for_checkpoint(process: subprocess.Popen, path: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.005)


LONGER = """
[train]
epochs = 6
batch_size = 4
optimizer = "adam"
lr = 0.003
checkpoint_every = 2
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigkill", "ctrl_c"])
def test_interrupted_run_resumes_to_the_same_metrics(tmp_path, phantom_root, how):
    text = tiny_experiment(phantom_root, epochs=6).split("[train]")[0] + LONGER
    text = text.replace("dropout = 0.0", "dropout = 0.3")  # draws from the generators
    exp = tmp_path / "exp.toml"
    exp.write_text(text)

    whole = _odirkit("run", str(exp), "--out", str(tmp_path / "whole"))
    assert whole.wait() == 0, whole.communicate()

    broken = _odirkit("run", str(exp), "--out", str(tmp_path / "broken"))
    deadline = time.monotonic() + 120
    while not list((tmp_path / "broken").glob("*/*/default/checkpoints/last.pt")):
        assert broken.poll() is None, broken.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    broken.send_signal(signal.SIGKILL if how == "sigkill" else signal.SIGINT)
    _, err = broken.communicate()
    code = broken.returncode
    if how == "sigkill":
        assert code == -signal.SIGKILL
    else:
        assert code == 130, err
        assert "odirkit run --resume" in err and "Traceback" not in err
    (run,) = run_dirs(tmp_path / "broken")
    assert not (run / "default/metrics.json").exists(), "the run finished before the interruption"

    resumed = _odirkit("run", "--resume", str(run))
    assert resumed.wait() == 0, resumed.communicate()
    (reference,) = run_dirs(tmp_path / "whole")
    a = pd.read_csv(reference / "default/metrics.csv").drop(columns=["seconds"])
    b = pd.read_csv(run / "default/metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)


@pytest.mark.slow
def test_resuming_a_finished_run_changes_nothing(cli, tmp_path, phantom_root):
    assert start(cli, tmp_path, tiny_experiment(phantom_root, epochs=1)).exit_code == 0
    (run,) = run_dirs(tmp_path / "runs")
    before = (run / "default/metrics.json").read_text()
    result = cli("run", "--resume", run)
    assert result.exit_code == 0, result.output
    assert (run / "default/metrics.json").read_text() == before


def test_corrupt_image_stops_the_run_naming_the_file(cli, tmp_path, phantom_copy):
    table = pd.read_csv(phantom_copy / "phantom_images.csv", keep_default_na=False)
    victim = phantom_copy / table[table["D"] == 1]["path"].iloc[0]
    victim.write_bytes(victim.read_bytes()[:200])
    result = start(cli, tmp_path, tiny_experiment(phantom_copy, epochs=1))
    assert result.exit_code == 2
    assert victim.name in result.stderr and "on_bad_image" in result.stderr
    assert "Traceback" not in result.output

    result = start(
        cli, tmp_path, tiny_experiment(phantom_copy, epochs=1), "--set", "data.on_bad_image=skip"
    )
    assert result.exit_code == 0, result.output
    (run,) = [d for d in run_dirs(tmp_path / "runs") if (d / "default/metrics.json").exists()]
    skipped = pd.read_csv(run / "default/skipped_images.csv")
    assert skipped["path"].str.endswith(victim.name).all() and len(skipped) == 1


def test_diverging_loss_stops_with_a_message(cli, tmp_path, phantom_root):
    text = (
        tiny_experiment(phantom_root, epochs=2)
        .replace("lr = 0.003", "lr = 1e30")
        .replace('optimizer = "adam"', 'optimizer = "sgd"')
    )
    result = start(cli, tmp_path, text)
    assert result.exit_code == 2, result.output
    assert "training loss became" in result.stderr and "epoch" in result.stderr
    assert "checkpoint" in result.stderr  # the last good one, or that there is none yet


def test_a_softmax_loss_on_a_multi_label_task_gives_probabilities_that_share_one(
    cli, tmp_path, phantom_root
):
    text = tiny_experiment(phantom_root, epochs=1, extra='loss = "cross_entropy"').replace(
        'labels = ["N", "D"]', 'labels = ["N", "D", "O"]\ntask = "multi_label"'
    )
    result = start(cli, tmp_path, text)
    assert result.exit_code == 0, result.output
    (run,) = run_dirs(tmp_path / "runs")
    predictions = pd.read_csv(run / "default" / "predictions.csv")
    totals = predictions[["prob_N", "prob_D", "prob_O"]].sum(axis=1)
    assert np.allclose(totals, 1.0, atol=1e-4)  # softmax over the labels, not sigmoids

    bce = tiny_experiment(phantom_root, epochs=1, extra='loss = "binary_cross_entropy"')
    refused = start(cli, tmp_path, bce)
    assert refused.exit_code == 2 and "needs a multi-label task" in refused.stderr


@pytest.mark.slow
def test_a_single_label_headline_is_called_accuracy(cli, tmp_path, phantom_root):
    result = start(cli, tmp_path, tiny_experiment(phantom_root, epochs=1))
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.stdout and "micro F1" not in result.stdout
    (run,) = run_dirs(tmp_path / "runs")
    report = (run / "report.md").read_text()
    assert "| accuracy |" in report and "f1_micro" not in report


def _bundle_of(images: torch.Tensor, targets: np.ndarray):
    """A data bundle of ``uint8 [N, 3, S, S]`` images held in memory, all for training."""
    from odirkit.data.prepare import DataBundle, ImageStore
    from odirkit.data.table import Task

    n, size = len(images), images.shape[-1]
    store = ImageStore([], [], size)
    store.tensor = images
    table = pd.DataFrame({"patient_id": [str(i) for i in range(n)], "eye": "left"})
    index = np.arange(n)
    task = Task(("N", "D"), "single_label")
    return DataBundle(table, task, targets, index, index[:0], index[:0], store)


def test_evaluation_normalises_with_batch_statistics_of_the_current_weights():
    """Precise BN: before an evaluation every batch norm's running mean and variance are
    those of the training images under the weights as they are, whatever training left
    in them (weights that moved fast leave statistics of weights long gone)."""
    from types import SimpleNamespace

    from odirkit.engine.trainer import Trainer

    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (50, 3, 8, 8), generator=generator, dtype=torch.uint8)
    images[:25] //= 4  # two kinds of image, so batch statistics differ between batches
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.BatchNorm2d(4),
        torch.nn.Dropout(0.9),  # off while the statistics are gathered, as in evaluation
        torch.nn.Conv2d(4, 2, 3),
        torch.nn.BatchNorm2d(2),
        torch.nn.Flatten(),
    )
    view = SimpleNamespace(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), extra_inputs=lambda t: [])
    trainer = Trainer(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        loss_fn=torch.nn.CrossEntropyLoss(),
        data=_bundle_of(images, np.zeros(50, dtype=np.int64)),
        device=torch.device("cpu"),
        view=view,
        batch_size=10,
    )
    for norm in (model[1], model[4]):  # statistics of some other weights
        norm.running_mean.fill_(5.0)
        norm.running_var.fill_(9.0)
    assert trainer.recompute_batch_norm(epoch=0, max_batches=100) == 5
    x = (images.float() / 255 - 0.5) / 0.25
    first = model[0](x)
    # the mean of each batch's mean: every batch holds 10 images, so the population's mean
    assert torch.allclose(model[1].running_mean, first.mean(dim=(0, 2, 3)), atol=1e-5)
    batches = [first[list(i)] for i in np.split(np.asarray(trainer_order(trainer)), 5)]
    variance = torch.stack([b.transpose(0, 1).flatten(1).var(dim=1) for b in batches]).mean(0)
    assert torch.allclose(model[1].running_var, variance, rtol=1e-4)
    # a deeper one sees its input as training mode makes it (batch statistics above it)
    # and with dropout off: the mean over the batches of that input's mean
    with torch.no_grad():
        means = [
            model[3](
                torch.nn.functional.batch_norm(
                    b, None, None, model[1].weight, model[1].bias, training=True
                )
            ).mean(dim=(0, 2, 3))
            for b in batches
        ]
    assert torch.allclose(model[4].running_mean, torch.stack(means).mean(0), atol=1e-5)
    assert model[1].momentum == 0.1  # training goes on with its own moving averages
    # ... and it is off on request
    model[1].running_mean.fill_(5.0)
    assert trainer.recompute_batch_norm(epoch=0, max_batches=0) == 0
    assert (model[1].running_mean == 5.0).all()


def trainer_order(trainer) -> list[int]:
    """The images in the order the statistics pass took them (seeded by the epoch)."""
    from odirkit.seeding import Stream, derive_seed

    rng = np.random.default_rng(derive_seed(trainer.seed, 0, 0, Stream.PRECISE_BN))
    return list(trainer.data.train_idx[rng.permutation(len(trainer.data.train_idx))])


#: every write of a variant's files at an epoch's end and at its end: (moment, file, which)
KILL_POINTS = [
    ("during", "best.pt", 1),  # a half-written best.pt: only its temporary file on disk
    ("after", "best.pt", 1),  # best.pt of epoch 1 written, no last.pt yet
    ("after", "last.pt", 1),  # last.pt names epoch 1 as best: best.pt must be there
    ("during", "last.pt", 2),
    ("after", "last.pt", 2),  # last.pt written, metrics.csv not yet
    ("after", "metrics.csv", 3),  # the last epoch's row, before the test is scored
    ("after", "val_predictions.csv", 1),
    ("after", "predictions.csv", 1),
    ("during", "metrics.json", 1),  # the marker of a finished variant, half written
]


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, phantom_root):
    work = tmp_path_factory.mktemp("whole")
    exp = work / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=3).replace("lr = 0.003", "lr = 0.01"))
    whole = _odirkit("run", str(exp), "--out", str(work / "runs"))
    assert whole.wait() == 0, whole.communicate()
    (run,) = run_dirs(work / "runs")
    return exp, run


@pytest.mark.slow
@pytest.mark.parametrize(("moment", "name", "which"), KILL_POINTS)
def test_a_run_killed_at_any_write_resumes_to_the_numbers_of_an_uninterrupted_one(
    tmp_path, uninterrupted, moment, name, which
):
    exp, reference = uninterrupted
    env = {**os.environ, "ODIRKIT_KILL_AT": f"{moment}:{name}:{which}"}
    killed = _odirkit("run", str(exp), "--out", str(tmp_path / "runs"), env=env)
    _, err = killed.communicate()
    assert killed.returncode == 137, err  # killed where asked, not finished, not failed
    (run,) = run_dirs(tmp_path / "runs")
    assert not (run / "default" / "failed.json").exists()
    resumed = _odirkit("run", "--resume", str(run))
    _, err = resumed.communicate()
    assert resumed.returncode == 0, err
    assert not list(run.rglob(".*.tmp")), "a killed writer's temporary file was left behind"
    for file in ("metrics.csv", "predictions.csv", "val_predictions.csv"):
        a = pd.read_csv(reference / "default" / file)
        b = pd.read_csv(run / "default" / file)
        pd.testing.assert_frame_equal(
            a.drop(columns=["seconds"], errors="ignore"),
            b.drop(columns=["seconds"], errors="ignore"),
        )
    final = [json.loads((r / "default/metrics.json").read_text()) for r in (reference, run)]
    assert final[0]["final"] == final[1]["final"] and final[0]["best"] == final[1]["best"]


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["after:last.pt:2", "after:metrics.csv:2"])
def test_early_stopping_interrupted_after_an_epoch_without_progress_stops_where_it_would(
    tmp_path, phantom_root, kill_at
):
    # lr 1e-12: epoch 1 sets the best, epochs 2, 3, ... never beat it. With patience 2 an
    # uninterrupted run stops after epoch 3; a run killed after epoch 2 (one epoch without
    # progress) must remember that epoch when it resumes, and stop after epoch 3 too.
    text = tiny_experiment(phantom_root, epochs=6, extra="patience = 2\n")
    exp = tmp_path / "exp.toml"
    exp.write_text(text.replace("lr = 0.003", "lr = 1e-12"))
    whole = _odirkit("run", str(exp), "--out", str(tmp_path / "whole"))
    assert whole.wait() == 0, whole.communicate()
    env = {**os.environ, "ODIRKIT_KILL_AT": kill_at}
    killed = _odirkit("run", str(exp), "--out", str(tmp_path / "broken"), env=env)
    _, err = killed.communicate()
    assert killed.returncode == 137, err
    (run,) = run_dirs(tmp_path / "broken")
    resumed = _odirkit("run", "--resume", str(run))
    assert resumed.wait() == 0, resumed.communicate()
    (reference,) = run_dirs(tmp_path / "whole")
    finals = [json.loads((r / "default/metrics.json").read_text()) for r in (reference, run)]
    assert [f["epochs_trained"] for f in finals] == [3, 3]
    assert all(f["stopped_early"] and f["best"]["epoch"] == 1 for f in finals)
    assert len(pd.read_csv(run / "default/metrics.csv")) == 3


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["after:run.json:1", "before:config.json:1"])
def test_a_run_killed_while_its_folder_is_made_leaves_no_run_that_cannot_resume(
    tmp_path, phantom_root, kill_at
):
    # run.json and the variants' config.json are written together: a run folder appears
    # whole or not at all (it had no run.json, or no config.json, and resumed to an error)
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=1))
    env = {**os.environ, "ODIRKIT_KILL_AT": kill_at}
    killed = _odirkit("run", str(exp), "--out", str(tmp_path / "runs"), env=env)
    _, err = killed.communicate()
    assert killed.returncode == 137, err
    assert run_dirs(tmp_path / "runs") == []  # no half-made run folder to trip over
    listed = _odirkit("runs", str(tmp_path / "runs"))
    out, err = listed.communicate()
    assert listed.returncode == 0 and "tiny" not in out.replace(str(tmp_path), ""), out + err
    again = _odirkit("run", str(exp), "--out", str(tmp_path / "runs"))
    assert again.wait() == 0, again.communicate()
    (run,) = run_dirs(tmp_path / "runs")
    assert (run / "default" / "metrics.json").is_file()


EXPLAINED = """
[[explain]]
name = "gradcam"
max_images = 4
"""


@pytest.fixture(scope="module")
def explained(tmp_path_factory, phantom_root):
    work = tmp_path_factory.mktemp("explained")
    exp = work / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=1) + EXPLAINED)
    whole = _odirkit("run", str(exp), "--out", str(work / "runs"))
    assert whole.wait() == 0, whole.communicate()
    (run,) = run_dirs(work / "runs")
    return exp, run


@pytest.mark.slow
@pytest.mark.parametrize("kill_at", ["during:maps.npz:1", "during:report.md:1"])
def test_a_run_killed_while_explaining_or_reporting_resumes_to_the_same_files(
    tmp_path, explained, kill_at
):
    exp, reference = explained
    env = {**os.environ, "ODIRKIT_KILL_AT": kill_at}
    killed = _odirkit("run", str(exp), "--out", str(tmp_path / "runs"), env=env)
    _, err = killed.communicate()
    assert killed.returncode == 137, err
    (run,) = run_dirs(tmp_path / "runs")
    assert list(run.rglob(".*.tmp"))  # the killed writer's half-written file
    resumed = _odirkit("run", "--resume", str(run))
    assert resumed.wait() == 0, resumed.communicate()
    assert not list(run.rglob(".*.tmp")), "a killed writer's temporary file was left behind"
    for name in ("summary.json", "localisation.csv", "sanity.csv"):
        found = [(r / "default" / "explain" / name) for r in (reference, run)]
        assert found[1].is_file(), f"{name} never made after the resume"
        if name.endswith(".csv"):
            pd.testing.assert_frame_equal(pd.read_csv(found[0]), pd.read_csv(found[1]))
    assert (run / "report.md").is_file() and (run / "report.html").is_file()


def test_a_last_batch_of_one_image_is_merged_where_batch_norm_would_fail(capsys):
    from types import SimpleNamespace

    from odirkit.engine.trainer import EpochProgress, Trainer

    images = torch.randint(0, 256, (43, 3, 4, 4), generator=torch.Generator().manual_seed(0))
    model = torch.nn.Sequential(  # batch norm over features: one image is one value each
        torch.nn.Flatten(), torch.nn.Linear(48, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 2)
    )
    view = SimpleNamespace(mean=(0.5,) * 3, std=(0.25,) * 3, extra_inputs=lambda t: [])
    targets = np.arange(43) % 2
    trainer = Trainer(
        model=model,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.01),
        loss_fn=torch.nn.CrossEntropyLoss(),
        data=_bundle_of(images.to(torch.uint8), targets),
        device=torch.device("cpu"),
        view=view,
        batch_size=21,
    )
    batches = trainer.epoch_batches(0)
    assert [len(b) for b in batches] == [21, 22] and trainer.steps_per_epoch() == 2
    assert sorted(np.concatenate(batches)) == list(range(43))  # every image, once
    done = trainer.train_epoch(EpochProgress(epoch=0))
    assert done.step == 2 and done.seen == 43
    assert "merged into the batch before it" in capsys.readouterr().err
    # a model without batch norm keeps its last batch of one
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    trainer.model, trainer._has_batch_norm = plain, False
    assert [len(b) for b in trainer.epoch_batches(0)] == [21, 21, 1]
