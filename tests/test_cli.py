"""The command line: listing and describing plugins, validating, and bad input."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
from conftest import tiny_experiment


def test_list_plugins_shows_kind_name_summary_and_distribution(cli):
    result = cli("list-plugins")
    assert result.exit_code == 0, result.output
    for text in ("model", "cnn", "dataset", "phantom", "odirkit 0.1.0", "Thiry"):
        assert text in result.stdout


def test_list_plugins_json_and_kind_filter(cli):
    result = cli("list-plugins", "--json", "--kind", "model")
    doc = json.loads(result.stdout)
    names = {p["name"]: p for p in doc["plugins"]}
    assert names["cnn"]["distribution"] == "odirkit"
    assert {p["kind"] for p in doc["plugins"]} == {"model"}
    assert "broken" in doc


def test_describe_shows_parameters_types_and_defaults(cli):
    result = cli("describe", "model", "cnn")
    assert result.exit_code == 0, result.output
    assert "widths" in result.stdout and "list[int (>= 1)]" in result.stdout
    assert "float (>= 0.0, < 1.0)" in result.stdout  # dropout's declared range
    assert "[12, 36, 72, 144]" in result.stdout and "cam_layer" in result.stdout
    experiment = cli("describe", "experiment")
    assert "test_fraction" in experiment.stdout and "balance" in experiment.stdout


@pytest.mark.slow
def test_validate_accepts_the_shipped_experiments_and_checks_their_data_folder(cli, tmp_path):
    root = Path(__file__).parents[1] / "experiments"
    synthetic = ("--set", "data.dataset=phantom", "--set", f"data.root={tmp_path / 'ph'}")
    checked = 0
    for path in sorted(root.glob("*.toml")):  # collections/: tests/test_collections.py
        result = cli("validate", path, cwd=tmp_path)
        if result.exit_code == 2 and "no such folder" in result.stderr:
            # a paper experiment names real data this machine lacks; on the phantom it is valid
            checked += 1
            result = cli("validate", path, *synthetic, cwd=tmp_path)
        assert result.exit_code == 0, f"{path}: {result.output}"
        assert "ok" in result.stdout
    assert checked >= 3  # normal_vs_diabetes, odir8_models, ... read data/odir5k
    assert not (tmp_path / "ph").exists()  # validate draws nothing


BAD_FILES = {
    "syntax": ('name = "x"\n[train]\nepochs = \n', "invalid TOML"),
    "unknown_key": ('name = "x"\n[train]\nepoch = 1\n', "unknown key 'epoch'"),
    "wrong_type": ('name = "x"\n[train]\nlr = "fast"\n', "lr: input should be a valid number"),
    "unknown_model": ('name = "x"\n[model]\nname = "resnet"\n', "unknown model 'resnet'"),
    "factory_rejects": (
        'name = "x"\n[model]\nwidths = [1]\n',
        "widths: list should have at least 4",
    ),
    "missing_data": (
        'name = "x"\n[data]\ndataset = "phantom"\nroot = "{tmp}/file.txt"\n',
        "is a file, not a folder",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_bad_input_exits_2_with_one_message_and_touches_nothing(cli, tmp_path, case):
    text, expected = BAD_FILES[case]
    (tmp_path / "file.txt").write_text("not a dataset")
    earlier = tmp_path / "runs" / "x" / "earlier"
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text("{}")
    exp = tmp_path / "exp.toml"
    exp.write_text(text.format(tmp=tmp_path.as_posix()))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    result = cli("run", exp, "--out", tmp_path / "runs", "--set", "train.epochs=1")
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error:") and expected in result.stderr
    assert (earlier / "metrics.json").read_text() == "{}"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_unwritable_output_folder_is_a_clear_error(cli, tmp_path, phantom_root):
    if os.geteuid() == 0:
        target = tmp_path / "a_file"
        target.write_text("x")  # root ignores permissions: use a file where a folder must go
        out = target / "runs"
    else:
        out = tmp_path / "locked"
        out.mkdir()
        out.chmod(stat.S_IREAD | stat.S_IEXEC)
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=1))
    result = cli("run", exp, "--out", out)
    assert result.exit_code == 2, result.output
    assert "cannot create the run folder" in result.stderr


def test_missing_experiment_file_and_unknown_variant(cli, tmp_path, phantom_root):
    result = cli("run", tmp_path / "nope.toml")
    assert result.exit_code == 2 and "no such experiment file" in result.stderr
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root))
    result = cli("run", exp, "--variant", "nope")
    assert result.exit_code == 2 and "no variant 'nope'" in result.stderr


def test_resume_of_something_that_is_not_a_run(cli, tmp_path):
    result = cli("run", "--resume", tmp_path)
    assert result.exit_code == 2 and "not an odirkit run folder" in result.stderr


def test_a_resume_continues_the_run_as_it_was_and_refuses_a_changed_file(
    cli, tmp_path, phantom_root, registry
):
    from odirkit.config import load_experiment
    from odirkit.experiment import start_run

    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=1))
    started = start_run(
        load_experiment(exp, registry), out=tmp_path / "runs", source_text=None, overrides=[]
    )
    changed = tmp_path / "changed.toml"
    changed.write_text(tiny_experiment(phantom_root, epochs=3))
    before = sorted(started.directory.path.rglob("*"))
    result = cli("run", changed, "--resume", started.directory.path)
    assert result.exit_code == 2, result.output
    assert "changed.toml no longer matches the run" in result.stderr
    assert "variant 'default' changed" in result.stderr
    result = cli("run", "--resume", started.directory.path, "--set", "train.epochs=3")
    assert result.exit_code == 2 and "drop --set and --variant" in result.stderr
    assert cli("run").exit_code == 2
    assert sorted(started.directory.path.rglob("*")) == before  # nothing trained or written


def test_tampered_checkpoint_is_refused(cli, tmp_path, phantom_root):
    import torch

    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=1))
    assert cli("run", exp, "--out", tmp_path / "runs").exit_code == 0
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    (variant / "metrics.json").unlink()  # pretend it was interrupted
    torch.save({"model": Path("arbitrary object")}, variant / "checkpoints/last.pt")
    result = cli("run", "--resume", variant.parent)
    assert result.exit_code == 2, result.output
    assert "refused to load" in result.stderr


def test_list_plugins_in_a_narrow_terminal_cuts_no_name(monkeypatch):
    import io

    from rich.console import Console
    from typer.testing import CliRunner

    import odirkit.cli

    screen = io.StringIO()
    screen_console = Console(file=screen, force_terminal=True, width=40, color_system=None)
    for module in odirkit.cli.MODULES:
        if hasattr(module, "out"):
            monkeypatch.setattr(module, "out", screen_console)
    result = CliRunner().invoke(odirkit.cli.app, ["list-plugins"])
    assert result.exit_code == 0, result.output
    text = screen.getvalue()
    assert "guided_gradcam" in text and "inception_v3" in text and "…" not in text
    assert text.count("odirkit 0.1.0") == len(odirkit.cli.get_registry().specs())


@pytest.mark.slow
def test_runs_lists_finished_interrupted_and_failed_runs(cli, tmp_path, phantom_root):
    import json

    from conftest import tiny_experiment

    fine = tiny_experiment(phantom_root, name="fine", epochs=1)
    exp = tmp_path / "fine.toml"
    exp.write_text(fine)
    assert cli("run", exp, "--out", tmp_path / "runs").exit_code == 0
    stopped = tmp_path / "stopped.toml"
    stopped.write_text(tiny_experiment(phantom_root, name="stopped", epochs=1))
    assert cli("run", stopped, "--out", tmp_path / "runs").exit_code == 0
    (interrupted,) = (tmp_path / "runs" / "stopped").glob("*")
    (interrupted / "default" / "metrics.json").unlink()  # as if killed after its checkpoint
    broken = tiny_experiment(phantom_root, name="broken", epochs=1).replace(
        'optimizer = "adam"\nlr = 0.003', 'optimizer = "sgd"\nlr = 1e30'
    )
    (tmp_path / "broken.toml").write_text(broken)
    failed = cli("run", tmp_path / "broken.toml", "--out", tmp_path / "runs")
    assert failed.exit_code == 2, failed.output

    listed = cli("runs", tmp_path / "runs", "--json")
    assert listed.exit_code == 0, listed.output
    runs = {r["experiment"]: r for r in json.loads(listed.stdout)}
    assert runs["fine"]["status"] == "finished" and runs["fine"]["resume"] is None
    (fine_variant,) = (tmp_path / "runs" / "fine").glob("*/default")
    learned = json.loads((fine_variant / "metrics.json").read_text())["learning"]["learned"]
    assert (runs["fine"]["best"] or {}).get("metric") == ("accuracy" if learned else None)
    assert runs["stopped"]["status"] == "interrupted"
    assert runs["stopped"]["resume"] == f"odirkit run --resume {interrupted}"
    assert runs["broken"]["status"] == "failed"
    assert "TrainingDiverged" in runs["broken"]["errors"]["default"]
    table = cli("runs", tmp_path / "runs")
    assert "failed" in table.stdout and "odirkit run --resume" in table.stdout


def test_a_variant_is_found_by_its_folder_or_by_the_name_the_experiment_gave_it(tmp_path):
    """--variant takes the folder's name (plain-seed1) or, as odirkit run does, the
    experiment's variant name when it ran once (gan); a name that ran several times is
    refused listing every run of it."""
    from odirkit.errors import RunError
    from odirkit.runs import find_variant

    for name in ("plain-seed0", "plain-seed1", "gan-seed0"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text("{}")
    assert find_variant(tmp_path, "plain-seed1").name == "plain-seed1"
    assert find_variant(tmp_path, "gan").name == "gan-seed0"
    with pytest.raises(RunError, match=r"'plain' ran 2 times \(plain-seed0, plain-seed1\)"):
        find_variant(tmp_path, "plain")
    with pytest.raises(RunError, match="no variant 'other'"):
        find_variant(tmp_path, "other")


def test_status_of_a_variant_folder_is_the_status_of_its_run(tmp_path):
    from odirkit.files import write_json
    from odirkit.runs import run_status

    write_json(tmp_path / "run.json", {"name": "x", "variants": ["a-seed0", "b-seed0"]})
    for name in ("a-seed0", "b-seed0"):
        write_json(tmp_path / name / "config.json", {})
    found = run_status(tmp_path / "b-seed0")
    assert found["folder"] == str(tmp_path)
    assert [row["variant"] for row in found["variants"]] == ["a-seed0", "b-seed0"]


def test_status_says_a_finished_variant_whose_result_is_damaged(cli, tmp_path):
    import json

    from odirkit.files import write_json
    from odirkit.runs import list_runs, run_status

    run = tmp_path / "runs" / "x" / "20260101-000000"
    write_json(run / "run.json", {"name": "x", "variants": ["a-seed0", "b-seed0"]})
    for name in ("a-seed0", "b-seed0"):
        write_json(run / name / "config.json", {})
    write_json(run / "a-seed0" / "metrics.json", {"task": "single_label", "final": {}})
    (run / "b-seed0" / "metrics.json").write_text('{"final": ')  # cut short
    rows = {row["variant"]: row for row in run_status(run)["variants"]}
    assert rows["a-seed0"]["status"] == "finished"
    assert rows["b-seed0"]["status"] == "damaged"
    assert "b-seed0/metrics.json: unreadable" in rows["b-seed0"]["error"]
    assert run_status(run)["retry"] == f"odirkit run --resume {run}"
    (listed,) = list_runs(tmp_path / "runs")
    assert listed["status"] == "damaged" and listed["best"] is None
    shown = cli("status", run)
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert "b-seed0 damaged:" in text and "delete that file, then resume" in text
    assert json.loads(cli("runs", tmp_path / "runs", "--json").stdout)[0]["status"] == "damaged"


@pytest.mark.parametrize(("text", "damage"), [('"x"', "a JSON str"), ("{", "unreadable")])
def test_runs_lists_a_run_whose_run_json_is_damaged_and_says_why(cli, tmp_path, text, damage):

    from odirkit.files import write_json

    good = tmp_path / "runs" / "fine" / "20261130-000000"
    write_json(good / "run.json", {"name": "fine", "started": "now", "variants": ["a"]})
    write_json(good / "a" / "config.json", {})
    bad = tmp_path / "runs" / "broken" / "20261129-000000"
    bad.mkdir(parents=True)
    (bad / "run.json").write_text(text)
    listed = json.loads(cli("runs", tmp_path / "runs", "--json").stdout)
    assert [run["experiment"] for run in listed] == ["fine", "broken"]
    assert listed[0]["damage"] is None and listed[1]["status"] == "damaged"
    assert f"{bad / 'run.json'}: " in listed[1]["damage"] and damage in listed[1]["damage"]
    shown = cli("runs", tmp_path / "runs")
    assert shown.exit_code == 0, shown.output
    text = " ".join(shown.output.split())
    assert f"damaged: {bad / 'run.json'}: " in text and damage in text
    assert "0/0 finished" not in text


def test_validate_and_phantom_keep_brackets_in_paths(cli, tmp_path):
    odd = tmp_path / "ph[data]x"
    result = cli("phantom", str(odd), "--patients", "4", "--size", "32")
    assert result.exit_code == 0, result.output
    assert "ph[data]x" in result.output
    exp = tmp_path / "e.toml"
    exp.write_text(tiny_experiment(odd, epochs=1))
    result = cli("validate", str(exp))
    assert result.exit_code == 0, result.output
    assert "ph[data]x" in result.output and "1 epoch," in result.output


def test_runs_takes_no_best_figure_from_a_run_that_did_not_learn(cli, tmp_path):
    from odirkit.files import write_json

    run = tmp_path / "runs" / "quick" / "20261130-000000"
    write_json(run / "run.json", {"name": "quick", "started": "now", "variants": ["a", "b", "c"]})
    figures = {"a": (0.9, False), "b": (0.7, True), "c": (0.8, None)}  # None: not checked
    for name, (value, learned) in figures.items():
        write_json(run / name / "config.json", {})
        metrics = {"task": "single_label", "final": {"f1_micro": value}}
        write_json(run / name / "metrics.json", {**metrics, "learning": {"learned": learned}})
    result = cli("runs", tmp_path / "runs", "--json")
    (found,) = json.loads(result.stdout)
    assert found["best"] == {"variant": "c", "metric": "accuracy", "value": 0.8}
    assert found["not_learned"] == 1
    shown = re.sub(r"[│\s]+", " ", cli("runs", tmp_path / "runs").stdout)
    assert "c: accuracy 0.800 (1 did not learn)" in shown


@pytest.mark.slow
def test_compare_tests_the_metrics_the_runs_experiment_names(cli, tmp_path, phantom_root):
    # The quickstart asks about the recall of D ([compare] metrics); `odirkit compare` on
    # its folders must ask the same, not fall back to accuracy and macro AUC.
    extra = (
        '\n[compare]\nmetrics = ["recall_D", "f1_D"]\nrequire_learning = false\n'
        "[variants.a]\n[variants.b]\ntrain = { lr = 0.03 }\n"
    )
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=1, extra=extra))
    assert cli("run", exp, "--out", tmp_path / "runs").exit_code == 0
    (run,) = (tmp_path / "runs").glob("*/*")
    compared = cli("compare", run / "a", run / "b", "--out", tmp_path / "cmp", "--verdicts-anyway")
    assert compared.exit_code == 0, compared.output
    verdicts = json.loads((tmp_path / "cmp" / "comparison.json").read_text())["verdicts"]
    assert [v.split(":")[1].split(" ")[1:4] for v in verdicts] == [
        ["recall", "of", "D"],
        ["F1", "of", "D"],
    ]
    assert "the recall of D" in compared.stdout and "learned" in compared.stdout
