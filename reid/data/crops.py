"""The animal's box in a photo, as the teacher recorded it with the part map (``crop_box`` and
``image_shape`` in the shards, with ``teacher.crop_margin``), and cutting a photo to it.

Training, extraction, ``reid identify`` and the attention figure all cut a photo here, so the
student sees the same crop of the same animal everywhere, with the part map (which covers the
box) aligned to it. A photo read at another size than the teacher saw (a resized copy of the
dataset) gets the box scaled to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AnimalBox:
    """Pixel box ``[x0, x1) × [y0, y1)`` in an image of ``height`` × ``width`` (0 × 0: unknown,
    the box is used as it is)."""

    x0: float
    y0: float
    x1: float
    y1: float
    height: int = 0
    width: int = 0

    def cut(self, image: np.ndarray) -> np.ndarray:
        """The part of ``image`` (H×W×C) inside the box, never empty."""
        h, w = image.shape[:2]
        sx = w / self.width if self.width else 1.0
        sy = h / self.height if self.height else 1.0
        left = min(max(int(np.floor(self.x0 * sx)), 0), w - 1)
        top = min(max(int(np.floor(self.y0 * sy)), 0), h - 1)
        right = max(min(int(np.ceil(self.x1 * sx)), w), left + 1)
        bottom = max(min(int(np.ceil(self.y1 * sy)), h), top + 1)
        return image[top:bottom, left:right]


def boxes_from_arrays(
    image_ids: list[str], crop_box: np.ndarray, image_shape: np.ndarray
) -> dict[str, AnimalBox]:
    """image_id → box for the rows with a finite ``crop_box`` (the others cover whole images)."""
    out = {}
    for image_id, box, shape in zip(image_ids, crop_box, image_shape, strict=True):
        if np.isfinite(box).all():
            out[image_id] = AnimalBox(*(float(v) for v in box), int(shape[0]), int(shape[1]))
    return out


def boxes_to_arrays(boxes: list[AnimalBox | None]) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of :func:`boxes_from_arrays`: n×4 ``crop_box`` (NaN for None) and n×2
    ``image_shape`` (0 × 0 for None)."""
    crop_box = np.full((len(boxes), 4), np.nan)
    image_shape = np.zeros((len(boxes), 2), np.int64)
    for row, box in enumerate(boxes):
        if box is not None:
            crop_box[row] = (box.x0, box.y0, box.x1, box.y1)
            image_shape[row] = (box.height, box.width)
    return crop_box, image_shape


def cut_to(image: np.ndarray, box: AnimalBox | None) -> np.ndarray:
    """``image`` cut to ``box``; the whole image for None."""
    return image if box is None else box.cut(image)


def boxes_for(image_ids: list[str], boxes: Mapping[str, AnimalBox]) -> list[AnimalBox | None]:
    return [boxes.get(i) for i in image_ids]
