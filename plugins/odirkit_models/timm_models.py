"""ImageNet models from timm: any architecture, and the paper's VGG13-BN and Inception v3.

``name = "timm"`` with ``arch = "<any timm model>"`` builds that model;
``vgg13_bn`` and ``inception_v3`` are the two the paper fine-tunes, registered
under their own names. Each declares its input size and normalisation from
timm's pretrained configuration, and its default Grad-CAM layer (the last
feature stage timm reports; for VGG the last ReLU before the final pooling).

Weights:

- ``pretrained = true`` uses timm's own download from the Hugging Face hub
  and its cache. ``odirkit run`` fetches them before anything else (the
  plugin's ``prepare``); without network and without a cached copy the run
  stops there, saying which weights were wanted and how to supply them.
- ``weights = "path/to/file"`` loads a local state dict (``.pth``, ``.bin``)
  or ``.safetensors`` file through timm (``pretrained_cfg_overlay``), which
  drops the classifier when the number of classes differs, so the head is
  new and the rest is fine-tuned.
- ``freeze_backbone = true`` trains only the classifier; by default everything
  is fine-tuned, as in the paper.

In-place ReLUs are switched off, so that Grad-CAM and guided backpropagation
can hook every activation.
"""

from __future__ import annotations

import contextlib
import difflib
from functools import cache
from pathlib import Path
from typing import Annotated, Any

import torch
from pydantic import Field
from torch import nn

import odirkit
from odirkit.api import model_key

#: the Grad-CAM layer of architectures whose last reported stage is a pooling
CAM_LAYERS = {
    "vgg11": "features.19",
    "vgg11_bn": "features.27",
    "vgg13": "features.23",
    "vgg13_bn": "features.33",
    "vgg16": "features.29",
    "vgg16_bn": "features.42",
    "vgg19": "features.35",
    "vgg19_bn": "features.51",
}


#: what timm's pretrained configurations say of the paper's two models (a test keeps them true)
VGG13_BN_META = {
    "input_size": 224,
    "mean": (0.485, 0.456, 0.406),
    "std": (0.229, 0.224, 0.225),
    "cam_layer": "features.33",
}
INCEPTION_V3_META = {
    "input_size": 299,
    "mean": (0.5, 0.5, 0.5),
    "std": (0.5, 0.5, 0.5),
    "cam_layer": "Mixed_7c",
}


@cache
def _all_models() -> tuple[str, ...]:
    import timm

    return tuple(timm.list_models())


def check_arch(arch: str) -> None:
    import timm

    if arch not in _all_models() and not timm.is_model(arch):
        close = difflib.get_close_matches(arch, _all_models(), n=3, cutoff=0.6)
        hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
        raise odirkit.ConfigError(f"timm has no model {arch!r}{hint}; see timm.list_models()")


def pretrained_cfg(arch: str) -> dict[str, Any]:
    import timm

    cfg = timm.get_pretrained_cfg(arch.split(".")[0] if "." in arch else arch)
    if cfg is None:
        return {}
    return cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg)


def cam_layer_of(arch: str, model: nn.Module) -> str:
    base = arch.split(".")[0]
    if base in CAM_LAYERS:
        return CAM_LAYERS[base]
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1] if isinstance(info, list) else info.get_dicts()[-1]
        return str(last["module"])
    convs = [name for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return convs[-1] if convs else ""


def cam_reshape_of(model: nn.Module) -> str | None:
    """How the CAM layer's output becomes a grid: a Vision Transformer's tokens
    (``"tokens:K"``, K class and register tokens), timm's NHWC stages (Swin), or None."""
    if hasattr(model, "num_prefix_tokens") and hasattr(model, "blocks"):
        return f"tokens:{int(model.num_prefix_tokens)}"
    if getattr(model, "output_fmt", None) == "NHWC":
        return "nhwc"
    return None


def meta_for(arch: str) -> dict[str, Any]:
    """Input size, normalisation and Grad-CAM layer of an architecture (for a Vision
    Transformer: its last block's first norm, and the rule reshaping its tokens)."""
    import timm

    check_arch(arch)
    cfg = pretrained_cfg(arch)
    with torch.device("meta"):
        model = timm.create_model(arch, pretrained=False, num_classes=2)
    meta: dict[str, Any] = {"cam_layer": cam_layer_of(arch, model)}
    reshape = cam_reshape_of(model)
    if reshape is not None:
        meta["cam_reshape"] = reshape
    if reshape and reshape.startswith("tokens"):
        last = f"blocks.{len(model.blocks) - 1}.norm1"  # the class token still sees patches
        with contextlib.suppress(AttributeError):
            model.get_submodule(last)
            meta["cam_layer"] = last
    if cfg.get("input_size"):
        meta["input_size"] = int(cfg["input_size"][-1])
    if cfg.get("mean") and cfg.get("std"):
        meta["mean"] = tuple(float(v) for v in cfg["mean"])
        meta["std"] = tuple(float(v) for v in cfg["std"])
    return meta


def _on_meta_device() -> bool:
    return torch.empty(0).device.type == "meta"


def _download_error(arch: str, exc: Exception) -> odirkit.PluginError:
    cfg = pretrained_cfg(arch)
    source = cfg.get("hf_hub_id") or cfg.get("url") or arch
    reason = " ".join(str(exc).split())[:300]
    return odirkit.PluginError(
        f"model {arch!r}: the pretrained weights {source!r} could not be downloaded and are not "
        f"in timm's cache (the Hugging Face cache: $HF_HOME, by default ~/.cache/huggingface) "
        f"({type(exc).__name__}: {reason}). Run once on a machine with network to fill the "
        f"cache, or download the weights file and give it as {model_key('weights')} = "
        f'"path/to/model.safetensors", or set {model_key("pretrained")} = false to train '
        "from scratch."
    )


DropRate = Annotated[float, Field(ge=0.0, lt=1.0)]


def build_timm(
    *,
    num_classes: int,
    arch: str,
    pretrained: bool = False,
    weights: str | None = None,
    freeze_backbone: bool = False,
    drop_rate: DropRate = 0.0,
    drop_path: DropRate = 0.0,
) -> nn.Module:
    """Any timm model, fine-tuned.

    arch: the timm model name (timm.list_models() lists them).
    pretrained: start from timm's ImageNet weights (downloaded once, then cached).
    weights: a local state dict or .safetensors file to start from instead.
    freeze_backbone: train only the classifier.
    drop_rate: dropout before the classifier.
    drop_path: stochastic depth (timm's drop_path_rate), for architectures that have it.
    """
    import timm

    check_arch(arch)
    if pretrained and weights:
        raise odirkit.ConfigError('give pretrained = true or weights = "...", not both')
    kwargs: dict[str, Any] = {"num_classes": num_classes, "drop_rate": drop_rate}
    if drop_path:
        kwargs["drop_path_rate"] = drop_path
    if weights is not None:
        path = Path(weights)
        if not path.is_file():
            raise odirkit.DataError(f"weights file {path} not found")
        if path.suffix != ".safetensors" and not _on_meta_device():
            _check_loadable_safely(path)
        kwargs.update(pretrained=True, pretrained_cfg_overlay={"file": str(path.resolve())})
    elif pretrained:
        kwargs["pretrained"] = True
    if _on_meta_device():  # odirkit checking the parameters: build the structure only
        kwargs = {
            k: kwargs[k] for k in ("num_classes", "drop_rate", "drop_path_rate") if k in kwargs
        }
    try:
        model = timm.create_model(arch, **kwargs)
    except odirkit.OdirkitError:
        raise
    except TypeError as exc:
        if drop_path and "drop_path_rate" in str(exc):
            raise odirkit.ConfigError(
                f"timm's {arch!r} has no stochastic depth (drop_path_rate); leave drop_path at 0"
            ) from None
        raise
    except Exception as exc:
        if weights is not None:
            raise odirkit.PluginError(
                f"weights file {weights} does not fit {arch!r}: {' '.join(str(exc).split())[:300]}"
            ) from None
        if kwargs.get("pretrained"):
            raise _download_error(arch, exc) from None
        raise
    for module in model.modules():
        if hasattr(module, "inplace"):
            module.inplace = False  # hooks (Grad-CAM, guided backprop) need the activations
    if freeze_backbone:
        classifier = model.get_classifier()
        head = {id(p) for p in classifier.parameters()}
        for parameter in model.parameters():
            parameter.requires_grad = id(parameter) in head
    return model


def fetch_weights(params: dict[str, Any]) -> None:
    """Before any training: download (or find in the cache) the pretrained weights."""
    import timm

    arch = params.get("arch", "")
    if not params.get("pretrained") or params.get("weights"):
        return
    check_arch(arch)
    try:
        with torch.device("cpu"):
            timm.create_model(arch, pretrained=True, num_classes=2)
    except Exception as exc:
        raise _download_error(arch, exc) from None


def _check_loadable_safely(path: Path) -> None:
    """A pickled weights file must hold tensors and plain values only (never run code)."""
    import pickle

    from odirkit_models.vit_weights import not_a_checkpoint

    wrong = not_a_checkpoint(path)
    if wrong:
        raise odirkit.PluginError(f"weights file {path}: not a PyTorch checkpoint: {wrong}")
    try:
        torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise odirkit.PluginError(
            f"weights file {path}: refused to load: it holds objects other than tensors and "
            "plain values, and unpickling them could run code; save a state dict or a "
            ".safetensors file"
        ) from None
    except Exception as exc:  # a damaged file: the unpickler's KeyError, EOFError, ...
        raise odirkit.PluginError(
            f"weights file {path}: not a readable state dict ({exc!r})"
        ) from None


def fixed_architecture(arch: str, title: str) -> Any:
    """A factory for one timm architecture: ``build_timm`` without the ``arch`` key."""

    def factory(
        *,
        num_classes: int,
        pretrained: bool = False,
        weights: str | None = None,
        freeze_backbone: bool = False,
        drop_rate: DropRate = 0.0,
    ) -> nn.Module:
        return build_timm(
            num_classes=num_classes,
            arch=arch,
            pretrained=pretrained,
            weights=weights,
            freeze_backbone=freeze_backbone,
            drop_rate=drop_rate,
        )

    factory.__name__ = factory.__qualname__ = f"build_{arch}"
    factory.__doc__ = f"""{title}, fine-tuned as in the paper.

    pretrained: start from timm's ImageNet weights (downloaded once, then cached).
    weights: a local state dict or .safetensors file to start from instead.
    freeze_backbone: train only the classifier.
    drop_rate: dropout before the classifier.
    """
    return factory


build_vgg13_bn = fixed_architecture("vgg13_bn", "VGG13 with batch norm (timm's vgg13_bn)")
build_inception_v3 = fixed_architecture(
    "inception_v3", "Inception v3 (timm's inception_v3), 299 px"
)


@odirkit.hookimpl
def odirkit_register_models(register):
    register(
        "timm",
        build_timm,
        summary='Any timm model (arch = "..."), ImageNet weights or a local file',
        meta_for=lambda params: meta_for(params["arch"]),
        prepare=fetch_weights,
        test_params={"arch": "test_efficientnet"},
        test_input_size=32,
    )
    register(
        "vgg13_bn",
        build_vgg13_bn,
        summary="VGG13 with batch norm from timm (Thiry et al. 2021), 224 px",
        **VGG13_BN_META,
        prepare=lambda params: fetch_weights({**params, "arch": "vgg13_bn"}),
        test_input_size=32,
    )
    register(
        "inception_v3",
        build_inception_v3,
        summary="Inception v3 from timm (Thiry et al. 2021), 299 px",
        **INCEPTION_V3_META,
        prepare=lambda params: fetch_weights({**params, "arch": "inception_v3"}),
        test_input_size=75,
    )
