"""Training heads shared by PAW-ViT and the baselines.

They sit on top of a descriptor (and, for PAW-ViT, the part tokens). At inference the descriptor
is what matching uses, as it is or (``descriptor='after_bnneck'``) through the BNNeck's eval-mode
affine map; the classifiers never run once a model is trained.
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


DESCRIPTORS = ("before_bnneck", "after_bnneck")
"""What matching uses: the descriptor the triplet loss sees (the paper's), or the same through the
BNNeck (the inference feature of Luo et al.'s bag of tricks)."""


class ReidHeads(nn.Module):
    """BNNeck + ID classifier on the descriptor, and orientation classifiers on P tokens.

    `orientation_bnneck='shared'` (the authors' released code) normalises the orientation tokens
    with the ID BNNeck; `'separate'` (the paper's figure) gives them their own BNNeck, one
    BatchNorm over the P×D concatenation so each token keeps its own statistics. `descriptor`
    (one of :data:`DESCRIPTORS`) chooses what :meth:`matching_descriptor` returns.
    """

    def __init__(
        self,
        dim: int,
        num_classes: int,
        num_orientation_tokens: int,
        orientation_bnneck: str = "shared",
        descriptor: str = "before_bnneck",
    ) -> None:
        super().__init__()
        if orientation_bnneck not in ("shared", "separate"):
            raise ValueError(
                f"orientation_bnneck must be 'shared' or 'separate', not {orientation_bnneck!r}"
            )
        if descriptor not in DESCRIPTORS:
            raise ValueError(f"descriptor must be one of {DESCRIPTORS}, not {descriptor!r}")
        self.descriptor_after_bnneck = descriptor == "after_bnneck"
        self.bnneck = BNNeck(dim)
        self.classifier = nn.Linear(dim, num_classes, bias=False) if num_classes > 0 else None
        if self.classifier is not None:
            nn.init.normal_(self.classifier.weight, std=0.001)
        self.orientation_bnneck = (
            BNNeck(dim * num_orientation_tokens) if orientation_bnneck == "separate" else None
        )
        self.orientation = PartOrientationHead(dim, num_orientation_tokens)

    def matching_descriptor(self, descriptor: torch.Tensor) -> torch.Tensor:
        """The eval-mode descriptor that matching uses (call in eval mode: the BNNeck then applies
        its running statistics, a fixed affine map per dimension)."""
        return self.bnneck(descriptor) if self.descriptor_after_bnneck else descriptor

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
