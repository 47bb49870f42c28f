"""Grad-CAM, Guided Grad-CAM and SmoothGrad through Captum; attention rollout for ViTs.

Every explainer has the same call, ``explain(model, images, targets, layer,
additional_forward_args=None)``, and returns a non-negative map ``[B, H, W]``
at the input resolution, for the class index given per image. The model's
other inputs (age and sex, for a model with metadata fusion) are passed on to
Captum as ``additional_forward_args``: held fixed, and repeated for every noisy
copy by SmoothGrad's noise tunnel.

- **Grad-CAM** (Selvaraju et al. 2017, "Grad-CAM: Visual Explanations from Deep
  Networks via Gradient-based Localization"): the layer's activations weighted
  by the spatial mean of their gradients, summed over channels, passed through
  a ReLU (Captum's ``LayerGradCam`` with ``relu_attributions``), upsampled
  bilinearly to the input size. Coarse: its resolution is the layer's.
- **Guided Grad-CAM** (same paper): guided backpropagation multiplied by the
  upsampled Grad-CAM map (Captum's ``GuidedGradCam``); its magnitude, the
  largest over colour channels, is the map. Fine-grained, but guided
  backpropagation is known to depend little on the model's upper layers
  (Adebayo et al. 2018, "Sanity Checks for Saliency Maps"). Guided
  backpropagation rectifies the gradient at each ``nn.ReLU`` (Springenberg et al.
  2015): on a network whose activations are not ReLUs (GELU in a Vision
  Transformer, SiLU in an EfficientNet) Captum hooks nothing and the result is
  plain gradient times Grad-CAM, so the explainer declares it cannot apply to
  such a model (``applies_to``) and refuses it rather than answer something else
  under its name.
- **Attention rollout** (Abnar & Zuidema 2020, "Quantifying Attention Flow in
  Transformers"): for a Vision Transformer, each block's attention averaged over
  its heads (or their maximum or minimum), mixed with the identity for the
  residual connection, ``0.5 A + 0.5 I``, rows renormalised, multiplied from the
  first block to the last; the map is the row of the class token (a model pooled
  by its class token) or the mean row of the patch tokens (global average
  pooling) over the patch tokens, as a grid, upsampled bilinearly. It shows
  where information flows from, for every class alike: ``targets`` are not used.
  It reads timm's attention modules (their softmax output, with the fused kernel
  switched off while it runs); a model without them is not one it applies to.
- **SmoothGrad** (Smilkov et al. 2017, "SmoothGrad: removing noise by adding
  noise", eq. 3): the input gradient averaged over noisy copies of the image
  (Captum's ``NoiseTunnel`` over ``Saliency``), then its magnitude; the noise's
  standard deviation is ``noise`` times the batch's input range, and the noisy
  copies are processed ``sample_batch_size`` at a time. The gradients are
  averaged *signed* (``Saliency(abs=False)``), as the paper's equation does:
  Captum's default, the absolute value of every noisy gradient before
  averaging, keeps the noise from cancelling, and on fundus photographs gave
  maps that hardly depended on the model or the image (rank correlation 0.39
  with a re-initialised model's maps and 0.76 across images of different
  classes, inside the field of view, against 0.22 and 0.48 averaged signed).
  Its randomness comes from PyTorch's global generator, which odirkit seeds
  before each batch.
"""

from __future__ import annotations

import math
import warnings
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

import odirkit


class GradCAM:
    """Grad-CAM on ``layer``, ReLU on the attributions, bilinear upsampling."""

    def __init__(self, interpolate_mode: str = "bilinear") -> None:
        self.interpolate_mode = interpolate_mode

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        layer: nn.Module,
        additional_forward_args: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        from captum.attr import LayerAttribution, LayerGradCam

        attributions = LayerGradCam(model, layer).attribute(
            images,
            target=targets,
            relu_attributions=True,
            additional_forward_args=additional_forward_args,
        )
        upsampled = LayerAttribution.interpolate(
            attributions, tuple(images.shape[-2:]), interpolate_mode=self.interpolate_mode
        )
        return upsampled.sum(dim=1).clamp_min(0).detach()


#: element-wise activations other than ReLU, which guided backpropagation leaves alone
NON_RELU_ACTIVATIONS = (
    nn.GELU,
    nn.SiLU,
    nn.Mish,
    nn.Hardswish,
    nn.ELU,
    nn.CELU,
    nn.SELU,
    nn.LeakyReLU,
    nn.Softplus,
    nn.Tanh,
)


def guided_backprop_applies(model: nn.Module) -> str | None:
    """None when every activation module of ``model`` is an ``nn.ReLU``; otherwise why
    guided backpropagation cannot apply (it only rectifies the gradient at ReLUs)."""
    relus = sum(isinstance(m, nn.ReLU) for m in model.modules())
    others = sorted(
        {type(m).__name__ for m in model.modules() if isinstance(m, NON_RELU_ACTIVATIONS)}
    )
    if not relus:
        found = f" (its activations: {', '.join(others)})" if others else ""
        return (
            f"the model has no nn.ReLU{found}, so guided backpropagation would be the plain "
            "gradient and the map gradient x Grad-CAM, not Guided Grad-CAM; use gradcam"
        )
    if others:
        return (
            f"the model mixes nn.ReLU with {', '.join(others)} activations, which guided "
            "backpropagation leaves unrectified; use gradcam"
        )
    return None


class GuidedGradCAMExplainer:
    """Guided backpropagation times the upsampled Grad-CAM; magnitude over channels.

    Raises :class:`odirkit.NotApplicable` on a model whose activations are not all
    ``nn.ReLU`` (see :func:`guided_backprop_applies`).
    """

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        layer: nn.Module,
        additional_forward_args: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        from captum.attr import GuidedGradCam

        reason = guided_backprop_applies(model)
        if reason:
            raise odirkit.NotApplicable(f"guided_gradcam: {reason}")

        with warnings.catch_warnings():  # Captum announces the ReLU hooks it sets and removes
            warnings.simplefilter("ignore", UserWarning)
            attributions = GuidedGradCam(model, layer).attribute(
                images.detach().clone().requires_grad_(True),
                target=targets,
                interpolate_mode="bilinear",
                additional_forward_args=additional_forward_args,
            )
        return attributions.abs().amax(dim=1).detach()


class SmoothGrad:
    """Absolute gradients averaged over noisy copies of the input."""

    def __init__(self, samples: int, noise: float, sample_batch_size: int) -> None:
        self.samples = samples
        self.noise = noise
        self.sample_batch_size = sample_batch_size

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        layer: nn.Module | None = None,
        additional_forward_args: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        from captum.attr import NoiseTunnel, Saliency

        spread = float(images.max() - images.min()) or 1.0
        attributions = NoiseTunnel(Saliency(model)).attribute(
            images,
            nt_type="smoothgrad",
            nt_samples=self.samples,
            nt_samples_batch_size=self.sample_batch_size,
            stdevs=self.noise * spread,
            target=targets,
            additional_forward_args=additional_forward_args,
            abs=False,  # average the signed gradients, then take the magnitude
        )
        return attributions.abs().amax(dim=1).detach()


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """timm's attention modules of ``model`` (those with an ``attn_drop`` the softmax
    output passes through, and a switch for the fused kernel), in forward order."""
    return [
        m
        for m in model.modules()
        if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Dropout)
    ]


def _token_model(model: nn.Module) -> nn.Module | None:
    """The module that owns the token layout (``num_prefix_tokens``, a timm ViT)."""
    for m in model.modules():
        if hasattr(m, "num_prefix_tokens") and hasattr(m, "blocks"):
            return m
    return None


def rollout_applies(model: nn.Module) -> str | None:
    """None when ``model`` is a timm Vision Transformer whose attention can be read."""
    if _token_model(model) is None or not attention_modules(model):
        return (
            "attention rollout reads a timm Vision Transformer's attention; this model has "
            "no timm attention blocks"
        )
    return None


class AttentionRollout:
    """Attention rollout over a timm ViT's blocks, upsampled to the input size."""

    def __init__(self, head_fusion: str = "mean") -> None:
        self.head_fusion = head_fusion

    def __call__(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: torch.Tensor,
        layer: nn.Module | None = None,
        additional_forward_args: tuple[torch.Tensor, ...] | None = None,
    ) -> torch.Tensor:
        reason = rollout_applies(model)
        if reason:
            raise odirkit.NotApplicable(f"attention_rollout: {reason}")
        vit = _token_model(model)
        prefix = int(vit.num_prefix_tokens)
        modules = attention_modules(model)
        maps: list[torch.Tensor] = []
        fused = [m.fused_attn for m in modules]
        hooks = [
            m.attn_drop.register_forward_hook(lambda _m, _i, out: maps.append(out.detach()))
            for m in modules
        ]
        try:
            for m in modules:
                m.fused_attn = False  # the softmax output exists only on the unfused path
            with torch.no_grad():
                model(images, *(additional_forward_args or ()))
        finally:
            for m, was in zip(modules, fused, strict=True):
                m.fused_attn = was
            for hook in hooks:
                hook.remove()
        rollout = None
        for attention in maps:  # [B, heads, N, N]
            if self.head_fusion == "max":
                a = attention.amax(dim=1)
            elif self.head_fusion == "min":
                a = attention.amin(dim=1)
            else:
                a = attention.mean(dim=1)
            eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
            a = 0.5 * a + 0.5 * eye
            a = a / a.sum(dim=-1, keepdim=True)
            rollout = a if rollout is None else a @ rollout
        assert rollout is not None
        if getattr(vit, "global_pool", "token") == "token" and prefix > 0:
            flow = rollout[:, 0, prefix:]
        else:  # pooled patch tokens: where their average draws from
            flow = rollout[:, prefix:, prefix:].mean(dim=1)
        side = math.isqrt(flow.shape[-1])
        if side * side != flow.shape[-1]:
            raise odirkit.PluginError(
                f"attention_rollout: {flow.shape[-1]} patch tokens are not a square grid"
            )
        grid = flow.reshape(len(images), 1, side, side)
        upsampled = nn.functional.interpolate(
            grid, size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False
        )
        return upsampled[:, 0].clamp_min(0).float()


def build_attention_rollout(
    *, head_fusion: Literal["mean", "max", "min"] = "mean"
) -> AttentionRollout:
    """Attention rollout (Abnar & Zuidema 2020) over a timm Vision Transformer.

    head_fusion: how each block's heads are combined: mean (the paper's), max or min.
    """
    return AttentionRollout(head_fusion)


def build_gradcam() -> GradCAM:
    """Grad-CAM (Captum LayerGradCam) with ReLU, upsampled bilinearly to the input size."""
    return GradCAM()


def build_guided_gradcam() -> GuidedGradCAMExplainer:
    """Guided Grad-CAM (Captum GuidedGradCam): guided backpropagation times Grad-CAM."""
    return GuidedGradCAMExplainer()


def build_smoothgrad(
    *,
    samples: Annotated[int, Field(ge=1)] = 25,
    noise: Annotated[float, Field(gt=0.0, le=1.0)] = 0.15,
    sample_batch_size: Annotated[int, Field(ge=1)] = 5,
) -> SmoothGrad:
    """SmoothGrad (Captum NoiseTunnel over Saliency).

    samples: noisy copies averaged per image.
    noise: standard deviation of the noise, as a share of the input range.
    sample_batch_size: noisy copies processed at once.
    """
    return SmoothGrad(samples, noise, sample_batch_size)


@odirkit.hookimpl
def odirkit_register_explainers(register):
    register(
        "gradcam",
        build_gradcam,
        summary="Grad-CAM (Captum LayerGradCam, ReLU), upsampled to the input size",
        needs_layer=True,
    )
    register(
        "guided_gradcam",
        build_guided_gradcam,
        summary="Guided Grad-CAM (Captum GuidedGradCam): guided backprop x Grad-CAM; "
        "ReLU networks only",
        needs_layer=True,
        applies_to=guided_backprop_applies,
    )
    register(
        "attention_rollout",
        build_attention_rollout,
        summary="Attention rollout (Abnar & Zuidema 2020) over a Vision Transformer's blocks",
        needs_layer=False,
        applies_to=rollout_applies,
    )
    register(
        "smoothgrad",
        build_smoothgrad,
        summary="SmoothGrad (Captum NoiseTunnel over Saliency), batched samples",
        needs_layer=False,
        test_params={"samples": 4, "sample_batch_size": 2},
    )
