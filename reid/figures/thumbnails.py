"""Pixel-level building blocks shared by the figures: thumbnails, the model's view of a photo,
heat overlays, frames, text strips, PNG output.

The figures are composed as plain numpy RGB arrays rather than matplotlib axes so that every tile
lands at a known pixel position: callers (and tests) can then find a tile and read it back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps

from reid.atomic import atomic_write_bytes
from reid.data.crops import AnimalBox, cut_to
from reid.data.images import read_rgb
from reid.data.transforms import resize_image

WHITE = 255
FONT = cv2.FONT_HERSHEY_SIMPLEX
ELLIPSIS = "..."
# Text is drawn at most this fraction of the strip's height, so letters never touch its edges.
TEXT_FILL = 0.6
# Below this scale the Hershey font stops being legible; longer text is cut instead.
MIN_FONT_SCALE = 0.3
TEXT_MARGIN = 2
OVERLAY_ALPHA = 0.6


def thumbnail(path: Path, side: int) -> np.ndarray:
    """The image at ``path`` letterboxed into a white side×side uint8 RGB square.

    The aspect ratio is kept so that animals are not squashed differently from tile to tile;
    INTER_AREA because thumbnails are almost always shrinking, where it avoids aliasing.
    """
    image = read_rgb(Path(path))
    height, width = image.shape[:2]
    scale = side / max(height, width)
    new_width = min(side, max(1, round(width * scale)))
    new_height = min(side, max(1, round(height * scale)))
    resized = cv2.resize(image, (new_width, new_height), interpolation=cv2.INTER_AREA)
    square = np.full((side, side, 3), WHITE, np.uint8)
    top, left = (side - new_height) // 2, (side - new_width) // 2
    square[top : top + new_height, left : left + new_width] = resized
    return square


def framed(image: np.ndarray, colour: tuple[int, int, int], width: int) -> np.ndarray:
    """A copy of ``image`` with a solid ``width``-pixel border drawn inside its edges.

    Drawing inside keeps the tile's size, so a grid's geometry does not depend on its frames.
    """
    if width < 1:
        raise ValueError(f"frame width must be at least 1 pixel, got {width}")
    out = image.copy()
    out[:width] = colour
    out[-width:] = colour
    out[:, :width] = colour
    out[:, -width:] = colour
    return out


def label_strip(text: str, width: int, height: int) -> np.ndarray:
    """A white width×height strip with ``text`` centred in black.

    The font is scaled down until the text fits; if it still does not at the smallest legible
    scale, it is cut and ends in "..." so that a long identity never spills into its neighbour.
    """
    strip = np.full((height, width, 3), WHITE, np.uint8)
    room = width - 2 * TEXT_MARGIN
    scale = TEXT_FILL * height / _text_size("Ag", 1.0)[1]
    text_width = _text_size(text, scale)[0]
    if text_width > room:
        scale = max(MIN_FONT_SCALE, scale * room / text_width)
    shown, keep = text, len(text)
    while _text_size(shown, scale)[0] > room and keep > 0:
        keep -= 1
        shown = text[:keep] + ELLIPSIS
    text_width, text_height, baseline = _text_size(shown, scale)
    if text_width <= room:
        x = (width - text_width) // 2
        y = (height + text_height - baseline) // 2  # centres the box from cap top to descender
        cv2.putText(strip, shown, (x, y), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def model_views(
    paths: Sequence[Path], boxes: Sequence[AnimalBox | None] | None, img_size: int
) -> np.ndarray:
    """N×S×S×3 uint8: each photo as a model sees it, cut to its animal box (None: whole photo)
    and resized to the model's input size, as extraction does."""
    boxes = boxes if boxes is not None else [None] * len(paths)
    return np.stack(
        [
            resize_image(cut_to(read_rgb(Path(p)), box), img_size)
            for p, box in zip(paths, boxes, strict=True)
        ]
    )


def heat_overlay(image: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """``heat`` (H×W in [0, 1], clipped) in the inferno colours over ``image`` (H×W×3 uint8)
    turned grey, so the colours read as the map and the photo as context."""
    grey = np.repeat(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)[..., None], 3, axis=2)
    colour = colormaps["inferno"](np.clip(heat, 0.0, 1.0))[..., :3] * 255
    return ((1 - OVERLAY_ALPHA) * grey + OVERLAY_ALPHA * colour).round().astype(np.uint8)


def _text_size(text: str, scale: float) -> tuple[int, int, int]:
    """Width, height above the baseline and depth below it of ``text`` drawn at ``scale``."""
    (width, height), baseline = cv2.getTextSize(text, FONT, scale, 1)
    return width, height, baseline


def save_png(image: np.ndarray, out: Path) -> None:
    """Write an H×W×3 uint8 RGB array as a PNG, atomically (parents created).

    The PNG is encoded in memory first, so a reader (or an interrupted run) never sees half a
    figure.
    """
    out = Path(out)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an H×W×3 uint8 RGB image, got {image.shape} {image.dtype}")
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError(f"OpenCV could not encode a {image.shape} image as PNG")
    atomic_write_bytes(out, encoded.tobytes())
