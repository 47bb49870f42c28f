"""Building an experiment's model: the plugin's network, with metadata fusion if asked,
and frozen where ``[model] finetune`` says."""

from __future__ import annotations

import math

import torch
from torch import nn

from odirkit.config import ResolvedVariant
from odirkit.engine.heads import MetadataFusion
from odirkit.engine.recipe import apply_finetune
from odirkit.errors import ConfigError, OdirkitError, PluginError
from odirkit.layers import BACKBONE

#: what a network raises on the meta device for an input it cannot take (timm's ViT asserts)
SIZE_ERRORS = (RuntimeError, ValueError, AssertionError, IndexError)


def build_model(exp: ResolvedVariant, num_classes: int) -> nn.Module:
    """The model plugin's network for ``num_classes`` classes, wrapped for metadata fusion
    when ``[model] metadata = true``, with the parameters ``[model] finetune`` leaves out
    frozen (linear probing, partial fine-tuning).

    Raises :class:`PluginError` when the plugin returns no ``torch.nn.Module`` (its own
    errors name the ``[model]`` table)."""
    model = exp.model.build(num_classes=num_classes)
    if not isinstance(model, nn.Module):
        raise PluginError(
            f"model {exp.model.name!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    if exp.config.model.metadata:
        model = MetadataFusion(model, num_classes, exp.config.model.metadata_hidden)
    config = exp.config.model
    try:
        apply_finetune(model, config.finetune, config.finetune_blocks, num_classes)
    except OdirkitError as exc:
        where = f"{exp.model.where or ''} model {exp.model.name!r}:".strip()
        raise exc.at(where) from None
    return model


def build_reinitialised(exp: ResolvedVariant, num_classes: int) -> nn.Module:
    """The experiment's architecture with freshly initialised weights: the model of the
    explanations' model-randomisation check (Adebayo et al. 2018).

    Not :func:`build_model`: that loads the pretrained weights the run started from (a
    RETFound checkpoint, timm's ImageNet weights), so the "randomised" model would be the
    pretrained one with a new head, and a map of the backbone alone (attention rollout)
    could never pass. Here the model is built on the meta device, where a plugin loads
    nothing, and each module is initialised as PyTorch and timm initialise it
    (``reset_parameters``, a timm model's ``init_weights``). A tensor left unset
    (a module with neither) falls back to :func:`build_model`.
    """
    with torch.device("meta"):
        model = build_model(exp, num_classes)
    model = model.to_empty(device="cpu")
    tensors = [
        t for t in (*model.parameters(), *model.buffers()) if t.is_floating_point() or _marks(t)
    ]
    with torch.no_grad():
        for tensor in tensors:  # marks: what no initialisation overwrites stays marked
            tensor.fill_(math.nan if tensor.is_floating_point() else _UNSET)
        for module in model.modules():
            if callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
        for module in (model, getattr(model, BACKBONE, None)):
            if callable(getattr(module, "init_weights", None)):
                module.init_weights()
    unset = any(
        torch.isnan(t).any() if t.is_floating_point() else (t == _UNSET).any() for t in tensors
    )
    return build_model(exp, num_classes) if unset else model


#: an integer buffer no initialisation set (see build_reinitialised)
_UNSET = -(2**31) + 7


def _marks(tensor: torch.Tensor) -> bool:
    return tensor.dtype in (torch.int32, torch.int64)


def _takes(exp: ResolvedVariant, model: torch.nn.Module, size: int) -> bool:
    """Whether ``model`` (on the meta device) runs on images of ``size`` pixels."""
    batch = 2 * exp.eyes  # two images (or two patients' two eyes): batch norm has a batch
    x = torch.empty(batch, 3, size, size, device="meta")
    extra = [torch.empty(batch, 2, device="meta")] if exp.config.model.metadata else []
    model.eval()
    try:
        with torch.no_grad():
            model(x, *extra)
    except SIZE_ERRORS:
        return False
    return True


def check_input_size(exp: ResolvedVariant, model: torch.nn.Module) -> None:
    """Refuse an image size the model cannot take, before any folder exists: a forward pass
    on PyTorch's meta device (shapes only, no memory) at ``[data] image_size``. The message
    gives the smallest size that works (found by bisection up to the model's own input
    size), or says the model takes one size only (a Vision Transformer without dynamic
    image size). Raises :class:`ConfigError`."""
    size = exp.image_size
    if _takes(exp, model, size):
        return
    own = int(exp.model.meta.get("input_size") or 0)
    arch = exp.model.params.get("arch")
    name = f"{exp.model.name} ({arch})" if arch else exp.model.name
    where = f"{exp.source}: [data] image_size = {size}"
    if own and own != size and _takes(exp, model, own):
        if own > size:
            low, high = size, own  # fails at low, works at high
            while high - low > 1:
                middle = (low + high) // 2
                low, high = (low, middle) if _takes(exp, model, middle) else (middle, high)
            if _takes(exp, model, 2 * own):  # larger ones work too: a smallest size
                raise ConfigError(f"{where} is too small for {name!r} (smallest: {high})")
        raise ConfigError(f"{where} does not fit {name!r}: it takes {own} px only")
    raise ConfigError(f"{where}: model {name!r} cannot run on images of this size")
