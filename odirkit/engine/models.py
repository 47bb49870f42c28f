"""Building an experiment's model: the plugin's network, with metadata fusion if asked,
and frozen where ``[model] finetune`` says."""

from __future__ import annotations

from torch import nn

from odirkit.config import Experiment
from odirkit.engine.heads import MetadataFusion
from odirkit.engine.recipe import apply_finetune
from odirkit.errors import OdirkitError, PluginError


def build_model(exp: Experiment, num_classes: int) -> nn.Module:
    """The model plugin's network for ``num_classes`` classes, wrapped for metadata fusion
    when ``[model] metadata = true``, with the parameters ``[model] finetune`` leaves out
    frozen (linear probing, partial fine-tuning)."""
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
