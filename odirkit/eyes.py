"""Models that see both eyes of a patient at once.

A *both-eyes model* (model meta ``eyes = 2``) takes a patient's two photographs
interleaved in one batch — rows ``2i`` and ``2i + 1`` are patient ``i``'s left
and right eye, ``[2B, 3, H, W]`` — and returns the patient's logits
``[B, num_classes]``. :class:`BothEyes` builds one from any image model: the
same backbone embeds both photographs, the two embeddings are joined (left
first) and a linear head predicts the patient's labels. A patient with one
photograph gets that photograph in both places (``odirkit.data.pairs``).

To explain one eye, :class:`OneEye` holds the other eye's embedding fixed, so
that gradients and Grad-CAM activations belong to the explained photograph
alone.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from odirkit.errors import ConfigError
from odirkit.params import Where, model_keys_under
from odirkit.plugins import get_registry

LEFT, RIGHT = 0, 1


class BothEyes(nn.Module):
    """A shared ``backbone`` (images -> ``features`` numbers each), both eyes' features
    joined, and a head to ``num_classes`` logits."""

    eyes = 2

    def __init__(
        self, backbone: nn.Module, features: int, num_classes: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(
            nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * features, num_classes)
        )
        self._held: tuple[torch.Tensor, torch.Tensor] | None = None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Each photograph's features ``[N, features]``."""
        return self.backbone(images).flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Logits ``[N, C]`` from photographs ``[2N, 3, S, S]`` interleaved left, right."""
        features = self.embed(images)
        if self._held is not None:  # one eye explained, the other held fixed
            other, side = self._held
            own_left = (side.to(features.device) == LEFT).unsqueeze(1)
            other = other.to(features.dtype)
            left = torch.where(own_left, features, other)
            right = torch.where(own_left, other, features)
        else:
            if features.shape[0] % 2:
                raise ValueError(
                    f"a both-eyes model takes pairs of photographs (left, right); got "
                    f"{features.shape[0]} images"
                )
            left, right = features[0::2], features[1::2]
        return self.head(torch.cat([left, right], dim=1))

    @contextmanager
    def holding(self, other: torch.Tensor, side: torch.Tensor) -> Iterator[None]:
        """While inside, ``forward`` takes one photograph per patient: the ``side`` (0 left,
        1 right) of each, the other eye's features being ``other``.

        ``other`` ``[N, F]`` (:meth:`OneEye.features`), ``side`` ``[N]``; ``forward`` then
        takes ``[N, 3, H, W]``."""
        self._held = (other, side)
        try:
            yield
        finally:
            self._held = None


def both_eyes_module(model: nn.Module) -> BothEyes | None:
    """The :class:`BothEyes` inside ``model`` (wrapped for metadata or not), if any."""
    for module in model.modules():
        if isinstance(module, BothEyes):
            return module
    return None


def interleave(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """``[B, ...]`` and ``[B, ...]`` -> ``[2B, ...]`` with rows left, right, left, ..."""
    return torch.stack([left, right], dim=1).flatten(0, 1)


class OneEye(nn.Module):
    """A both-eyes model seen one photograph at a time: ``forward(images, other, side, *extra)``
    with ``other`` the other eye's features (:meth:`features`) and ``side`` 0 or 1."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        both = both_eyes_module(model)
        if both is None:
            raise TypeError("OneEye needs a model built on odirkit.api.BothEyes")
        self.model = model
        self._both = (both,)  # not a submodule: the layers keep their names under `model`

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The features of the other eyes, computed once, before any explainer hooks in.

        ``[N, 3, S, S]`` (normalised) in, the backbone's embeddings ``[N, F]`` out."""
        return self._both[0].embed(images)

    def forward(self, images: torch.Tensor, other: torch.Tensor, side: torch.Tensor, *extra):
        """Logits ``[N, C]`` of photographs ``[N, 3, S, S]``, each beside its patient's
        other eye (features ``other``, on ``side``), held fixed."""
        with self._both[0].holding(other, side):
            return self.model(images, *extra)


# -- building one on any registered image model ------------------------------------------------


def _backbone_spec(name: str) -> Any:

    spec = get_registry().get("model", name)
    if spec.meta.get("eyes", 1) != 1:
        raise ConfigError(f"backbone {name!r} is itself a both-eyes model; name an image model")
    return spec


def backbone_params(name: str, params: Mapping[str, Any], input_size: int | None) -> dict:
    """The backbone's parameters, validated, with the run's image size where it takes one."""

    spec = _backbone_spec(name)
    values = dict(params)
    takes_size = any(p.name == "input_size" for p in spec.params)
    if input_size is not None and takes_size and "input_size" not in values:
        values["input_size"] = input_size
    return spec.validate(values, where=Where(None, "model", f"backbone_params of {name!r}"))


def build_backbone(name: str, features: int, params: Mapping[str, Any]) -> nn.Module:
    """The registered image model ``name`` with ``features`` outputs (an embedding).

    Raises :class:`ConfigError` when the model plugin returns no ``nn.Module``."""
    model = _backbone_spec(name).build(num_classes=features, **params)
    if not isinstance(model, nn.Module):
        raise ConfigError(f"backbone {name!r} returned {type(model).__name__}, not a nn.Module")
    return model


def backbone_meta(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A both-eyes model's meta from its backbone's: input size, mean, std, the CAM layer under
    ``backbone.`` (and its reshape rule); and ``eyes = 2``."""
    meta = _backbone_spec(name).meta_for(params)
    out: dict[str, Any] = {k: meta[k] for k in ("input_size", "mean", "std") if k in meta}
    if meta.get("cam_layer"):
        out["cam_layer"] = f"backbone.{meta['cam_layer']}"
    if meta.get("cam_reshape"):
        out["cam_reshape"] = meta["cam_reshape"]
    out["eyes"] = 2
    return out


def prepare_backbone(name: str, params: Mapping[str, Any]) -> None:
    """The backbone plugin's ``prepare(params)`` (fetching pretrained weights), if it has one."""
    prepare = _backbone_spec(name).meta.get("prepare")
    if prepare is not None:
        with model_keys_under("backbone_params"):  # its messages name its keys there
            prepare(dict(params))
