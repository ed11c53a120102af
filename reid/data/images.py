"""Reading images from a dataset root, with one clear error for a missing or corrupt file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from reid.errors import UserError


def read_rgb(path: Path) -> np.ndarray:
    """Return the image at `path` as H×W×3 uint8 RGB (alpha dropped, grey expanded)."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        if not path.exists():
            raise UserError(
                f"image {path} does not exist: fix the catalogue's path or the dataset root"
            )
        raise UserError(
            f"image {path} cannot be decoded (corrupt or not an image): replace or remove it"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
