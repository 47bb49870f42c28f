"""Finding the layer a layer-based explainer (Grad-CAM) looks at.

``layer = "default"`` is the model plugin's ``cam_layer`` (prefixed when the
model is wrapped for metadata fusion),
``"auto"`` the last convolution, anything else a dotted module name. A wrong
name lists the candidates. :func:`check_layers` runs on the model built on
PyTorch's meta device, so a wrong ``[[explain]] layer`` fails before training,
and so does an explainer that declares it cannot apply to the model.

A transformer's layers output a token sequence ``[B, N, C]``, not the feature
map ``[B, C, h, w]`` Captum's layer methods average over. A model plugin says
how to turn it into one (meta ``cam_reshape``); :func:`explained_layer` then
hooks the layer so that its output passes through a :class:`CamGrid` module
as a grid, and hands that module to the explainer: Grad-CAM sees the grid,
the network the unchanged tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from odirkit.config import ResolvedVariant
from odirkit.errors import ConfigError, NotApplicable, PluginError

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
    nn.LayerNorm,  # a transformer block's norm1 (with a cam_reshape rule)
)


def candidate_layers(model: nn.Module, limit: int = 20) -> list[str]:
    """Names of the modules a layer-based explainer can use: the last convolutions,
    activations and blocks with spatial output, deepest last."""
    names = [
        name for name, module in model.named_modules() if name and isinstance(module, LAYER_TYPES)
    ]
    return names[-limit:]


def resolve_layer(model: nn.Module, choice: str, default: str | None) -> tuple[str, nn.Module]:
    """``default`` (the model's CAM layer), ``auto`` (the last convolution), or a name.

    Raises :class:`ConfigError` for ``auto`` on a model without convolution, or a name the
    model lacks (listing the candidates)."""
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


def cam_layer_of(exp: ResolvedVariant) -> str | None:
    """The model plugin's CAM layer, as named inside the model the experiment builds."""
    cam = exp.model.meta.get("cam_layer")
    return f"{BACKBONE}.{cam}" if cam and exp.config.model.metadata else cam


def cam_reshape_of(exp: ResolvedVariant) -> str | None:
    """The model plugin's ``cam_reshape`` rule (``"tokens:K"``, ``"nhwc"``), or None."""
    return exp.model.meta.get("cam_reshape")


def not_applicable(applies_to: Callable[[nn.Module], str | None] | None, model: nn.Module) -> str:
    """The reason an explainer's ``applies_to`` gives for not explaining ``model`` (""
    when it applies, or declares nothing)."""
    return (applies_to(model) or "") if applies_to is not None else ""


def check_layers(exp: ResolvedVariant, model: nn.Module) -> None:
    """Every ``[[explain]]`` entry that needs a layer names one ``model`` has, and every
    explainer applies to ``model`` (its meta ``applies_to``).

    Raises :class:`NotApplicable` for an explainer that cannot explain the model,
    :class:`ConfigError` for a layer it lacks."""
    for call in exp.explainers:
        reason = not_applicable(call.spec.meta.get("applies_to"), model)
        if reason:
            raise NotApplicable(
                f"{call.where} explainer {call.name!r} cannot explain model "
                f"{exp.model.name!r}: {reason}; leave it out of this variant's explain list"
            )
        if not call.spec.meta.get("needs_layer", True):
            continue
        try:
            resolve_layer(model, call.options.get("layer", "default"), cam_layer_of(exp))
        except ConfigError as exc:
            raise ConfigError(f"{call.where} layer: {exc}") from None


# -- a layer's output as a grid ------------------------------------------------------------


class CamGrid(nn.Module):
    """Identity on the grid ``[B, C, h, w]`` a layer's output was turned into: the module
    a layer method (Captum's ``LayerGradCam``) hooks in place of the layer."""

    def __init__(self, rule: str) -> None:
        super().__init__()
        self.rule = rule

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        """The grid, unchanged: Captum's layer methods hook this module.

        ``[B, C, h, w]`` in and out."""
        return grid

    def extra_repr(self) -> str:
        """The rule that made the grid, in the module's printout."""
        return repr(self.rule)


def as_grid(
    output: torch.Tensor, rule: str, layer: str
) -> tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]:
    """A layer's output as a grid ``[B, C, h, w]``, and the function putting a grid back.

    ``"tokens:K"``: ``[B, N, C]`` -> drop the first K tokens (class and register tokens),
    the other ``N - K`` reshaped to the square patch grid (row-major, as a patch
    embedding flattens it); an output that is already ``[B, C, h, w]`` (a convolution
    named as the layer) stays as it is. ``"nhwc"``: ``[B, H, W, C]`` permuted.

    Raises :class:`PluginError` when the output does not fit the rule.
    """
    if rule == "nhwc":
        if output.ndim != 4:
            raise PluginError(f"layer {layer!r}: cam_reshape 'nhwc' needs [B, H, W, C] outputs")
        return output.permute(0, 3, 1, 2), lambda grid: grid.permute(0, 2, 3, 1)
    prefix = int(rule.split(":", 1)[1])
    if output.ndim == 4:
        return output, lambda grid: grid
    if output.ndim != 3:
        raise PluginError(
            f"layer {layer!r}: cam_reshape {rule!r} needs a token sequence [B, N, C], got "
            f"{tuple(output.shape)}"
        )
    batch, tokens, channels = output.shape
    patches = tokens - prefix
    side = math.isqrt(max(patches, 0))
    if patches <= 0 or side * side != patches:
        raise PluginError(
            f"layer {layer!r}: {tokens} tokens less {prefix} class/register tokens do not form "
            f"a square patch grid (cam_reshape {rule!r})"
        )
    grid = output[:, prefix:].transpose(1, 2).reshape(batch, channels, side, side)

    def back(new: torch.Tensor) -> torch.Tensor:
        return torch.cat([output[:, :prefix], new.flatten(2).transpose(1, 2)], dim=1)

    return grid, back


@contextmanager
def explained_layer(
    model: nn.Module, choice: str, default: str | None, reshape: str | None
) -> Iterator[tuple[str, nn.Module]]:
    """The layer an explainer looks at: ``(name, module)`` as :func:`resolve_layer` finds
    it, or, with a ``reshape`` rule (meta ``cam_reshape``), a :class:`CamGrid` through
    which the layer's output passes as a grid while the context lasts (a forward hook,
    removed on exit; the model's outputs are unchanged)."""
    name, layer = resolve_layer(model, choice, default)
    if reshape is None:
        yield name, layer
        return
    adapter = CamGrid(reshape)

    def hook(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
        grid, back = as_grid(output, reshape, name)
        return back(adapter(grid))

    handle = layer.register_forward_hook(hook)
    try:
        yield name, adapter
    finally:
        handle.remove()
