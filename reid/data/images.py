"""Reading images from a dataset root, with one clear error for a missing or corrupt file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from reid.errors import UserError

# OpenCV prints its own warning line for every file it cannot read; the UserError below says it
# once, with the fix.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)

MISSING_FIX = "fix the catalogue's path or the dataset root"


def read_rgb(path: Path, missing_fix: str = MISSING_FIX) -> np.ndarray:
    """Return the image at `path` as H×W×3 uint8 RGB (alpha dropped, grey expanded).

    `missing_fix` is the advice given when the file does not exist (catalogue images by default).
    """
    if not path.is_file():
        raise UserError(f"image {path} does not exist: {missing_fix}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(
            f"image {path} cannot be decoded (corrupt or not an image): replace or remove it"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
