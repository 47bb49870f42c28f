"""What a researcher reads on the console, captured at 80 columns, piped and in a terminal.

rich reads square brackets as markup, so a text from configuration, a plugin or a user
that reaches it unescaped loses its brackets; tables cut names and progress bars
squeeze their times when a column grows. Each defect seen once has a test here, run
with ``Console(width=80)`` as a terminal and as a pipe.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console
from rich.text import Text

import odirkit.cli
import odirkit.console
from odirkit.runs.records import RunMetrics


@pytest.fixture(params=["terminal", "piped"])
def screen(request, monkeypatch) -> io.StringIO:
    """odirkit's stdout and stderr consoles at 80 columns, as a terminal or a pipe; what
    they print (both) lands in the returned buffer."""
    buffer = io.StringIO()
    console = Console(
        file=buffer,
        width=80,
        force_terminal=request.param == "terminal",
        color_system=None,
        highlight=False,
        soft_wrap=True,
    )
    for module in (*odirkit.cli.MODULES, odirkit.console):
        for name in ("out", "err"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, console)
    return buffer


def invoke(*args: object) -> None:
    from typer.testing import CliRunner

    result = CliRunner().invoke(odirkit.cli.app, [str(a) for a in args])
    assert result.exit_code == 0, result.output


def words(text: str) -> str:
    """Text with table borders and line breaks as single spaces."""
    return " ".join(re.sub(r"[│┃┏┓┗┛┡┩└┘┌┐├┤┬┴┼━─╇╈╋╭╮╯╰|]", " ", text).split())


# -- square brackets -------------------------------------------------------------------


def test_plain_keeps_square_brackets():
    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(odirkit.console.plain("[data] root = [launcher] kind"))
    assert console.file.getvalue().strip() == "[data] root = [launcher] kind"


def test_every_table_of_describe_experiment_has_its_title(screen):
    invoke("describe", "experiment")
    text = screen.getvalue()
    for table in ("[data]", "[model]", "[train]", "[eval]", "[compare]", "[launcher]", "[tune]"):
        assert f"\n{table}\n" in f"\n{text}", f"no title {table}"
    assert "PydanticUndefined" not in text and "(the file's name)" in words(text)


def test_describe_experiment_shows_the_table_asked_for(screen, cli):
    invoke("describe", "experiment", "data")
    text = screen.getvalue()
    assert "[data]" in text and "test_fraction" in text
    assert "[train]" not in text and "batch_size" not in text
    wrong = cli("describe", "experiment", "dat")
    assert wrong.exit_code == 2 and "no such table (did you mean 'data'?)" in screen.getvalue()


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "piped"])
def test_help_texts_keep_their_brackets(monkeypatch, terminal):
    from typer import rich_utils
    from typer.testing import CliRunner

    monkeypatch.setattr(rich_utils, "MAX_WIDTH", 80)
    monkeypatch.setattr(rich_utils, "FORCE_TERMINAL", terminal)
    monkeypatch.setattr(rich_utils, "COLOR_SYSTEM", None)
    result = CliRunner().invoke(odirkit.cli.app, ["run", "--help"])
    assert result.exit_code == 0, result.output
    shown = words(result.output)
    assert "Default: [launcher] kind." in shown
    assert "runs at once ([launcher] jobs)" in shown
    assert '[launcher] cluster = "local"' in shown


def test_no_help_text_is_read_as_markup():
    """Every help text and docstring of every command shows as written: rich markup left
    in one (an unescaped ``[table]``) would vanish from ``--help``."""
    import typer.main

    group = typer.main.get_command(odirkit.cli.app)
    commands = [group, *group.commands.values()]
    commands += [c for g in group.commands.values() for c in getattr(g, "commands", {}).values()]
    checked = 0
    for command in commands:
        texts = [command.help or ""] + [getattr(p, "help", None) or "" for p in command.params]
        for text in texts:
            meant = text.replace("\\[", "[")
            assert Text.from_markup(text).plain == meant, f"{command.name}: {text!r}"
            checked += 1
    assert checked > 50


# -- the end of a run ---------------------------------------------------------------


def finished(name: str, recall: float, learned: bool) -> SimpleNamespace:
    per_class = {"N": {"recall": 0.7, "f1": 0.7}, "D": {"recall": recall, "f1": 0.5}}
    final = {
        "f1_micro": 0.7,
        "f1_macro": 0.6,
        "recall_macro": 0.6,
        "auc_macro": 0.75,
        "per_class": per_class,
        "intervals": {"recall_D": [0.1, 0.9], "f1_micro": [0.5, 0.8]},
    }
    return SimpleNamespace(
        variant=name,
        metrics=RunMetrics.model_validate(
            {
                "task": "single_label",
                "labels": ["N", "D"],
                "final": final,
                "learning": {"learned": learned},
            }
        ),
    )


def run_result(tmp_path: Path) -> SimpleNamespace:
    config = SimpleNamespace(name="quickstart", eval=SimpleNamespace(confidence=0.95))
    names = [f"{v}-seed{s}" for v in ("default", "augmented", "gan") for s in range(3)]
    answer = "On this data, augmented (classic augmentation) did not improve the recall of D."
    return SimpleNamespace(
        variants=[SimpleNamespace(config=config)],
        results=[finished(n, 0.4, n != "gan-seed2") for n in names],
        comparison=SimpleNamespace(answer=[answer], verdicts=["gan vs default: ..."]),
        directory=SimpleNamespace(path=tmp_path / "run"),
    )


def test_a_run_ends_with_whole_names_the_answer_and_the_report(screen, tmp_path):
    odirkit.cli.running._print_results(run_result(tmp_path))
    text = screen.getvalue()
    assert "…" not in text
    for name in ("default-seed0", "augmented-seed1", "gan-seed2"):
        assert re.search(rf"[│ ]{name} ", text), f"{name} cut or missing"
    assert "F1 of D" in words(text) and "recall of D" in words(text)
    assert "did not improve the recall of D" in text
    assert str(tmp_path / "run" / "report.html") in text and "report.md" not in text
    assert "explanations in" not in text and "gan vs default" not in text
    assert max(len(line) for line in text.splitlines() if "│" in line) <= 80


def test_the_progress_bar_keeps_its_width_and_its_times(screen):
    bar = odirkit.console.progress_bar()
    epochs = bar.add_task("quickstart/augmented-seed0 epochs", total=7, status="")
    steps = bar.add_task("  steps", total=27, status="")
    bar.update(steps, completed=5, status="loss 0.6931")

    def epoch_line() -> str:
        console = Console(file=io.StringIO(), width=80, color_system=None, force_terminal=True)
        console.print(bar.get_renderable())
        return console.file.getvalue().splitlines()[0]

    before = epoch_line()
    bar.update(
        epochs,
        completed=1,
        status="train loss 0.6850  val loss 0.6648  val F1 micro 0.435 macro 0.303 [x]",
    )
    after = epoch_line()
    assert len(before) == len(after) == 80
    assert after.index("/7") == before.index("/7")  # the bar kept its width
    assert "━" in after  # and shows the epoch done
    for line in (before, after):
        assert re.search(r"[01]/7 +\d:\d\d:\d\d +(-:--:--|\d:\d\d:\d\d)", line), line
    assert after.endswith("…") and "[x]" not in after  # the status is what gets cut


# -- small commands ---------------------------------------------------------------------


def fake_run(tmp_path: Path) -> Path:
    run = tmp_path / "runs" / "quickstart" / "20261129-120000"
    for name in ("default", "augmented"):
        (run / name).mkdir(parents=True)
        (run / name / "config.json").write_text("{}")
    (run / "run.json").write_text(
        json.dumps({"name": "quickstart", "variants": ["default", "augmented"], "started": "x"})
    )
    return run


def test_status_shows_no_none(screen, tmp_path):
    invoke("status", fake_run(tmp_path))
    text = screen.getvalue()
    assert "not started" in text and "None" not in text


@pytest.mark.parametrize(
    ("command", "heavy"),
    [
        ("--help", ("torch", "matplotlib", "pandas", "numpy")),  # the bare start-up
        ("runs", ("torch", "matplotlib", "pandas")),
        ("status", ("torch", "matplotlib", "pandas")),
        ("list-plugins", ("matplotlib", "timm", "captum", "sklearn")),  # plugins need torch
    ],
)
def test_small_commands_keep_heavy_imports_off_their_path(tmp_path, command, heavy):
    run = fake_run(tmp_path)
    target = {"runs": [str(tmp_path / "runs")], "status": [str(run)]}.get(command, [])
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom odirkit.cli import app\n"
        f"result = CliRunner().invoke(app, [{command!r}, *{target!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip().splitlines()[-1] == "[]", found


# -- a run folder with several variants ------------------------------------------------------


@pytest.mark.parametrize("command", ["explain", "predict"])
def test_a_run_folder_with_several_variants_asks_for_one(cli, tmp_path, command):
    run = fake_run(tmp_path)
    args = [command, run] + (
        ["images", "--out", tmp_path / "p.csv"] if command == "predict" else []
    )
    result = cli(*args)
    assert result.exit_code == 2, result.output
    message = " ".join(result.stderr.split())
    assert "holds 2 variants (augmented, default)" in message and "--variant NAME" in message
    wrong = cli(*args, "--variant", "defualt")
    assert wrong.exit_code == 2
    assert "no variant 'defualt' (did you mean 'default'?)" in " ".join(wrong.stderr.split())


def test_find_variant_takes_the_run_folder_and_a_name(tmp_path):
    from odirkit.errors import RunError
    from odirkit.runs import find_variant

    run = fake_run(tmp_path)
    assert find_variant(run, "augmented").path == run / "augmented"
    assert find_variant(run / "default").path == run / "default"
    with pytest.raises(RunError, match="is the folder of variant 'default', not 'augmented'"):
        find_variant(run / "default", "augmented")


# -- score --------------------------------------------------------------------------------------


def write_truth(path: Path) -> None:
    import pandas as pd

    rows = [
        {"ID": i, **{x: int(x == ("N" if i % 2 else "D")) for x in "NDGCAHMO"}} for i in range(8)
    ]
    pd.DataFrame(rows).to_csv(path, index=False)


def test_score_scores_the_labels_a_submission_has(cli, tmp_path):
    write_truth(tmp_path / "truth.csv")
    lines = ["ID,N,D"] + [f"{i},{0.8 if i % 2 else 0.3},{0.2 if i % 2 else 0.6}" for i in range(8)]
    (tmp_path / "two.csv").write_text("\n".join(lines) + "\n")
    result = cli("score", tmp_path / "truth.csv", tmp_path / "two.csv", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["labels"] == ["N", "D"] and report["labels_missing"] == list("GCAHMO")
    assert set(report["metrics"]["per_class"]) == {"N", "D"}
    assert report["odir"]["final"] == pytest.approx(1.0)
    assert "scored on those" in result.stderr and "missing: G, C, A, H, M, O" in result.stderr
    table = cli("score", tmp_path / "truth.csv", tmp_path / "two.csv")
    assert "agreement F1 (challenge)" in table.stdout and "metrics.f1_micro" in table.stdout


def test_a_submission_without_labels_is_named_in_good_grammar(cli, tmp_path):
    write_truth(tmp_path / "truth.csv")
    (tmp_path / "none.csv").write_text("ID,X\n1,0.5\n")
    result = cli("score", tmp_path / "truth.csv", tmp_path / "none.csv")
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "the predictions file has no label column (any of N, D, G" in result.stderr
    (tmp_path / "no_id.csv").write_text("Patient,N,D\n1,0.5,0.5\n")
    result = cli("score", tmp_path / "truth.csv", tmp_path / "no_id.csv")
    assert result.exit_code == 2 and "the predictions file lacks column(s) ID" in result.stderr
