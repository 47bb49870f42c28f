"""Building an experiment's model: the plugin's network, with metadata fusion if asked."""

from __future__ import annotations

from torch import nn

from odirkit.config import Experiment
from odirkit.engine.heads import MetadataFusion
from odirkit.errors import PluginError


def build_model(exp: Experiment, num_classes: int) -> nn.Module:
    """The model plugin's network for ``num_classes`` classes, wrapped for metadata fusion
    when ``[model] metadata = true``."""
    model = exp.model.build(num_classes=num_classes)
    if not isinstance(model, nn.Module):
        raise PluginError(
            f"model {exp.model.name!r} returned {type(model).__name__}, not a torch.nn.Module"
        )
    if exp.config.model.metadata:
        model = MetadataFusion(model, num_classes, exp.config.model.metadata_hidden)
    return model
