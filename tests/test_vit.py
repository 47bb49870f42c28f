"""The vit model plugin: weights in each published layout, refused when they do not fit,
the Hugging Face hub with a clear offline error, and the model's Grad-CAM layer."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
import timm
import torch
from conftest import tiny_experiment

from odirkit.errors import PluginError

ARCH = "test_vit"  # timm's tiny ViT: 64 wide, 6 blocks, patch 16, a class token
SIZE = 32


def writer(*, num_classes: int = 5, global_pool: str = "avg", seed: int = 1) -> torch.nn.Module:
    """The model that wrote a checkpoint: every parameter drawn at random (no default
    initialisation a loaded model could share by chance)."""
    torch.manual_seed(seed)
    model = timm.create_model(ARCH, num_classes=num_classes, img_size=SIZE, global_pool=global_pool)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    return model.eval()


def build(registry, **params) -> torch.nn.Module:
    torch.manual_seed(7)
    spec = registry.get("model", "vit")
    return spec.build(num_classes=params.pop("num_classes", 5), arch=ARCH, **params).eval()


def features(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The encoder's tokens (before pooling, pooling norm and head)."""
    with torch.no_grad():
        return model.forward_features(x)


def logits(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x)


X = torch.rand(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def encoder_keys(state: dict) -> dict:
    return {k: v for k, v in state.items() if not k.startswith(("head.", "fc_norm."))}


def test_retfound_mae_checkpoint_loads_the_encoder_and_drops_the_decoder(registry, tmp_path):
    source = writer()
    mae = encoder_keys(source.state_dict())
    mae["norm.weight"] = torch.randn(64)  # MAE's encoder norm: fc_norm replaces it
    mae["norm.bias"] = torch.randn(64)
    mae["mask_token"] = torch.randn(1, 1, 32)
    mae["decoder_embed.weight"] = torch.randn(32, 64)
    mae["decoder_blocks.0.attn.qkv.weight"] = torch.randn(96, 32)
    mae["decoder_pred.weight"] = torch.randn(768, 32)
    path = tmp_path / "RETFound_mae_natureCFP.pth"
    # as MAE's training saves it: the arguments beside the weights
    torch.save({"model": mae, "epoch": 799, "args": argparse.Namespace(blr=1.5e-4)}, path)
    loaded = build(registry, input_size=SIZE, weights=str(path))
    assert torch.allclose(features(loaded, X), features(source, X), atol=1e-5)
    fresh = build(registry, input_size=SIZE)
    assert not torch.allclose(features(fresh, X), features(source, X), atol=1e-3)
    # a new head, initialised as MAE / RETFound do: truncated normal, std 2e-5
    assert loaded.head.weight.abs().max() < 1e-4 and not loaded.head.bias.any()


@pytest.mark.parametrize(
    "layout", ["retfound_finetuned", "state_dict", "safetensors", "distributed", "timm_tagged"]
)
def test_a_whole_checkpoint_gives_the_logits_of_the_model_that_wrote_it(registry, tmp_path, layout):
    source = writer()
    state = source.state_dict()
    path = tmp_path / "weights.pth"
    if layout == "retfound_finetuned":  # RETFound's checkpoint-best.pth
        torch.save({"model": state, "epoch": 3, "args": argparse.Namespace(nb_classes=5)}, path)
    elif layout == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "weights.safetensors"
        save_file(state, path)
    elif layout == "distributed":  # saved from a DistributedDataParallel wrapper
        torch.save({f"module.{k}": v for k, v in state.items()}, path)
    elif layout == "timm_tagged":
        torch.save({"state_dict": state}, path)
    else:
        torch.save(state, path)
    loaded = build(registry, input_size=SIZE, weights=str(path))
    assert torch.allclose(logits(loaded, X), logits(source, X), atol=1e-5)


def test_dinov2_teacher_checkpoint_loads_the_backbone(registry, tmp_path):
    source = writer(global_pool="token")
    teacher = {f"backbone.{k}": v for k, v in encoder_keys(source.state_dict()).items()}
    teacher["backbone.mask_token"] = torch.randn(1, 64)
    teacher["dino_head.mlp.0.weight"] = torch.randn(32, 64)
    teacher["ibot_head.last_layer.weight_g"] = torch.randn(16, 1)
    path = tmp_path / "RETFound_dinov2_meh.pth"
    torch.save({"teacher": teacher, "student": {"x": torch.zeros(1)}, "iteration": 5}, path)
    loaded = build(registry, input_size=SIZE, global_pool="token", weights=str(path))
    assert torch.allclose(features(loaded, X), features(source, X), atol=1e-5)


def test_the_position_embedding_is_resampled_to_another_image_size(registry, tmp_path):
    source = writer()
    path = tmp_path / "w.pth"
    torch.save({"model": encoder_keys(source.state_dict())}, path)
    loaded = build(registry, input_size=48, weights=str(path))  # a 3 x 3 grid, from 2 x 2
    assert loaded.pos_embed.shape == (1, 1 + 9, 64)
    assert torch.equal(loaded.pos_embed[:, :1], source.pos_embed[:, :1])  # the class token's
    from timm.layers import resample_abs_pos_embed

    expected = resample_abs_pos_embed(
        source.pos_embed.detach(), new_size=(3, 3), num_prefix_tokens=1
    )
    assert torch.allclose(loaded.pos_embed, expected, atol=1e-6)
    assert torch.equal(loaded.blocks[3].mlp.fc1.weight, source.blocks[3].mlp.fc1.weight)


def test_the_load_report_says_how_the_position_embedding_changed():
    from odirkit_models.vit_weights import fit_checkpoint

    checkpoint = {"model": encoder_keys(writer().state_dict())}
    bigger = timm.create_model(ARCH, num_classes=5, img_size=48, global_pool="avg")
    _, report = fit_checkpoint(bigger, checkpoint, "w.pth")
    assert "adapted to the model: pos_embed (1, 5, 64) -> (1, 10, 64)" in report.summary()
    same = timm.create_model(ARCH, num_classes=5, img_size=SIZE, global_pool="avg")
    assert "adapted" not in fit_checkpoint(same, checkpoint, "w.pth")[1].summary()


def test_a_head_for_other_classes_is_replaced_and_a_matching_one_kept(registry, tmp_path):
    source = writer(num_classes=1000)
    path = tmp_path / "w.pth"
    torch.save(source.state_dict(), path)
    loaded = build(registry, input_size=SIZE, weights=str(path), num_classes=8)
    assert loaded.head.weight.shape == (8, 64)
    assert torch.equal(loaded.fc_norm.weight, source.fc_norm.weight)


def test_a_partial_checkpoint_is_refused_naming_the_missing_keys(registry, tmp_path):
    state = encoder_keys(writer().state_dict())
    del state["blocks.3.attn.qkv.weight"], state["blocks.3.attn.qkv.bias"]
    path = tmp_path / "partial.pth"
    torch.save({"model": state}, path)
    with pytest.raises(PluginError) as info:
        build(registry, input_size=SIZE, weights=str(path))
    message = str(info.value)
    assert "2 key(s) missing: blocks.3.attn.qkv.weight, blocks.3.attn.qkv.bias" in message
    assert str(path) in message and "unexpected" not in message


def test_unexpected_and_misshapen_keys_are_refused_and_named(registry, tmp_path):
    state = writer().state_dict()
    state["blocks.6.norm1.weight"] = torch.ones(64)  # a seventh block: a deeper model
    state["blocks.0.mlp.fc1.weight"] = torch.ones(256, 64)
    path = tmp_path / "other.pth"
    torch.save(state, path)
    with pytest.raises(PluginError) as info:
        build(registry, input_size=SIZE, weights=str(path))
    message = str(info.value)
    assert "1 key(s) unexpected: blocks.6.norm1.weight" in message
    assert "1 key(s) of another shape: blocks.0.mlp.fc1.weight (256, 64) vs (192, 64)" in message


def test_a_class_token_model_refuses_weights_without_its_final_norm(registry, tmp_path):
    # MAE weights carry norm; a global-pool fine-tune (fc_norm, no norm) does not, and a
    # class-token model needs norm: it must not start with a fresh one unnoticed
    state = writer().state_dict()
    path = tmp_path / "pooled.pth"
    torch.save(state, path)
    with pytest.raises(PluginError, match=r"missing: norm\.weight, norm\.bias"):
        build(registry, input_size=SIZE, global_pool="token", weights=str(path))


def test_a_checkpoint_holding_code_is_refused(registry, tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"model": writer().state_dict(), "extra": timm.layers.Mlp(4)}, path)
    with pytest.raises(PluginError, match="refused to load"):
        build(registry, input_size=SIZE, weights=str(path))


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "the file is empty"),
        (b"<!DOCTYPE html>\n<html><body>Access restricted</body></html>\n", "a web page"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 9\n", "Git LFS"),
        (b"hello", "starts with b'hello'"),
    ],
)
def test_a_file_that_is_no_checkpoint_says_what_it_is(registry, tmp_path, content, said):
    # a gated file fetched without logging in is a web page: not "objects that could run
    # code" (with advice to unpickle it unsafely), nor a bare KeyError
    path = tmp_path / "RETFound_mae_natureCFP.pth"
    path.write_bytes(content)
    with pytest.raises(PluginError, match="not a PyTorch checkpoint") as info:
        build(registry, input_size=SIZE, weights=str(path))
    assert said in str(info.value) and "weights_only" not in str(info.value)
    timm_plugin = registry.get("model", "timm")  # the timm plugin reads such files too
    with pytest.raises(PluginError, match="not a PyTorch checkpoint") as info:
        timm_plugin.build(num_classes=2, arch="test_efficientnet", weights=str(path))
    assert said in str(info.value)


def test_a_damaged_pickle_is_not_a_readable_checkpoint(registry, tmp_path):
    source = writer()
    legacy = tmp_path / "legacy.pth"  # before PyTorch 1.6: a pickle, not a zip archive
    torch.save(source.state_dict(), legacy, _use_new_zipfile_serialization=False)
    assert torch.allclose(
        logits(build(registry, input_size=SIZE, weights=str(legacy)), X), logits(source, X)
    )
    damaged = tmp_path / "damaged.pth"
    damaged.write_bytes(b"\x80\x02h\x65.")  # a memo lookup with nothing stored: KeyError
    with pytest.raises(PluginError, match="not a readable checkpoint"):
        build(registry, input_size=SIZE, weights=str(damaged))


def test_one_source_of_weights_at_a_time(registry, tmp_path):
    from odirkit.errors import ConfigError

    with pytest.raises(ConfigError, match="give one of weights, hub, pretrained"):
        build(registry, input_size=SIZE, weights="a.pth", hub="YukunZhou/RETFound_mae_meh")


def test_meta_declares_the_cam_layer_and_the_token_rule(registry):
    meta = registry.get("model", "vit").meta_for({"arch": ARCH, "input_size": SIZE})
    assert meta["cam_layer"] == "blocks.5.norm1" and meta["cam_reshape"] == "tokens:1"
    assert meta["mean"] == (0.485, 0.456, 0.406)  # RETFound's normalisation
    registers = registry.get("model", "vit").meta_for(
        {"arch": "test_vit2", "input_size": SIZE, "global_pool": "avg"}
    )
    assert registers["cam_reshape"] == "tokens:1"  # test_vit2: a register token, no class token


def test_a_hub_download_that_fails_says_what_to_do(registry, monkeypatch):
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError

    prepare = registry.get("model", "vit").meta["prepare"]

    def offline(**kwargs):
        raise LocalEntryNotFoundError("offline and not cached")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    with pytest.raises(PluginError) as info:
        prepare({"arch": ARCH, "input_size": SIZE, "hub": "YukunZhou/RETFound_mae_natureCFP"})
    message = str(info.value)
    assert "YukunZhou/RETFound_mae_natureCFP/RETFound_mae_natureCFP.pth" in message
    assert "could not be downloaded" in message and 'weights = "' in message

    def gated(**kwargs):
        error = GatedRepoError.__new__(GatedRepoError)  # as raised on a 403 for gated repos
        Exception.__init__(error, "403 Client Error: access to this repo is restricted")
        raise error

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", gated)
    with pytest.raises(PluginError, match=r"is gated: accept its terms on https://huggingface"):
        prepare({"arch": ARCH, "hub": "YukunZhou/RETFound_mae_meh"})


def test_a_hub_file_is_fetched_and_checked_before_the_run(registry, tmp_path, monkeypatch):
    import huggingface_hub

    state = encoder_keys(writer().state_dict())
    del state["pos_embed"]
    path = tmp_path / "RETFound_mae_meh.pth"
    torch.save({"model": state}, path)
    asked = {}

    def cached(**kwargs):
        asked.update(kwargs)
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cached)
    prepare = registry.get("model", "vit").meta["prepare"]
    with pytest.raises(PluginError, match=r"1 key\(s\) missing: pos_embed") as info:
        prepare({"arch": ARCH, "input_size": SIZE, "hub": "YukunZhou/RETFound_mae_meh"})
    assert "fits arch = 'vit_large_patch16_224', global_pool = 'avg'" in str(info.value)
    assert asked == {"repo_id": "YukunZhou/RETFound_mae_meh", "filename": "RETFound_mae_meh.pth"}


def test_a_wrong_checkpoint_stops_the_run_before_anything_is_written(cli, tmp_path, phantom_root):
    state = encoder_keys(writer().state_dict())
    del state["blocks.5.mlp.fc2.weight"]
    weights = tmp_path / "broken.pth"
    torch.save({"model": state}, weights)
    text = tiny_experiment(phantom_root, epochs=1).split("[model]")[0]
    text += f'[model]\nname = "vit"\narch = "{ARCH}"\nweights = "{weights.as_posix()}"\n'
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    result = cli("run", exp, "--out", tmp_path / "runs")
    assert result.exit_code == 2, result.output
    assert "blocks.5.mlp.fc2.weight" in result.stderr and "[model]" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_hub_weights_offline_stop_the_run_with_exit_2(tmp_path, phantom_root):
    text = tiny_experiment(phantom_root, epochs=1).split("[model]")[0]
    text += f'[model]\nname = "vit"\narch = "{ARCH}"\nhub = "YukunZhou/RETFound_mae_natureCFP"\n'
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = subprocess.run(
        [sys.executable, "-m", "odirkit", "run", str(exp), "--out", str(tmp_path / "runs")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2, result.stderr
    assert "could not be downloaded" in result.stderr and "hf download" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "runs").exists()


def test_a_finished_run_is_used_without_the_weights_it_started_from(
    cli, registry, tmp_path, phantom_root
):
    # predict and explain read the run's checkpoint: the pretrained file (or the hub, or
    # timm's download) it started from may be gone, as on another machine or offline;
    # and the explanations' "re-initialised" model is re-initialised, not that file again
    from odirkit.config import resolve_document
    from odirkit.engine.models import build_reinitialised
    from odirkit.runs import VariantDirectory

    source = writer(num_classes=2)
    weights = tmp_path / "RETFound_mae_natureCFP.pth"
    torch.save({"model": source.state_dict()}, weights)
    text = tiny_experiment(phantom_root, epochs=1).split("[model]")[0]
    text += f'[model]\nname = "vit"\narch = "{ARCH}"\nweights = "{weights.as_posix()}"\n'
    text += '\n[train]\nepochs = 1\nbatch_size = 16\noptimizer = "adamw"\nlr = 1e-4\n'
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    assert cli("run", exp, "--out", tmp_path / "runs").exit_code == 0
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    (experiment,) = resolve_document(
        VariantDirectory(variant).config().to_json(), registry, source="run"
    )
    torch.manual_seed(0)
    fresh = build_reinitialised(experiment, 2)
    own = source.state_dict()
    for name, value in fresh.state_dict().items():
        assert torch.isfinite(value).all(), name
        if name.startswith("norm") or value.shape != own[name].shape:  # LayerNorm: 1, 0
            continue
        assert not torch.allclose(value, own[name]), f"{name} is the pretrained one"
    weights.unlink()
    result = cli("predict", variant, phantom_root, "--out", tmp_path / "predicted.csv")
    assert result.exit_code == 0, result.output
    result = cli(
        "explain",
        variant,
        "--explainer",
        "attention_rollout",
        "--max-images",
        "2",
        "--out",
        tmp_path / "explained",
    )
    assert result.exit_code == 0, result.output
