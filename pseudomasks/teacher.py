"""The teacher: detector → crop, pose members → keypoints, segmentation members → foreground,
then fusion (or the silhouette template when no keypoint is usable) → one part map per image.

With ``teacher.detector``, members that read pixels run on the crop around the largest animal
and their keypoints and masks are mapped back to full-image pixels, so fusion and the cached
map always cover the whole image (the student sees the whole image). An image in which the
detector finds no animal is processed uncropped, as without a detector, rather than failed: the
members often still find the animal, and the shard records which images had a box
(``ImageResult.detector_box``) so ``qc.json`` shows how often that happened. Likewise for
several animals in one frame: the count of sizeable foreground components that segmentation
members report (``ImageResult.foreground_components``) reaches ``qc.json``.

With ``teacher.crop_margin`` the map covers the animal instead of the whole image: the combined
foreground's extent (inside the detector's box when there is one, since masks are pasted into
a background canvas), grown by the margin, is the image's ``crop_box`` (unless it covers less
than ``teacher.crop_min_area`` of the photo: then the map covers the whole photo); fusion or the template
runs on the foreground cut to that box, with the keypoints shifted into it, so the map's 64×64
cells all fall on and around the animal. The student crops the photo to the same box.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pseudomasks.combine import (
    combine_keypoints,
    combine_masks,
    contributed_keypoints,
    restrict_keypoints,
)
from pseudomasks.fusion import PartMap, fuse_part_map, used_keypoints
from pseudomasks.images import UnreadableInput, read_rgb
from pseudomasks.members.base import (
    Member,
    MemberContext,
    PoseMember,
    Sample,
    SegmentationMember,
)
from pseudomasks.members.detection import (
    CropBox,
    DetectorMember,
    crop_sample,
    foreground_box,
    keypoints_to_crop,
    keypoints_to_full,
    mask_to_full,
)
from pseudomasks.members.registry import (
    detector_member_class,
    pose_member_class,
    segmentation_member_class,
)
from pseudomasks.settings import Settings
from pseudomasks.silhouette_template import silhouette_template_map


@dataclass(frozen=True)
class ImageResult:
    """A map plus the per-image facts the cache stores. ``orientation_source`` is
    'catalogue', 'estimated' or '' (orientation unknown); ``detector_box`` is the crop the
    pixel-reading members saw, None without a detector or when it found no animal;
    ``foreground_components`` is the number of sizeable foreground components a segmentation
    member counted (the most, if several did; 2+: several animals), -1 when none counts them."""

    image_id: str
    part_map: PartMap
    orientation: str
    orientation_source: str
    foreground_fraction: float
    detector_box: CropBox | None
    foreground_components: int
    crop_box: CropBox | None = None
    """The box the map covers (``teacher.crop_margin``); None: the whole image."""
    image_shape: tuple[int, int] = (0, 0)
    """(H, W) of the image the boxes are in."""


@dataclass(frozen=True)
class ImageFailure:
    """An image that gets no map, and why (listed in the shard, never an empty map)."""

    image_id: str
    reason: str


def load_sample(row: dict[str, str], root: Path) -> Sample | ImageFailure:
    try:
        image = read_rgb(root / row["path"])
    except UnreadableInput as exc:
        return ImageFailure(row["image_id"], str(exc))
    return Sample(image_id=row["image_id"], image=image, row=row, root=root)


def catalogue_orientation(row: dict[str, str]) -> str:
    """'left'/'right' from the catalogue (case-insensitive); anything else counts as unknown."""
    value = row.get("orientation", "").strip().lower()
    return value if value in ("left", "right") else ""


class Teacher:
    def __init__(self, settings: Settings, device: str = "cpu") -> None:
        self.settings = settings
        context = MemberContext(
            species=settings.species,
            confidence=settings.confidence,
            device=device,
            weights=settings.weights,
        )
        self.pose: list[PoseMember] = [
            pose_member_class(m.name, "teacher.pose")(m.options, context) for m in settings.pose
        ]
        self.contributed = [
            contributed_keypoints(m.options["keypoints"], settings.species, "teacher.pose")
            for m in settings.pose
        ]
        self.segmentation: list[SegmentationMember] = [
            segmentation_member_class(m.name, "teacher.segmentation")(m.options, context)
            for m in settings.segmentation
        ]
        self.detector: DetectorMember | None = (
            detector_member_class(settings.detector.name, "teacher.detector")(
                settings.detector.options, context
            )
            if settings.detector
            else None
        )

    def process(self, samples: Sequence[Sample]) -> list[ImageResult | ImageFailure]:
        """Maps for a batch of decoded images, in order; unreadable inputs become failures."""
        failed: dict[str, str] = {}
        boxes = self.detector.predict(samples) if self.detector else [None] * len(samples)
        crops = [crop_sample(s, b) for s, b in zip(samples, boxes, strict=True)]
        poses = []
        for m, contributed in zip(self.pose, self.contributed, strict=True):
            seen, frames = _view(m, samples, crops, boxes)
            predicted = _isolated(m.predict, seen, (), failed)
            poses.append(
                [
                    restrict_keypoints(keypoints_to_full(k, f), contributed)
                    for k, f in zip(predicted, frames, strict=True)
                ]
            )
        rule, confidence = self.settings.pose_combine, self.settings.confidence
        keypoints = [
            combine_keypoints([p[i] for p in poses], rule, confidence) for i in range(len(samples))
        ]
        masks = []
        counted: list[Mapping[str, int]] = []
        for m in self.segmentation:
            seen, frames = _view(m, samples, crops, boxes)
            prompts = [keypoints_to_crop(k, f) for k, f in zip(keypoints, frames, strict=True)]
            predicted = _isolated(m.predict, seen, (prompts,), failed)
            counted.append(m.foreground_components())
            masks.append(
                [
                    mask_to_full(mask, f, s.image.shape)
                    for mask, f, s in zip(predicted, frames, samples, strict=True)
                ]
            )
        out: list[ImageResult | ImageFailure] = []
        for i, sample in enumerate(samples):
            if sample.image_id in failed:
                out.append(ImageFailure(sample.image_id, failed[sample.image_id]))
                continue
            foreground = combine_masks([m[i] for m in masks], self.settings.combine)
            components = max(
                (c[sample.image_id] for c in counted if sample.image_id in c), default=-1
            )
            out.append(self._map(sample, keypoints[i], foreground, boxes[i], components))
        return out

    def _map(
        self,
        sample: Sample,
        keypoints: np.ndarray | None,
        foreground: np.ndarray | None,
        box: CropBox | None,
        components: int,
    ) -> ImageResult | ImageFailure:
        s = self.settings
        if foreground is None:
            return ImageFailure(
                sample.image_id, "no segmentation member gave a foreground (empty silhouette?)"
            )
        given = catalogue_orientation(sample.row)
        crop = (
            None
            if s.crop_margin is None
            else foreground_box(foreground, s.crop_margin, s.crop_min_area)
        )
        if crop is not None:
            foreground = foreground[crop.y0 : crop.y1, crop.x0 : crop.x1]
            keypoints = keypoints_to_crop(keypoints, crop)
        if keypoints is not None and used_keypoints(keypoints, s.species, s.confidence).any():
            part_map = fuse_part_map(keypoints, foreground, s.species, s.confidence, s.mask_size)
        elif s.fallback == "silhouette_template":
            part_map = silhouette_template_map(foreground, s.species, given, s.mask_size)
        else:
            return ImageFailure(
                sample.image_id,
                f"no keypoint with v >= {s.confidence} in a part, and teacher.fallback is null",
            )
        if given:
            orientation, source = given, "catalogue"
        else:
            orientation = part_map.orientation
            source = "estimated" if orientation else ""
        return ImageResult(
            image_id=sample.image_id,
            part_map=part_map,
            orientation=orientation,
            orientation_source=source,
            foreground_fraction=float((part_map.labels > 0).mean()),
            detector_box=box,
            foreground_components=components,
            crop_box=crop,
            image_shape=(int(sample.image.shape[0]), int(sample.image.shape[1])),
        )


def _view(
    member: Member,
    samples: Sequence[Sample],
    crops: Sequence[Sample],
    boxes: Sequence[CropBox | None],
) -> tuple[Sequence[Sample], Sequence[CropBox | None]]:
    """What ``member`` is given, and the frame its coordinates are in: pixel readers get the
    crops (frame: the boxes), annotation readers the full images (frame: None, no mapping)."""
    if member.reads_pixels:
        return crops, boxes
    return samples, [None] * len(samples)


def _isolated(
    predict: Callable[..., list[Any]],
    samples: Sequence[Sample],
    per_sample: tuple[Sequence[Any], ...],
    failed: dict[str, str],
) -> list[Any]:
    """Run a member on the batch; if one input is unreadable, rerun sample by sample so only
    the bad images fail (recorded in ``failed``, with None as their prediction)."""
    try:
        return predict(samples, *per_sample)
    except UnreadableInput:
        out: list[Any] = []
        for i, sample in enumerate(samples):
            try:
                out.extend(predict([sample], *[[arg[i]] for arg in per_sample]))
            except UnreadableInput as exc:
                failed.setdefault(sample.image_id, str(exc))
                out.append(None)
        return out
