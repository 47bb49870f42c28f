"""Test-time augmentation: ``[eval] tta`` views, averaged logits, in runs and in predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import tiny_experiment
from typer.testing import CliRunner

from odirkit.cli import app
from odirkit.tta import build_test_time_views, rotation
from odirkit.view import ModelView


def _run(root: Path, work: Path, extra: str) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    (work / "exp.toml").write_text(tiny_experiment(root, epochs=2, extra=extra))
    result = CliRunner().invoke(app, ["run", str(work / "exp.toml"), "--out", str(work / "runs")])
    assert result.exit_code == 0, result.output
    (variant,) = (work / "runs").glob("*/*/default")
    return variant


@pytest.fixture(scope="module")
def runs(tmp_path_factory, phantom_root) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("tta")
    return {
        "plain": _run(phantom_root, work / "plain", ""),
        "identity": _run(phantom_root, work / "identity", '[eval]\ntta = ["identity"]'),
        "rotate": _run(phantom_root, work / "rotate", '[eval]\ntta = ["rotate:90", "rotate:-90"]'),
    }


def _final(variant: Path) -> dict:
    return json.loads((variant / "metrics.json").read_text())


def test_a_rotation_view_turns_the_image_counter_clockwise_with_black_corners():
    x = torch.rand(2, 3, 16, 16)
    turned = rotation(90)(x)
    assert torch.allclose(turned, torch.rot90(x, 1, dims=(2, 3)), atol=1e-5)
    tilted = rotation(45)(torch.ones(1, 3, 16, 16))
    assert float(tilted[0, :, 0, 0].max()) == 0.0  # a corner falls outside: black
    assert float(tilted[0, :, 8, 8].min()) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="flip"):
        build_test_time_views(["flip"])


@pytest.mark.parametrize("degrees", ["-90", "90", "+90", "-90.0", "90.0", "-12.5"])
def test_a_rotate_view_turns_by_its_signed_and_decimal_angle(degrees):
    # rotate:-DEG turns clockwise, rotate:DEG counter-clockwise; decimals are angles too
    x = torch.rand(2, 3, 16, 16)
    (view,) = build_test_time_views([f"rotate:{degrees}"])
    assert torch.allclose(view(x), rotation(float(degrees))(x))
    if abs(float(degrees)) == 90:
        quarter = 1 if float(degrees) > 0 else -1
        assert torch.allclose(view(x), torch.rot90(x, quarter, dims=(2, 3)), atol=1e-5)
    assert not torch.allclose(view(x), rotation(-float(degrees))(x))


def test_a_turn_between_pixels_is_interpolated_bilinearly():
    # a vertical edge turned by 30 degrees: the pixels it crosses take values between the two
    # sides (nearest-neighbour would keep only 0 and 1)
    x = torch.zeros(1, 3, 32, 32)
    x[..., 16:] = 1.0
    turned = rotation(30)(x)
    between = ((turned > 0.05) & (turned < 0.95)).sum().item()
    assert between >= 3 * 16, between


def test_an_augmenter_view_gives_the_same_image_at_every_call_and_in_every_build():
    # a deterministic augmenter is called with a fixed generator: the run, predict and an
    # ensemble, each building its own views, see the very same image
    def noisy(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return images + torch.rand(images.shape, generator=generator)

    x = torch.rand(2, 3, 8, 8)
    (view,) = build_test_time_views([], [noisy])
    first = view(x)
    torch.rand(5)  # the global generator moves on between calls; the view does not
    assert torch.equal(view(x), first)
    assert torch.equal(build_test_time_views([], [noisy])[0](x), first)
    assert not torch.equal(first, x)
    views = build_test_time_views(["identity", "rotate:90"], [noisy])
    assert len(views) == 3 and torch.equal(views[0](x), x) and torch.equal(views[2](x), first)


def test_the_views_logits_are_averaged_before_the_softmax():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 2))
    view = ModelView(
        labels=("N", "D"),
        single_label=True,
        preprocessing=None,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        test_time_views=(rotation(90), rotation(180)),
    )
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    x = images.float() / 255
    by_hand = sum(model((v - 0.5) / 0.25) for v in (x, torch.rot90(x, 1, (2, 3)), x.flip(2, 3)))
    assert torch.allclose(view.logits(model, images), by_hand / 3, atol=1e-5)
    plain = ModelView(("N", "D"), True, None, mean=view.mean, std=view.std)
    assert not torch.allclose(plain.logits(model, images), by_hand / 3, atol=1e-3)


@pytest.mark.slow
def test_an_identity_view_gives_exactly_the_scores_without_tta(runs):
    plain, identity = _final(runs["plain"]), _final(runs["identity"])
    assert identity["tta"] == ["identity"]
    assert identity["final"]["f1_micro"] == plain["final"]["f1_micro"]
    assert identity["final"]["loss"] == pytest.approx(plain["final"]["loss"], abs=1e-6)
    assert identity["final_without_tta"]["f1_micro"] == plain["final"]["f1_micro"]
    a = pd.read_csv(runs["plain"] / "predictions.csv")
    b = pd.read_csv(runs["identity"] / "predictions.csv")
    assert (a["prob_D"] - b["prob_D"]).abs().max() <= 2e-6
    assert "tta" not in plain and "final_without_tta" not in plain


@pytest.mark.slow
def test_rotated_views_change_the_reported_scores_and_keep_those_without(runs):
    plain, rotate = _final(runs["plain"]), _final(runs["rotate"])
    assert rotate["tta"] == ["rotate:90", "rotate:-90"]
    # the same training (TTA touches only the evaluation) ...
    a = pd.read_csv(runs["plain"] / "metrics.csv").drop(columns=["seconds"])
    b = pd.read_csv(runs["rotate"] / "metrics.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(a, b)
    # ... whose scores without TTA are the plain run's, and with it differ
    assert rotate["final_without_tta"]["f1_micro"] == plain["final"]["f1_micro"]
    assert rotate["final_without_tta"]["loss"] == pytest.approx(plain["final"]["loss"], abs=1e-6)
    assert rotate["final"]["loss"] != pytest.approx(plain["final"]["loss"], abs=1e-5)
    low, high = rotate["final_without_tta"]["intervals"]["f1_micro"]
    assert low <= rotate["final_without_tta"]["f1_micro"] <= high
    with_tta = pd.read_csv(runs["rotate"] / "predictions.csv")["prob_D"]
    without = pd.read_csv(runs["plain"] / "predictions.csv")["prob_D"]
    assert (with_tta - without).abs().max() > 1e-4
    report = (runs["rotate"].parent / "report.md").read_text()
    assert "without TTA" in report


def test_predict_averages_the_same_views_as_the_run(cli, tmp_path, runs, phantom_root):
    variant = runs["rotate"]
    predictions = pd.read_csv(variant / "predictions.csv", dtype={"patient_id": str})
    folder = tmp_path / "photos"
    folder.mkdir()
    chosen = predictions.drop_duplicates("patient_id").head(3)
    for row in chosen.itertuples():  # one eye per patient: the patient's score is the eye's
        source = phantom_root / row.path
        shutil.copy(source, folder / f"{row.patient_id}_{row.eye}{source.suffix}")
    out = tmp_path / "sub.csv"
    result = cli("predict", variant, folder, "--out", out, "--force")
    assert result.exit_code == 0, result.output
    got = pd.read_csv(out, dtype={"ID": str}).set_index("ID")
    expected = chosen.set_index("patient_id")["prob_D"]
    assert np.allclose(got.loc[expected.index, "D"], expected, atol=1e-4)


def test_an_augmenter_that_draws_at_random_is_refused_as_a_view(cli, tmp_path, phantom_root):
    exp = tmp_path / "exp.toml"
    text = '[eval]\ntta = [{ name = "classic" }]'
    exp.write_text(tiny_experiment(phantom_root, extra=text))
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 2
    assert "eval" in result.output and "classic" in result.output
    assert "deterministic" in result.output and "Traceback" not in result.output
    exp.write_text(tiny_experiment(phantom_root, extra='[eval]\ntta = ["flip"]'))
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 2 and "[eval] tta" in result.output and "flip" in result.output
    assert not (tmp_path / "runs").exists()


def test_tta_true_means_the_default_rotations_and_false_none():
    from odirkit.config import EvalConfig
    from odirkit.tta import DEFAULT_TTA

    assert EvalConfig(tta=True).tta == ["rotate:-10", "rotate:10"]  # as documented
    assert list(DEFAULT_TTA) == ["rotate:-10", "rotate:10"]
    assert EvalConfig(tta=False).tta == [] and EvalConfig().tta == []


def test_an_ensemble_averages_its_members_predictions_with_their_tta(cli, tmp_path, runs):
    out = tmp_path / "ensemble"
    result = cli("ensemble", runs["plain"], runs["rotate"], "--out", out)
    assert result.exit_code == 0, result.output
    written = json.loads((out / "metrics.json").read_text())
    assert written["members_tta"] == {
        str(runs["plain"]): [],
        str(runs["rotate"]): ["rotate:90", "rotate:-90"],
    }
    mean = pd.read_csv(out / "predictions.csv")["prob_D"]
    a = pd.read_csv(runs["plain"] / "predictions.csv")["prob_D"]
    b = pd.read_csv(runs["rotate"] / "predictions.csv")["prob_D"]
    assert np.allclose(mean, (a + b) / 2, atol=2e-6)
