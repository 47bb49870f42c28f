"""The fundus check, and predict on any photograph: formats, depths, orientation."""

from __future__ import annotations

import json
import shutil
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


# A real colour fundus photograph (scikit-image's data, from Wikimedia Commons) and real
# pictures that are not fundus photographs, reshaped the ways public collections ship them.


def retina(size: int = 480) -> np.ndarray:
    from skimage import data

    return np.asarray(Image.fromarray(data.retina()).resize((size, size), Image.LANCZOS))


def field_of(rgb: np.ndarray) -> np.ndarray:
    return rgb.max(axis=2) > 20


def crop_to_field(rgb: np.ndarray, inset: float = 0.0) -> np.ndarray:
    ys, xs = np.nonzero(field_of(rgb))
    h, w = ys.max() - ys.min(), xs.max() - xs.min()
    dy, dx = int(h * inset), int(w * inset)
    return rgb[ys.min() + dy : ys.max() - dy, xs.min() + dx : xs.max() - dx]


def shadowed(rgb: np.ndarray) -> np.ndarray:
    """A black crescent over a third of the field, as a misaligned pupil leaves."""
    h, w = rgb.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    crescent = np.hypot(yy - 1.25 * h, xx - 1.1 * w) < 0.75 * h
    return (rgb * ~crescent[..., None]).astype(np.uint8)


def hazy(rgb: np.ndarray) -> np.ndarray:
    """Cataract: the field blurred and veiled in warm light."""
    blurred = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(3)), float)
    veil = np.array([235, 205, 160], float)
    out = np.where(field_of(rgb)[..., None], 0.45 * blurred + 0.55 * veil, 0)
    return out.astype(np.uint8)


def white_padded(rgb: np.ndarray) -> np.ndarray:
    out = rgb.copy()
    out[~field_of(rgb)] = 255
    return out


def transparent_surround(rgb: np.ndarray) -> Image.Image:
    alpha = np.where(field_of(rgb), 255, 0).astype(np.uint8)
    rgba = np.dstack([white_padded(rgb), alpha])  # what lies under transparency is arbitrary
    return Image.fromarray(rgba, "RGBA")


def labelled(rgb: np.ndarray) -> np.ndarray:
    """A camera's label burned into one corner (over part of the field's edge too)."""
    out = rgb.copy()
    h, w = out.shape[:2]
    out[: h // 9, : w // 4] = [235, 235, 235]
    return out


def heavy_cataract(rgb: np.ndarray) -> np.ndarray:
    """Dense cataract: the field faded almost to a warm grey."""
    blurred = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(4)), float)
    veil = np.array([200, 185, 165], float)
    return np.where(field_of(rgb)[..., None], 0.25 * blurred + 0.75 * veil, 0).astype(np.uint8)


def cool_cast(rgb: np.ndarray) -> np.ndarray:
    """A cold colour cast: red weakened, blue raised (redness about 0.23, real ones 0.26+)."""
    out = rgb.astype(float)
    out[..., 0] *= 0.6
    out[..., 2] = out[..., 2] * 1.3 + 20 * field_of(rgb)
    return out.clip(0, 255).astype(np.uint8)


FUNDUS_VARIANTS = {
    "as published": lambda r: r,
    "tight crop, only the corners dark": lambda r: crop_to_field(r, 0.07),
    "clipped top and bottom": lambda r: crop_to_field(r)[60:-60],
    "clipped then stretched to a square": lambda r: np.asarray(
        Image.fromarray(crop_to_field(r)[60:-60]).resize((512, 512))
    ),
    "white padding": white_padded,
    "transparent surround (RGBA)": transparent_surround,
    "dark": lambda r: (r * 0.25).astype(np.uint8),
    "cataract haze": hazy,
    "black crescent shadow": shadowed,
    "very dark": lambda r: (r * 0.13).astype(np.uint8),
    "label in a corner": labelled,
    "dense cataract": heavy_cataract,
    "cropped so tight only slivers of the corners are dark": lambda r: crop_to_field(r, 0.11),
    "cut by the frame on one side": lambda r: crop_to_field(r)[:, 110:],
    "cool colour cast": cool_cast,
    "small": lambda r: np.asarray(Image.fromarray(r).resize((160, 160))),
}


@pytest.mark.parametrize("variant", sorted(FUNDUS_VARIANTS))
def test_real_fundus_photographs_pass_in_every_shape_collections_ship(tmp_path, variant):
    picture = FUNDUS_VARIANTS[variant](retina())
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    path = tmp_path / "eye.png"
    image.save(path)
    verdict = check_fundus(preprocess(path, PREP))
    assert verdict.usable, (variant, verdict)


@pytest.mark.parametrize("inset", [0.02, 0.04, 0.06, 0.08, 0.09, 0.1, 0.11, 0.12, 0.13])
def test_crops_ever_tighter_pass_while_any_corner_is_left(tmp_path, inset):
    """EyePACS-style crops: at 0.1 each corner's arc is one chord of the hull."""
    path = tmp_path / "crop.png"
    Image.fromarray(crop_to_field(retina(480), inset)).resize((400, 400)).save(path)
    verdict = check_fundus(preprocess(path, PREP))
    assert verdict.usable, verdict


def document() -> np.ndarray:
    from PIL import ImageDraw

    page = Image.new("RGB", (400, 520), (250, 250, 245))
    draw = ImageDraw.Draw(page)
    for line in range(22):
        draw.text((30, 20 + 22 * line), "Patient 1234: fundus examination, " * 2, fill=(20, 20, 90))
    draw.rectangle((260, 380, 370, 480), fill=(200, 40, 40))  # a red stamp
    return np.asarray(page)


def anterior_segment(round_field: bool) -> np.ndarray:
    """The front of an eye: skin, lids, white sclera, a brown iris, a black pupil."""
    rng = np.random.default_rng(0)
    h = w = 400
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    skin = np.array([215, 160, 135], float) + rng.normal(0, 6, (h, w, 1))
    out = np.broadcast_to(skin, (h, w, 3)).copy()
    eye = ((xx - 200) / 170) ** 2 + ((yy - 200) / 95) ** 2 <= 1
    out[eye] = [232, 225, 222]
    r = np.hypot(xx - 200, yy - 200)
    iris = (r < 80) & eye
    texture = 20 * np.sin(np.arctan2(yy - 200, xx - 200) * 40)[..., None]
    out[iris] = (np.array([120, 80, 50], float) + texture)[iris]
    out[r < 34] = [10, 8, 8]
    out[np.hypot(xx - 214, yy - 188) < 6] = [250, 250, 250]  # the flash on the cornea
    if round_field:
        out[r > 195] = 0
    return out.clip(0, 255).astype(np.uint8)


def orange_star() -> np.ndarray:
    """Textured red-orange on black, fundus-coloured, but not round."""
    yy, xx = np.mgrid[0:300, 0:300]
    angle, radius = np.arctan2(yy - 150, xx - 150), np.hypot(yy - 150, xx - 150)
    star = radius < 80 + 55 * np.cos(5 * angle)
    texture = 25 * np.sin(xx / 4.0) * np.cos(yy / 5.0)
    rgb = np.stack([200 + texture, 110 + texture, 50 + 0 * texture], axis=-1)
    return (rgb * star[..., None]).clip(0, 255).astype(np.uint8)


def field_with_a_tail() -> np.ndarray:
    """A fundus field with a band of itself sticking out sideways: not an ellipse."""
    rgb = retina(300)
    out = np.zeros((300, 420, 3), np.uint8)
    out[:, :300] = rgb
    out[135:165, 250:400] = rgb[135:165, 100:250]
    return out


def featureless_disc() -> np.ndarray:
    yy, xx = np.mgrid[0:300, 0:300]
    disc = np.hypot(yy - 150, xx - 150) < 140
    return (disc[..., None] * np.array([200, 110, 60])).astype(np.uint8)


def scikit_image(name: str) -> np.ndarray:
    from skimage import data

    return getattr(data, name)()


NOT_FUNDUS = {
    "portrait": (lambda: scikit_image("astronaut"), "no_dark_surround"),
    "cup of coffee": (lambda: scikit_image("coffee"), "no_dark_surround"),
    "cat": (lambda: scikit_image("chelsea"), "no_dark_surround"),
    "night launch": (lambda: scikit_image("rocket"), "no_field_of_view"),
    "scanned page (grey)": (lambda: scikit_image("page"), "not_colour"),
    "printed document": (document, "no_field_of_view"),
    "colour wheel on black": (lambda: scikit_image("colorwheel"), "not_fundus_colour"),
    "orange star on black": (orange_star, "no_field_of_view"),
    "fundus field with a tail": (field_with_a_tail, "no_field_of_view"),
    "grey fundus": (lambda: retina().mean(axis=2).astype(np.uint8), "not_colour"),
    "black frame": (lambda: np.zeros((300, 400, 3), np.uint8), "blank"),
    "white frame": (lambda: np.full((300, 400, 3), 250, np.uint8), "blank"),
    "saturated field": (
        lambda: np.where(field_of(retina())[..., None], [255, 255, 255], 0).astype(np.uint8),
        "washed_out",
    ),
    "noise": (
        lambda: np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8),
        "no_dark_surround",
    ),
    "eye from the front (slit lamp)": (lambda: anterior_segment(False), "no_dark_surround"),
    "eye from the front (fundus camera)": (lambda: anterior_segment(True), "anterior_segment"),
    "crushed to black": (lambda: (retina() * 0.04).astype(np.uint8), "too_dark"),
    "blown out": (
        lambda: np.where(
            field_of(retina())[..., None], np.clip(retina() * 3.0 + 120, 0, 255), 0
        ).astype(np.uint8),
        "washed_out",
    ),
    "featureless disc": (featureless_disc, "out_of_focus"),
}


@pytest.mark.parametrize("name", sorted(NOT_FUNDUS))
def test_pictures_that_are_not_fundus_photographs_are_refused_with_their_reason(tmp_path, name):
    make, reason = NOT_FUNDUS[name]
    path = tmp_path / "picture.png"
    Image.fromarray(make()).save(path)
    verdict = check_fundus(preprocess(path, PREP))
    assert (verdict.usable, verdict.reason) == (False, reason), (name, verdict)
    assert verdict.message


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


def test_predict_checks_every_image_and_reports_the_failures(
    cli, tmp_path, phantom_root, finished_run
):
    folder = tmp_path / "mixed"
    folder.mkdir()
    source = phantom_root / "ODIR-5K_Training_Dataset"
    for i in (0, 1):
        for eye in ("left", "right"):
            Image.open(source / f"{i}_{eye}.jpg").save(folder / f"{i}_{eye}.jpg")
    Image.fromarray(scikit_image("astronaut")).save(folder / "1_right.jpg")
    for eye in ("left", "right"):  # patient 7: a blank frame, not a fundus
        Image.fromarray(np.full((300, 400, 3), 240, np.uint8)).save(folder / f"7_{eye}.png")
    out = tmp_path / "sub.csv"
    result = cli("predict", finished_run, folder, "--out", out)
    assert result.exit_code == 0, result.output
    images = pd.read_csv(tmp_path / "sub.images.csv", dtype={"patient_id": str})
    assert list(images.columns) == ["image", "patient_id", "eye", "usable", "reason", "predicted"]
    bad = images[~images["usable"]].set_index(["patient_id", "eye"])["reason"]
    assert sorted(bad.index) == [("1", "right"), ("7", "left"), ("7", "right")]
    assert "no dark surround" in bad[("1", "right")] and "blank" in bad[("7", "left")]
    # the run kept such photographs (data.fundus_check = "warn"), so predict keeps them too
    assert images["predicted"].all()
    assert list(pd.read_csv(out, dtype={"ID": str})["ID"]) == ["0", "1", "7"]
    assert 'kept, as the run kept them: data.fundus_check = "warn"' in result.stderr


def _predict_test_patients(cli, tmp_path, variant: Path, photos: Path) -> pd.DataFrame:
    run = pd.read_csv(variant / "patient_predictions.csv", dtype={"ID": str}).set_index("ID")
    folder = tmp_path / f"test-photos-{variant.parent.name}"
    folder.mkdir()
    for pid in run.index:
        for path in photos.glob(f"{pid}_*.jpg"):
            shutil.copy(path, folder / path.name)
    out = tmp_path / f"{variant.parent.name}.csv"
    result = cli("predict", variant, folder, "--out", out)
    assert result.exit_code == 0, result.output
    return run, pd.read_csv(out, dtype={"ID": str}).set_index("ID")


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["warn", "skip"])
def test_predict_gives_each_patient_the_probabilities_the_run_gave(
    cli, tmp_path, phantom_copy, mode
):
    from conftest import tiny_experiment

    photos = phantom_copy / "ODIR-5K_Training_Dataset"
    scene = Image.fromarray(scikit_image("coffee"))
    damaged = [str(i) for i in range(0, 40, 2)]
    for pid in damaged:  # every other patient's left photograph is not a fundus
        scene.save(photos / f"{pid}_left.jpg")
    text = tiny_experiment(phantom_copy, epochs=1).replace(
        'labels = ["N", "D"]',
        f'labels = ["N", "D"]\nlevel = "patient"\nfusion = "mean"\nfundus_check = "{mode}"',
    )
    (tmp_path / "exp.toml").write_text(text)
    result = cli("run", tmp_path / "exp.toml", "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    run, predicted = _predict_test_patients(cli, tmp_path, variant, photos)
    assert set(damaged) & set(run.index)  # some test patient has a failing photograph
    assert list(predicted.index) == sorted(run.index, key=int)
    labels = ["N", "D"]
    assert np.allclose(predicted[labels], run.loc[predicted.index, labels], atol=1e-5)


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
    assert checked["failed"] == 1 and checked["failures"][0]["reason"] == "blank"
    refused = cli("run", exp, "--out", tmp_path / "runs", "--set", "data.fundus_check=error")
    assert refused.exit_code == 2 and victim.name in refused.stderr


def test_verdicts_are_remembered_beside_the_cache_and_renewed_when_a_file_changes(
    tmp_path, phantom_copy, monkeypatch
):
    import odirkit.data.prepare.checking as prepare
    from odirkit.data.images import ImageCache

    paths = [str(p) for p in sorted((phantom_copy / "ODIR-5K_Training_Dataset").glob("*.jpg"))[:4]]
    Image.fromarray(np.full((60, 80, 3), 240, np.uint8)).save(paths[1])  # not a fundus
    cache = ImageCache(tmp_path / "cache", PREP)
    images = [cache.get(p) for p in paths]
    calls = []
    real = prepare.check_fundus
    monkeypatch.setattr(prepare, "check_fundus", lambda image: calls.append(1) or real(image))
    first = prepare.checked_reasons(cache, paths, images)
    assert first == ["", "blank", "", ""] and len(calls) == 4
    assert prepare.checked_reasons(cache, paths, [*images[:3], None]) == [*first[:3], None]
    assert len(calls) == 4  # remembered: nothing checked again
    Image.open(paths[0]).save(paths[2])  # the file changes: its verdict is renewed
    prepare.checked_reasons(cache, paths, [cache.get(p) for p in paths])
    assert len(calls) == 5


def test_predict_reads_a_per_image_table_once_per_photograph(cli, tmp_path, finished_run):
    """full_df.csv names both eyes in each of its patient's rows, and names photographs the
    re-release left out: each photograph is predicted once, the absent ones left out."""
    config = json.loads((finished_run / "config.json").read_text())
    photos = Path(config["data"]["root"]) / "ODIR-5K_Training_Dataset"
    folder = tmp_path / "release"
    folder.mkdir()
    rows = []
    for pid in (0, 1, 2):
        record = {"ID": pid, "Left-Fundus": f"{pid}_left.jpg", "Right-Fundus": f"{pid}_right.jpg"}
        rows += [record, record]  # one row per photograph, each naming both
        for eye in ("left", "right"):
            if (pid, eye) != (2, "right"):  # left out of the release
                shutil.copy(photos / f"{pid}_{eye}.jpg", folder)
    pd.DataFrame(rows).to_csv(folder / "full_df.csv", index=False)
    out = tmp_path / "sub.csv"
    result = cli("predict", finished_run, folder / "full_df.csv", "--out", out)
    assert result.exit_code == 0, result.output
    images = pd.read_csv(tmp_path / "sub.images.csv", dtype={"patient_id": str})
    assert len(images) == 5 and not images.duplicated(["patient_id", "eye"]).any()
    assert list(pd.read_csv(out, dtype={"ID": str})["ID"]) == ["0", "1", "2"]
    assert "1 photograph(s) it names are not under" in result.stderr and "2_right.jpg" in (
        result.stderr
    )
