"""Conformance checks that every plugin of a kind must pass.

odirkit's own test suite runs them on every registered plugin, built-in and
third-party alike; a plugin author runs them in their own tests::

    from odirkit import get_registry
    from odirkit.testing import check_model

    def test_tinynet_conforms():
        check_model(get_registry().get("model", "tinynet"))

Each check raises ``AssertionError`` with a message saying what is wrong.
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image
from torch import nn

from odirkit.augment import ExpandContext, ExtraSamples
from odirkit.config import ModelConfig
from odirkit.data.images import Preprocessing, preprocess
from odirkit.data.table import Task, check_sample_table
from odirkit.errors import NotApplicable
from odirkit.layers import explained_layer
from odirkit.params import Where
from odirkit.plugins import PluginSpec

DEFAULT_TEST_SIZE = 64


def small_params(spec: PluginSpec) -> dict[str, Any]:
    """The plugin's small, fast parameters (``meta["test_params"]``), validated."""

    params = dict(spec.meta.get("test_params", {}))
    return spec.validate(params, where=Where(None, f"{spec.kind} {spec.name} test_params"))


def model_input_size(spec: PluginSpec, params: dict[str, Any]) -> int:
    """The image size the conformance checks use for a model."""
    return int(params.get("input_size") or spec.meta.get("test_input_size") or DEFAULT_TEST_SIZE)


def check_model(spec: PluginSpec, *, num_classes: int = 3) -> nn.Module:
    """A model plugin maps ``[B, 3, H, W]`` to finite logits ``[B, num_classes]``, trains,
    names a real CAM layer, and round-trips through its state dict."""
    assert spec.kind == "model"

    names = [p.name for p in spec.params]
    assert "num_classes" not in names, "num_classes is supplied by odirkit, not a TOML parameter"
    shadowed = set(names) & set(ModelConfig.model_fields)
    assert not shadowed, f"parameters {sorted(shadowed)} clash with odirkit's own [model] keys"
    params = small_params(spec)
    torch.manual_seed(0)
    model = spec.build(num_classes=num_classes, **params)
    assert isinstance(model, nn.Module), f"factory returned {type(model).__name__}"
    size = model_input_size(spec, params)
    eyes = int(spec.meta_for(params).get("eyes", 1))  # 2: patients, both eyes interleaved
    x = torch.rand(2 * eyes, 3, size, size)
    model.train()
    logits = model(x)
    assert isinstance(logits, torch.Tensor), f"forward returned {type(logits).__name__}"
    assert logits.shape == (2, num_classes), f"logits shape {tuple(logits.shape)}"
    assert torch.isfinite(logits).all(), "logits are not finite"
    logits.sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads, "no parameter received a gradient"
    assert all(torch.isfinite(g).all() for g in grads), "gradients are not finite"

    meta = spec.meta_for(params)
    for key in ("mean", "std"):
        if key in meta:
            assert len(meta[key]) == 3, f"meta {key} must have three values"
    if "input_size" in meta:
        assert int(meta["input_size"]) > 0
    cam_layer = meta.get("cam_layer")
    if cam_layer is not None:
        layer = model.get_submodule(cam_layer)
        assert isinstance(layer, nn.Module), f"cam_layer {cam_layer!r} is not a module"
        _check_cam_grid(model, x, cam_layer, meta.get("cam_reshape"))

    model.eval()
    with torch.no_grad():
        first = model(x)
        again = model(x)
    assert torch.allclose(first, again), "eval-mode outputs differ between two calls"
    torch.manual_seed(1)
    twin = spec.build(num_classes=num_classes, **params)
    twin.load_state_dict(copy.deepcopy(model.state_dict()))
    twin.eval()
    with torch.no_grad():
        assert torch.allclose(twin(x), first, atol=1e-5), "state dict does not round-trip"
    return model


def _check_cam_grid(model: nn.Module, x: torch.Tensor, cam_layer: str, reshape: str | None):
    """The CAM layer's output, reshaped by the model's ``cam_reshape`` rule, is the feature
    map ``[B, C, h, w]`` Captum's layer methods average over (a transformer's tokens
    ``[B, N, C]`` are not)."""

    seen: list[tuple[int, ...]] = []
    model.eval()
    with explained_layer(model, cam_layer, None, reshape) as (_, module), torch.no_grad():
        handle = module.register_forward_hook(lambda _m, _i, out: seen.append(tuple(out.shape)))
        try:
            model(x)
        finally:
            handle.remove()
    assert seen, f"cam_layer {cam_layer!r} is not used by the forward pass"
    assert len(seen[0]) == 4 and seen[0][0] == len(x), (
        f"cam_layer {cam_layer!r} gives {seen[0]}, not a grid [B, C, h, w]; declare how its "
        'output becomes one (meta cam_reshape = "tokens:K" or "nhwc")'
    )
    model.train()


def check_dataset(spec: PluginSpec, root: Path) -> Any:
    """A dataset plugin returns a valid sample table of readable images, the same twice."""
    assert spec.kind == "dataset"
    params = small_params(spec)
    setup = spec.meta.get("test_setup")
    if setup is not None:  # a plugin reading data from disk writes a small sample first
        setup(Path(root))
    table = spec.build(root=str(root), **params)
    clean = check_sample_table(table, dataset=spec.name, root=root)
    assert len(clean) > 0
    for path in clean["image_path"].head(4):
        image = preprocess(path, Preprocessing(size=32))
        assert image.shape == (32, 32, 3)
    for column in [c for c in clean.columns if c.startswith("mask_path_")]:
        for path in [p for p in clean[column] if p][:4]:
            assert Path(path).exists(), f"mask {path} does not exist"
    second = check_sample_table(spec.build(root=str(root), **params), dataset=spec.name, root=root)
    assert clean.equals(second), "two calls with the same parameters gave different tables"
    return clean


def check_augmenter(spec: PluginSpec) -> Any:
    """An online augmenter keeps shape, dtype and the [0, 1] range, leaves its input alone,
    and draws only from the generator it is given (not at all if it declares itself
    deterministic); an offline one has ``expand``."""
    assert spec.kind == "augmenter"
    aug = spec.build(**small_params(spec))
    if hasattr(aug, "expand"):
        assert callable(aug.expand), "expand must be callable"
        _check_expand(spec.name, aug)
        return aug
    assert callable(aug), "an augmenter is a callable or has expand()"
    images = torch.rand(3, 3, 48, 48)
    before = images.clone()
    out1 = aug(images, torch.Generator().manual_seed(7))
    assert torch.equal(images, before), "the augmenter changed its input in place"
    assert out1.shape == images.shape and out1.dtype == images.dtype
    assert torch.isfinite(out1).all()
    assert float(out1.min()) >= -1e-6 and float(out1.max()) <= 1 + 1e-6, "output left [0, 1]"
    torch.manual_seed(123)  # the global generator must not matter
    out2 = aug(images, torch.Generator().manual_seed(7))
    assert torch.equal(out1, out2), "the same generator seed gave a different batch"
    if spec.meta.get("deterministic"):  # may be a test-time view: the generator must not matter
        out3 = aug(images, torch.Generator().manual_seed(8))
        assert torch.equal(out1, out3), "a deterministic augmenter drew from its generator"
    return aug


def _check_expand(name: str, aug: Any) -> None:
    """Run ``expand`` on eight random training images of two classes."""

    images = torch.randint(
        0, 256, (8, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    targets = np.array([0, 1] * 4)
    train = pd.DataFrame(
        {"patient_id": [str(i) for i in range(8)], "eye": "left", "N": 1 - targets, "D": targets}
    )
    with tempfile.TemporaryDirectory() as tmp:
        ctx = ExpandContext(
            load=lambda positions: images[list(positions)],
            size=8,
            targets=targets,
            task=Task(("N", "D"), "single_label"),
            image_size=32,
            device=torch.device("cpu"),
            generator=torch.Generator().manual_seed(0),
            seed=0,
            run_dir=Path(tmp) / "run",
            cache_dir=Path(tmp) / "cache",
            log=lambda message: None,
        )
        extra = aug.expand(train, ctx)
        assert isinstance(extra, ExtraSamples), f"expand returned {type(extra).__name__}"
        extra.check(name, ctx)


class _WithExtraInput(nn.Module):
    """A model that also takes a second input, as metadata fusion makes one."""

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.model = model
        self.extra = nn.Linear(2, num_classes)

    def forward(self, images: torch.Tensor, extra: torch.Tensor) -> torch.Tensor:
        return self.model(images) + self.extra(extra)


def check_explainer(spec: PluginSpec, model: nn.Module, layer: nn.Module, size: int) -> Any:
    """An explainer returns finite, non-negative maps ``[B, H, W]`` at the input size, for a
    model of the images alone and for one with an extra input passed as
    ``additional_forward_args``. An explainer that declares it cannot apply to ``model``
    (meta ``applies_to``) is checked on the first of :func:`kit_models` it applies to."""
    assert spec.kind == "explainer"
    explain = spec.build(**small_params(spec))
    assert callable(explain)
    applies_to = spec.meta.get("applies_to")
    if applies_to is not None and applies_to(model):  # the first kit model it explains
        for candidate, cam_layer, reshape, kit_size in kit_models().values():
            if not applies_to(candidate):
                with explained_layer(candidate, cam_layer, None, reshape) as (_, kit_layer):
                    _check_explainer_on(explain, candidate, kit_layer, kit_size)
                return explain
        raise AssertionError(f"{spec.name} applies to none of the conformance kit's models")
    _check_explainer_on(explain, model, layer, size)
    return explain


def _check_explainer_on(explain: Any, model: nn.Module, layer: nn.Module, size: int) -> None:
    model.eval()
    images = torch.rand(2, 3, size, size)
    targets = torch.tensor([0, 1])
    maps = explain(model, images, targets, layer)
    _check_maps(maps, size)
    num_classes = int(model(images).shape[1])
    wrapped = _WithExtraInput(model, num_classes).eval()
    extra = (torch.rand(2, 2),)
    maps = explain(wrapped, images, targets, layer, additional_forward_args=extra)
    _check_maps(maps, size)


class _SiLUNet(nn.Module):
    """A small convolutional network whose activations are SiLU, not ReLU."""

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.SiLU(), nn.Conv2d(8, 8, 3, padding=1), nn.SiLU()
        )
        self.head = nn.Linear(8, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images).mean(dim=(2, 3)))


def kit_models(num_classes: int = 2) -> dict[str, tuple[nn.Module, str, str | None, int]]:
    """The models every explainer is tried on besides the caller's ReLU network: a SiLU
    network (no ReLU) and a tiny timm Vision Transformer (a token sequence, reshaped by
    ``cam_reshape``). Each: ``(model, cam_layer, cam_reshape, input size)``."""
    import timm

    torch.manual_seed(0)
    vit = timm.create_model("test_vit", num_classes=num_classes, img_size=32, global_pool="avg")
    return {
        "silu_cnn": (_SiLUNet(num_classes), "features.3", None, 32),
        "tiny_vit": (
            vit,
            f"blocks.{len(vit.blocks) - 1}.norm1",
            f"tokens:{vit.num_prefix_tokens}",
            32,
        ),
    }


def check_explainer_applies(spec: PluginSpec) -> dict[str, str]:
    """An explainer either explains each of :func:`kit_models` (finite, non-negative maps
    at the input size) or says it cannot: its meta ``applies_to(model)`` gives the reason
    and a call raises :class:`odirkit.NotApplicable`, never returning a map computed by
    some other method under its name. Returns, per kit model, "" or the reason."""

    assert spec.kind == "explainer"
    explain = spec.build(**small_params(spec))
    applies_to = spec.meta.get("applies_to")
    verdicts = {}
    for name, (model, cam_layer, reshape, size) in kit_models().items():
        model.eval()
        reason = applies_to(model) if applies_to is not None else None
        images = torch.rand(2, 3, size, size)
        targets = torch.tensor([0, 1])
        with explained_layer(model, cam_layer, None, reshape) as (_, layer):
            if reason:
                assert isinstance(reason, str), "applies_to returns None or a reason (str)"
                try:
                    explain(model, images, targets, layer)
                except NotApplicable:
                    verdicts[name] = reason
                    continue
                raise AssertionError(
                    f"{spec.name} declares it cannot explain the kit's {name} ({reason}) "
                    "but returned maps: raise odirkit.NotApplicable instead"
                )
            _check_maps(explain(model, images, targets, layer), size)
            verdicts[name] = ""
    return verdicts


def _check_maps(maps: Any, size: int) -> None:
    assert isinstance(maps, torch.Tensor)
    assert maps.shape == (2, size, size), f"maps shape {tuple(maps.shape)}"
    values = maps.detach().cpu().numpy()
    assert np.isfinite(values).all() and (values >= 0).all(), "maps must be finite, >= 0"


def check_logger(spec: PluginSpec, folder: Path) -> Any:
    """A logger takes a two-epoch run from start to close (working in ``folder``), an
    external validation among it, and continues from the state it returned when the run
    resumes."""

    from odirkit.tracking import RunInfo

    assert spec.kind == "logger"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    figure = folder / "figure.png"

    Image.new("RGB", (8, 8), (200, 40, 40)).save(figure)
    run = RunInfo(
        experiment="conformance",
        variant="default",
        seed=0,
        config={"train": {"epochs": 2, "lr": 0.01}, "data": {"labels": ["N", "D"]}},
        environment={"git": {"commit": None}},
        directory=folder,
    )
    with contextlib.chdir(folder):
        logger = spec.build(**small_params(spec))
        state = logger.start(run) if hasattr(logger, "start") else None
        assert state is None or isinstance(state, dict), "start returns a dict or None"
        for epoch in (1, 2):
            if hasattr(logger, "log_epoch"):
                logger.log_epoch(epoch, {"train_loss": 1.0 / epoch, "val_f1_micro": 0.5})
        if hasattr(logger, "log_final"):
            logger.log_final({"final": {"f1_micro": 0.6, "intervals": {"f1_micro": [0.5, 0.7]}}})
        if hasattr(logger, "log_external"):
            logger.log_external(
                "external-collection",
                {
                    "final": {"f1_micro": 0.5, "intervals": {"f1_micro": [0.4, 0.6]}},
                    "comparison": {
                        "metrics": [
                            {
                                "metric": "f1_micro",
                                "difference": -0.1,
                                "difference_low": -0.2,
                                "difference_high": float("nan"),
                            }
                        ]
                    },
                    "checkpoint_epoch": 2,
                },
            )
        if hasattr(logger, "log_files"):
            logger.log_files([figure])
        if hasattr(logger, "close"):
            logger.close()
        again = spec.build(**small_params(spec))
        if hasattr(again, "start"):
            again.start(RunInfo(**{**run.__dict__, "resumed": state}))
        if hasattr(again, "close"):
            again.close()
    return logger
