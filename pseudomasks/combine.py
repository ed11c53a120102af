"""Ensembling: several pose members into one keypoint set, several masks into one foreground."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

COMBINE_RULES = ("majority", "union", "intersection")


def combine_keypoints(predictions: Sequence[np.ndarray | None]) -> np.ndarray | None:
    """Per keypoint, the prediction with the highest confidence ``v``; ties go to the earlier
    member, so a listed-first source (e.g. human annotations) wins over an equally sure model."""
    present = [p for p in predictions if p is not None]
    if not present:
        return None
    stacked = np.stack(present)
    v = np.nan_to_num(stacked[:, :, 2], nan=-np.inf)
    best = v.argmax(axis=0)
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
