"""Members that read the catalogue's own annotations instead of predicting them.

``keypoints`` is a JSON list ``[x, y, v, ...]`` in image pixels in the species' schema order;
``silhouette`` is a binary PNG path relative to the dataset root. An empty or absent cell means
"nothing for this image" (None), so other members or the fallback take over. Both are in
full-image pixels, so these members never read pixels (``reads_pixels = False``): the teacher
gives them the full image even when a detector crops it for the others.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.images import read_binary_mask
from pseudomasks.members.base import PoseMember, Sample, SegmentationMember


class AnnotationPose(PoseMember):
    """Keypoints from the catalogue's ``keypoints`` column."""

    reads_pixels: ClassVar[bool] = False

    def predict(self, samples: Sequence[Sample]) -> list[np.ndarray | None]:
        return [self._parse(s) for s in samples]

    def _parse(self, sample: Sample) -> np.ndarray | None:
        cell = sample.row.get("keypoints", "").strip()
        if not cell:
            return None
        species = self.context.species
        n = len(species.keypoints)
        try:
            values = np.asarray(json.loads(cell), dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise UserError(
                f"catalogue row {sample.image_id!r}: keypoints is not a JSON list of numbers "
                f"({exc}); fix the catalogue"
            ) from exc
        if values.ndim != 1 or values.size != 3 * n:
            raise UserError(
                f"catalogue row {sample.image_id!r}: keypoints has {values.size} numbers, but "
                f"schema '{species.keypoint_schema}' of species '{species.name}' needs "
                f"{3 * n} ({n} × [x, y, v]); check species.keypoint_schema"
            )
        return values.reshape(n, 3)


class AnnotationSilhouette(SegmentationMember):
    """Foreground from the catalogue's ``silhouette`` column."""

    reads_pixels: ClassVar[bool] = False

    def predict(
        self, samples: Sequence[Sample], keypoints: Sequence[np.ndarray | None]
    ) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for sample in samples:
            rel = sample.row.get("silhouette", "").strip()
            out.append(read_binary_mask(sample.root / rel, sample.image.shape[:2]) if rel else None)
        return out
