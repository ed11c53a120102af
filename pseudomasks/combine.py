"""Ensembling: several pose members into one keypoint set, several masks into one foreground.

Pose members can be specialists: a member's ``keypoints`` option lists the species keypoints it
contributes, and :func:`restrict_keypoints` drops the rest of its output before the members are
combined. With ``pose_combine: order`` the members' listed order is a priority, which is how
one model's keypoints replace another's (e.g. SuperAnimal-Quadruped as the base, with AP-10K
listed first and restricted to the keypoints it is better at).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.species import Species

COMBINE_RULES = ("majority", "union", "intersection")
POSE_COMBINE_RULES = ("confidence", "order")


def contributed_keypoints(names: Sequence[str] | None, species: Species, where: str) -> np.ndarray:
    """Boolean mask over the species' keypoints of those a pose member contributes
    (``names`` None: all of them)."""
    if names is None:
        return np.ones(len(species.keypoints), dtype=bool)
    unknown = [n for n in names if n not in species.keypoints]
    if unknown:
        raise UserError(
            f"{where}.keypoints: {unknown[0]!r} is not a keypoint of species '{species.name}' "
            f"({', '.join(species.keypoints)})"
        )
    mask = np.zeros(len(species.keypoints), dtype=bool)
    mask[[species.keypoint_index(n) for n in names]] = True
    return mask


def restrict_keypoints(keypoints: np.ndarray | None, contributed: np.ndarray) -> np.ndarray | None:
    """A member's prediction with the keypoints it does not contribute set to ``[0, 0, 0]``,
    the same "not predicted" a model without that keypoint gives."""
    if keypoints is None:
        return None
    out = np.array(keypoints, dtype=np.float64)
    out[~contributed] = 0.0
    return out


def combine_keypoints(
    predictions: Sequence[np.ndarray | None], rule: str = "confidence", confidence: float = 0.0
) -> np.ndarray | None:
    """One keypoint set from the members' predictions (None = no opinion on this image).

    ``confidence``: per keypoint, the prediction with the highest ``v``; ties go to the earlier
    member, so a listed-first source (e.g. human annotations) wins over an equally sure model.
    ``order``: per keypoint, the first member whose ``v >= confidence`` (the teacher's threshold,
    below which fusion ignores a keypoint anyway); where no member reaches it, the highest ``v``
    as above, so the keypoint stays below the threshold.
    """
    present = [p for p in predictions if p is not None]
    if not present:
        return None
    stacked = np.stack(present)
    v = np.nan_to_num(stacked[:, :, 2], nan=-np.inf)
    best = v.argmax(axis=0)
    if rule == "order":
        sure = v >= confidence
        best = np.where(sure.any(axis=0), sure.argmax(axis=0), best)
    elif rule != "confidence":
        raise ValueError(f"unknown pose combine rule {rule!r}")
    return stacked[best, np.arange(stacked.shape[1])]


def combine_masks(masks: Sequence[np.ndarray | None], rule: str) -> np.ndarray | None:
    """Pixelwise vote over the members that gave a mask (None = no opinion on this image).

    ``majority``: foreground if at least half of the masks say so, i.e. ties count as
    foreground. Segmenters mostly err by missing thin structures (legs, tails), which are
    exactly the parts the map needs, and a false foreground pixel is still assigned to its
    nearest part, while a lost one is gone. With two members majority therefore equals union.
    """
    present = [m.astype(bool) for m in masks if m is not None]
    if not present:
        return None
    stacked = np.stack(present)
    if rule == "union":
        return stacked.any(axis=0)
    if rule == "intersection":
        return stacked.all(axis=0)
    if rule == "majority":
        return 2 * stacked.sum(axis=0) >= len(present)
    raise ValueError(f"unknown combine rule {rule!r}")
