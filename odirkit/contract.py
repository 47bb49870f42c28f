"""What ``register(name, factory, *, summary="", **meta)`` accepts, per plugin kind.

The ``meta`` keywords of each kind are declared here as pydantic models, as
timm declares a pretrained configuration: a keyword a kind does not know
(``cam_layr=``) or a value of the wrong type makes the plugin *broken*, with a
message naming the keyword and the closest valid one, instead of being kept
and silently ignored. ``meta_for(params)`` results are held to the same
declaration. The hook documentation (``odirkit.hookspecs``) describes each key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import pydantic
from pydantic import Field

from odirkit.errors import PluginError, closest

Positive = Annotated[int, Field(gt=0)]
#: ``cam_reshape`` of a model: a token sequence with K leading non-patch tokens, or NHWC
CAM_RESHAPE = r"^(tokens:\d+|nhwc)$"
Triple = tuple[float, float, float]


class _Meta(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    test_params: dict[str, Any] = Field(
        default_factory=dict, description="parameters of a small, fast instance (conformance)"
    )
    prepare: Callable[[dict[str, Any]], Any] | None = Field(
        None, description="fetches what the plugin needs (weights) before a run writes anything"
    )


class ModelMeta(_Meta):
    """``register`` keywords of a model plugin."""

    input_size: Positive | None = Field(None, description="image size the model expects")
    mean: Triple | None = Field(None, description="input normalisation: mean per channel")
    std: Triple | None = Field(None, description="input normalisation: deviation per channel")
    cam_layer: str | None = Field(None, description="dotted name of the default Grad-CAM layer")
    cam_reshape: Annotated[str, Field(pattern=CAM_RESHAPE)] | None = Field(
        None,
        description='how the CAM layer\'s output becomes a grid [B, C, h, w]: "tokens:K" (a '
        "token sequence [B, N, C]: the first K tokens, class and register tokens, dropped, "
        'the rest reshaped to the square patch grid) or "nhwc" ([B, H, W, C] permuted)',
    )
    meta_for: Callable[[dict[str, Any]], Mapping[str, Any]] | None = Field(
        None, description="meta that depends on the parameters: meta_for(params) -> dict"
    )
    test_input_size: Positive | None = Field(
        None, description="image size of the conformance checks"
    )
    eyes: Literal[1, 2] = Field(
        1,
        description="2: a patient model taking both eyes interleaved, [2B, 3, H, W] -> "
        "[B, num_classes] (odirkit.eyes)",
    )


class AugmenterMeta(_Meta):
    """``register`` keywords of an augmenter plugin."""

    deterministic: bool = Field(
        False, description="the same input gives the same output: usable as a test-time view"
    )


class ExplainerMeta(_Meta):
    """``register`` keywords of an explainer plugin."""

    needs_layer: bool = Field(True, description="the explainer looks at a layer (Grad-CAM)")
    applies_to: Callable[[Any], str | None] | None = Field(
        None,
        description="applies_to(model) -> None when the explainer can explain this model, "
        "else the reason it cannot (Guided Grad-CAM on a network without ReLUs)",
    )


class DatasetMeta(_Meta):
    """``register`` keywords of a dataset plugin."""

    test_setup: Callable[[Any], Any] | None = Field(
        None, description="writes a small sample of the data into a folder (conformance)"
    )
    creates_root: bool = Field(
        False,
        description="the plugin writes its data into root when root is missing or empty (a "
        "generator): odirkit validate then does not require root to exist",
    )


class LoggerMeta(_Meta):
    """``register`` keywords of a logger plugin."""


META: dict[str, type[_Meta]] = {
    "model": ModelMeta,
    "augmenter": AugmenterMeta,
    "explainer": ExplainerMeta,
    "dataset": DatasetMeta,
    "logger": LoggerMeta,
}


def check_meta(kind: str, name: str, meta: Mapping[str, Any], *, origin: str = "") -> dict:
    """The ``meta`` a plugin of ``kind`` registered, checked; the keys it gave, typed.

    Raises :class:`PluginError` naming the offending keyword (and the closest valid one).
    """
    model = META[kind]
    try:
        checked = model(**dict(meta))
    except pydantic.ValidationError as exc:
        valid = sorted(model.model_fields)
        problems = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden":
                problems.append(
                    f"unknown keyword {key!r}{closest(key, valid)}; a {kind} accepts "
                    f"{', '.join(valid)}"
                )
            else:
                problems.append(f"{key}: {error['msg'][:1].lower()}{error['msg'][1:]}")
        where = f" {origin}" if origin else ""
        raise PluginError(f"{kind} {name!r}{where}: " + "; ".join(problems)) from None
    return {key: getattr(checked, key) for key in meta}
