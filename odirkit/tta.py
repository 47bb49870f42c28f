"""Test-time augmentation: the model sees each image in several test-time views; the logits are
averaged.

``[eval] tta`` lists the test-time views besides the image itself (always called so, or
``tta``, in the code: a bare "view" is a :class:`odirkit.view.ModelView`):

- ``"rotate:DEG"``: the image turned by ``DEG`` degrees about its centre (the
  corners filled with black, like the field of view's surround);
- ``"identity"``: the image unchanged (one identity view gives exactly the
  scores without TTA);
- ``{ name = "<augmenter>", ... }``: an augmenter plugin that declares itself
  deterministic per call (``register(..., deterministic=True)``), called with a
  fixed generator.

No flips: a mirrored left eye is a right eye. The logits of the image and its
views are averaged before the softmax or sigmoid, so temperature scaling and
thresholds apply to the averaged model as to any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a test-time view is built, not by the configuration
    import torch

TestTimeView = Callable[["torch.Tensor"], "torch.Tensor"]  # floats in [0, 1], [B, 3, H, W] -> same

#: a built-in test-time view, ``identity`` or ``rotate:DEG``: the grammar ``[eval] tta`` is
#: checked by
_BUILTIN = re.compile(r"^(?:(?P<identity>identity)|rotate:(?P<deg>[+-]?\d+(?:\.\d+)?))$")

#: ``[eval] tta = true``: small turns either way, as the eye sits in the camera (no flips)
DEFAULT_TTA = ("rotate:-10", "rotate:10")


def is_builtin_test_time_view(spec: str) -> bool:
    """Whether ``spec`` names a built-in test-time view (``"identity"``, ``"rotate:-10"``, ...)."""
    return _BUILTIN.match(spec) is not None


def rotation(degrees: float) -> TestTimeView:
    """A test-time view turning the image by ``degrees`` (counter-clockwise), corners black."""
    from torchvision.transforms.v2 import functional as F

    def view(images: torch.Tensor) -> torch.Tensor:
        return F.rotate(images, degrees, interpolation=F.InterpolationMode.BILINEAR, fill=0.0)

    return view


def identity(images: torch.Tensor) -> torch.Tensor:
    """The images as they are: the test-time view every average includes.

    ``[B, 3, H, W]`` in and out."""
    return images


def build_test_time_views(
    specs: Sequence[str], augmenters: Sequence[object] = ()
) -> list[TestTimeView]:
    """The test-time views of ``[eval] tta``: built-in ones by name, then plugin augmenters."""
    views: list[TestTimeView] = []
    for spec in specs:
        match = _BUILTIN.match(spec)
        if match is None:
            raise ValueError(f"unknown test-time view {spec!r}")
        views.append(identity if match["identity"] else rotation(float(match["deg"])))
    for augmenter in augmenters:
        views.append(_fixed(augmenter))
    return views


def _fixed(augmenter: object) -> TestTimeView:
    import torch

    def view(images: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator(device=images.device).manual_seed(0)
        return augmenter(images, generator)  # type: ignore[operator]

    return view
