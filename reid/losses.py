"""PAW-ViT training losses (paper §3.4, §4.2; defaults follow the authors' released code).

The full objective is ``λ·L_SS + α·L_TRI + L_OR + L_ID``. Each term is its own module so the
baselines and the Table 3 ablation can switch terms off through :class:`LossConfig`, and so each can
be tested against the paper's equation on its own.

Conventions fixed here (the datasets and the model must follow them):

- Orientation targets: ``1`` = right, ``0`` = left, ``-1`` = unknown (see
  :data:`ORIENTATION_CODES`, keyed by the catalogue's ``orientation`` strings).
- Part label maps from the cache use ``0`` = background and ``1..K`` = parts, while the ATM head
  emits the K part maps first and the background map last; :func:`labels_to_channels` is the one
  place that converts between the two.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal, get_args

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from reid.errors import UserError

SegProbSource = Literal["sigmoid_softmax", "logits_softmax"]

ORIENTATION_CODES: Final[dict[str, int]] = {"left": 0, "right": 1, "": -1}
"""Catalogue ``orientation`` value -> orientation target (``-1`` = unknown, excluded from L_OR)."""


def _zero_with_grad(tensor: Tensor) -> Tensor:
    """A zero loss that is still connected to ``tensor``.

    Returned when a batch has nothing to supervise, so ``total.backward()`` keeps working (and DDP
    sees every parameter take part) instead of failing on a constant.
    """
    return tensor.sum() * 0.0


class IdentityLoss(nn.Module):
    """Cross-entropy on the identity classifier logits with label smoothing.

    The target distribution is ``(1 − ε)·onehot + ε/C``; smoothing keeps the classifier from
    over-fitting the few images per identity typical of wildlife data.
    """

    def __init__(self, label_smoothing: float = 0.2) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, labels: Tensor) -> Tensor:
        """``logits`` B×C, ``labels`` B (class indices) -> scalar mean loss."""
        return F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)


def cosine_distance_matrix(features: Tensor) -> Tensor:
    """Pairwise ``(1 − cos)/2`` between rows, in [0, 1] (as in the released code)."""
    unit = F.normalize(features, dim=1)
    return (1.0 - unit @ unit.T) / 2.0


class TripletLoss(nn.Module):
    """Online batch-hard triplet loss on L2-normalised descriptors.

    For each anchor the hardest positive (farthest sample of the same identity, itself excluded) and
    the hardest negative (closest sample of another identity) give ``max(0, d_ap − d_an + margin)``.
    Anchors without a positive or without a negative in the batch have no triplet and are left out
    of the mean, so a batch's loss does not shrink just because it holds singletons; a batch with no
    valid anchor yields a zero that is still connected to the graph.
    """

    def __init__(self, margin: float = 0.4) -> None:
        super().__init__()
        self.margin = margin

    def forward(self, features: Tensor, labels: Tensor) -> Tensor:
        """``features`` B×D, ``labels`` B -> scalar mean over valid anchors."""
        dist = cosine_distance_matrix(features)
        same = labels[:, None] == labels[None, :]
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive = same & ~eye
        negative = ~same
        valid = positive.any(dim=1) & negative.any(dim=1)
        if not bool(valid.any()):
            return _zero_with_grad(features)
        hardest_positive = dist.masked_fill(~positive, -math.inf).amax(dim=1)
        hardest_negative = dist.masked_fill(~negative, math.inf).amin(dim=1)
        hinge = F.relu(hardest_positive - hardest_negative + self.margin)
        return hinge[valid].mean()


class OrientationLoss(nn.Module):
    """Binary cross-entropy on per-part orientation logits, over visible parts only.

    Each part token predicts whether the animal faces right (target 1) or left (target 0). A part
    that is not in the augmented target map (``visibility`` False) carries no evidence of the
    orientation, so its entry is skipped; samples with unknown orientation (target −1) are skipped
    whole. The mean is over the remaining (sample, part) entries.
    """

    def forward(self, logits: Tensor, targets: Tensor, visibility: Tensor | None = None) -> Tensor:
        """``logits`` B×P, ``targets`` B in {−1, 0, 1}, ``visibility`` B×P bool or None (= all).

        The ViT baseline passes its single CLS logit as B×1 with ``visibility=None``.
        """
        if logits.dim() != 2 or targets.shape != logits.shape[:1]:
            raise ValueError(
                f"orientation logits must be B×P and targets B, got {tuple(logits.shape)} "
                f"and {tuple(targets.shape)}"
            )
        mask = (targets >= 0)[:, None].expand_as(logits)
        if visibility is not None:
            if visibility.shape != logits.shape:
                raise ValueError(
                    f"part visibility {tuple(visibility.shape)} does not match orientation "
                    f"logits {tuple(logits.shape)}"
                )
            mask = mask & visibility.bool()
        if not bool(mask.any()):
            return _zero_with_grad(logits)
        expanded_targets = targets[:, None].expand_as(logits).to(logits.dtype)
        return F.binary_cross_entropy_with_logits(logits[mask], expanded_targets[mask])


def labels_to_channels(target: Tensor, num_channels: int) -> Tensor:
    """Map cached part labels to ATM channel indices.

    Cache: 0 = background, 1..K = parts. ATM head: channels 0..K−1 = parts, channel K = background.
    So label ``l`` goes to channel ``l − 1`` and label 0 to channel K, i.e. ``(l − 1) mod (K + 1)``.
    """
    if target.numel() and (int(target.min()) < 0 or int(target.max()) >= num_channels):
        raise ValueError(
            f"part labels must lie in [0, {num_channels - 1}] for {num_channels} ATM channels, "
            f"got [{int(target.min())}, {int(target.max())}]"
        )
    return torch.remainder(target.long() - 1, num_channels)


class SegmentationLoss(nn.Module):
    """Exponential logarithmic loss (Wong et al. 2018) between ATM maps and teacher part maps.

    ``L_SS = w_dice·E[(−ln Dice_i)^γ_dice] + w_cross·E[w_l·(−ln p_l(x))^γ_cross]``. The exponents
    below 2 give more weight to classes that are already fairly well segmented than plain Dice and
    cross-entropy would, and the class weights ``w_l = (Σ_k f_k / f_l)^0.5`` (``f`` = pixel counts
    of the batch) stop the background from dominating the cross term.

    Class probabilities ``p`` come from ``prob_source``:

    - ``"sigmoid_softmax"`` (default, as in the released code): softmax over channels of the ATM's
      sigmoid maps; pass ``maps``.
    - ``"logits_softmax"``: softmax over channels of the pre-sigmoid similarities; pass ``logits``.
    """

    def __init__(
        self,
        gamma_dice: float = 1.2,
        gamma_cross: float = 1.2,
        w_dice: float = 0.5,
        w_cross: float = 0.5,
        prob_source: SegProbSource = "sigmoid_softmax",
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if prob_source not in get_args(SegProbSource):
            raise ValueError(f"prob_source must be one of {get_args(SegProbSource)}")
        self.gamma_dice = gamma_dice
        self.gamma_cross = gamma_cross
        self.w_dice = w_dice
        self.w_cross = w_cross
        self.prob_source = prob_source
        self.eps = eps

    def forward(
        self, target: Tensor, maps: Tensor | None = None, logits: Tensor | None = None
    ) -> Tensor:
        """``target`` B×H×W labels; ``maps`` / ``logits`` B×(K+1)×H×W (background last).

        Only the input that ``prob_source`` names is needed.
        """
        scores = maps if self.prob_source == "sigmoid_softmax" else logits
        if scores is None:
            needed = "maps" if self.prob_source == "sigmoid_softmax" else "logits"
            raise ValueError(
                f"segmentation loss with prob_source={self.prob_source} needs {needed}"
            )
        if scores.dim() != 4 or target.shape != scores.shape[:1] + scores.shape[2:]:
            raise ValueError(
                f"ATM maps must be B×(K+1)×H×W and target B×H×W at the same size, got "
                f"{tuple(scores.shape)} and {tuple(target.shape)}"
            )
        # At least float32 even under autocast: the logs and powers below are not half-precision
        # safe.
        probs = scores.to(torch.promote_types(scores.dtype, torch.float32)).softmax(dim=1)
        num_channels = probs.shape[1]
        channels = labels_to_channels(target, num_channels)
        return self.w_dice * self._dice_term(probs, channels) + self.w_cross * self._cross_term(
            probs, channels
        )

    def _dice_term(self, probs: Tensor, channels: Tensor) -> Tensor:
        """Mean over (sample, class incl. background) of ``(−ln Dice)^γ_dice``."""
        onehot = F.one_hot(channels, probs.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
        intersection = (probs * onehot).sum(dim=(2, 3))
        dice = (2.0 * intersection + self.eps) / (
            probs.sum(dim=(2, 3)) + onehot.sum(dim=(2, 3)) + self.eps
        )
        # Dice ≤ 1 in exact arithmetic; the clamp stops rounding from feeding a negative base
        # to the fractional power (which would be NaN).
        return (-dice.log()).clamp(min=0.0).pow(self.gamma_dice).mean()

    def _cross_term(self, probs: Tensor, channels: Tensor) -> Tensor:
        """Mean over pixels of ``w_l·(−ln p_l)^γ_cross`` with ``l`` the pixel's true class."""
        counts = torch.bincount(channels.flatten(), minlength=probs.shape[1]).to(probs.dtype)
        # Absent classes get a finite placeholder weight; no pixel ever looks it up.
        weights = (counts.sum() / counts.clamp(min=1.0)).sqrt()
        true_prob = probs.gather(1, channels.unsqueeze(1)).squeeze(1)
        pixel_loss = (-true_prob.clamp(min=self.eps).log()).pow(self.gamma_cross)
        return (weights[channels] * pixel_loss).mean()


@dataclass(frozen=True)
class LossConfig:
    """Which PAW-ViT loss terms are on, and their hyper-parameters.

    ``lam`` weighs the segmentation loss and ``alpha`` the triplet loss; the identity and
    orientation losses have weight 1 (paper §4.2).
    """

    id: bool = True
    triplet: bool = True
    orientation: bool = True
    segmentation: bool = True
    label_smoothing: float = 0.2
    margin: float = 0.4
    alpha: float = 0.5
    lam: float = 1.0
    gamma_dice: float = 1.2
    gamma_cross: float = 1.2
    w_dice: float = 0.5
    w_cross: float = 0.5
    seg_prob_source: SegProbSource = "sigmoid_softmax"

    def __post_init__(self) -> None:
        """Reject values that would silently train something else than intended."""
        switches = ("id", "triplet", "orientation", "segmentation")
        if not any(getattr(self, name) for name in switches):
            raise UserError(
                f"loss config: all of {', '.join(switches)} are off; enable at least one"
            )
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UserError(
                f"loss config: label_smoothing={self.label_smoothing} must be in [0, 1); "
                "the default is 0.2"
            )
        for name in ("margin", "alpha", "lam", "w_dice", "w_cross"):
            if getattr(self, name) < 0:
                raise UserError(f"loss config: {name}={getattr(self, name)} must be >= 0")
        for name in ("gamma_dice", "gamma_cross"):
            if getattr(self, name) <= 0:
                raise UserError(f"loss config: {name}={getattr(self, name)} must be > 0")
        if self.seg_prob_source not in get_args(SegProbSource):
            raise UserError(
                f"loss config: seg_prob_source={self.seg_prob_source!r} must be one of "
                f"{', '.join(get_args(SegProbSource))}"
            )


class PawLoss(nn.Module):
    """The PAW-ViT objective ``λ·L_SS + α·L_TRI + L_OR + L_ID`` with switchable terms.

    ``forward`` returns the unweighted value of each enabled term (for logging) and their weighted
    sum under ``'total'``; disabled terms are absent from the dict and from the total.
    """

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()
        cfg = self.config
        self.identity = IdentityLoss(cfg.label_smoothing)
        self.triplet = TripletLoss(cfg.margin)
        self.orientation = OrientationLoss()
        self.segmentation = SegmentationLoss(
            gamma_dice=cfg.gamma_dice,
            gamma_cross=cfg.gamma_cross,
            w_dice=cfg.w_dice,
            w_cross=cfg.w_cross,
            prob_source=cfg.seg_prob_source,
        )

    def forward(
        self,
        descriptor: Tensor,
        id_logits: Tensor,
        labels: Tensor,
        orient_logits: Tensor | None = None,
        orient_targets: Tensor | None = None,
        part_visibility: Tensor | None = None,
        atm_maps: Tensor | None = None,
        atm_logits: Tensor | None = None,
        target_maps: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Compute the enabled terms.

        ``descriptor`` B×D (aggregation token), ``id_logits`` B×C, ``labels`` B;
        ``orient_logits`` B×P (or B×1 for the ViT baseline), ``orient_targets`` B in {−1, 0, 1},
        ``part_visibility`` B×P bool or None; ``atm_maps``/``atm_logits`` B×(K+1)×H×W with the
        background last, ``target_maps`` B×H×W cached labels.
        """
        cfg = self.config
        terms: dict[str, Tensor] = {}
        weighted: list[Tensor] = []
        if cfg.id:
            terms["id"] = self.identity(id_logits, labels)
            weighted.append(terms["id"])
        if cfg.triplet:
            terms["triplet"] = self.triplet(descriptor, labels)
            weighted.append(cfg.alpha * terms["triplet"])
        if cfg.orientation:
            if orient_logits is None or orient_targets is None:
                raise ValueError("orientation loss is on but orient_logits/orient_targets are None")
            terms["orientation"] = self.orientation(orient_logits, orient_targets, part_visibility)
            weighted.append(terms["orientation"])
        if cfg.segmentation:
            if target_maps is None:
                raise ValueError("segmentation loss is on but target_maps is None")
            terms["segmentation"] = self.segmentation(target_maps, maps=atm_maps, logits=atm_logits)
            weighted.append(cfg.lam * terms["segmentation"])
        # Plain sum rather than torch.stack: under autocast the terms may differ in dtype.
        terms["total"] = sum(weighted[1:], weighted[0])
        return terms
