"""Reading images and binary masks from disk, with per-file failures instead of crashes.

cv2 decodes from bytes (``np.fromfile`` + ``imdecode``) so non-ASCII paths work; like
``cv2.imread`` it applies the EXIF orientation, so keypoints must be in the displayed frame.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class UnreadableInput(Exception):
    """One image's input (the image, a silhouette) cannot be read; the message names the file.

    The run lists that image as failed and goes on; it never gets an empty map."""


def _decode(path: Path, flags: int, what: str) -> np.ndarray:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise UnreadableInput(f"{what} {path}: {exc.strerror or exc}") from exc
    decoded = cv2.imdecode(data, flags) if data.size else None
    if decoded is None:
        raise UnreadableInput(f"{what} {path}: not a decodable image")
    return decoded


def read_rgb(path: Path) -> np.ndarray:
    """``H×W×3`` uint8 RGB."""
    return cv2.cvtColor(_decode(path, cv2.IMREAD_COLOR, "image"), cv2.COLOR_BGR2RGB)


def read_binary_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """``H×W`` bool (nonzero = foreground), resized (nearest) to ``shape`` if it differs."""
    mask = _decode(path, cv2.IMREAD_GRAYSCALE, "silhouette")
    if mask.shape != shape:
        mask = cv2.resize(mask, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
    return mask > 0
