"""Members that read the catalogue's own annotations instead of predicting them.

``keypoints`` is a JSON list ``[x, y, v, ...]`` in image pixels in the species' schema order;
``silhouette`` is a binary PNG path relative to the dataset root, or the mask itself as a COCO
segmentation in JSON (polygons or RLE, as wildlife-datasets keeps them; see
:mod:`pseudomasks.coco_segmentation`). An empty or absent cell means
"nothing for this image" (None), so other members or the fallback take over. Both are in
full-image pixels, so these members never read pixels (``reads_pixels = False``): the teacher
gives them the full image even when a detector crops it for the others.

``bbox`` is the animal's box ``[x, y, w, h]`` in image pixels (wildlife-datasets' convention,
which its adapter copies): as ``teacher.detector: {member: annotations}`` it is the crop the
pixel-reading members see, grown by ``margin``. Where one photo shows several animals, one
catalogue row per animal with its own box, this is what tells them apart.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from pseudomasks import coco_segmentation
from pseudomasks.errors import UserError
from pseudomasks.images import read_binary_mask
from pseudomasks.members.base import PoseMember, Sample, SegmentationMember
from pseudomasks.members.detection import CropBox, DetectorMember, padded_box


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
            cell = sample.row.get("silhouette", "").strip()
            shape = sample.image.shape[:2]
            if not cell:
                out.append(None)
            elif coco_segmentation.is_inline(cell):
                out.append(coco_segmentation.decode(cell, shape, sample.image_id))
            else:
                out.append(read_binary_mask(sample.root / cell, shape))
        return out


class AnnotationBox(DetectorMember):
    """The animal's box from the catalogue's ``bbox`` column; None (whole image) where empty."""

    DEFAULTS: ClassVar[Mapping[str, Any]] = {"margin": 0.1}

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        if not 0 <= options["margin"] <= 1:
            raise UserError(f"{where}.margin: must be in [0, 1], got {options['margin']}")

    def predict(self, samples: Sequence[Sample]) -> list[CropBox | None]:
        return [self._box(s) for s in samples]

    def _box(self, sample: Sample) -> CropBox | None:
        cell = sample.row.get("bbox", "").strip()
        if not cell:
            return None
        try:
            x, y, w, h = (float(v) for v in json.loads(cell))
        except (ValueError, TypeError) as exc:
            raise UserError(
                f"catalogue row {sample.image_id!r}: bbox {cell!r} is not a JSON list "
                "[x, y, w, h]; fix the catalogue"
            ) from exc
        if not (w > 0 and h > 0):
            raise UserError(
                f"catalogue row {sample.image_id!r}: bbox {cell!r} has no area (w, h must be > 0)"
            )
        return padded_box((x, y, x + w, y + h), self.options["margin"], sample.image.shape)
