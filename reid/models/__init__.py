"""Re-ID models: PAW-ViT (registered in timm on import) and the Table 1 baselines.

`build_model` is the one place that turns a model config into a module, for training, extraction
and export alike, so a checkpoint always meets the architecture it was trained with.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import timm
from torch import nn

from reid.errors import UserError
from reid.models import paw_vit  # noqa: F401  (registers paw_vit_* in timm)
from reid.models.baselines import ReidBaseline
from reid.models.heads import ReidOutput
from reid.models.paw_vit import PawViT

__all__ = ["ModelSpec", "PawViT", "ReidBaseline", "ReidOutput", "build_model"]


@dataclass(frozen=True)
class ModelSpec:
    """Architecture settings of one named model in config.yaml (`models:` section)."""

    arch: str
    img_size: int = 256
    pretrained: str | None = None  # local weights file; None = random initialisation
    mask_size: int | None = None
    orientation_bnneck: str = "shared"
    drop_path_rate: float = 0.0

    @property
    def part_aware(self) -> bool:
        return self.arch.startswith("paw_vit")

    @property
    def resolved_mask_size(self) -> int:
        """Side of the ATM maps and training targets: img_size / 4 unless set (paper §3.2)."""
        return self.mask_size or self.img_size // 4


def build_model(spec: ModelSpec, num_classes: int, num_parts: int) -> nn.Module:
    """Create the model of `spec` with `num_classes` training identities and `num_parts` parts."""
    if not timm.is_model(spec.arch):
        raise UserError(
            f"unknown model arch '{spec.arch}': use a paw_vit_* model or a timm backbone "
            "(e.g. vit_tiny_patch16_224, seresnet50)"
        )
    pretrained = spec.pretrained is not None
    if pretrained and not Path(spec.pretrained).is_file():
        raise UserError(
            f"pretrained weights file {spec.pretrained} does not exist: download it (README, "
            "'Weights') or remove 'pretrained' from the model config"
        )
    kwargs: dict = dict(pretrained=pretrained, drop_path_rate=spec.drop_path_rate)
    if pretrained:
        kwargs["pretrained_cfg_overlay"] = dict(file=str(spec.pretrained))
    if spec.part_aware:
        return timm.create_model(
            spec.arch,
            num_parts=num_parts,
            num_classes=num_classes,
            img_size=spec.img_size,
            mask_size=spec.resolved_mask_size,
            orientation_bnneck=spec.orientation_bnneck,
            **kwargs,
        )
    if spec.arch.startswith(("vit_", "deit_")):
        kwargs["img_size"] = spec.img_size
    backbone = timm.create_model(spec.arch, num_classes=0, **kwargs)
    return ReidBaseline(backbone, num_classes, spec.orientation_bnneck)
