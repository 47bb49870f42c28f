"""A patient model that sees both eyes at once, on any registered image model.

The left and right photographs go through the same backbone (``backbone``,
built with ``backbone_params`` and ``features`` outputs), their features are
joined and a linear head predicts the patient's labels. It needs
``data.level = "patient"``: odirkit then trains and scores patients, not
eyes (``odirkit.data.pairs``). ``[model] metadata = true`` adds age and sex
to the joined features, as for any model.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

import odirkit
from odirkit.api import (
    BothEyes,
    backbone_meta,
    backbone_params,
    build_backbone,
    prepare_backbone,
)


def build_both_eyes(
    *,
    num_classes: int,
    backbone: str = "cnn",
    backbone_params: dict[str, Any] = {},  # noqa: B006 - never mutated; shown as the TOML default
    features: Annotated[int, Field(ge=1)] = 64,
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)] = 0.0,
    input_size: Annotated[int, Field(ge=8)] | None = None,
) -> BothEyes:
    """Both eyes through one shared backbone, joined, then a linear head.

    backbone: the image model plugin both photographs go through.
    backbone_params: its parameters (a TOML table).
    features: how many features the backbone gives each photograph.
    dropout: dropout on the joined features.
    input_size: the image size, passed to a backbone that takes one (set by odirkit).
    """
    params = _params(backbone, backbone_params, input_size)
    return BothEyes(build_backbone(backbone, features, params), features, num_classes, dropout)


def _params(backbone: str, params: dict[str, Any], input_size: int | None) -> dict[str, Any]:
    return backbone_params(backbone, params, input_size)


def _meta(params: dict[str, Any]) -> dict[str, Any]:
    name = params.get("backbone", "cnn")
    found = _params(name, params.get("backbone_params") or {}, params.get("input_size"))
    return backbone_meta(name, found)


def _prepare(params: dict[str, Any]) -> None:
    name = params.get("backbone", "cnn")
    found = _params(name, params.get("backbone_params") or {}, params.get("input_size"))
    try:
        prepare_backbone(name, found)  # its messages name [model] backbone_params.<key>
    except odirkit.OdirkitError as exc:
        raise exc.at(f"both_eyes backbone {name!r}:") from None  # the same text, data kept


@odirkit.hookimpl
def odirkit_register_models(register):
    register(
        "both_eyes",
        build_both_eyes,
        summary="Both eyes of a patient through one shared backbone, joined (any image model)",
        eyes=2,
        meta_for=_meta,
        prepare=_prepare,
        test_params={
            "backbone": "cnn",
            "backbone_params": {
                "widths": [4, 8, 8, 8],
                "kernels": [5, 3, 3, 3],
                "pool": 2,
                "dense": [16],
                "dropout": 0.0,
            },
            "features": 8,
            "input_size": 48,
        },
    )
