"""The fundus check, and predict on any photograph: formats, depths, orientation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFilter

from odirkit.data.fundus_check import check_fundus
from odirkit.data.images import Preprocessing, preprocess

PREP = Preprocessing(size=128)


@pytest.mark.parametrize("difficulty", ["realistic", "easy"])
def test_every_phantom_photograph_passes(registry, tmp_path, difficulty):
    root = tmp_path / "p"
    registry.get("dataset", "phantom").build(
        root=str(root), patients=25, size=128, seed=3, difficulty=difficulty
    )
    for path in sorted((root / "ODIR-5K_Training_Dataset").glob("*.jpg")):
        verdict = check_fundus(preprocess(path, PREP))
        assert verdict.usable, (path.name, verdict)


def fundus(phantom_root: Path) -> np.ndarray:
    path = next((phantom_root / "ODIR-5K_Training_Dataset").glob("*_left.jpg"))
    return np.asarray(Image.open(path).convert("RGB"))


def scene() -> np.ndarray:
    yy, xx = np.mgrid[0:300, 0:400]
    sky = np.stack([90 + 0 * xx, 140 + 0 * xx, 220 - yy // 3], -1)
    hills = np.stack([60 + xx // 10, 140 + 20 * np.sin(xx / 25), 50 + 0 * xx], -1)
    picture = np.where((yy > 160 + 30 * np.sin(xx / 60))[..., None], hills, sky)
    return picture.clip(0, 255).astype(np.uint8)


def test_each_non_fundus_picture_fails_for_the_right_reason(phantom_root, tmp_path):
    rng = np.random.default_rng(0)
    real = fundus(phantom_root)
    inside = real.mean(axis=2) > 20
    washed = real.astype(int)
    washed[inside] = np.clip(washed[inside] * 3 + 140, 0, 255)
    cases = {
        "white frame": (np.full((300, 400, 3), 250, np.uint8), "no_dark_surround"),
        "noise": (rng.integers(0, 256, (300, 400, 3), dtype=np.uint8), "no_dark_surround"),
        "scene": (scene(), "no_dark_surround"),
        "crushed": ((real * 0.05).astype(np.uint8), "too_dark"),
        "washed out": (washed.astype(np.uint8), "washed_out"),
        "hopeless blur": (
            np.asarray(Image.fromarray(real).filter(ImageFilter.GaussianBlur(8))),
            "out_of_focus",
        ),
    }
    for name, (picture, reason) in cases.items():
        path = tmp_path / f"{name}.png"
        Image.fromarray(picture).save(path)
        verdict = check_fundus(preprocess(path, PREP))
        assert not verdict.usable and verdict.reason == reason, (name, verdict)
        assert verdict.message
    assert check_fundus(
        preprocess(next((phantom_root / "ODIR-5K_Training_Dataset").glob("*.jpg")), PREP)
    ).usable


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, phantom_root) -> Path:
    from conftest import tiny_experiment
    from typer.testing import CliRunner

    from odirkit.cli import app

    work = tmp_path_factory.mktemp("predict-run")
    (work / "exp.toml").write_text(tiny_experiment(phantom_root, epochs=1))
    result = CliRunner().invoke(app, ["run", str(work / "exp.toml"), "--out", str(work / "runs")])
    assert result.exit_code == 0, result.output
    (variant,) = (work / "runs").glob("*/*/default")
    return variant


def test_predict_reads_png_16_bit_tiff_grey_and_exif_rotated_photographs(
    cli, tmp_path, phantom_root, finished_run
):
    source = phantom_root / "ODIR-5K_Training_Dataset"
    pixels = {i: np.asarray(Image.open(source / f"{i}_left.jpg").convert("RGB")) for i in range(3)}
    folders = {kind: tmp_path / kind for kind in ("png", "tiff16", "exif", "grey")}
    for folder in folders.values():
        folder.mkdir()
    for i, rgb in pixels.items():
        for eye in ("left", "right"):
            Image.fromarray(rgb).save(folders["png"] / f"{i}_{eye}.png")
            wide = rgb.astype(np.uint16) * 257  # the same picture at 16 bits per channel
            Image.fromarray(wide[..., 1]).save(folders["tiff16"] / f"{i}_{eye}.tif")
            Image.fromarray(rgb[..., 1]).save(folders["grey"] / f"{i}_{eye}.png")
            turned = Image.fromarray(rgb).transpose(Image.Transpose.ROTATE_90)
            exif = turned.getexif()
            exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
            turned.save(folders["exif"] / f"{i}_{eye}.jpg", exif=exif, quality=100)
    results = {}
    for kind, folder in folders.items():
        out = tmp_path / f"{kind}.csv"
        result = cli("predict", finished_run, folder, "--out", out, "--force")
        assert result.exit_code == 0, result.output
        results[kind] = pd.read_csv(out, dtype={"ID": str}).set_index("ID")
        assert list(results[kind].index) == ["0", "1", "2"]
    # 16-bit green channel, scaled to 8 bits, is the 8-bit green channel exactly
    grey = results["grey"][["N", "D"]].to_numpy()
    assert np.allclose(results["tiff16"][["N", "D"]].to_numpy(), grey, atol=1e-6)
    # the EXIF orientation is honoured: read upright, the picture is the original ...
    from odirkit.data.images import open_photograph

    upright = np.asarray(open_photograph(folders["exif"] / "0_left.jpg"), dtype=float)
    assert upright.shape == pixels[0].shape
    assert np.abs(upright - pixels[0]).mean() < 3  # JPEG at quality 100
    # ... and gives the PNG's answer
    png = results["png"][["N", "D"]].to_numpy()
    assert np.abs(results["exif"][["N", "D"]].to_numpy() - png).max() < 0.05


def test_predict_checks_every_image_and_leaves_out_patients_without_a_usable_one(
    cli, tmp_path, phantom_root, finished_run
):
    folder = tmp_path / "mixed"
    folder.mkdir()
    source = phantom_root / "ODIR-5K_Training_Dataset"
    for i in (0, 1):
        for eye in ("left", "right"):
            Image.open(source / f"{i}_{eye}.jpg").save(folder / f"{i}_{eye}.jpg")
    Image.fromarray(np.full((300, 400, 3), 250, np.uint8)).save(folder / "1_right.jpg")
    for eye in ("left", "right"):  # patient 7: a ruler, not a fundus
        Image.fromarray(np.full((300, 400, 3), 240, np.uint8)).save(folder / f"7_{eye}.png")
    out = tmp_path / "sub.csv"
    result = cli("predict", finished_run, folder, "--out", out)
    assert result.exit_code == 0, result.output
    assert list(pd.read_csv(out, dtype={"ID": str})["ID"]) == ["0", "1"]
    assert "1 patient(s) have no usable photograph" in result.stderr and "7" in result.stderr
    images = pd.read_csv(tmp_path / "sub.images.csv", dtype={"patient_id": str})
    assert list(images.columns) == ["image", "patient_id", "eye", "usable", "reason", "predicted"]
    bad = images[~images["usable"]]
    assert sorted(zip(bad["patient_id"], bad["eye"], strict=True)) == [
        ("1", "right"),
        ("7", "left"),
        ("7", "right"),
    ]
    assert bad["reason"].str.contains("no dark surround").all()
    forced = cli("predict", finished_run, folder, "--out", tmp_path / "all.csv", "--force")
    assert forced.exit_code == 0
    assert list(pd.read_csv(tmp_path / "all.csv", dtype={"ID": str})["ID"]) == ["0", "1", "7"]


def test_datasets_are_checked_and_failures_reported(cli, tmp_path, phantom_copy):
    from conftest import tiny_experiment

    victim = next((phantom_copy / "ODIR-5K_Training_Dataset").glob("*_left.jpg"))
    Image.fromarray(np.full((96, 120, 3), 245, np.uint8)).save(victim)
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_copy, epochs=1))
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert "fail the fundus check (kept)" in result.stderr
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    checked = json.loads((variant / "data.json").read_text())["fundus_check"]
    assert checked["failed"] == 1 and checked["failures"][0]["reason"] == "no_dark_surround"
    refused = cli("run", exp, "--out", tmp_path / "runs", "--set", "data.fundus_check=error")
    assert refused.exit_code == 2 and victim.name in refused.stderr
