"""Explanations: the Captum explainers, layers, maps, overlays, localisation, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam
from conftest import tiny_experiment

from odirkit.errors import ConfigError
from odirkit.explain import pointing_and_energy, rank_correlation
from odirkit.layers import resolve_layer
from odirkit.testing import small_params

EXPLAINERS = ["gradcam", "guided_gradcam", "smoothgrad"]


@pytest.fixture
def cnn(registry):
    spec = registry.get("model", "cnn")
    torch.manual_seed(0)
    model = spec.build(num_classes=2, **small_params(spec)).eval()
    return model, model.get_submodule(spec.meta["cam_layer"])


def build(registry, name, **params):
    spec = registry.get("explainer", name)
    return spec.build(**spec.validate(params, where=None))


def test_gradcam_keeps_only_the_positive_evidence(registry):
    # Class 0's Grad-CAM is +red -green on a coarse 8x8 layer: positive on the red lesion,
    # negative on the green one beside it. The ReLU comes before the upsampling, so the
    # negative cells do not eat into the positive ones' neighbourhood.
    model = TwoLesionModel().eval()
    model.features.append(torch.nn.AvgPool2d(4))
    with torch.no_grad():
        model.classifier.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    image = torch.zeros(1, 3, 32, 32)
    image[:, 0, 8:16, 8:16] = 1.0
    image[:, 1, 8:16, 16:24] = 1.0
    layer = model.features[2]
    raw = LayerGradCam(model, layer).attribute(image, target=0, relu_attributions=False)
    assert raw.max() > 0 and raw.min() < 0  # both signs: the ReLU matters

    def upsample(cam):
        return LayerAttribution.interpolate(cam, (32, 32), interpolate_mode="bilinear")[0, 0]

    expected = upsample(raw.clamp_min(0))
    ours = build(registry, "gradcam")(model, image, torch.tensor([0]), layer)[0]
    assert torch.allclose(ours, expected, atol=1e-6)
    assert not torch.allclose(upsample(raw).clamp_min(0), expected, atol=1e-3)


def test_gradcam_equals_captum_called_directly(registry, cnn):
    model, layer = cnn
    images = torch.rand(3, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    targets = torch.tensor([0, 1, 0])
    ours = build(registry, "gradcam")(model, images, targets, layer)
    direct = LayerGradCam(model, layer).attribute(images, target=targets, relu_attributions=True)
    expected = LayerAttribution.interpolate(direct, (48, 48), interpolate_mode="bilinear")
    assert torch.allclose(ours, expected[:, 0], atol=1e-6)


@pytest.mark.parametrize("name", EXPLAINERS)
def test_maps_have_the_input_shape_are_non_negative_and_repeat(registry, cnn, name):
    model, layer = cnn
    explainer = build(registry, name, **({"samples": 4} if name == "smoothgrad" else {}))
    images = torch.rand(2, 3, 48, 48, generator=torch.Generator().manual_seed(2))
    targets = torch.tensor([0, 1])
    torch.manual_seed(5)
    first = explainer(model, images, targets, layer)
    torch.manual_seed(5)
    again = explainer(model, images, targets, layer)
    assert first.shape == (2, 48, 48) and (first >= 0).all()
    assert torch.equal(first, again)


class TwoLesionModel(torch.nn.Module):
    """Class 0 is evidence of red lesions, class 1 of green ones (one channel each)."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3, padding=1), torch.nn.ReLU())
        with torch.no_grad():
            self.features[0].weight.zero_()
            self.features[0].weight[0, 0, 1, 1] = 1.0  # channel 0 sees red
            self.features[0].weight[1, 1, 1, 1] = 1.0  # channel 1 sees green
            self.features[0].bias.zero_()
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.classifier = torch.nn.Linear(2, 2)
        with torch.no_grad():
            self.classifier.weight.copy_(torch.eye(2))
            self.classifier.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(x)).flatten(1))


@pytest.mark.parametrize("name", EXPLAINERS)
def test_maps_differ_between_classes_on_an_image_with_two_lesions(registry, name):
    model = TwoLesionModel().eval()
    image = torch.zeros(1, 3, 32, 32)
    image[:, 0, 8:12, 4:8] = 1.0  # a red lesion on the left: class 0's evidence
    image[:, 1, 20:24, 24:28] = 1.0  # a green one on the right: class 1's
    explainer = build(registry, name, **({"samples": 4} if name == "smoothgrad" else {}))
    torch.manual_seed(0)
    left = explainer(model, image, torch.tensor([0]), model.features[1])[0]
    torch.manual_seed(0)
    right = explainer(model, image, torch.tensor([1]), model.features[1])[0]
    assert not torch.allclose(left, right)
    assert left[:, :16].sum() > left[:, 16:].sum()
    assert right[:, 16:].sum() > right[:, :16].sum()


@pytest.mark.slow
@pytest.mark.parametrize(("name", "size"), [("cnn", 48), ("vgg13_bn", 64), ("inception_v3", 75)])
def test_every_explainer_works_on_the_paper_models(registry, name, size):
    spec = registry.get("model", name)
    params = small_params(spec) if name == "cnn" else {}
    torch.manual_seed(0)
    model = spec.build(num_classes=3, **params).eval()
    _, layer = resolve_layer(model, "default", spec.meta["cam_layer"])
    images = torch.rand(1, 3, size, size)
    for explainer_name in EXPLAINERS:
        extra = {"samples": 2, "sample_batch_size": 2} if explainer_name == "smoothgrad" else {}
        maps = build(registry, explainer_name, **extra)(model, images, torch.tensor([2]), layer)
        assert maps.shape == (1, size, size) and (maps >= 0).all(), explainer_name


def test_layers_default_auto_named_and_wrong(cnn):
    model, layer = cnn
    assert resolve_layer(model, "default", "features.13")[1] is layer
    name, module = resolve_layer(model, "auto", None)
    assert name == "features.11" and isinstance(module, torch.nn.Conv2d)  # the last convolution
    assert resolve_layer(model, "features.3", None)[0] == "features.3"
    with pytest.raises(ConfigError) as info:
        resolve_layer(model, "features.99", None)
    assert "candidate layers" in str(info.value) and "features.13" in str(info.value)


def test_pointing_game_and_energy():
    heat = np.zeros((10, 10))
    heat[2, 3] = 1.0
    heat[8, 8] = 0.5
    mask = np.zeros((10, 10), bool)
    mask[2, 3] = True
    fov = np.ones((10, 10), bool)
    hit, energy, chance, share = pointing_and_energy(heat, mask, fov, tolerance=0)
    assert (hit, energy, chance, share) == (1.0, 1.0 / 1.5, 0.01, 0.01)
    miss, *_ = pointing_and_energy(heat, np.roll(mask, 5, axis=0), fov, tolerance=0)
    assert miss == 0.0
    near, *_ = pointing_and_energy(heat, np.roll(mask, 1, axis=0), fov, tolerance=1)
    assert near == 1.0  # within the tolerance


def test_rank_correlation():
    a = np.random.default_rng(0).random((56, 56))
    assert rank_correlation(a, a) == pytest.approx(1.0)
    assert rank_correlation(a, -a) == pytest.approx(-1.0)
    assert np.isnan(rank_correlation(a, np.zeros_like(a)))


EXPLAIN = """
[[explain]]
name = "gradcam"
[[explain]]
name = "smoothgrad"
samples = 4
max_images = 8
"""


@pytest.fixture
def explained_run(cli, tmp_path, phantom_root):
    exp = tmp_path / "exp.toml"
    exp.write_text(tiny_experiment(phantom_root, epochs=1) + EXPLAIN)
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    return variant


def test_explain_tables_run_after_training(explained_run):
    folder = explained_run / "explain"
    for name in ("maps.npz", "grid.png", "localisation.csv", "sanity.csv", "summary.json"):
        assert (folder / name).exists(), name
    maps = np.load(folder / "maps.npz")
    assert (
        maps["gradcam"].shape[1:] == (48, 48) and maps["gradcam"].shape == maps["smoothgrad"].shape
    )
    assert set(maps["target"]) <= {"N", "D"}
    # every array loads without allow_pickle: strings are stored as fixed-width text
    for name in ("target", "patient_id", "eye", "image"):
        assert maps[name].dtype.kind in "Ui", (name, maps[name].dtype)
    split = pd.read_csv(explained_run / "split.csv", dtype={"patient_id": str})
    test_patients = set(split.loc[split["split"] == "test", "patient_id"])
    assert set(maps["patient_id"]) <= test_patients
    overlays = list((folder / "overlays" / "gradcam").glob("*.png"))
    assert overlays
    table = pd.read_csv(folder / "localisation.csv")
    assert set(table["explainer"]) == {"gradcam", "smoothgrad"}
    assert set(table.columns) >= {"pointing_game", "random_point", "energy_in_mask", "uniform_map"}
    sanity = pd.read_csv(folder / "sanity.csv")
    assert list(sanity["explainer"]) == ["gradcam", "smoothgrad"]


@pytest.mark.slow
def test_explain_command_on_a_finished_run(cli, explained_run, tmp_path, phantom_root):
    first = cli(
        "explain",
        explained_run,
        "--explainer",
        "guided_gradcam",
        "--label",
        "D",
        "--max-images",
        "4",
    )
    assert first.exit_code == 0, first.output
    folders = sorted(p.name for p in explained_run.glob("explain*"))
    assert len(folders) == 2  # the earlier explain/ folder is kept
    newest = explained_run / folders[-1]
    names = {p.name for p in (newest / "overlays" / "guided_gradcam").glob("*.png")}
    assert names and all(n.endswith("_D.png") for n in names)

    images = phantom_root / "ODIR-5K_Training_Dataset"
    given = cli(
        "explain",
        explained_run,
        "--images",
        images / "0_left.jpg",
        "--explainer",
        "gradcam",
        "--out",
        tmp_path / "mine",
    )
    assert given.exit_code == 0, given.output
    assert (tmp_path / "mine" / "overlays" / "gradcam").iterdir()
    summary = json.loads((tmp_path / "mine" / "summary.json").read_text())
    assert summary["localisation"] is None  # no masks for images given by hand
    # the same --out again: the earlier results stay, the new ones go beside them
    kept = (tmp_path / "mine" / "maps.npz").read_bytes()
    again = cli("explain", explained_run, "--explainer", "smoothgrad", "--out", tmp_path / "mine")
    assert again.exit_code == 0, again.output
    assert (tmp_path / "mine" / "maps.npz").read_bytes() == kept
    assert not (tmp_path / "mine" / "overlays" / "smoothgrad").exists()
    assert len(list(tmp_path.glob("mine-*"))) == 1

    bad = cli("explain", explained_run, "--layer", "nope.1")
    assert bad.exit_code == 2 and "candidate layers" in bad.stderr
    wrong = cli("explain", explained_run, "--label", "G")
    assert wrong.exit_code == 2 and "learned N, D only" in wrong.stderr


@pytest.mark.slow
def test_explaining_a_metadata_model(cli, tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=1).replace(
        "dropout = 0.0", "dropout = 0.0\nmetadata = true"
    )
    exp = tmp_path / "exp.toml"
    exp.write_text(text + EXPLAIN)
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    assert (variant / "explain" / "maps.npz").exists()


class FixedMap:
    """A broken explainer: the same map whatever the model and the image."""

    def __call__(self, model, images, targets, layer, additional_forward_args=None):
        size = images.shape[-1]
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        blob = torch.exp(-((yy - size / 3) ** 2 + (xx - size / 2) ** 2) / (2 * (size / 6) ** 2))
        return blob.expand(len(images), size, size).clone()


@pytest.mark.slow
def test_sanity_checks_flag_a_map_that_ignores_model_and_image(explained_run, registry, tmp_path):
    from odirkit.config import PluginCall
    from odirkit.data.prepare import prepare_data
    from odirkit.engine.models import build_model
    from odirkit.explain import explain, inputs_from_data
    from odirkit.plugins import Registry
    from odirkit.predict import load_trained
    from odirkit.runs import VariantDirectory

    exp, model, view = load_trained(VariantDirectory(explained_run), registry)
    import types

    import odirkit

    module = types.ModuleType("fixed_explainer")

    @odirkit.hookimpl
    def odirkit_register_explainers(register):
        register("fixed", FixedMap, needs_layer=False)

    module.odirkit_register_explainers = odirkit_register_explainers
    own = Registry()
    assert own.add_plugin(module, name="fixed")
    spec = own.get("explainer", "fixed")
    calls = [PluginCall(spec, {}, None, {"max_images": 16, "sanity": True})]
    gradcam = registry.get("explainer", "gradcam")
    calls.append(PluginCall(gradcam, {}, None, {"max_images": 16, "sanity": True}))
    data = prepare_data(exp)
    result = explain(
        model=model,
        view=view,
        calls=calls,
        inputs=inputs_from_data(data, view, 16),
        device=torch.device("cpu"),
        out_dir=tmp_path / "explain",
        seed=0,
        random_model=lambda: build_model(exp, len(view.labels)),
    )
    table = result.sanity.set_index("explainer")
    assert (
        table.loc["fixed", "fails_randomisation"] and table.loc["fixed", "fails_input_dependence"]
    )
    assert not table.loc["fixed", "reliable"]
    assert table.loc["gradcam", "reliable"], table  # Grad-CAM on a trained model passes
    (line,) = [line for line in result.flagged() if "sanity checks" in line]
    assert line.startswith("fixed fails its sanity checks")
    saved = pd.read_csv(tmp_path / "explain" / "sanity.csv").set_index("explainer")
    assert not saved.loc["fixed", "reliable"] and saved.loc["gradcam", "reliable"]


def test_sanity_correlations_ignore_what_lies_outside_the_field_of_view():
    rng = np.random.default_rng(0)
    inside = np.zeros((56, 56), bool)
    inside[8:48, 8:48] = True
    a = rng.uniform(size=(56, 56))
    b = a.copy()
    b[~inside] = 1 - a[~inside]  # the maps disagree on the border only
    c = rng.uniform(size=(56, 56))
    c[~inside] = a[~inside]  # ... or agree on the border only
    assert rank_correlation(a, b, inside) == pytest.approx(1.0)
    assert rank_correlation(a, b) < 0.9
    assert abs(rank_correlation(a, c, inside)) < 0.2 and rank_correlation(a, c) > 0.3


def test_a_localisation_at_or_below_its_random_baseline_is_said_to_be_chance(tmp_path):
    from odirkit.explain import read_flags

    pd.DataFrame(
        {
            "explainer": ["gradcam", "gradcam", "smoothgrad"],
            "label": ["D", "O", "D"],
            "images": [12, 9, 12],
            "pointing_game": [0.0, 0.5, 0.037],
            "random_point": [0.037, 0.04, 0.037],
            "energy_in_mask": [0.02, 0.2, 0.05],
            "uniform_map": [0.03, 0.03, 0.03],
            "reliable": [True, True, True],
        }
    ).to_csv(tmp_path / "localisation.csv", index=False)
    flags = read_flags(tmp_path)
    assert len(flags) == 2  # gradcam on O points at its lesions
    assert flags[0].startswith("gradcam on D is no better than chance: its peak falls on a")
    assert "(0.037)" in flags[0] and "uniform map's (0.030)" in flags[0]
    assert flags[1].startswith("smoothgrad on D is no better than chance")  # equal is chance
    assert "no more than a uniform" not in flags[1]


def test_a_chance_localisation_contradicted_by_the_other_measure_is_no_verdict(tmp_path):
    # A peak that missed the lesions in 3 images, while the map's energy on them is four
    # times a flat map's: the two measures disagree, the model's evidence is not "not on
    # the lesions".
    from odirkit.explain import read_flags

    pd.DataFrame(
        {
            "explainer": ["gradcam", "smoothgrad"],
            "label": ["D", "D"],
            "images": [3, 12],
            "pointing_game": [0.0, 0.0],
            "random_point": [0.041, 0.041],
            "energy_in_mask": [0.02, 0.004],
            "uniform_map": [0.005, 0.005],
            "reliable": [True, True],
        }
    ).to_csv(tmp_path / "localisation.csv", index=False)
    mixed, both = read_flags(tmp_path)
    assert mixed.startswith("gradcam on D is no better than chance (only 3 images): its peak")
    assert "not on the lesions" not in mixed
    assert "(0.020) is 4.0 times a uniform map's" in mixed and "disagree" in mixed
    assert both.endswith("the model's evidence is not on the lesions")
    assert "disagree" not in both and "only" not in both
