"""Explanations on Vision Transformers: the token sequence turned back into the patch grid
(meta ``cam_reshape``) so Captum's Grad-CAM works, its sanity checks and localisation on
phantom photographs, attention rollout, and explainers that say they cannot apply."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from conftest import tiny_experiment
from PIL import Image

from odirkit.data.images import Preprocessing
from odirkit.errors import NotApplicable, PluginError
from odirkit.explain import ExplainInputs, explain, pointing_and_energy
from odirkit.layers import as_grid, explained_layer
from odirkit.view import ModelView

SIZE = 64
PATCH = 8


def tokens_of(grid: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """A [B, C, h, w] grid as a ViT lays it out: prefix tokens, then patches row by row."""
    return torch.cat([prefix, grid.flatten(2).transpose(1, 2)], dim=1)


def test_tokens_become_the_patch_grid_row_by_row_without_the_prefix_tokens():
    grid = torch.arange(2 * 3 * 9, dtype=torch.float32).reshape(2, 3, 3, 3)
    prefix = torch.full((2, 2, 3), -1.0)  # a class token and a register token
    tokens = tokens_of(grid, prefix)
    out, back = as_grid(tokens, "tokens:2", "blocks.0")
    assert torch.equal(out, grid) and torch.equal(back(out), tokens)
    with pytest.raises(PluginError, match="square patch grid"):
        as_grid(tokens, "tokens:1", "blocks.0")  # one prefix token too few: 10 tokens left
    nhwc = grid.permute(0, 2, 3, 1)
    out, back = as_grid(nhwc, "nhwc", "layers.3")
    assert torch.equal(out, grid) and torch.equal(back(out), nhwc)
    conv = torch.rand(2, 4, 5, 5)  # a convolution named as the layer: already a grid
    out, back = as_grid(conv, "tokens:1", "patch_embed.proj")
    assert out is conv and back(out) is conv


def test_the_grid_hook_leaves_the_outputs_alone_and_goes_away():
    torch.manual_seed(0)
    model = timm.create_model("test_vit", num_classes=3, img_size=32).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        with explained_layer(model, "blocks.5.norm1", None, "tokens:1") as (name, grid):
            seen = []
            grid.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
            during = model(x)
        after = model(x)
    assert name == "blocks.5.norm1" and seen == [(2, 64, 2, 2)]
    assert torch.equal(before, during) and torch.equal(before, after)
    assert not model.blocks[5].norm1._forward_hooks


# -- a ViT that learned where to look, on phantom photographs ---------------------------------


def photographs(root, count: int) -> torch.Tensor:
    table = pd.read_csv(root / "phantom_images.csv")
    images = [
        np.asarray(Image.open(root / path).convert("RGB").resize((SIZE, SIZE)))
        for path in table["path"].head(count)
    ]
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def with_marks(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Every other photograph gets a white 7-pixel square somewhere in its field of view
    (class 1, its mask); the others none (class 0)."""
    rng = np.random.default_rng(seed)
    images = images.clone()
    labels = torch.zeros(len(images), dtype=torch.long)
    masks = np.zeros((len(images), SIZE, SIZE), dtype=bool)
    for i in range(1, len(images), 2):
        y, x = rng.integers(18, SIZE - 25, size=2)
        images[i, :, y : y + 7, x : x + 7] = 255
        masks[i, y : y + 7, x : x + 7] = True
        labels[i] = 1
    return images, labels, masks


def vit(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return timm.create_model(
        "test_vit", num_classes=2, img_size=SIZE, patch_size=PATCH, global_pool="avg"
    )


VIEW = ModelView(
    labels=("N", "D"),
    single_label=True,
    preprocessing=Preprocessing(size=SIZE),
    mean=(0.485, 0.456, 0.406),
    std=(0.229, 0.224, 0.225),
    cam_layer="blocks.5.norm1",
    cam_reshape="tokens:1",
)


@pytest.fixture(scope="module")
def marked_vit(phantom_root):
    """A tiny ViT trained on phantom photographs to tell the marked ones: it has learned
    where to look, so its explanations can be judged."""
    root = phantom_root
    train, labels, _ = with_marks(photographs(root, 80)[:64], seed=1)
    model = vit()
    x = VIEW.normalise(train)
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=0.05)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small steps: threads only contend (2 cores, shared)
    try:
        for _ in range(80):
            batch = torch.randint(0, len(x), (16,), generator=generator)
            loss = torch.nn.functional.cross_entropy(model(x[batch]), labels[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    finally:
        torch.set_num_threads(threads)
    test, test_labels, masks = with_marks(photographs(root, 80)[64:], seed=2)
    with torch.no_grad():
        accuracy = (model.eval()(VIEW.normalise(test)).argmax(1) == test_labels).float().mean()
    assert accuracy >= 0.9, f"the ViT did not learn the marks (accuracy {accuracy:.2f})"
    return model, test, test_labels, masks


def explain_marks(model, images, labels, tmp_path, view=VIEW):
    rows = pd.DataFrame(
        {"patient_id": [str(i) for i in range(len(images))], "eye": "left", "path": ""}
    )
    return explain(
        model=model,
        view=view,
        calls=[_call("gradcam")],
        inputs=ExplainInputs(images=images, rows=rows, true=[[int(t)] for t in labels]),
        device=torch.device("cpu"),
        out_dir=tmp_path / "explain",
        seed=0,
        random_model=lambda: vit(seed=7),
    )


def _call(name: str):
    from odirkit.config import ExplainOptions, PluginCall
    from odirkit.params import Where
    from odirkit.plugins import Registry

    reg = Registry()
    reg.load_entry_points()
    spec = reg.get("explainer", name)
    return PluginCall(
        spec,
        spec.validate({}, where=Where(None, name)),
        None,
        ExplainOptions(max_images=16).model_dump(),
    )


def pointing(result, masks: np.ndarray, images: torch.Tensor) -> float:
    hits = []
    for i, item in enumerate(result.image_classes):
        if item.target == 1 and masks[item.image].any():
            fov = images[item.image].float().mean(0).numpy() > 20
            hit, *_ = pointing_and_energy(result.maps["gradcam"][i], masks[item.image], fov, 2)
            hits.append(hit)
    return float(np.mean(hits))


@pytest.mark.slow
def test_gradcam_on_a_vit_passes_the_sanity_checks_and_points_at_the_lesion(marked_vit, tmp_path):
    model, images, labels, masks = marked_vit
    result = explain_marks(model, images, labels, tmp_path)
    (row,) = result.sanity.to_dict("records")
    assert row["rank_correlation_with_random_model"] < 0.5, row
    assert row["input_dependence"] < 0.5, row
    assert row["reliable"], row
    assert pointing(result, masks, images) >= 0.75  # a random point: about 0.05


# -- explainers that cannot apply ----------------------------------------------------------


def test_guided_gradcam_refuses_a_network_without_relus(registry):
    explainer = registry.get("explainer", "guided_gradcam").build()
    model = vit().eval()
    with (
        explained_layer(model, "blocks.5.norm1", None, "tokens:1") as (_, layer),
        pytest.raises(NotApplicable, match=r"no nn\.ReLU \(its activations: GELU\)"),
    ):
        explainer(model, torch.rand(1, 3, SIZE, SIZE), torch.tensor([0]), layer)
    applies_to = registry.get("explainer", "guided_gradcam").meta["applies_to"]
    assert applies_to(model) and applies_to(timm.create_model("vgg11", num_classes=2)) is None


def test_an_experiment_asking_guided_gradcam_of_a_vit_fails_before_training(
    cli, tmp_path, phantom_root
):
    text = tiny_experiment(phantom_root, epochs=1).split("[model]")[0]
    text += '[model]\nname = "vit"\narch = "test_vit"\n\n[[explain]]\nname = "guided_gradcam"\n'
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    result = cli("validate", exp)
    assert result.exit_code == 2, result.output
    assert "explainer 'guided_gradcam' cannot explain model 'vit'" in result.stderr
    assert "no nn.ReLU" in result.stderr and "Traceback" not in result.stderr


def test_attention_rollout_follows_the_attention_and_refuses_a_cnn(registry):
    rollout = registry.get("explainer", "attention_rollout").build()
    model = vit().eval()
    images = torch.rand(2, 3, SIZE, SIZE)
    maps = rollout(model, images, torch.tensor([0, 1]), None)
    assert maps.shape == (2, SIZE, SIZE) and (maps >= 0).all()
    # every token attending to patch 11 (row 1, column 3 of the 8 x 8 grid) in every block
    focus = 1 + 11  # after the class token
    hooks = []
    for block in model.blocks:

        def attend(_module, _inputs, out):
            forced = torch.zeros_like(out)
            forced[..., focus] = 1.0
            return forced

        hooks.append(block.attn.attn_drop.register_forward_hook(attend))
    maps = rollout(model, images, torch.tensor([0, 1]), None)
    for hook in hooks:
        hook.remove()
    cell = PATCH
    peak = np.unravel_index(int(maps[0].argmax()), maps[0].shape)
    assert (peak[0] // cell, peak[1] // cell) == (1, 3), peak
    cnn = registry.get("model", "cnn")
    from odirkit.testing import small_params

    with pytest.raises(NotApplicable, match="no timm attention"):
        rollout(
            cnn.build(num_classes=2, **small_params(cnn)),
            torch.rand(1, 3, 48, 48),
            torch.tensor([0]),
            None,
        )


def test_conformance_fails_a_transformer_that_hides_its_tokens_from_grad_cam():
    import types

    import odirkit
    from odirkit.plugins import Registry
    from odirkit.testing import check_model

    def build_tiny_vit(*, num_classes: int):
        return timm.create_model("test_vit", num_classes=num_classes, img_size=32)

    def register_with(**meta):
        reg = Registry()

        def odirkit_register_models(register):
            register("tiny_vit", build_tiny_vit, test_input_size=32, **meta)

        plugin = types.ModuleType("tiny_vit_plugin")
        plugin.odirkit_register_models = odirkit.hookimpl(odirkit_register_models)
        assert reg.add_plugin(plugin, name="tiny")
        return reg.get("model", "tiny_vit")

    check_model(register_with(cam_layer="blocks.5.norm1", cam_reshape="tokens:1"))
    with pytest.raises(AssertionError, match=r"not a grid \[B, C, h, w\]; declare"):
        check_model(register_with(cam_layer="blocks.5.norm1"))


@pytest.mark.slow
def test_a_vit_run_is_explained_and_its_localisation_and_sanity_reported(
    cli, tmp_path, phantom_root
):
    text = tiny_experiment(phantom_root, epochs=1).split("[model]")[0]
    text += '[model]\nname = "vit"\narch = "test_vit"\npatch_size = 8\n'
    text += '[train]\nepochs = 1\nbatch_size = 16\noptimizer = "adamw"\nlr = 0.001\n'
    exp = tmp_path / "exp.toml"
    exp.write_text(text)
    assert cli("run", exp, "--out", tmp_path / "runs").exit_code == 0
    (variant,) = (tmp_path / "runs").glob("*/*/default")
    # no explainer named and none in the run: every installed one that applies
    every = cli("explain", variant, "--max-images", "8", "--out", tmp_path / "every")
    assert every.exit_code == 0, every.output
    assert (
        "'guided_gradcam' cannot explain this model" in every.stderr and "left out" in every.stderr
    )
    sanity = pd.read_csv(tmp_path / "every" / "sanity.csv")
    assert set(sanity["explainer"]) == {"gradcam", "smoothgrad", "attention_rollout"}
    assert sanity[["rank_correlation_with_random_model", "input_dependence"]].notna().any().all()
    localisation = pd.read_csv(tmp_path / "every" / "localisation.csv")
    assert {"gradcam", "attention_rollout"} <= set(localisation["explainer"])
    assert (
        localisation["pointing_game"].notna().all() and localisation["random_point"].notna().all()
    )
    # asked for by name, it says why it cannot
    guided = cli("explain", variant, "--explainer", "guided_gradcam", "--out", tmp_path / "g")
    assert guided.exit_code == 2 and "no nn.ReLU" in guided.stderr, guided.output
    assert "Traceback" not in guided.stderr
