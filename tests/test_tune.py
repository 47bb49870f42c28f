"""odirkit tune: an Optuna study on the validation patients, shared by workers through
its storage, pruned per epoch, ending in an experiment file scored once on the test."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pandas as pd
import pytest
from conftest import tiny_experiment

SEARCH = """
[tune]
startup_trials = 1
"train.lr" = { log = [1e-5, 3e-2] }
"model.dropout" = { range = [0.0, 0.5] }
"""


def search_file(tmp_path: Path, root: Path, extra: str = "") -> Path:
    # the paper's per-epoch test curves are asked for: a trial must still not compute them
    train = 'monitor = "loss"\ntest_every_epoch = true\n'
    text = tiny_experiment(root, epochs=3, extra=train + extra) + SEARCH
    path = tmp_path / "search.toml"
    path.write_text(text)
    return path


def study_folder(out: Path) -> Path:
    return out / "tiny" / "tune" / "tiny"


@pytest.mark.slow
def test_the_search_reads_validation_only_prunes_and_ends_in_a_runnable_file(
    tmp_path, phantom_root, cli
):
    exp = search_file(tmp_path, phantom_root)
    plain = cli("tune", exp, "--trials", "5", "--out", tmp_path / "plain")
    assert plain.exit_code == 0, plain.output
    # the same search with the test labels scrambled after the split
    args = ["--set", "data.shuffle_test_labels=true", "--out", tmp_path / "scrambled"]
    scrambled = cli("tune", exp, "--trials", "5", *args)
    assert scrambled.exit_code == 0, scrambled.output

    a = json.loads((study_folder(tmp_path / "plain") / "tune.json").read_text())
    b = json.loads((study_folder(tmp_path / "scrambled") / "tune.json").read_text())
    # every trial judged alike, so the same trial chosen: the test targets were not read
    assert [t["value"] for t in a["trials"]] == [t["value"] for t in b["trials"]]
    assert a["best"] == {**b["best"], "folder": a["best"]["folder"]}
    assert a["metric"] == "loss" and a["direction"] == "minimize"
    values = [t["value"] for t in a["trials"] if t["state"] == "complete"]
    for t in a["trials"]:  # a trial's value: its best validation loss over the epochs
        if t["state"] == "complete":
            curve = pd.read_csv(Path(t["folder"]) / "default" / "metrics.csv")["val_loss"]
            assert t["value"] == pytest.approx(curve.min()) and len(curve) == 3
    assert a["best"]["value"] == min(values)
    first_epochs = {  # the trials did differ (pruned ones included: each ran an epoch)
        round(float(pd.read_csv(Path(t["folder"]) / "default" / "metrics.csv")["val_loss"][0]), 9)
        for t in a["trials"]
    }
    assert len(first_epochs) > 1

    # the median pruner stopped a trial: it trained fewer epochs than asked
    pruned = [t for t in a["trials"] if t["state"] == "pruned"]
    assert pruned
    for trial in pruned:
        assert len(pd.read_csv(Path(trial["folder"]) / "default" / "metrics.csv")) < 3
    # no trial scored the test patients
    for trial in a["trials"]:
        folder = Path(trial["folder"]) / "default"
        assert (folder / "metrics.csv").exists()
        assert not (folder / "metrics.json").exists()
        assert not (folder / "predictions.csv").exists()
        assert "test_loss" not in pd.read_csv(folder / "metrics.csv")

    # best.toml: the whole experiment with the best values; it validates and was run once
    best_file = study_folder(tmp_path / "plain") / "best.toml"
    doc = tomllib.loads(best_file.read_text())
    assert doc["train"]["lr"] == a["best"]["params"]["train.lr"]
    assert doc["model"]["dropout"] == a["best"]["params"]["model.dropout"]
    assert "tune" not in doc
    assert cli("validate", best_file).exit_code == 0
    (final,) = (study_folder(tmp_path / "plain") / "final").glob("*/default")
    assert Path(a["final"]) == final.parent
    scored = json.loads((final / "metrics.json").read_text())
    # the final run, unlike the trials, is scored on the test patients
    split = pd.read_csv(final / "split.csv")
    test = split.loc[split["split"] == "test", "path"]
    assert sorted(pd.read_csv(final / "predictions.csv")["path"]) == sorted(test) != []
    assert not (Path(a["best"]["folder"]) / "default" / "predictions.csv").exists()
    # the final run is the best trial trained again: the same validation curve
    trial = pd.read_csv(Path(a["best"]["folder"]) / "default" / "metrics.csv")
    again = pd.read_csv(final / "metrics.csv")
    assert list(again["val_loss"]) == list(trial["val_loss"])
    (other,) = (study_folder(tmp_path / "scrambled") / "final").glob("*/default")
    assert json.loads((other / "metrics.json").read_text())["final"]["loss"] != pytest.approx(
        scored["final"]["loss"]
    )  # the scrambled labels were read once, at the end
    assert "best: trial" in plain.stdout and "test patients, scored once" in plain.stdout


@pytest.mark.slow
def test_two_workers_share_one_study(tmp_path, phantom_root):
    exp = search_file(tmp_path, phantom_root)
    env = {**os.environ, "ODIRKIT_QUIET": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "odirkit", "tune", str(exp), "--trials", "4"]
    workers = [
        subprocess.Popen(
            [*command, "--out", "out"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    import optuna

    folder = study_folder(tmp_path / "out")
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{folder / 'study.db'}")
    trials = study.get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # four in all, none twice
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # both workers ran trials
    for t in trials:  # each trial trained once, in its own folder
        variant = Path(t.user_attrs["folder"]) / "default"
        assert not list(variant.glob("environment-resumed-*"))
        epochs = pd.read_csv(variant / "metrics.csv")["epoch"]
        assert list(epochs) == list(range(1, len(epochs) + 1))
    assert len(list(folder.glob("trial-*"))) == 4
    assert len(list((folder / "final").glob("*/default/metrics.json"))) == 1  # scored once
    assert (
        json.loads((folder / "tune.json").read_text())["best"]["number"] == study.best_trial.number
    )


def test_a_search_without_ranges_or_with_an_unknown_key_is_refused(tmp_path, phantom_root, cli):
    exp = tmp_path / "e.toml"
    exp.write_text(tiny_experiment(phantom_root))
    result = cli("tune", exp, "--trials", "2", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "[tune] names no parameter" in result.output
    exp.write_text(tiny_experiment(phantom_root) + '[tune]\n"train.lrr" = { log = [1e-4, 1e-1] }\n')
    result = cli("tune", exp, "--trials", "2", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "lrr" in result.output and "Traceback" not in result.output
    exp.write_text(tiny_experiment(phantom_root) + '[tune]\n"train.lr" = { log = [0.1, 1e-4] }\n')
    result = cli("tune", exp, "--trials", "2", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "low end must come first" in result.output
    key = '"data.shuffle_test_labels" = { choice = [true, false] }'
    exp.write_text(tiny_experiment(phantom_root) + f"[tune]\n{key}\n")
    result = cli("tune", exp, "--trials", "2", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert '"data.shuffle_test_labels" cannot be searched' in result.output


def test_a_missing_extra_is_named(tmp_path, phantom_root, cli, monkeypatch):
    exp = tmp_path / "e.toml"
    exp.write_text(tiny_experiment(phantom_root) + SEARCH)
    monkeypatch.setitem(sys.modules, "optuna", None)  # as if it were not installed
    result = cli("tune", exp, "--trials", "2", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "pip install 'odirkit[tune]'" in result.output
    monkeypatch.setitem(sys.modules, "submitit", None)
    result = cli("run", exp, "--launcher", "slurm", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "pip install 'odirkit[slurm]'" in result.output
    assert not (tmp_path / "o").exists()  # refused before a run folder was made


def test_the_slurm_launcher_without_slurm_is_refused_before_any_run_folder(
    tmp_path, phantom_root, cli, monkeypatch
):
    exp = tmp_path / "e.toml"
    exp.write_text(tiny_experiment(phantom_root))
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, no srun
    result = cli("run", exp, "--launcher", "slurm", "--out", tmp_path / "o")
    assert result.exit_code == 2
    assert "sbatch and srun are not on this machine's PATH" in result.output
    assert 'cluster = "local"' in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_workers_as_submitit_jobs_draw_what_one_worker_draws(tmp_path, phantom_root, cli):
    exp = search_file(tmp_path, phantom_root)
    alone = cli("tune", exp, "--trials", "4", "--no-final", "--out", tmp_path / "alone")
    assert alone.exit_code == 0, alone.output
    jobs = ["--workers", "2", "--launcher", "slurm", "--set", 'launcher.cluster="local"']
    shared = cli("tune", exp, "--trials", "4", "--no-final", "--out", tmp_path / "jobs", *jobs)
    assert shared.exit_code == 0, shared.output

    a = json.loads((study_folder(tmp_path / "alone") / "tune.json").read_text())
    b = json.loads((study_folder(tmp_path / "jobs") / "tune.json").read_text())
    # a trial's draws depend on its number, not on the worker that ran it
    assert [t["params"] for t in a["trials"]] == [t["params"] for t in b["trials"]]
    assert len({t["worker"] for t in b["trials"]}) == 2  # two jobs took trials
    logs = list((study_folder(tmp_path / "jobs") / ".submitit").glob("*/*_log.out"))
    assert len(logs) == 2
    assert not (study_folder(tmp_path / "jobs") / "final").exists()  # --no-final
    assert (study_folder(tmp_path / "jobs") / "best.toml").exists()


@pytest.mark.slow
def test_a_trial_whose_worker_was_killed_does_not_hold_the_search(tmp_path, phantom_root, cli):
    import socket

    import optuna

    exp = search_file(tmp_path, phantom_root)
    folder = study_folder(tmp_path / "out")
    folder.mkdir(parents=True)
    storage = f"sqlite:///{folder / 'study.db'}"
    study = optuna.create_study(study_name="tiny", storage=storage, direction="minimize")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a worker killed outright: its trial stays RUNNING in the study
    lost = study.ask()
    lost.set_user_attr("worker", f"{socket.gethostname()}:{gone.pid}")

    result = cli("tune", exp, "--trials", "3", "--no-final", "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    states = {
        t.number: t.state.name for t in optuna.load_study(study_name="tiny", storage=storage).trials
    }
    assert states[0] == "FAIL" and len(states) == 3
    assert "trial 0: its worker" in result.output
    assert (folder / "best.toml").exists()  # the search completed


def test_a_trial_folder_names_its_variant_like_a_run_folder(tmp_path):
    """A search's trial is a run folder of one variant: status, report and predict find it,
    in trials written before they listed their variant too."""
    from odirkit.files import write_json
    from odirkit.runs import RunDirectory

    for listed in (True, False):
        trial = RunDirectory(tmp_path / f"trial-{int(listed)}")
        (trial.path / "default-seed0").mkdir(parents=True)
        write_json(trial.path / "default-seed0" / "config.json", {"name": "x"})
        (trial.path / "notes").mkdir()  # a folder without config.json is no variant
        doc = {"name": "x", "trial": 0, "values": {}, "tune": "study"}
        write_json(trial.run_file, {**doc, "variants": ["default-seed0"]} if listed else doc)
        assert trial.variant_names() == ["default-seed0"]
