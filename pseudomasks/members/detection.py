"""The detector interface (``teacher.detector``) and the crop ↔ full-image mapping around it.

A detector finds the animal's box so that pose and segmentation models see it large, as they
were trained to. Their outputs are mapped back to the whole image (keypoints predicted on the crop
are shifted back, masks pasted into a full-size canvas whose outside is background), so fusion
sees one frame whatever each member saw; the map is cut to the animal afterwards only with
``teacher.crop_margin`` (:func:`foreground_box`). A sample without a box (nothing detected) is
processed uncropped.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from pseudomasks.members.base import Member, Sample


@dataclass(frozen=True)
class CropBox:
    """Pixel box ``[x0, x1) × [y0, y1)``, inside the image and never empty."""

    x0: int
    y0: int
    x1: int
    y1: int


def padded_box(xyxy: Sequence[float], margin: float, shape: tuple[int, ...]) -> CropBox:
    """A detection grown by ``margin`` × its width/height on each side (detectors cut off legs
    and tails, which are parts), rounded outwards and clipped to the image ``shape`` (H, W)."""
    h, w = shape[:2]
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    pad_x, pad_y = margin * max(x1 - x0, 0.0), margin * max(y1 - y0, 0.0)
    left = min(max(int(np.floor(x0 - pad_x)), 0), w - 1)
    top = min(max(int(np.floor(y0 - pad_y)), 0), h - 1)
    right = max(min(int(np.ceil(x1 + pad_x)), w), left + 1)
    bottom = max(min(int(np.ceil(y1 + pad_y)), h), top + 1)
    return CropBox(left, top, right, bottom)


def foreground_box(foreground: np.ndarray, margin: float, min_area: float = 0.0) -> CropBox | None:
    """The extent of a bool ``H×W`` foreground grown by ``margin`` (see :func:`padded_box`);
    None (the image stays whole) for an empty foreground or one whose extent covers less than
    ``min_area`` of the image: a speck the segmenter kept is no animal to cut the photo to."""
    ys = np.flatnonzero(foreground.any(axis=1))
    xs = np.flatnonzero(foreground.any(axis=0))
    if not len(ys):
        return None
    extent = (xs[-1] + 1 - xs[0]) * (ys[-1] + 1 - ys[0])
    if extent < min_area * foreground.shape[0] * foreground.shape[1]:
        return None
    return padded_box((xs[0], ys[0], xs[-1] + 1, ys[-1] + 1), margin, foreground.shape)


def crop_sample(sample: Sample, box: CropBox | None) -> Sample:
    """The sample with its image cut to ``box`` (unchanged for None)."""
    if box is None:
        return sample
    return replace(sample, image=sample.image[box.y0 : box.y1, box.x0 : box.x1])


def keypoints_to_full(keypoints: np.ndarray | None, box: CropBox | None) -> np.ndarray | None:
    """Crop-pixel keypoints ``N×3`` shifted to full-image pixels (v unchanged)."""
    if keypoints is None or box is None:
        return keypoints
    return keypoints + np.array([box.x0, box.y0, 0.0])


def keypoints_to_crop(keypoints: np.ndarray | None, box: CropBox | None) -> np.ndarray | None:
    """Full-image keypoints ``N×3`` in crop pixels, for segmenters that run on the crop."""
    if keypoints is None or box is None:
        return keypoints
    return keypoints - np.array([box.x0, box.y0, 0.0])


def mask_to_full(
    mask: np.ndarray | None, box: CropBox | None, shape: tuple[int, ...]
) -> np.ndarray | None:
    """A crop's ``h×w`` bool foreground pasted into a full ``H×W`` background canvas."""
    if mask is None or box is None:
        return mask
    full = np.zeros(shape[:2], bool)
    full[box.y0 : box.y1, box.x0 : box.x1] = mask
    return full


class DetectorMember(Member, ABC):
    @abstractmethod
    def predict(self, samples: Sequence[Sample]) -> list[CropBox | None]:
        """The animal's crop box per sample, or None when nothing was found."""
