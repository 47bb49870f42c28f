"""Vision Transformers with retinal foundation-model weights: RETFound, DINOv2, any timm ViT.

``name = "vit"`` builds a timm ``VisionTransformer`` (``arch``, any of timm's ViTs;
default RETFound's ViT-Large/16) at the run's image size, pooled as RETFound
pools it (``global_pool = "avg"``: the patch tokens averaged, then ``fc_norm``) or
by its class token (``"token"``), and starts it from one of:

- ``weights = "path"``: a local checkpoint in any layout the weights are published
  in (RETFound's MAE checkpoints, DINOv2 training checkpoints, fine-tuned
  checkpoints, timm state dicts, ``.safetensors``), fitted and checked key by key
  (:mod:`odirkit_models.vit_weights`): a checkpoint that does not fit is refused
  with the keys named;
- ``hub = "YukunZhou/RETFound_mae_natureCFP"``: the same from the Hugging Face hub
  through ``huggingface_hub`` (its cache, then the network; gated repositories need
  their terms accepted and a token), fetched by ``odirkit run`` before anything is
  written, with a clear message when it cannot be;
- ``pretrained = true``: timm's own weights for ``arch`` (DINOv2:
  ``arch = "vit_large_patch14_dinov2.lvd142m"``), through the same checks.

``drop_path`` is stochastic depth (Huang et al. 2016; RETFound: 0.2). The model
declares its Grad-CAM layer, the first norm of its last block (the class token's
attention there still depends on every patch), and the rule that turns that
layer's token sequence back into the patch grid (``cam_reshape = "tokens:K"``,
K its class and register tokens), so Captum's layer methods see a feature map.
docs/weights.md lists the published weights, where to get them and their licences.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
from pydantic import BeforeValidator, Field
from torch import nn

import odirkit
from odirkit.api import info, model_key
from odirkit_models.timm_models import check_arch, pretrained_cfg
from odirkit_models.vit_weights import check_fits, load_into, read_checkpoint

#: RETFound's normalisation (its --norm IMAGENET) and DINOv2's: ImageNet's mean and std
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
HUB_REPO = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$"


@dataclass(frozen=True)
class Published:
    """Weights published for retinal images, and the model they fit."""

    arch: str
    global_pool: str
    images: str
    licence: str


#: the RETFound weights on the Hugging Face hub (README of github.com/rmaphoh/RETFound_MAE,
#: 2025): each repository holds <name>.pth; all are gated (terms accepted on the page)
PUBLISHED: dict[str, Published] = {
    "YukunZhou/RETFound_mae_natureCFP": Published(
        "vit_large_patch16_224",
        "avg",
        "colour fundus photographs (the Nature paper's)",
        "CC BY-NC 4.0",
    ),
    "YukunZhou/RETFound_mae_natureOCT": Published(
        "vit_large_patch16_224", "avg", "OCT B-scans (not fundus photographs)", "CC BY-NC 4.0"
    ),
    "YukunZhou/RETFound_mae_meh": Published(
        "vit_large_patch16_224", "avg", "colour fundus photographs (Moorfields)", "CC BY-NC 4.0"
    ),
    "YukunZhou/RETFound_mae_shanghai": Published(
        "vit_large_patch16_224", "avg", "colour fundus photographs (Shanghai)", "CC BY-NC 4.0"
    ),
    "YukunZhou/RETFound_dinov2_meh": Published(
        "vit_large_patch14_dinov2",
        "token",
        "colour fundus photographs (Moorfields)",
        "CC BY-NC 4.0",
    ),
    "YukunZhou/RETFound_dinov2_shanghai": Published(
        "vit_large_patch14_dinov2",
        "token",
        "colour fundus photographs (Shanghai)",
        "CC BY-NC 4.0",
    ),
}


def _empty_is_none(value: Any) -> Any:
    """``""`` as no value, so ``--set variants.x.model.hub=`` clears a source."""
    return None if value == "" else value


DropRate = Annotated[float, Field(ge=0.0, lt=1.0, allow_inf_nan=False)]
HubRepo = Annotated[Annotated[str, Field(pattern=HUB_REPO)] | None, BeforeValidator(_empty_is_none)]
LocalFile = Annotated[str | None, BeforeValidator(_empty_is_none)]


@cache
def _vit_class() -> type:
    from timm.models.vision_transformer import VisionTransformer

    return VisionTransformer


def _structure(
    arch: str, num_classes: int, input_size: int, global_pool: str, patch_size: int | None
) -> nn.Module:
    """The architecture on PyTorch's meta device (no memory, no weights)."""
    import timm

    check_arch(arch)
    try:
        with torch.device("meta"):
            model = timm.create_model(
                arch, **_shape(num_classes, input_size, global_pool, patch_size)
            )
    except TypeError as exc:
        raise odirkit.ConfigError(
            f"vit: timm's {arch!r} is not a Vision Transformer taking img_size and "
            f"global_pool ({exc}); use the timm model plugin for it"
        ) from None
    if not isinstance(model, _vit_class()):
        raise odirkit.ConfigError(
            f"vit: timm's {arch!r} is a {type(model).__name__}, not a VisionTransformer; use "
            'name = "timm" for it'
        )
    return model


def _shape(
    num_classes: int, input_size: int, global_pool: str, patch_size: int | None
) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "num_classes": num_classes,
        "img_size": input_size,
        "global_pool": global_pool,
    }
    if patch_size is not None:
        kwargs["patch_size"] = patch_size
    return kwargs


def _check_source(weights: str | None, hub: str | None, hub_file: str | None, pretrained: bool):
    given = [k for k, v in (("weights", weights), ("hub", hub), ("pretrained", pretrained)) if v]
    if len(given) > 1:
        raise odirkit.ConfigError(f"vit: give one of weights, hub, pretrained; got {given}")
    if hub_file and not hub:
        raise odirkit.ConfigError('vit: hub_file names a file of hub = "owner/name"; give hub')


def build_vit(
    *,
    num_classes: int,
    arch: str = "vit_large_patch16_224",
    input_size: Annotated[int, Field(ge=16, le=4096)] = 224,
    global_pool: Literal["avg", "token"] = "avg",
    patch_size: Annotated[int, Field(ge=2, le=64)] | None = None,
    weights: LocalFile = None,
    hub: HubRepo = None,
    hub_file: str | None = None,
    pretrained: bool = False,
    drop_path: DropRate = 0.0,
    drop_rate: DropRate = 0.0,
) -> nn.Module:
    """A timm Vision Transformer, from retinal foundation-model weights or timm's.

    arch: a timm VisionTransformer (default RETFound's ViT-L/16; DINOv2's:
        vit_large_patch14_dinov2.lvd142m).
    input_size: the image side in pixels (the run's image size); the position embedding
        of pretrained weights is resampled to it.
    global_pool: avg (the patch tokens averaged, then fc_norm: RETFound) or token (the
        class token after the final norm: DINOv2, RETFound's DINOv2 weights).
    patch_size: the patch side in pixels; default the architecture's (16 for RETFound);
        pretrained patch embeddings are resampled to it (timm's resample_patch_embed).
    weights: a local checkpoint in a published layout (.pth, .bin, .safetensors);
        "" for none.
    hub: a Hugging Face repository holding RETFound-style weights (owner/name); "" for
        none.
    hub_file: the file in it; default <name>.pth, as RETFound publishes them.
    pretrained: timm's own weights for arch (downloaded once, then cached).
    drop_path: stochastic depth, the rate of the last block (RETFound: 0.2).
    drop_rate: dropout before the head.
    """
    import timm

    _check_source(weights, hub, hub_file, pretrained)
    structure = _structure(arch, num_classes, input_size, global_pool, patch_size)
    if _on_meta_device():  # odirkit checking parameters: the structure only, nothing loaded
        return structure
    model = timm.create_model(
        arch,
        **_shape(num_classes, input_size, global_pool, patch_size),
        drop_path_rate=drop_path,
        drop_rate=drop_rate,
    )
    if weights is not None:
        path = Path(weights)
        report = load_into(model, read_checkpoint(path), str(path))
        info(f"vit: weights {path}: {report.summary()}")
    elif hub is not None:
        path = Path(fetch_hub(hub, hub_file))
        with _published_hint(hub):
            report = load_into(model, read_checkpoint(path), f"{hub} ({path.name})")
        info(f"vit: weights {hub}: {report.summary()}")
    elif pretrained:
        report = load_into(model, _timm_weights(arch), f"timm's {arch}")
        info(f"vit: timm's weights for {arch}: {report.summary()}")
    return model


@contextmanager
def _published_hint(hub: str) -> Iterator[None]:
    """A misfit of published weights says which model they fit."""
    try:
        yield
    except odirkit.PluginError as exc:
        known = PUBLISHED.get(hub)
        if known is None:
            raise
        raise odirkit.PluginError(
            f"{exc} ({hub} fits arch = {known.arch!r}, global_pool = {known.global_pool!r})"
        ) from None


def _on_meta_device() -> bool:
    return torch.empty(0).device.type == "meta"


def _timm_weights(arch: str) -> dict[str, torch.Tensor]:
    """timm's pretrained weights of ``arch`` as timm publishes them (its cache, else the
    hub), as a state dict of the architecture at its own size and pooling."""
    import timm

    try:
        with torch.device("cpu"):
            return timm.create_model(arch, pretrained=True, num_classes=0).state_dict()
    except Exception as exc:
        raise _timm_download_error(arch, exc) from None


def _timm_download_error(arch: str, exc: Exception) -> odirkit.PluginError:
    cfg = pretrained_cfg(arch)
    source = cfg.get("hf_hub_id") or cfg.get("url") or arch
    reason = " ".join(str(exc).split())[:300]
    return odirkit.PluginError(
        f"model vit: timm's weights for {arch!r} ({source}) could not be downloaded and are "
        f"not in the Hugging Face cache ($HF_HOME, by default ~/.cache/huggingface) "
        f"({type(exc).__name__}: {reason}). Run once on a machine with network to fill the "
        f'cache, or give a local file as {model_key("weights")} = "path", or set '
        f"{model_key('pretrained')} = false"
    )


# -- the Hugging Face hub ----------------------------------------------------------------------


def hub_filename(hub: str, hub_file: str | None) -> str:
    """The file of a hub repository: ``hub_file``, else ``<name>.pth`` (RETFound's naming)."""
    return hub_file or f"{hub.split('/', 1)[1]}.pth"


def fetch_hub(hub: str, hub_file: str | None) -> str:
    """The local path of a hub file: ``huggingface_hub.hf_hub_download`` (the cache, then
    the network). Raises :class:`odirkit.PluginError` saying what was wanted, why it
    could not be had, and how to supply it."""
    import huggingface_hub
    from huggingface_hub import errors

    filename = hub_filename(hub, hub_file)
    try:
        return str(huggingface_hub.hf_hub_download(repo_id=hub, filename=filename))
    except errors.GatedRepoError:
        raise odirkit.PluginError(
            f"model vit: hub = {hub!r} is gated: accept its terms on "
            f"https://huggingface.co/{hub} with your account, then log in here "
            "(hf auth login, or HF_TOKEN), or download the file yourself and give "
            f'{model_key("weights")} = "path"'
        ) from None
    except errors.RepositoryNotFoundError:
        raise odirkit.PluginError(
            f"model vit: the Hugging Face hub has no repository {hub!r} (or it is private); "
            f"published RETFound weights: {', '.join(PUBLISHED)}"
        ) from None
    except errors.RemoteEntryNotFoundError:
        raise odirkit.PluginError(
            f"model vit: hub repository {hub!r} has no file {filename!r}; name it with "
            'hub_file = "..."'
        ) from None
    except Exception as exc:  # offline, no cached copy, network errors
        reason = " ".join(str(exc).split())[:300]
        raise odirkit.PluginError(
            f"model vit: the weights {hub}/{filename} could not be downloaded and are not in "
            f"the Hugging Face cache ($HF_HOME, by default ~/.cache/huggingface) "
            f"({type(exc).__name__}: {reason}). On a machine with network, after accepting "
            f"the terms on https://huggingface.co/{hub}: hf download {hub} {filename}; or "
            f'give the downloaded file as {model_key("weights")} = "path/to/{filename}"'
        ) from None


# -- odirkit's hooks ------------------------------------------------------------------------


def prepare(params: dict[str, Any]) -> None:
    """Before ``odirkit run`` writes anything: fetch the weights (hub, timm) and check
    that they fit the model, key by key, on the meta device (the file memory-mapped)."""
    arch = params.get("arch", "vit_large_patch16_224")
    weights, hub, hub_file = params.get("weights"), params.get("hub"), params.get("hub_file")
    pretrained = bool(params.get("pretrained"))
    _check_source(weights, hub, hub_file, pretrained)
    structure = _structure(
        arch,
        2,
        int(params.get("input_size", 224)),
        params.get("global_pool", "avg"),
        params.get("patch_size"),
    )
    if weights is not None:
        check_fits(structure, Path(weights), str(weights))
    elif hub is not None:
        path = Path(fetch_hub(hub, hub_file))
        with _published_hint(hub):
            check_fits(structure, path, hub)
    elif pretrained:
        _timm_weights(arch)  # downloads into timm's cache; fitted when the model is built


def meta_for(params: dict[str, Any]) -> dict[str, Any]:
    """Input size (the parameter), normalisation (ImageNet's, or timm's configuration
    with ``pretrained``), the Grad-CAM layer and the rule reshaping its tokens."""
    arch = params.get("arch", "vit_large_patch16_224")
    size = int(params.get("input_size", 224))
    model = _structure(arch, 2, size, params.get("global_pool", "avg"), params.get("patch_size"))
    meta: dict[str, Any] = {
        "input_size": size,
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "cam_layer": f"blocks.{len(model.blocks) - 1}.norm1",
        "cam_reshape": f"tokens:{int(model.num_prefix_tokens)}",
    }
    if params.get("pretrained"):
        cfg = pretrained_cfg(arch)
        if cfg.get("mean") and cfg.get("std"):
            meta["mean"] = tuple(float(v) for v in cfg["mean"])
            meta["std"] = tuple(float(v) for v in cfg["std"])
    return meta


@odirkit.hookimpl
def odirkit_register_models(register):
    register(
        "vit",
        build_vit,
        summary="Vision Transformer (timm) from RETFound / DINOv2 weights: local file, "
        "Hugging Face hub or timm",
        meta_for=meta_for,
        prepare=prepare,
        test_params={"arch": "test_vit", "input_size": 32},
    )
