"""Re-ID models: PAW-ViT (registered in timm on import) and the Table 1 baselines.

`build_model` is the one place that turns a model config into a module, for training, extraction
and export alike, so a checkpoint always meets the architecture it was trained with.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import timm
from timm.layers import HybridEmbed
from timm.models.efficientnet import EfficientNet
from torch import nn

from reid.data.transforms import Normalisation
from reid.errors import UserError
from reid.models import efficientnet_lite, hybrid, paw_vit  # noqa: F401  (register in timm)
from reid.models.baselines import ReidBaseline
from reid.models.efficientnet_lite import EfficientNetLiteStem
from reid.models.frozen import build_frozen, create_timm_model, takes_img_size
from reid.models.heads import ReidOutput
from reid.models.paw_vit import PawViT
from reid.weights import resolve_weights

__all__ = [
    "ModelSpec",
    "PawViT",
    "ReidBaseline",
    "ReidOutput",
    "build_model",
    "freeze_stem",
    "stem_parameter_names",
]


@dataclass(frozen=True)
class ModelSpec:
    """Architecture settings of one named model in config.yaml (`models:` section)."""

    arch: str
    img_size: int = 256
    pretrained: str | Mapping[str, Any] | None = None
    """A weights entry (``path`` or ``package`` + ``file``, as in config.yaml) or a file path;
    None = random initialisation."""
    mask_size: int | None = None
    orientation_bnneck: str = "shared"
    descriptor: str = "before_bnneck"
    """What matching uses (reid.models.heads.DESCRIPTORS): the descriptor as trained, or the same
    through the BNNeck."""
    aggregation: str | None = None
    """PAW-ViT's descriptor from its part tokens: 'token' (the paper's aggregation token, the
    default) or 'mean' (their mean, an ablation). None = the default; other models take none."""
    drop_path_rate: float = 0.0
    output_stride: int | None = None
    """A convolutional backbone's output stride; None = its own (32). 16 or 8 dilate its last
    stages instead of striding them (the bag of tricks' "last stride 1"): the same weights see
    the same receptive fields on a grid twice or four times as fine."""
    frozen: bool = False
    """Used as it is: the pretrained backbone's pooled feature is the descriptor, no training."""
    mean: Sequence[float] | None = None
    """Input normalisation (RGB, images in [0, 1]); None = the project's 0.5."""
    std: Sequence[float] | None = None

    @property
    def part_aware(self) -> bool:
        return self.arch.startswith("paw_vit")

    @property
    def normalisation(self) -> Normalisation:
        return Normalisation.of({"mean": self.mean, "std": self.std})

    @property
    def resolved_mask_size(self) -> int:
        """Side of the ATM maps and training targets: img_size / 4 unless set (paper §3.2)."""
        return self.mask_size or self.img_size // 4


def build_model(spec: ModelSpec, num_classes: int, num_parts: int) -> nn.Module:
    """Create the model of `spec` with `num_classes` training identities and `num_parts` parts
    (a frozen model has neither: it is the bare backbone, see reid.models.frozen)."""
    if not timm.is_model(spec.arch):
        raise UserError(
            f"unknown model arch '{spec.arch}': use a paw_vit_* model or a timm backbone "
            "(e.g. vit_tiny_patch16_224, seresnet50)"
        )
    if spec.frozen:
        if spec.descriptor != "before_bnneck":
            raise UserError(
                f"model {spec.arch} is frozen and has no BNNeck, so its descriptor cannot be "
                f"'{spec.descriptor}': remove 'descriptor' or 'frozen'"
            )
        return build_frozen(spec.arch, spec.img_size, spec.pretrained, spec.output_stride)
    pretrained = spec.pretrained is not None
    kwargs: dict = dict(pretrained=pretrained, drop_path_rate=spec.drop_path_rate)
    if pretrained:
        kwargs["pretrained_cfg_overlay"] = dict(file=str(resolve_weights(spec.pretrained).path))
    if spec.aggregation is not None and not spec.part_aware:
        raise UserError(
            f"model {spec.arch} has no part tokens to aggregate: 'aggregation' is a PAW-ViT "
            "setting (paw_vit_*); remove it"
        )
    if spec.part_aware:
        return create_timm_model(
            spec.arch,
            spec.output_stride,
            num_parts=num_parts,
            num_classes=num_classes,
            img_size=spec.img_size,
            mask_size=spec.resolved_mask_size,
            orientation_bnneck=spec.orientation_bnneck,
            descriptor=spec.descriptor,
            aggregation=spec.aggregation or "token",
            **kwargs,
        )
    if takes_img_size(spec.arch):  # includes the hybrid twins (vit_efflite*)
        kwargs["img_size"] = spec.img_size
    backbone = create_timm_model(spec.arch, spec.output_stride, num_classes=0, **kwargs)
    return ReidBaseline(backbone, num_classes, spec.orientation_bnneck, spec.descriptor)


def stem_parameter_names(model: nn.Module) -> set[str]:
    """Names of the parameters of a pretrained convolutional stem, which train with
    ``stem_lr_scale`` × the learning rate: a hybrid's CNN before the patch tokens, or the whole
    CNN of a convolutional baseline. Empty for ViTs on patches."""
    prefixes = []
    for name, module in model.named_modules():
        if isinstance(module, HybridEmbed):
            prefixes.append(f"{name}.backbone.")
        elif isinstance(module, EfficientNet):
            prefixes.append(f"{name}.")
    return {n for n, _ in model.named_parameters() if n.startswith(tuple(prefixes))}


def freeze_stem(model: nn.Module, blocks: int) -> list[nn.Module]:
    """Freeze the first layers of a convolutional stem: conv stem, its BN and ``blocks`` stages.

    Those layers stop learning (no gradients, so no backward pass through them: a CPU epoch is
    about twice as fast with the whole stride-16 stem frozen), and the returned modules must be
    kept in eval mode while training so that their BatchNorm keeps ImageNet's statistics."""
    if blocks == 0:
        return []
    stems = [m for m in model.modules() if isinstance(m, (EfficientNetLiteStem, EfficientNet))]
    if not stems:
        raise UserError(
            "train.optimizer.frozen_stem_blocks needs a model with a convolutional stem "
            "(paw_vit_efflite*, vit_efflite*, cnn_efflite*): set it to 0 for this model"
        )
    frozen: list[nn.Module] = []
    for stem in stems:
        if blocks > len(stem.blocks):
            raise UserError(
                f"train.optimizer.frozen_stem_blocks is {blocks} but the stem has "
                f"{len(stem.blocks)} blocks: use at most {len(stem.blocks)}"
            )
        frozen += [stem.conv_stem, stem.bn1, *stem.blocks[:blocks]]
    for module in frozen:
        module.requires_grad_(False)
    return frozen
