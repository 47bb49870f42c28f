"""Model plugins from timm, weights, metadata fusion, speed settings, baselines, ensembles."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import timm
import torch
from conftest import tiny_experiment

from odirkit.errors import ConfigError, DataError, PluginError

SMALL_TIMM = "test_efficientnet"


def test_paper_models_declare_what_timm_says(registry):
    for name in ("vgg13_bn", "inception_v3"):
        spec = registry.get("model", name)
        cfg = timm.get_pretrained_cfg(name).to_dict()
        assert spec.meta["input_size"] == cfg["input_size"][-1]
        assert tuple(spec.meta["mean"]) == tuple(cfg["mean"])
        assert tuple(spec.meta["std"]) == tuple(cfg["std"])
    vgg = timm.create_model("vgg13_bn", num_classes=2)
    assert isinstance(
        vgg.get_submodule(registry.get("model", "vgg13_bn").meta["cam_layer"]), torch.nn.ReLU
    )  # the last activation before the final pooling
    assert registry.get("model", "inception_v3").meta["cam_layer"] == "Mixed_7c"


def test_inception_gets_its_299_px_input_unless_told_otherwise(registry, tmp_path):
    from odirkit.config import load_experiment

    path = tmp_path / "x.toml"
    path.write_text('name = "x"\n[model]\nname = "inception_v3"\n')
    (exp,) = load_experiment(path, registry)
    assert exp.image_size == 299
    path.write_text(f'name = "x"\n[model]\nname = "timm"\narch = "{SMALL_TIMM}"\n')
    (generic,) = load_experiment(path, registry)
    assert generic.image_size == timm.get_pretrained_cfg(SMALL_TIMM).input_size[-1]
    assert generic.model.meta["cam_layer"]


def test_unknown_architecture_suggests_close_names(registry):
    with pytest.raises(ConfigError, match=r"timm has no model 'resnt18' \(did you mean 'resnet18'"):
        registry.get("model", "timm").build(num_classes=2, arch="resnt18")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_a_local_weights_file_loads_and_changes_the_outputs(registry, tmp_path, suffix):
    torch.manual_seed(1)
    source = timm.create_model(SMALL_TIMM, num_classes=1000)  # as if trained on ImageNet
    path = tmp_path / f"weights{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(source.state_dict(), path)
    else:
        torch.save(source.state_dict(), path)
    spec = registry.get("model", "timm")
    torch.manual_seed(2)
    loaded = spec.build(num_classes=3, arch=SMALL_TIMM, weights=str(path)).eval()
    torch.manual_seed(2)
    fresh = spec.build(num_classes=3, arch=SMALL_TIMM).eval()
    first_conv = timm.get_pretrained_cfg(SMALL_TIMM).first_conv + ".weight"
    assert torch.equal(loaded.state_dict()[first_conv], source.state_dict()[first_conv])
    assert not torch.equal(fresh.state_dict()[first_conv], source.state_dict()[first_conv])
    assert loaded.get_classifier().out_features == 3  # a new head for three classes
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.allclose(loaded(x), fresh(x))


def test_missing_weights_file_is_named(registry, tmp_path):
    with pytest.raises(DataError, match=r"weights file .*nope\.safetensors not found"):
        registry.get("model", "timm").build(
            num_classes=2, arch=SMALL_TIMM, weights=str(tmp_path / "nope.safetensors")
        )


def test_freeze_backbone_trains_only_the_head(registry):
    model = registry.get("model", "timm").build(
        num_classes=2, arch=SMALL_TIMM, freeze_backbone=True
    )
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    head = {f"classifier.{n}" for n, _ in model.get_classifier().named_parameters()}
    assert trainable == head


@pytest.mark.slow
def test_pretrained_weights_offline_stop_the_run_before_anything_is_written(tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=1).split("[model]")[0]
    text += f'[model]\nname = "timm"\narch = "{SMALL_TIMM}"\npretrained = true\n'
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf"),
        "ODIRKIT_QUIET": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "odirkit", "run", str(exp), "--out", str(tmp_path / "runs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "could not be downloaded" in result.stderr and "weights =" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()
    validated = subprocess.run(
        [sys.executable, "-m", "odirkit", "validate", str(exp)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert validated.returncode == 0, validated.stderr  # validate downloads nothing


def test_metadata_fusion_feeds_age_and_sex_to_any_model():
    from odirkit.engine.heads import MetadataFusion

    backbone = torch.nn.Sequential(
        torch.nn.Flatten(), torch.nn.Linear(12, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3)
    )
    fused = MetadataFusion(backbone, num_classes=3, hidden=8).eval()
    images = torch.rand(2, 3, 2, 2)
    young = fused(images, torch.tensor([[-1.0, 0.0], [-1.0, 0.0]]))
    old = fused(images, torch.tensor([[2.0, 1.0], [2.0, 1.0]]))
    assert young.shape == (2, 3) and not torch.allclose(young, old)
    with pytest.raises(PluginError, match=r"nn\.Linear producing the 4 logits"):
        MetadataFusion(torch.nn.Sequential(torch.nn.Linear(3, 3)), num_classes=4)


@pytest.fixture(scope="module")
def aged_phantom(tmp_path_factory):
    """A phantom big enough for age to tell: 800 patients, tiny images."""
    from odirkit.plugins import Registry

    reg = Registry()
    reg.load_entry_points()
    root = tmp_path_factory.mktemp("aged") / "phantom"
    reg.get("dataset", "phantom").build(root=str(root), patients=800, size=32, seed=3)
    return root


@pytest.mark.slow
def test_metadata_baseline_finds_the_age_signal(cli, tmp_path, aged_phantom):
    exp = tmp_path / "exp.toml"
    exp.write_text(f"""
name = "meta"
[data]
dataset = "phantom"
root = "{aged_phantom}"
patients = 800
size = 32
seed = 3
labels = ["N", "A", "C", "M"]
task = "multi_label"
test_fraction = 0.4
""")
    result = cli("baseline", "metadata", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (folder,) = (tmp_path / "runs").glob("meta/*/baseline-metadata")
    final = json.loads((folder / "metrics.json").read_text())["final"]
    # per image: a one-eyed disease leaves the patient's other eye, as old, negative
    assert final["per_class"]["A"]["auc"] > 0.7  # AMD patients are older
    assert final["per_class"]["C"]["auc"] > 0.58  # and cataract patients too
    assert final["per_class"]["M"]["auc"] > 0.7  # myopic ones are younger
    # An image-level run never carries the challenge's (patient-level) score.
    assert not [key for key in final if key.startswith("odir")]
    assert len(pd.read_csv(folder / "predictions.csv")) > 0
    assert set(final["intervals"]) >= {"f1_micro", "auc_macro", "recall_A"}


@pytest.mark.slow
def test_metadata_fusion_trains_end_to_end(cli, tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=2).replace(
        "dropout = 0.0", "dropout = 0.0\nmetadata = true"
    )
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    state = torch.load(variant / "checkpoints/last.pt", weights_only=True)["model"]
    assert any(k.startswith("head.") for k in state) and any(
        k.startswith("backbone.") for k in state
    )
    metrics = pd.read_csv(variant / "metrics.csv")
    assert metrics["train_loss"].iloc[-1] < metrics["train_loss"].iloc[0]
    assert json.loads((variant / "data.json").read_text())["age_normalisation"]["std"] > 0


@pytest.mark.slow
def test_mixed_precision_and_channels_last_run_on_the_cpu(cli, tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=1, extra='precision = "bf16"\nchannels_last = true')
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 0, result.output


def test_performance_defaults_per_device():
    from odirkit.engine.trainer import resolve_performance

    cpu = resolve_performance(
        precision="auto",
        channels_last=None,
        compile=False,
        num_workers=None,
        device=torch.device("cpu"),
        streaming=True,
    )
    assert (cpu.precision, cpu.channels_last, cpu.num_workers, cpu.pin_memory) == (
        "fp32",
        False,
        0,
        False,
    )
    fp16_cpu = resolve_performance(
        precision="fp16",
        channels_last=None,
        compile=False,
        num_workers=2,
        device=torch.device("cpu"),
        streaming=False,
    )
    assert fp16_cpu.precision == "bf16" and not fp16_cpu.grad_scaler
    cuda = resolve_performance(
        precision="fp16",
        channels_last=None,
        compile=False,
        num_workers=None,
        device=torch.device("cuda"),
        streaming=True,
    )
    assert cuda.grad_scaler and cuda.channels_last and cuda.pin_memory and cuda.num_workers >= 1


@pytest.mark.slow
def test_ensemble_averages_the_runs_on_their_shared_test_images(cli, tmp_path, phantom_root):
    text = (
        tiny_experiment(phantom_root, epochs=1)
        + """
[variants.a]
[variants.b]
train = { lr = 0.01 }
"""
    )
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    assert cli("run", exp, "--out", tmp_path / "runs").exit_code == 0
    (run,) = (tmp_path / "runs").glob("*/*")
    result = cli("ensemble", run, "--out", tmp_path / "ens")
    assert result.exit_code == 0, result.output
    a = pd.read_csv(run / "a/predictions.csv")
    b = pd.read_csv(run / "b/predictions.csv")
    ens = pd.read_csv(tmp_path / "ens/predictions.csv")
    assert len(ens) == len(a)
    merged = a.merge(b, on=["patient_id", "eye", "path"]).merge(
        ens, on=["patient_id", "eye", "path"]
    )
    assert ((merged["prob_D_x"] + merged["prob_D_y"]) / 2 - merged["prob_D"]).abs().max() < 2e-6
    metrics = json.loads((tmp_path / "ens/metrics.json").read_text())
    assert metrics["shared_test_samples"] == len(a) and "f1_micro" in metrics["final"]
    lone = cli("ensemble", run / "a")
    assert lone.exit_code == 2 and "at least two" in lone.stderr


@pytest.mark.slow
def test_an_ensemble_of_patient_level_runs_reads_their_validation_patients(
    cli, tmp_path, phantom_root
):
    # at patient level val_predictions.csv holds patients (ID, <label>), though its name is
    # not patient_predictions.csv: the ensemble reads it at the run's level
    text = tiny_experiment(phantom_root, epochs=1).replace(
        "test_fraction = 0.25", 'test_fraction = 0.25\nval_fraction = 0.2\nlevel = "patient"'
    )
    exp = tmp_path / "exp.toml"
    exp.write_text(text + "\n[variants.a]\n[variants.b]\ntrain = { lr = 0.01 }\n")
    assert cli("run", exp, "--out", tmp_path / "runs").exit_code == 0
    (run,) = (tmp_path / "runs").glob("*/*")
    assert "ID" in pd.read_csv(run / "a/val_predictions.csv").columns
    result = cli("ensemble", run, "--out", tmp_path / "ens")
    assert result.exit_code == 0, result.output
    a = pd.read_csv(run / "a/patient_predictions.csv", dtype={"ID": str})
    b = pd.read_csv(run / "b/patient_predictions.csv", dtype={"ID": str})
    ens = pd.read_csv(tmp_path / "ens/patient_predictions.csv", dtype={"ID": str})
    merged = a.merge(b, on="ID").merge(ens, on="ID")
    assert len(merged) == len(a) > 0
    assert ((merged["D_x"] + merged["D_y"]) / 2 - merged["D"]).abs().max() < 2e-6
