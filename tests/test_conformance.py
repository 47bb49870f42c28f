"""Every registered plugin of a kind passes that kind's conformance checks.

The parameters come from the installed entry points, so a third-party plugin
installed next to odirkit is checked by the same tests as the built-in ones.
"""

from __future__ import annotations

import pytest

from odirkit.plugins import Registry
from odirkit.testing import (
    check_augmenter,
    check_dataset,
    check_explainer,
    check_explainer_applies,
    check_logger,
    check_model,
    model_input_size,
    small_params,
)

REGISTRY = Registry()
REGISTRY.load_entry_points()


@pytest.mark.parametrize("name", REGISTRY.names("model"))
def test_model_plugin_conforms(name):
    check_model(REGISTRY.get("model", name))


@pytest.mark.parametrize("name", REGISTRY.names("dataset"))
def test_dataset_plugin_conforms(name, tmp_path):
    check_dataset(REGISTRY.get("dataset", name), tmp_path / name)


@pytest.mark.parametrize("name", REGISTRY.names("augmenter"))
def test_augmenter_plugin_conforms(name):
    check_augmenter(REGISTRY.get("augmenter", name))


@pytest.mark.parametrize("name", REGISTRY.names("explainer"))
def test_explainer_plugin_conforms(name):
    cnn = REGISTRY.get("model", "cnn")
    params = small_params(cnn)
    model = cnn.build(num_classes=2, **params)
    layer = model.get_submodule(cnn.meta["cam_layer"])
    check_explainer(REGISTRY.get("explainer", name), model, layer, model_input_size(cnn, params))


@pytest.mark.parametrize("name", REGISTRY.names("explainer"))
def test_explainer_plugin_explains_or_says_it_cannot(name):
    # a ReLU-free CNN and a tiny ViT (tokens reshaped by cam_reshape) besides the cnn
    check_explainer_applies(REGISTRY.get("explainer", name))


@pytest.mark.parametrize("name", REGISTRY.names("logger"))
def test_logger_plugin_conforms(name, tmp_path):
    check_logger(REGISTRY.get("logger", name), tmp_path / name)


def test_every_builtin_kind_with_plugins_is_checked():
    # A kind gains conformance coverage as soon as its first plugin registers.
    assert REGISTRY.names("model") and REGISTRY.names("dataset")
    assert REGISTRY.names("logger") and REGISTRY.names("explainer")
