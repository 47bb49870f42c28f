"""Bad input, one case per row: exit code 2, one clear message, no traceback, nothing lost.

Each case prepares a working folder holding an earlier, finished run; the
command must fail with one message naming what is wrong and where, and leave
every file of the earlier run as it was.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import OFFICIAL_COLUMNS, file_digests, tiny_experiment

BASE = 'name = "x"\n'


@dataclass
class Case:
    """What to write, which command to run, what the message must say."""

    name: str
    prepare: Callable[[Path, Path], list[str]]  # (work folder, phantom) -> command arguments
    expected: str


def experiment(text: str) -> Callable[[Path, Path], list[str]]:
    """A case that runs an experiment file with this text ({phantom} is filled in)."""

    def prepare(work: Path, phantom: Path) -> list[str]:
        (work / "exp.toml").write_text(text.replace("{phantom}", phantom.as_posix()))
        return ["run", "exp.toml", "--out", "runs"]

    return prepare


def tiny(work: Path, phantom: Path, **extra: str) -> Path:
    text = tiny_experiment(phantom, epochs=1)
    for old, new in extra.items():
        text = text.replace(old.replace("_", " "), new)
    (work / "exp.toml").write_text(text)
    return work / "exp.toml"


def with_broken_image(truncate: bool) -> Callable[[Path, Path], list[str]]:
    def prepare(work: Path, phantom: Path) -> list[str]:
        copy = work / "phantom"
        shutil.copytree(phantom, copy)
        victim = next((copy / "ODIR-5K_Training_Dataset").glob("*_left.jpg"))
        data = victim.read_bytes()
        victim.write_bytes(data[: len(data) // 2] if truncate else b"not a jpeg at all")
        tiny(work, copy)
        return ["run", "exp.toml", "--out", "runs"]

    return prepare


def odir_workbook(columns: list[str], rows: int) -> Callable[[Path, Path], list[str]]:
    def prepare(work: Path, phantom: Path) -> list[str]:
        root = work / "odir"
        root.mkdir()
        frame = pd.DataFrame({c: ["1"] * rows for c in columns}, columns=columns)
        frame.to_excel(root / "ODIR-5K_Training_Annotations(Updated)_V2.xlsx", index=False)
        (work / "exp.toml").write_text(BASE + f'[data]\ndataset = "odir5k"\nroot = "{root}"\n')
        return ["run", "exp.toml", "--out", "runs"]

    return prepare


def finished_run_with(checkpoint: Callable[[Path], None]) -> Callable[[Path, Path], list[str]]:
    """Resume the earlier run after replacing its checkpoint."""

    def prepare(work: Path, phantom: Path) -> list[str]:
        variant = work / "resumable" / "default"
        checkpoint(variant / "checkpoints" / "last.pt")
        (variant / "metrics.json").unlink()
        return ["run", "--resume", str(work / "resumable")]

    return prepare


def other_model_checkpoint(path: Path) -> None:
    state = torch.load(path, weights_only=True)
    state["model"] = {"something.else": torch.zeros(3)}
    torch.save(state, path)


def pickled_checkpoint(path: Path) -> None:
    torch.save({"model": Path("arbitrary object")}, path)


def fake_plugin(source: str, name: str = "badplug") -> Callable[[Path, Path], Path]:
    """A distribution on disk (dist-info + module) that importlib.metadata finds."""

    def make(site: Path) -> Path:
        site.mkdir(exist_ok=True)
        (site / f"{name}.py").write_text(source)
        info = site / f"odirkit_{name}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: odirkit-{name}\nVersion: 1.0\n"
        )
        (info / "entry_points.txt").write_text(f"[odirkit]\n{name} = {name}\n")
        return site

    return make


def pickled_weights_experiment(work: Path, phantom: Path) -> list[str]:
    """A timm model started from a pickle holding an arbitrary object."""
    torch.save({"w": Path("arbitrary")}, work / "w.pth")
    text = tiny_experiment(phantom, epochs=1).split("[model]")[0]
    text += f'[model]\nname = "timm"\narch = "test_efficientnet"\nweights = "{work / "w.pth"}"\n'
    (work / "exp.toml").write_text(text)
    return ["run", "exp.toml", "--out", "runs"]


RAISES_ON_IMPORT = "raise ImportError('needs the package nonexistent_dependency')\n"
FACTORY_RAISES = """
import odirkit

def build(*, num_classes: int):
    raise RuntimeError("out of cheese")

@odirkit.hookimpl
def odirkit_register_models(register):
    register("cheesy", build, summary="always fails")
"""


def write_over(relative: str, content: Callable[[Path], None]) -> Callable[[Path], None]:
    """Damage a file of the copy of the earlier run ('resumable')."""

    def damage(work: Path) -> None:
        content(work / "resumable" / relative)

    return damage


def on_damaged_run(damage: Callable[[Path], None], command: str) -> Callable[..., list[str]]:
    """Run ``command`` ("compare" or "ensemble") on a copy of the earlier run with a file
    damaged, beside the intact earlier run."""

    def prepare(work: Path, phantom: Path) -> list[str]:
        damage(work)
        return [command, "resumable", "keep", "--out", "elsewhere"]

    return prepare


def submission_over(path: Path) -> None:
    pd.DataFrame({"ID": ["1", "2"], "N": [0.2, 0.7], "D": [0.8, 0.3]}).to_csv(path, index=False)


def cut_in_half(path: Path) -> None:
    """A file cut short mid-row, as a full disk or a copy interrupted leaves it."""
    text = path.read_text()
    path.write_text(text[: len(text) // 2].rsplit(",", 1)[0] + ",")


def phantom_drawn_with(work: Path, phantom: Path, **settings: object) -> Path:
    from odirkit.plugins import get_registry

    root = work / "mine"
    get_registry().get("dataset", "phantom").build(root=str(root), **settings)
    return root


def sized(model: str, size: int, params: str = "") -> Callable[[Path, Path], list[str]]:
    """The tiny experiment with another model (``params``: its TOML lines) at another size."""

    def prepare(work: Path, phantom: Path) -> list[str]:
        text = tiny_experiment(phantom, epochs=1).replace("image_size = 48", f"image_size = {size}")
        if model == "both_eyes":
            text = text.replace("image_size =", 'level = "patient"\nimage_size =')
        head, rest = text.split("[model]")[0], "[train]" + text.split("[train]")[1]
        (work / "exp.toml").write_text(head + f'[model]\nname = "{model}"\n{params}\n' + rest)
        return ["validate", "exp.toml"]

    return prepare


CASES = [
    Case("toml_syntax", experiment(BASE + "[train]\nepochs = \n"), "invalid TOML"),
    Case("empty_file", experiment(""), "exp.toml: the experiment file is empty"),
    Case("only_comments", experiment("# nothing yet\n\n# [train]\n"), "file is empty"),
    Case(
        "wrong_explain_layer",
        lambda work, phantom: (
            tiny(work, phantom)
            and (work / "exp.toml").write_text(
                (work / "exp.toml").read_text()
                + '\n[[explain]]\nname = "gradcam"\nlayer = "features.99"\n'
            )
            and ["run", "exp.toml", "--out", "runs"]
        ),
        "[explain.0] layer: the model has no layer 'features.99'; candidate layers",
    ),
    Case("toml_duplicate_key", experiment(BASE + 'name = "y"\n'), "invalid TOML"),
    Case("unknown_top_level_key", experiment(BASE + "epochs = 3\n"), "unknown key 'epochs'"),
    Case("unknown_table", experiment(BASE + "[trian]\n"), "did you mean 'train'"),
    Case("unknown_data_key", experiment(BASE + '[data]\nroots = "x"\n'), "did you mean 'root'"),
    Case("unknown_model_key", experiment(BASE + "[model]\nwidth = 3\n"), "did you mean 'widths'"),
    Case("unknown_train_key", experiment(BASE + "[train]\nepoch = 1\n"), "did you mean 'epochs'"),
    Case(
        "unknown_augment_key",
        experiment(BASE + 'augment = [{ name = "classic", noise = 1 }]\n'),
        "unknown key 'noise'",
    ),
    Case(
        "unknown_explain_key",
        experiment(BASE + '[[explain]]\nname = "gradcam"\nlayerr = "x"\n'),
        "unknown key 'layerr'",
    ),
    Case(
        "unknown_variant_key",
        experiment(BASE + "[variants.a]\ntrain = { epohcs = 1 }\n"),
        "[variants.a.train] unknown key 'epohcs'",
    ),
    Case(
        "wrong_type_int",
        experiment(BASE + '[train]\nepochs = "ten"\n'),
        "epochs: input should be a valid integer",
    ),
    Case(
        "wrong_type_bool",
        experiment(BASE + '[data]\ncrop_to_fov = "yes"\n'),
        "crop_to_fov: input should be a valid boolean",
    ),
    Case(
        "wrong_type_list",
        experiment(BASE + '[data]\nlabels = "ND"\n'),
        "labels: input should be a valid list",
    ),
    Case(
        "negative_epochs", experiment(BASE + "[train]\nepochs = -1\n"), "greater than or equal to 1"
    ),
    Case(
        "test_fraction_too_big",
        experiment(BASE + "[data]\ntest_fraction = 1.5\n"),
        "test_fraction: input should be less than 1",
    ),
    Case("unknown_label", experiment(BASE + '[data]\nlabels = ["N", "X"]\n'), "labels.1"),
    Case("zero_learning_rate", experiment(BASE + "[train]\nlr = 0\n"), "lr: input should be"),
    Case("one_fold", experiment(BASE + "[data]\nfolds = 1\n"), "folds = 1 is no cross-valid"),
    Case(
        "unknown_threshold_rule",
        experiment(BASE + '[eval]\nthreshold = "best"\n'),
        "[eval] threshold: value error, threshold 'best': expected a number",
    ),
    Case(
        "unknown_baseline_variant",
        experiment(BASE + '[compare]\nbaseline = "defualt"\n'),
        "baseline = 'defualt' is not a variant (did you mean 'default'?)",
    ),
    Case("seeds_and_repeats", experiment(BASE + "seeds = [0, 1]\nrepeats = 2\n"), "not both"),
    Case(
        "unknown_dataset", experiment(BASE + '[data]\ndataset = "odir"\n'), "unknown dataset 'odir'"
    ),
    Case(
        "unknown_model", experiment(BASE + '[model]\nname = "resnet"\n'), "unknown model 'resnet'"
    ),
    Case(
        "unknown_augmenter",
        experiment(BASE + 'augment = [{ name = "mixup" }]\n'),
        "unknown augmenter 'mixup'",
    ),
    Case(
        "unknown_explainer",
        experiment(BASE + '[[explain]]\nname = "lime"\n'),
        "unknown explainer 'lime'",
    ),
    Case("unavailable_cuda", experiment(BASE + 'device = "cuda:7"\n'), "device = 'cuda:7'"),
    Case(
        "missing_data_folder",
        experiment(BASE + '[data]\ndataset = "odir5k"\nroot = "nowhere"\n'),
        "nowhere: ODIR-5K not found",
    ),
    Case("empty_dataset", odir_workbook(OFFICIAL_COLUMNS, 0), "no images found"),
    Case("workbook_missing_columns", odir_workbook(["ID", "Patient Age"], 2), "missing column"),
    Case("corrupt_jpeg", with_broken_image(truncate=False), "cannot read image"),
    Case("truncated_jpeg", with_broken_image(truncate=True), "_left.jpg"),
    Case(
        "missing_weights_file",
        experiment(
            BASE + '[model]\nname = "timm"\narch = "test_efficientnet"\n'
            'weights = "no/such/file.safetensors"\n'
        ),
        "weights file no/such/file.safetensors not found",
    ),
    Case("pickled_weights_file", pickled_weights_experiment, "refused to load"),
    Case(
        "checkpoint_from_another_model",
        finished_run_with(other_model_checkpoint),
        "does not fit model 'cnn'",
    ),
    Case("pickled_checkpoint", finished_run_with(pickled_checkpoint), "refused to load"),
    Case(
        "unwritable_output_folder",
        lambda work, phantom: (
            (tiny(work, phantom), (work / "afile").write_text("x"))
            and ["run", "exp.toml", "--out", "afile/runs"]
        ),
        "cannot create the run folder",
    ),
    Case(
        "missing_experiment_file",
        lambda work, phantom: ["run", "nope.toml"],
        "nope.toml: no such experiment file",
    ),
    Case(
        "set_without_value",
        lambda work, phantom: tiny(work, phantom) and ["run", "exp.toml", "--set", "epochs"],
        "expected KEY=VALUE",
    ),
    Case(
        "unknown_variant",
        lambda work, phantom: tiny(work, phantom) and ["run", "exp.toml", "--variant", "nope"],
        "no variant 'nope'",
    ),
    Case(
        "resume_something_else",
        lambda work, phantom: ["run", "--resume", str(work)],
        "not an odirkit run folder",
    ),
    # -- nothing a command did not create is written over
    Case(
        "compare_out_into_a_run",
        lambda work, phantom: ["compare", "keep", "--out", "keep"],
        "inside the run folder",
    ),
    Case(
        "predict_out_over_a_runs_predictions",
        lambda work, phantom: [
            "predict",
            "keep",
            str(phantom / "ODIR-5K_Training_Dataset"),
            "--out",
            "keep/default/predictions.csv",
        ],
        "odirkit never writes over a run's files",
    ),
    Case(
        "ensemble_out_into_a_run",
        lambda work, phantom: ["ensemble", "keep", "--out", "keep/default/ensemble"],
        "inside the run folder",
    ),
    Case(
        "run_out_into_a_run",
        lambda work, phantom: tiny(work, phantom) and ["run", "exp.toml", "--out", "keep"],
        "inside the run folder",
    ),
    Case(
        "explain_out_inside_a_run",
        lambda work, phantom: ["explain", "keep", "--out", "keep/default/explain"],
        "--out keep/default/explain: inside the run folder",
    ),
    Case(
        "damaged_predictions_compare",
        on_damaged_run(write_over("default/predictions.csv", submission_over), "compare"),
        "predictions.csv: not the predictions this run wrote",
    ),
    Case(
        "damaged_predictions_ensemble",
        on_damaged_run(write_over("default/predictions.csv", submission_over), "ensemble"),
        "predictions.csv: not the predictions this run wrote",
    ),
    Case(
        "damaged_metrics_json",
        on_damaged_run(
            write_over("default/metrics.json", lambda p: p.write_text('{"task": ')), "compare"
        ),
        "metrics.json: unreadable",
    ),
    Case(  # JSON, but not a run's result: a typed record names the field, not a KeyError
        "foreign_metrics_json_compare",
        on_damaged_run(
            write_over("default/metrics.json", lambda p: p.write_text('{"final": [0.7, 0.2]}')),
            "compare",
        ),
        "metrics.json: not a run's result as odirkit writes it (final:",
    ),
    Case(
        "foreign_metrics_json_ensemble",
        on_damaged_run(
            write_over("default/metrics.json", lambda p: p.write_text('{"labels": "ND"}')),
            "ensemble",
        ),
        "metrics.json: not a run's result as odirkit writes it (",
    ),
    Case(
        "damaged_metrics_json_predict",  # not a silent guess at checkpoint and temperature
        lambda work, phantom: (
            (work / "resumable" / "default" / "metrics.json").write_text('{"checkpoint": "la')
            and [
                "predict",
                "resumable",
                str(phantom / "ODIR-5K_Training_Dataset"),
                "--out",
                "p.csv",
            ]
        ),
        "metrics.json: unreadable",
    ),
    # -- valid JSON that is not the object the run wrote, cut or foreign CSVs: named, no traceback
    Case(
        "metrics_json_not_an_object",
        on_damaged_run(
            write_over("default/metrics.json", lambda p: p.write_text("[1, 2]")), "ensemble"
        ),
        "metrics.json: damaged (a JSON list",
    ),
    Case(
        "config_json_not_an_object",
        on_damaged_run(write_over("default/config.json", lambda p: p.write_text("[]")), "compare"),
        "config.json: damaged (a JSON list",
    ),
    Case(
        "run_json_not_an_object",
        lambda work, phantom: (
            (work / "resumable" / "run.json").write_text('"x"') and ["status", "resumable"]
        ),
        "run.json: damaged (a JSON str",
    ),
    Case(
        "truncated_predictions_ensemble",
        on_damaged_run(write_over("default/predictions.csv", cut_in_half), "ensemble"),
        "predictions.csv: damaged (line",
    ),
    Case(
        "truncated_val_predictions_ensemble",
        on_damaged_run(write_over("default/val_predictions.csv", cut_in_half), "ensemble"),
        "val_predictions.csv: damaged (line",
    ),
    Case(
        "metrics_csv_written_over",
        on_damaged_run(write_over("default/metrics.csv", submission_over), "compare"),
        "metrics.csv: damaged (not the per-epoch table",
    ),
    # -- a dataset the run did not draw is not drawn over
    Case(
        "phantom_with_other_settings",
        lambda work, phantom: (
            phantom_drawn_with(work, phantom, patients=6, size=48)
            and tiny(work, work / "mine")
            and ["run", "exp.toml", "--out", "runs"]
        ),
        "holds a phantom drawn with other settings: patients 6 (asked: 40)",
    ),
    Case(
        "phantom_with_a_damaged_manifest",
        lambda work, phantom: (
            phantom_drawn_with(work, phantom, patients=6, size=48)
            and (work / "mine" / "phantom.json").write_text('{"version": ')
            and tiny(work, work / "mine")
            and ["run", "exp.toml", "--out", "runs"]
        ),
        "phantom.json: damaged (not the JSON object the phantom wrote)",
    ),
    Case(
        "missing_data_root_in_validate",
        lambda work, phantom: (
            (work / "exp.toml").write_text(
                BASE + '[data]\ndataset = "odir5k"\nroot = "nowhere/odir"\n'
            )
            and ["validate", "exp.toml"]
        ),
        "root = 'nowhere/odir': no such folder",
    ),
    Case(
        "data_root_is_a_file_in_validate",
        lambda work, phantom: (
            (work / "exp.toml").write_text(BASE + '[data]\ndataset = "odir5k"\nroot = "exp.toml"\n')
            and ["validate", "exp.toml"]
        ),
        "root = 'exp.toml': a file, not a folder",
    ),
    # -- an image size the model cannot take, found before anything runs
    Case(
        "inception_at_64px",
        sized("inception_v3", 64, "pretrained = false"),
        "image_size = 64 is too small for 'inception_v3' (smallest: 75)",
    ),
    Case(
        "vgg13_bn_at_16px",
        sized("vgg13_bn", 16, "pretrained = false"),
        "image_size = 16 is too small for 'vgg13_bn' (smallest: 32)",
    ),
    Case(
        "vit_at_64px",
        sized("timm", 64, 'arch = "vit_tiny_patch16_224"'),
        "image_size = 64 does not fit 'timm (vit_tiny_patch16_224)': it takes 224 px only",
    ),
    Case(
        "both_eyes_backbone_at_16px",
        sized("both_eyes", 16, 'backbone = "vgg13_bn"\nbackbone_params = { pretrained = false }'),
        "image_size = 16",
    ),
    # -- numbers are finite
    Case(
        "infinite_learning_rate",
        experiment(BASE + "[train]\nlr = inf\n"),
        "lr: input should be a finite number",
    ),
    Case(
        "nan_weight_decay",
        experiment(BASE + "[train]\nweight_decay = nan\n"),
        "weight_decay: input should be a finite number",
    ),
    Case(
        "infinite_plugin_float",
        experiment(BASE + 'augment = [{ name = "classic", noise_variance = inf }]\n'),
        "noise_variance: input should be a finite number",
    ),
    Case(
        "infinite_from_the_command_line",
        lambda work, phantom: (
            tiny(work, phantom) and ["validate", "exp.toml", "--set", "eval.confidence=inf"]
        ),
        "confidence: input should be a finite number",
    ),
    # -- the level of an interval lies strictly between 0.5 and 1
    Case(
        "confidence_of_one",
        experiment(BASE + "[eval]\nconfidence = 1.0\n"),
        "[eval] confidence: input should be less than 1, got 1.0 (float)",
    ),
    # -- a plugin parameter is read as written, never coerced from text or a boolean
    Case(
        "plugin_float_given_as_text",
        experiment(BASE + '[model]\ndropout = "0.3"\n'),
        "[model] dropout: input should be a valid number, got '0.3' (str) for model 'cnn'",
    ),
    Case(
        "plugin_float_given_as_true",
        experiment(BASE + 'augment = [{ name = "classic", noise_p = true }]\n'),
        "[augment.0] noise_p: input should be a valid number, got True (bool)",
    ),
    Case(
        "score_missing_columns",
        lambda work, phantom: (
            pd.DataFrame({"ID": [1]}).to_csv(work / "t.csv", index=False),
            ["score", "t.csv", "t.csv"],
        )[1],
        "the predictions file has no label column (any of N, D",
    ),
]


@pytest.fixture(scope="module")
def earlier_run(tmp_path_factory, phantom_root) -> Path:
    """A finished run, resumable once its metrics.json is removed."""
    from typer.testing import CliRunner

    from odirkit.cli import app

    work = tmp_path_factory.mktemp("earlier")
    (work / "exp.toml").write_text(tiny_experiment(phantom_root, epochs=1))
    result = CliRunner().invoke(app, ["run", str(work / "exp.toml"), "--out", str(work / "runs")])
    assert result.exit_code == 0, result.output
    (run,) = (work / "runs").glob("*/*")
    return run


#: mistakes found before a run folder is created (not after training)
CHECKED_BEFORE_ANY_FOLDER = {"empty_file", "only_comments", "wrong_explain_layer", "toml_syntax"}


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input_exits_2_with_one_clear_message(case, cli, tmp_path, phantom_root, earlier_run):
    shutil.copytree(earlier_run, tmp_path / "resumable")
    keep = tmp_path / "keep"
    shutil.copytree(earlier_run, keep)
    before = file_digests(keep)
    args = case.prepare(tmp_path, phantom_root)
    result = cli(*args, cwd=tmp_path)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr  # one message (progress notes may precede it)
    assert case.expected in result.stderr, result.stderr
    assert file_digests(keep) == before  # nothing an earlier run wrote was touched
    if case.name in CHECKED_BEFORE_ANY_FOLDER:
        assert not (tmp_path / "runs").exists(), "the run folder was made before the check"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("plugin", "args", "expected"),
    [
        (
            fake_plugin(RAISES_ON_IMPORT),
            ["--strict", "validate", "exp.toml"],
            "broken plugin 'badplug' (odirkit-badplug 1.0)",
        ),
        (
            fake_plugin(RAISES_ON_IMPORT),
            ["run", "exp.toml"],
            "a plugin called 'badplug' is installed but broken",
        ),
        (
            fake_plugin(FACTORY_RAISES),
            ["run", "exp.toml"],
            "model 'cheesy' from odirkit-badplug 1.0 failed to build: RuntimeError: out of cheese",
        ),
    ],
    ids=["raises_on_import_strict", "raises_on_import_named", "factory_raises"],
)
def test_broken_third_party_plugins(plugin, args, expected, tmp_path, phantom_root):
    import os
    import subprocess

    site = plugin(tmp_path / "site")
    model = "cheesy" if "cheesy" in expected else "badplug"
    text = (
        tiny_experiment(phantom_root, epochs=1).split("[model]")[0] + f'[model]\nname = "{model}"\n'
    )
    (tmp_path / "exp.toml").write_text(text)
    env = {**os.environ, "PYTHONPATH": str(site), "ODIRKIT_QUIET": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "odirkit", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and expected in result.stderr
    assert not (tmp_path / "runs").exists()
