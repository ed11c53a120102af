"""Baselines of paper Table 1: a timm backbone's pooled feature with PAW-ViT's heads and losses.

`vit_*` uses the CLS token (timm's token pooling, after the final norm) and puts the orientation
classifier on it; `seresnet50` uses the average-pooled feature. Same BNNeck, ID classifier and
losses as PAW-ViT, minus the segmentation term, so the comparison isolates part-awareness.
"""

from __future__ import annotations

import torch
from torch import nn

from reid.models.heads import ReidHeads, ReidOutput


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
