"""Discovery, registration, broken plugins and name conflicts."""

from __future__ import annotations

import types
from typing import Annotated

import pytest
import torch
from pydantic import Field
from torch import nn

import odirkit
from odirkit.errors import PluginConflictError, PluginError
from odirkit.plugins import Registry, Source
from odirkit.testing import check_explainer


def _plugin(**hooks) -> object:
    """A plugin object whose attributes are hook implementations (like a module's)."""
    plugin = types.ModuleType("in_process_plugin")
    for name, fn in hooks.items():
        setattr(plugin, name, odirkit.hookimpl(fn))
    return plugin


def _build_model(*, num_classes: int, width: int = 4, mode: str = "a"):
    raise AssertionError("not built in these tests")


def test_builtin_plugins_are_found_through_entry_points(registry):
    cnn = registry.get("model", "cnn")
    assert cnn.source.distribution == "odirkit"
    assert cnn.source.version == odirkit.__version__
    assert registry.get("dataset", "phantom").source.distribution == "odirkit"
    assert not [b for b in registry.broken if b.source.distribution == "odirkit"]


def test_core_never_imports_a_plugin_module():
    from pathlib import Path

    core = Path(odirkit.__file__).parent
    for path in core.rglob("*.py"):
        text = path.read_text()
        for module in ("odirkit_models", "odirkit_datasets", "odirkit_augment", "odirkit_explain"):
            assert module not in text, f"{path} names plugin module {module}"


def test_factory_signature_becomes_the_parameters():
    reg = Registry()

    def odirkit_register_models(register):
        register("m", _build_model, summary="a model", cam_layer="x")

    assert reg.add_plugin(_plugin(odirkit_register_models=odirkit_register_models), name="p")
    spec = reg.get("model", "m")
    assert [(p.name, p.type_name, p.default) for p in spec.params] == [
        ("width", "int", 4),
        ("mode", "str", "a"),
    ]
    assert spec.meta == {"cam_layer": "x"}
    assert spec.summary == "a model"


def test_plugin_that_raises_while_registering_is_broken_and_skipped():
    reg = Registry()

    def odirkit_register_models(register):
        register("good_before_failure", _build_model)
        raise RuntimeError("boom")

    def odirkit_register_datasets(register):
        register("fine", lambda *, root: None)

    assert not reg.add_plugin(_plugin(odirkit_register_models=odirkit_register_models), name="bad")
    assert reg.add_plugin(_plugin(odirkit_register_datasets=odirkit_register_datasets), name="ok")
    (broken,) = reg.broken
    assert broken.plugin == "bad" and broken.stage == "register" and "boom" in broken.error
    assert reg.names("model") == []  # nothing of a broken plugin is half-registered
    assert reg.names("dataset") == ["fine"]


def test_unknown_hook_name_marks_the_plugin_broken():
    reg = Registry()

    def odirkit_register_modles(register):
        pass

    assert not reg.add_plugin(_plugin(odirkit_register_modles=odirkit_register_modles), name="typo")
    assert "odirkit_register_models" in reg.broken[0].error


def test_factory_with_star_args_is_rejected():
    reg = Registry()

    def odirkit_register_models(register):
        register("m", lambda *args, num_classes: None)

    assert not reg.add_plugin(_plugin(odirkit_register_models=odirkit_register_models), name="p")
    assert "keyword parameters" in reg.broken[0].error


def test_strict_registry_raises_on_a_broken_plugin():
    reg = Registry(strict=True)

    def odirkit_register_models(register):
        raise RuntimeError("boom")

    with pytest.raises(PluginError, match="boom"):
        reg.add_plugin(_plugin(odirkit_register_models=odirkit_register_models), name="bad")


def test_two_plugins_with_one_name_is_an_error_naming_both_distributions():
    reg = Registry()

    def first(register):
        register("twin", _build_model)

    def second(register):
        register("twin", _build_model)

    reg.add_plugin(
        _plugin(odirkit_register_models=first), name="a", source=Source("a", "odirkit-first", "1.0")
    )
    reg.add_plugin(
        _plugin(odirkit_register_models=second),
        name="b",
        source=Source("b", "odirkit-second", "2.0"),
    )
    with pytest.raises(PluginConflictError) as info:
        reg.get("model", "twin")
    message = str(info.value)
    assert "odirkit-first 1.0" in message and "odirkit-second 2.0" in message
    assert any(b.stage == "conflict" for b in reg.broken)


def test_unknown_name_suggests_the_closest(registry):
    with pytest.raises(PluginError, match=r"unknown model 'cnm' \(did you mean 'cnn'\?\)"):
        registry.get("model", "cnm")


def test_invalid_registrations_are_rejected():
    reg = Registry()

    def bad_name(register):
        register("Bad Name!", _build_model)

    def not_callable(register):
        register("m", 42)

    assert not reg.add_plugin(_plugin(odirkit_register_models=bad_name), name="x")
    assert not reg.add_plugin(_plugin(odirkit_register_models=not_callable), name="y")
    assert "invalid model name" in reg.broken[0].error
    assert "not callable" in reg.broken[1].error


def test_an_explainer_registered_through_its_hook_is_usable():
    class GradientMagnitude:
        def __call__(self, model, images, targets, layer, additional_forward_args=None):
            images = images.clone().requires_grad_(True)
            scores = model(images, *(additional_forward_args or ())).gather(1, targets[:, None])
            scores = scores.sum()
            (grad,) = torch.autograd.grad(scores, images)
            return grad.abs().amax(dim=1)

    def odirkit_register_explainers(register):
        register(
            "gradmag", lambda: GradientMagnitude(), summary="gradient magnitude", needs_layer=False
        )

    reg = Registry()
    assert reg.add_plugin(
        _plugin(odirkit_register_explainers=odirkit_register_explainers), name="gradmag"
    )
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    check_explainer(reg.get("explainer", "gradmag"), model, model[1], 16)


def test_a_misspelled_register_keyword_breaks_the_plugin_and_names_the_closest():
    def odirkit_register_models(register):
        register("typo", lambda *, num_classes: nn.Linear(1, num_classes), cam_layr="0")

    reg = Registry()
    assert not reg.add_plugin(_plugin(odirkit_register_models=odirkit_register_models), name="typo")
    (broken,) = reg.broken
    assert broken.stage == "register"
    assert "unknown keyword 'cam_layr' (did you mean 'cam_layer'?)" in broken.error
    with pytest.raises(PluginError, match="installed but broken"):
        reg.get("model", "typo")


def test_a_register_keyword_of_the_wrong_type_breaks_the_plugin():
    def odirkit_register_models(register):
        register("bad", lambda *, num_classes: nn.Linear(1, num_classes), mean=(0.5, 0.5))

    reg = Registry()
    assert not reg.add_plugin(_plugin(odirkit_register_models=odirkit_register_models), name="b")
    assert "mean" in reg.broken[0].error


def test_annotated_ranges_are_enforced_and_described(cli):
    from odirkit.errors import ConfigError
    from odirkit.params import Where

    def odirkit_register_models(register):
        register("ranged", build_ranged)

    reg = Registry()
    assert reg.add_plugin(_plugin(odirkit_register_models=odirkit_register_models), name="r")
    spec = reg.get("model", "ranged")
    with pytest.raises(ConfigError, match="dropout: input should be less than 1"):
        spec.validate({"dropout": 5.0}, where=Where("exp.toml", "model"))
    assert spec.validate({"dropout": 0.5}, where=Where("exp.toml", "model")) == {"dropout": 0.5}
    assert spec.params[0].type_name == "float (>= 0, < 1)"
    described = cli("describe", "explainer", "smoothgrad")
    assert described.exit_code == 0 and "float (> 0.0, <= 1.0)" in described.stdout


def build_ranged(*, num_classes: int, dropout: Annotated[float, Field(ge=0, lt=1)] = 0.1):
    """A factory whose parameter declares its range."""
    return nn.Linear(1, num_classes)


def test_a_model_s_key_is_named_as_the_user_writes_it_nested_or_not():
    from odirkit.api import model_key
    from odirkit.params import model_keys_under

    assert model_key("weights") == "[model] weights"
    with model_keys_under("backbone_params"):
        assert model_key("weights") == "[model] backbone_params.weights"
        with model_keys_under("inner"):
            assert model_key("pretrained") == "[model] backbone_params.inner.pretrained"
        assert model_key("pretrained") == "[model] backbone_params.pretrained"
    assert model_key("weights") == "[model] weights"  # left as it was
    with pytest.raises(RuntimeError), model_keys_under("b"):
        raise RuntimeError
    assert model_key("w") == "[model] w"  # restored after an error too
