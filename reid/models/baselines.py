"""Baselines of paper Table 1: a timm backbone's pooled feature with PAW-ViT's heads and losses.

`vit_*` uses the CLS token (timm's token pooling, after the final norm) and puts the orientation
classifier on it; `seresnet50` uses the average-pooled feature. Same BNNeck, ID classifier and
losses as PAW-ViT, minus the segmentation term, so the comparison isolates part-awareness.
"""

from __future__ import annotations

import torch
from timm.layers import SelectAdaptivePool2d
from torch import nn

from reid.errors import UserError
from reid.models.heads import ReidHeads, ReidOutput

CELL_POOLED_ARCHS = ("cnn_", "resnet", "seresnet", "efficientnet")
"""Arch prefixes of the convolutional backbones whose descriptor is the plain average of their
last feature map's cells, so :meth:`ReidBaseline.cell_descriptors` splits it exactly (a ViT's CLS
token or a ConvNeXt's normalised head is not such an average)."""


class ReidBaseline(nn.Module):
    """Any timm backbone created with ``num_classes=0`` (its forward returns the pooled feature)."""

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        orientation_bnneck: str = "shared",
        descriptor: str = "before_bnneck",
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.num_features = backbone.num_features
        self.heads = ReidHeads(self.num_features, num_classes, 1, orientation_bnneck, descriptor)

    def forward(self, x: torch.Tensor) -> torch.Tensor | ReidOutput:
        """Eval: the descriptor B×D only. Train: descriptor, ID logits, one orientation logit."""
        descriptor = self.backbone(x)
        if not self.training:
            return self.heads.matching_descriptor(descriptor)
        id_logits, orientation_logits = self.heads(descriptor, descriptor[:, None])
        return ReidOutput(descriptor, id_logits, orientation_logits)

    def cell_descriptors(self, x: torch.Tensor) -> torch.Tensor:
        """B×D×h×w: one descriptor per cell of the backbone's last feature map, whose mean over the
        cells is exactly the eval-mode descriptor (call in eval mode).

        The pooled feature is the cells' average, and what matching applies after it (nothing, or
        the BNNeck with its running statistics) is a fixed affine map per dimension, which
        commutes with the average. Backbones pooled any other way are refused.
        """
        pool = getattr(self.backbone, "global_pool", None)
        if not (isinstance(pool, SelectAdaptivePool2d) and pool.pool_type == "avg"):
            raise UserError(
                f"{type(self.backbone).__name__}'s descriptor is not an average of feature-map "
                "cells, so it cannot be split into cells: similarity maps need a convolutional "
                f"baseline ({', '.join(a + '*' for a in CELL_POOLED_ARCHS)})"
            )
        cells = self.backbone.forward_features(x)  # B×C×h×w
        b, c, h, w = cells.shape
        flat = self.heads.matching_descriptor(cells.permute(0, 2, 3, 1).reshape(b * h * w, c))
        return flat.view(b, h, w, -1).permute(0, 3, 1, 2)
