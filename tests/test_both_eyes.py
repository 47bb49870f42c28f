"""The both-eyes patient model: pairing, the model, training, scoring, predict, explain."""

from __future__ import annotations

import json
import os
import shutil
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
from PIL import Image
from typer.testing import CliRunner

from odirkit.cli import app
from odirkit.data.pairs import patients_as_samples
from odirkit.data.prepare import ImageStore
from odirkit.data.table import Task
from odirkit.errors import DataError
from odirkit.eyes import LEFT, RIGHT, OneEye, interleave

CNN_BLOCK = """[model]
name = "cnn"
widths = [4, 8, 8, 8]
kernels = [5, 3, 3, 3]
pool = 2
dense = [16]
dropout = 0.0
"""
BOTH_BLOCK = """[model]
name = "both_eyes"
backbone = "cnn"
backbone_params = { widths = [4, 8, 8, 8], kernels = [5, 3, 3, 3], pool = 2, dense = [16] }
features = 8
"""
NO_BN = "pool = 2, dense = [16], dropout = 0.0, batch_norm = false"
LABELS8 = 'labels = ["N", "D", "G", "C", "A", "H", "M", "O"]\nlevel = "patient"'


def experiment(root: Path, *, epochs: int = 2, extra: str = "", both: bool = True) -> str:
    """The tiny experiment on the odir5k reader, eight labels at patient level."""
    text = tiny_experiment(root, epochs=epochs, extra=extra)
    text = text.replace('labels = ["N", "D"]', LABELS8).replace('"phantom"', '"odir5k"')
    if both:
        assert CNN_BLOCK in text
        text = text.replace(CNN_BLOCK, BOTH_BLOCK)
    return "\n".join(
        line
        for line in text.splitlines()
        if not line.startswith(("patients =", "size =", "difficulty ="))
    )


def run(root: Path, work: Path, text: str) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    (work / "exp.toml").write_text(text)
    result = CliRunner().invoke(app, ["run", str(work / "exp.toml"), "--out", str(work / "runs")])
    assert result.exit_code == 0, result.output
    (variant,) = (work / "runs").glob("*/*/default")
    return variant


@pytest.fixture(scope="module")
def both_run(tmp_path_factory, phantom_root) -> Path:
    return run(phantom_root, tmp_path_factory.mktemp("both"), experiment(phantom_root))


# -- pairing -----------------------------------------------------------------------------


def _photos(eyes: list[tuple[str, str]]) -> tuple[pd.DataFrame, ImageStore]:
    rows = pd.DataFrame(
        {
            "patient_id": [p for p, _ in eyes],
            "eye": [e for _, e in eyes],
            "path": [f"{p}_{e}.jpg" for p, e in eyes],
            "age": [float(40 + i) for i in range(len(eyes))],
            "sex": ["M"] * len(eyes),
        }
    )
    arrays = [np.full((4, 4, 3), i, np.uint8) for i in range(len(eyes))]  # pixel = row
    return rows, ImageStore(arrays, [Path(f"{i}.npy") for i in range(len(eyes))], 4)


def test_each_patient_is_their_left_then_right_photograph_and_a_lone_eye_is_flagged():
    # patient 10 is listed right eye first; 2 has only a left eye, 100 only a right one
    eyes = [("10", "right"), ("2", "left"), ("10", "left"), ("100", "right")]
    rows, store = _photos(eyes)
    truth = pd.DataFrame({"N": [0, 1, 0], "D": [1, 0, 1], "G": [1, 0, 0]}, index=["10", "2", "100"])
    side = np.array(["train", "test", "train", "val"])
    patients = patients_as_samples(rows, store, side, truth, Task(("N", "D", "G"), "multi_label"))
    assert list(patients.table["patient_id"]) == ["10", "2", "100"]
    assert list(patients.table["eye"]) == ["both", "left only", "right only"]
    assert list(patients.side) == ["train", "test", "val"]
    pixels = patients.store.batch(np.array([0, 1, 2]))[:, 0, 0, 0].tolist()
    assert pixels == [2, 0, 1, 1, 3, 3]  # left, right per patient; a lone eye twice
    assert np.array_equal(patients.targets, truth.to_numpy(np.float32))
    assert patients.table["path"].iloc[0] == "10_left.jpg;10_right.jpg"
    assert patients.report["left_only"] == 1 and patients.report["right_only"] == 1
    assert patients.store.item(0)[:, 0, 0, 0].tolist() == [2, 0]

    single = patients_as_samples(rows, store, side, truth, Task(("N", "D", "G"), "single_label"))
    assert list(single.table["patient_id"]) == ["2", "100"]  # 10 has two of the labels
    assert list(single.targets) == [0, 1]
    assert single.report["left_out_without_exactly_one_label"] == 1
    assert patients.report["patients"] == 3 and single.report["patients"] == 2  # those kept
    assert single.report["both_eyes"] == 0 and single.report["left_only"] == 1


def test_of_two_photographs_of_one_eye_the_first_listed_is_paired():
    # patient 7's left eye was photographed twice (rows 1 and 3); patient 5 once per eye
    eyes = [("7", "right"), ("7", "left"), ("5", "left"), ("7", "left"), ("5", "right")]
    rows, store = _photos(eyes)
    truth = pd.DataFrame({"N": [0, 1], "D": [1, 0]}, index=["7", "5"])
    side = np.array(["train"] * len(eyes))
    patients = patients_as_samples(rows, store, side, truth, Task(("N", "D"), "multi_label"))
    assert list(patients.table["patient_id"]) == ["7", "5"]
    assert list(patients.table["eye"]) == ["both", "both"]
    assert patients.store.batch(np.array([0, 1]))[:, 0, 0, 0].tolist() == [1, 0, 2, 4]
    assert patients.table["left_path"].tolist() == ["7_left.jpg", "5_left.jpg"]


def test_a_paired_store_refuses_single_photographs_added_by_an_offline_augmenter():
    rows, store = _photos([("7", "left"), ("7", "right")])
    truth = pd.DataFrame({"N": [1], "D": [0]}, index=["7"])
    patients = patients_as_samples(
        rows, store, np.array(["train"] * 2), truth, Task(("N", "D"), "multi_label")
    )
    with pytest.raises(DataError, match="an offline augmenter adds single photographs"):
        patients.store.append(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), None)
    assert len(patients.store) == 1


# -- the model ---------------------------------------------------------------------------


def test_the_model_joins_left_then_right_and_explains_one_eye_with_the_other_held(registry):
    from odirkit.testing import small_params

    spec = registry.get("model", "both_eyes")
    torch.manual_seed(0)
    model = spec.build(num_classes=3, **small_params(spec)).eval()
    left, right = torch.rand(2, 3, 48, 48), torch.rand(2, 3, 48, 48)
    with torch.no_grad():
        joint = model(interleave(left, right))
        swapped = model(interleave(right, left))
    assert joint.shape == (2, 3)
    assert not torch.allclose(joint, swapped, atol=1e-4)  # which eye is which matters
    one = OneEye(model)
    as_left = one(left, one.features(right), torch.full((2,), LEFT))
    as_right = one(right, one.features(left), torch.full((2,), RIGHT))
    assert torch.allclose(as_left, joint, atol=1e-5)
    assert torch.allclose(as_right, joint, atol=1e-5)
    x = left.clone().requires_grad_(True)
    one(x, one.features(right), torch.full((2,), LEFT)).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match="pairs"):
        model(torch.rand(3, 3, 48, 48))


# -- a run -------------------------------------------------------------------------------


def test_a_both_eyes_run_scores_every_patient_against_the_patient_labels(
    cli, tmp_path, both_run, phantom_root
):
    data = json.loads((both_run / "data.json").read_text())
    assert data["both_eyes"]["patients"] == 40 and data["both_eyes"]["both_eyes"] == 40
    assert data["samples"] == "patients (both eyes)"
    assert data["test_images"] == 2 * data["test_patients"]
    final = json.loads((both_run / "metrics.json").read_text())
    assert final["level"] == "patient" and "final_per_image" not in final
    assert not [c for c in pd.read_csv(both_run / "metrics.csv").columns if "image_" in c]

    patients = pd.read_csv(both_run / "patient_predictions.csv", dtype={"ID": str})
    split = pd.read_csv(both_run / "split.csv", dtype={"patient_id": str})
    test_ids = set(split.loc[split["split"] == "test", "patient_id"])
    assert set(patients["ID"]) == test_ids and len(patients) == len(test_ids)
    # the targets are the workbook's patient labels, and odirkit score agrees with the run
    from odirkit.labels import LABELS

    book = pd.read_excel(next(phantom_root.glob("*.xlsx"))).astype({"ID": str}).set_index("ID")
    truth = book.loc[patients["ID"], list(LABELS)].to_numpy()
    assert np.array_equal(patients[[f"target_{x}" for x in LABELS]].to_numpy(), truth)
    truth_file, submission = tmp_path / "truth.csv", tmp_path / "submission.csv"
    book.loc[sorted(patients["ID"], key=int), list(LABELS)].reset_index().to_csv(
        truth_file, index=False
    )
    patients[["ID", *LABELS]].to_csv(submission, index=False)
    scored = cli("score", truth_file, submission, "--sort", "--json")
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["odir"] == pytest.approx(
        final["final"]["odir_patient"], abs=1e-6
    )


def test_predict_takes_both_photographs_of_a_patient_together(
    cli, tmp_path, both_run, phantom_root
):
    patients = pd.read_csv(both_run / "patient_predictions.csv", dtype={"ID": str})
    chosen = list(patients["ID"][:3])
    folder = tmp_path / "photos"
    folder.mkdir()
    for pid in chosen:
        for eye in ("left", "right"):
            source = phantom_root / "ODIR-5K_Training_Dataset" / f"{pid}_{eye}.jpg"
            shutil.copy(source, folder / source.name)
    out = tmp_path / "sub.csv"
    result = cli("predict", both_run, folder, "--out", out)
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, dtype={"ID": str}).set_index("ID")
    expected = patients.set_index("ID").loc[chosen, ["N", "D", "G"]]
    assert np.allclose(got.loc[chosen, ["N", "D", "G"]], expected, atol=1e-4)
    # one photograph only: predicted from it alone, in both places (as in training)
    (folder / f"{chosen[0]}_right.jpg").unlink()
    lone = cli("predict", both_run, folder, "--out", tmp_path / "lone.csv")
    assert lone.exit_code == 0, lone.output
    again = pd.read_csv(tmp_path / "lone.csv", dtype={"ID": str}).set_index("ID")
    assert np.allclose(again.loc[chosen[1:], ["N", "D"]], expected.loc[chosen[1:], ["N", "D"]])
    assert not np.allclose(again.loc[chosen[0], "D"], expected.loc[chosen[0], "D"], atol=1e-6)


@pytest.mark.slow
def test_each_eye_is_explained_for_the_patients_predicted_labels(cli, tmp_path, both_run):
    out = tmp_path / "explained"
    result = cli(
        "explain", both_run, "--explainer", "smoothgrad", "--max-images", "4", "--out", out
    )
    assert result.exit_code == 0, result.output
    maps = np.load(out / "maps.npz")
    patients = pd.read_csv(both_run / "patient_predictions.csv", dtype={"ID": str})
    first = patients.set_index("ID").iloc[0]
    probs = first[list("NDGCAHMO")].astype(float)
    predicted = set(probs.index[probs > 0.5]) or {probs.idxmax()}
    mine = maps["patient_id"] == patients["ID"].iloc[0]
    right = mine & (maps["eye"] == "right")
    left = mine & (maps["eye"] == "left")
    # the right eye (no class example is drawn from it) shows the patient's prediction
    assert set(maps["target"][right]) == predicted
    label = sorted(predicted)[0]
    one_left = np.flatnonzero(left & (maps["target"] == label))[0]
    one_right = np.flatnonzero(right & (maps["target"] == label))[0]
    a, b = maps["smoothgrad"][one_left], maps["smoothgrad"][one_right]
    assert a.max() > 0 and b.max() > 0 and not np.allclose(a, b)


def test_every_explained_photograph_sits_beside_its_own_other_eye(both_run, registry):
    from odirkit.data.prepare import prepare_data
    from odirkit.explain import inputs_from_data
    from odirkit.predict import load_trained
    from odirkit.runs import VariantDirectory

    exp, model, view = load_trained(VariantDirectory(both_run), registry)
    model.eval()
    data = prepare_data(exp, both_eyes=True)
    inputs = inputs_from_data(data, view, 6)
    one = OneEye(model)
    with torch.no_grad():
        other = one.features(view.normalise(inputs.partners))
        each = one(view.normalise(inputs.images), other, inputs.sides)
        patients = data.test_idx[:3]
        joint = model(view.normalise(data.store.batch(patients)))
    assert list(inputs.rows["eye"]) == ["left", "right"] * 3
    expected = joint.repeat_interleave(2, dim=0)  # both photographs give their patient's logits
    assert torch.allclose(each, expected, atol=1e-5)
    ids = data.table["patient_id"].iloc[patients].repeat(2).tolist()
    assert inputs.rows["patient_id"].tolist() == ids


@pytest.mark.slow
def test_a_patient_with_one_usable_photograph_is_kept_and_flagged(tmp_path, phantom_copy, both_run):
    split = pd.read_csv(both_run / "split.csv", dtype={"patient_id": str})
    victim = split.loc[split["split"] == "test", "patient_id"].iloc[0]
    photo = phantom_copy / "ODIR-5K_Training_Dataset" / f"{victim}_right.jpg"
    Image.fromarray(np.full((96, 120, 3), 245, np.uint8)).save(photo)  # not a fundus
    extra = "[eval]\nbootstrap = 0"
    text = experiment(phantom_copy, epochs=1, extra=extra).replace(
        "test_fraction = 0.25", 'test_fraction = 0.25\nfundus_check = "skip"'
    )
    variant = run(phantom_copy, tmp_path, text)
    data = json.loads((variant / "data.json").read_text())
    assert data["both_eyes"]["patients"] == 40  # nobody dropped
    assert data["both_eyes"]["left_only"] == 1 and data["both_eyes"]["right_only"] == 0
    predictions = pd.read_csv(variant / "predictions.csv", dtype={"patient_id": str})
    flags = predictions.set_index("patient_id")["eye"]
    assert flags[victim] == "left only" and (flags.drop(victim) == "both").all()


def test_both_eyes_needs_patients_online_augmenters_and_an_image_backbone(
    cli, tmp_path, phantom_root
):
    exp = tmp_path / "exp.toml"
    cases = {
        "image level": (
            experiment(phantom_root).replace('level = "patient"', 'level = "image"'),
            'data.level = "patient"',
        ),
        "offline": (
            'augment = [{ name = "classic", mode = "offline" }]\n' + experiment(phantom_root),
            "adds single photographs",
        ),
        "unknown backbone": (
            experiment(phantom_root).replace('backbone = "cnn"', 'backbone = "resnet"'),
            "unknown model 'resnet'",
        ),
        "nested": (
            experiment(phantom_root).replace('backbone = "cnn"', 'backbone = "both_eyes"'),
            "itself a both-eyes model",
        ),
        "bad backbone parameter": (
            experiment(phantom_root).replace("pool = 2", "pool = 0"),
            "pool",
        ),
    }
    for name, (text, message) in cases.items():
        exp.write_text(text)
        result = cli("run", exp, "--out", tmp_path / "runs")
        assert result.exit_code == 2, (name, result.output)
        assert message in result.output and "Traceback" not in result.output, name
        assert not (tmp_path / "runs").exists(), name


@pytest.mark.slow
def test_an_interrupted_both_eyes_run_resumes_to_the_same_metrics(tmp_path, phantom_root):
    text = experiment(phantom_root, epochs=4).split("[train]")[0] + (
        '[train]\nepochs = 4\nbatch_size = 4\noptimizer = "adam"\nlr = 0.003\n'
        "checkpoint_every = 2\n"
    )
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    env = {**os.environ, "ODIRKIT_QUIET": "1"}

    def odirkit(*args: str) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "odirkit", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    whole = odirkit("run", str(exp), "--out", str(tmp_path / "whole"))
    assert whole.wait() == 0, whole.communicate()
    broken = odirkit("run", str(exp), "--out", str(tmp_path / "broken"))
    deadline = time.monotonic() + 120
    while not list((tmp_path / "broken").glob("*/*/default/checkpoints/last.pt")):
        assert broken.poll() is None, broken.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.005)
    broken.send_signal(signal.SIGINT)
    _, err = broken.communicate()
    assert broken.returncode == 130, err
    (run_dir,) = (tmp_path / "broken").glob("*/*")
    assert not (run_dir / "default/metrics.json").exists()
    resumed = odirkit("run", "--resume", str(run_dir))
    assert resumed.wait() == 0, resumed.communicate()
    (reference,) = (tmp_path / "whole").glob("*/*")
    a = pd.read_csv(reference / "default/metrics.csv").drop(columns=["seconds"])
    b = pd.read_csv(run_dir / "default/metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)
    assert (reference / "default/patient_predictions.csv").read_text() == (
        run_dir / "default/patient_predictions.csv"
    ).read_text()


@pytest.mark.slow
def test_two_processes_train_a_both_eyes_model_like_one(tmp_path, phantom_root):
    from test_distributed import run as launch

    text = experiment(phantom_root, epochs=2).replace("pool = 2, dense = [16]", NO_BN)
    (tmp_path / "exp.toml").write_text(text)
    single = launch(["run", "exp.toml", "--out", "single"], tmp_path, world=1)
    assert single.returncode == 0, single.stderr
    double = launch(["run", "exp.toml", "--out", "ddp"], tmp_path, world=2)
    assert double.returncode == 0, double.stderr
    (one,) = (tmp_path / "single").glob("*/*/default")
    (two,) = (tmp_path / "ddp").glob("*/*/default")
    assert json.loads((two / "metrics.json").read_text())["distributed"]["world_size"] == 2
    a = pd.read_csv(one / "metrics.csv").drop(columns=["seconds"])
    b = pd.read_csv(two / "metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b, rtol=1e-4, atol=1e-6)
    p = pd.read_csv(one / "patient_predictions.csv")
    q = pd.read_csv(two / "patient_predictions.csv")
    assert list(p["ID"]) == list(q["ID"])  # every test patient evaluated exactly once
    assert (p["D"] - q["D"]).abs().max() < 1e-4


@pytest.mark.slow
def test_a_backbone_without_its_weights_names_the_both_eyes_keys(tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=1).split("[model]")[0]
    text += '[model]\nname = "both_eyes"\nbackbone = "timm"\n'
    text += 'backbone_params = { arch = "test_efficientnet", pretrained = true }\n'
    text = text.replace('labels = ["N", "D"]', 'labels = ["N", "D"]\nlevel = "patient"')
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-m", "odirkit", "run", str(exp), "--out", str(tmp_path / "runs")],
        env={**env, "ODIRKIT_QUIET": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    message = " ".join(result.stderr.split())
    assert "both_eyes backbone 'timm'" in message and "could not be downloaded" in message
    assert "[model] backbone_params.weights =" in message
    assert "backbone_params.pretrained = false" in message
    assert "Traceback" not in result.stderr and not (tmp_path / "runs").exists()
