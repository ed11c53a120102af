"""Image and part-map transforms that keep the two aligned (paper §4.1).

The map is resampled with nearest neighbour so labels stay labels; the image bilinearly. Both are
rotated by the same angle about their centres after resizing, which is the same geometry as
rotating first and costs less.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch

MEAN = 0.5  # the paper normalises with mean = std = 0.5 (timm's "inception" constants)
STD = 0.5


@dataclass(frozen=True)
class Normalisation:
    """Per-channel (RGB) mean and std applied to images scaled to [0, 1]. The project's models
    use the paper's 0.5; a frozen pretrained descriptor needs the constants it was trained with
    (ImageNet's for DINOv2, OpenAI's for CLIP), set as ``mean``/``std`` of its model entry."""

    mean: tuple[float, ...] = (MEAN, MEAN, MEAN)
    std: tuple[float, ...] = (STD, STD, STD)

    @classmethod
    def of(cls, model: Mapping[str, Any]) -> Normalisation:
        """The normalisation of a model's settings (config.yaml entry or model.json ``model``);
        unset means the project's 0.5."""
        mean, std = model.get("mean"), model.get("std")
        return cls(
            tuple(float(v) for v in mean) if mean else cls.mean,
            tuple(float(v) for v in std) if std else cls.std,
        )


PROJECT_NORMALISATION = Normalisation()
"""The paper's mean = std = 0.5: every model's unless its settings say otherwise."""


def resize_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize to size×size (area filter when shrinking avoids aliasing the stripes)."""
    shrinking = image.shape[0] > size or image.shape[1] > size
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(image, (size, size), interpolation=interpolation)


def resize_map(labels: np.ndarray, size: int) -> np.ndarray:
    """Resize a label map to size×size with nearest neighbour."""
    if labels.shape == (size, size):
        return labels
    return cv2.resize(labels, (size, size), interpolation=cv2.INTER_NEAREST)


def rotate(array: np.ndarray, degrees: float, nearest: bool) -> np.ndarray:
    """Rotate about the centre; new corners are 0 (black image, background label)."""
    h, w = array.shape[:2]
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), degrees, 1.0)
    flags = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.warpAffine(
        array, matrix, (w, h), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0
    )


def to_tensor(
    image: np.ndarray, normalisation: Normalisation = PROJECT_NORMALISATION
) -> torch.Tensor:
    """H×W×3 uint8 RGB → 3×H×W float32, (x / 255 - mean) / std per channel."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(normalisation.mean).view(3, 1, 1)
    std = torch.tensor(normalisation.std).view(3, 1, 1)
    return tensor.sub_(mean).div_(std)


CROP_ASPECT = (3 / 4, 4 / 3)  # crop width / height relative to the photo's, drawn log-uniformly


def random_crop_box(
    shape: tuple[int, ...], min_area: float, rng: np.random.Generator
) -> tuple[int, int, int, int]:
    """A random crop (top, left, height, width) in pixels: its area a fraction of the photo's drawn
    uniformly from ``min_area``–1, its aspect relative to the photo's drawn log-uniformly from
    :data:`CROP_ASPECT` narrowed so that both sides fit (a ≤ aspect ≤ 1/a), placed uniformly.
    The scale and framing jitter of a random-resized crop, mild enough to keep most of the
    animal."""
    h, w = shape[:2]
    area = rng.uniform(min_area, 1.0)
    low, high = max(CROP_ASPECT[0], area), min(CROP_ASPECT[1], 1 / area)
    aspect = np.exp(rng.uniform(np.log(low), np.log(high)))
    ch = min(h, max(1, round(h * np.sqrt(area / aspect))))
    cw = min(w, max(1, round(w * np.sqrt(area * aspect))))
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return top, left, ch, cw


def crop_pair(
    image: np.ndarray, labels: np.ndarray, box: tuple[int, int, int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the same region, given in image pixels, from an image and its (smaller) part map: the
    map is brought to the image's size with nearest neighbour first, so the two stay aligned to
    the pixel."""
    top, left, ch, cw = box
    h, w = image.shape[:2]
    full = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    return image[top : top + ch, left : left + cw], full[top : top + ch, left : left + cw]


def augment_pair(
    image: np.ndarray,
    labels: np.ndarray,
    img_size: int,
    mask_size: int,
    mirror: bool,
    degrees: float,
    crop: tuple[int, int, int, int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Optionally crop (a box from :func:`random_crop_box`), then resize, optionally mirror, and
    rotate an image and its part map identically."""
    if crop is not None:
        image, labels = crop_pair(image, labels, crop)
    image = resize_image(image, img_size)
    labels = resize_map(labels, mask_size)
    if mirror:
        image = image[:, ::-1]
        labels = labels[:, ::-1]
    if degrees:
        image = rotate(np.ascontiguousarray(image), degrees, nearest=False)
        labels = rotate(np.ascontiguousarray(labels), degrees, nearest=True)
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)


def jitter_colour(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Scale brightness, contrast and saturation, in that order, each by a factor drawn uniformly
    from 1 ± ``strength`` (torchvision's ColorJitter without hue): the same stripes under other
    light. Contrast blends with the image's mean grey, saturation with each pixel's grey; each
    step clips to 0–255, as torchvision's does."""
    brightness, contrast, saturation = map(float, rng.uniform(1 - strength, 1 + strength, size=3))
    out = np.clip(image.astype(np.float32) * brightness, 0, 255)
    grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    out = np.clip(contrast * out + (1 - contrast) * grey.mean(), 0, 255)
    grey = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY)
    out = np.clip(saturation * out + (1 - saturation) * grey[..., None], 0, 255)
    return (out + 0.5).astype(np.uint8)


ERASED_AREA = (0.02, 0.4)  # fraction of the image (Zhong et al., AAAI 2020, the re-ID setting)
ERASED_ASPECT = (0.3, 1 / 0.3)  # height / width, drawn log-uniformly


def erase_rectangle(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random erasing: one rectangle of 2–40 % of the image, of aspect 0.3–3.3, filled with
    uniform noise. Up to 10 draws until one fits; the image is returned unchanged if none does.
    The part map is left as it is: the part is still there, only hidden, as under an occluder."""
    h, w = image.shape[:2]
    for _ in range(10):
        area = rng.uniform(*ERASED_AREA) * h * w
        aspect = np.exp(rng.uniform(*np.log(ERASED_ASPECT)))
        eh, ew = round(np.sqrt(area * aspect)), round(np.sqrt(area / aspect))
        if 0 < eh < h and 0 < ew < w:
            top, left = int(rng.integers(0, h - eh + 1)), int(rng.integers(0, w - ew + 1))
            image = image.copy()
            noise = rng.integers(0, 256, size=(eh, ew, image.shape[2]), dtype=np.uint8)
            image[top : top + eh, left : left + ew] = noise
            return image
    return image
