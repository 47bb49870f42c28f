"""Finding the layer a layer-based explainer (Grad-CAM) looks at.

``layer = "default"`` is the model plugin's ``cam_layer`` (prefixed when the
model is wrapped for metadata fusion),
``"auto"`` the last convolution, anything else a dotted module name. A wrong
name lists the candidates. :func:`check_layers` runs on the model built on
PyTorch's meta device, so a wrong ``[[explain]] layer`` fails before training.
"""

from __future__ import annotations

from torch import nn

from odirkit.config import Experiment
from odirkit.errors import ConfigError

#: the attribute under which metadata fusion keeps the plugin's network (engine.heads)
BACKBONE = "backbone"

LAYER_TYPES = (
    nn.Conv2d,
    nn.ReLU,
    nn.LeakyReLU,
    nn.SiLU,
    nn.GELU,
    nn.Sequential,
    nn.BatchNorm2d,
    nn.MaxPool2d,
)


def candidate_layers(model: nn.Module, limit: int = 20) -> list[str]:
    """Names of the modules a layer-based explainer can use: the last convolutions,
    activations and blocks with spatial output, deepest last."""
    names = [
        name for name, module in model.named_modules() if name and isinstance(module, LAYER_TYPES)
    ]
    return names[-limit:]


def resolve_layer(model: nn.Module, choice: str, default: str | None) -> tuple[str, nn.Module]:
    """``default`` (the model's CAM layer), ``auto`` (the last convolution), or a name."""
    if choice == "default":
        choice = default or "auto"
    if choice == "auto":
        convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        if not convs:
            raise ConfigError('layer = "auto": this model has no convolution; name a layer')
        choice = convs[-1]
    try:
        return choice, model.get_submodule(choice)
    except AttributeError:
        listed = ", ".join(candidate_layers(model))
        raise ConfigError(
            f"the model has no layer {choice!r}; candidate layers (deepest last): {listed}"
        ) from None


def cam_layer_of(exp: Experiment) -> str | None:
    """The model plugin's CAM layer, as named inside the model the experiment builds."""
    cam = exp.model.meta.get("cam_layer")
    return f"{BACKBONE}.{cam}" if cam and exp.config.model.metadata else cam


def check_layers(exp: Experiment, model: nn.Module) -> None:
    """Every ``[[explain]]`` entry that needs a layer names one ``model`` has."""
    for call in exp.explainers:
        if not call.spec.meta.get("needs_layer", True):
            continue
        try:
            resolve_layer(model, call.options.get("layer", "default"), cam_layer_of(exp))
        except ConfigError as exc:
            raise ConfigError(f"{call.where} layer: {exc}") from None
