"""Training-only heads shared by PAW-ViT and the baselines.

They sit on top of a descriptor (and, for PAW-ViT, the part tokens) and are never run at inference:
the descriptor alone is what matching uses, so these modules cost nothing once a model is trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class ReidOutput:
    """What a re-ID model returns in training mode; each loss takes the fields it needs.

    `orientation_logits` is B×P: one logit per part token for PAW-ViT (P = K), one per image for
    the baselines (P = 1). `atm_maps`/`atm_logits` are B×(K+1)×M×M (background last), PAW-ViT only.
    """

    descriptor: torch.Tensor
    id_logits: torch.Tensor | None
    orientation_logits: torch.Tensor | None
    atm_maps: torch.Tensor | None = None
    atm_logits: torch.Tensor | None = None


class BNNeck(nn.BatchNorm1d):
    """BatchNorm before the ID classifier with its bias frozen at zero (Luo et al., bag of tricks).

    The frozen bias keeps the normalised features centred, which is what lets the classifier and the
    triplet loss (computed before this layer) pull in compatible directions.
    """

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.bias.requires_grad_(False)


class PartOrientationHead(nn.Module):
    """One independent linear left/right classifier per token: logits B×P from tokens B×P×D.

    Stored as a P×D weight so all P classifiers run as one einsum instead of P small matmuls.
    """

    def __init__(self, dim: int, num_tokens: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_tokens, dim))
        self.bias = nn.Parameter(torch.empty(num_tokens))
        bound = 1.0 / math.sqrt(dim)  # nn.Linear's default initialisation, per classifier
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return torch.einsum("bpd,pd->bp", tokens, self.weight) + self.bias


class ReidHeads(nn.Module):
    """BNNeck + ID classifier on the descriptor, and orientation classifiers on P tokens.

    `orientation_bnneck='shared'` (the authors' released code) normalises the orientation tokens
    with the ID BNNeck; `'separate'` (the paper's figure) gives them their own BNNeck, one
    BatchNorm over the P×D concatenation so each token keeps its own statistics.
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        num_orientation_tokens: int,
        orientation_bnneck: str = "shared",
    ) -> None:
        super().__init__()
        if orientation_bnneck not in ("shared", "separate"):
            raise ValueError(
                f"orientation_bnneck must be 'shared' or 'separate', not {orientation_bnneck!r}"
            )
        self.bnneck = BNNeck(dim)
        self.classifier = nn.Linear(dim, num_classes, bias=False) if num_classes > 0 else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)
        self.orientation_bnneck = (
            BNNeck(dim * num_orientation_tokens) if orientation_bnneck == "separate" else None
        )
        self.orientation = PartOrientationHead(dim, num_orientation_tokens)

    def forward(
        self, descriptor: torch.Tensor, orientation_tokens: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Return (ID logits or None without classes, orientation logits B×P)."""
        id_logits = (
            self.classifier(self.bnneck(descriptor)) if self.classifier is not None else None
        )
        b, p, d = orientation_tokens.shape
        if self.orientation_bnneck is None:
            normed = self.bnneck(orientation_tokens.reshape(b * p, d)).view(b, p, d)
        else:
            normed = self.orientation_bnneck(orientation_tokens.reshape(b, p * d)).view(b, p, d)
        return id_logits, self.orientation(normed)
