"""A catalogue ``silhouette`` given inline as a COCO segmentation instead of a mask file.

wildlife-datasets keeps many datasets' masks the COCO way, in the metadata itself:
    polygons  ``[x1, y1, x2, y2, ...]`` (one) or a list of them, in image pixels, pixel (x, y)
              spanning [x, x + 1) × [y, y + 1)
    RLE       ``{"size": [h, w], "counts": [...]}`` (runs, column-major, starting with a run of
              background) or ``{"size": [h, w], "counts": "..."}`` (the same runs compressed
              into COCO's text code)
The catalogue cell holds that value as JSON; :func:`decode` turns it into the image's mask.
"""

from __future__ import annotations

import json

import cv2
import numpy as np

from pseudomasks.errors import UserError

SUPERSAMPLE = 8
MAX_SUPERSAMPLED_PIXELS = 1 << 24  # a large animal in a large photo fills at a coarser scale


def is_inline(cell: str) -> bool:
    """True when a silhouette cell is an inline segmentation rather than a file path."""
    return cell.lstrip()[:1] in ("[", "{")


def decode(cell: str, shape: tuple[int, int], image_id: str) -> np.ndarray:
    """``H×W`` bool mask of the segmentation in `cell` for an image of `shape` (an RLE of another
    size is resized, nearest, as a mask file would be)."""
    try:
        value = json.loads(cell)
        mask = _rle(value) if isinstance(value, dict) else _polygons(value, shape)
    except (ValueError, TypeError, KeyError) as exc:
        raise UserError(
            f"catalogue row {image_id!r}: silhouette is neither a mask file nor a COCO "
            f"segmentation (polygons [x1, y1, ...] or RLE {{size, counts}}): {exc}; fix the "
            f"catalogue or leave the cell empty"
        ) from exc
    if mask.shape != tuple(shape):
        mask = (
            cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)
            > 0
        )
    return mask


def _polygons(value: list, shape: tuple[int, int]) -> np.ndarray:
    polygons = value if value and isinstance(value[0], list) else [value]
    mask = np.zeros(shape, bool)
    for polygon in polygons:
        points = np.asarray(polygon, dtype=np.float64)
        if points.ndim != 1 or points.size < 6 or points.size % 2:
            raise ValueError(f"a polygon needs x, y pairs of at least 3 points, got {polygon!r}")
        _fill(points.reshape(-1, 2), mask)
    return mask


def _fill(points: np.ndarray, mask: np.ndarray) -> None:
    """Set the pixels of `mask` that the polygon covers by half or more, COCO's convention
    (pixel (x, y) spans [x, x + 1) × [y, y + 1)): the polygon is filled at SUPERSAMPLE× within
    its box, and each pixel's share of filled sub-pixels decides."""
    height, width = mask.shape
    x0, y0 = (max(0, int(np.floor(v))) for v in points.min(0))
    x1, y1 = (
        min(n, int(np.ceil(v)) + 1) for v, n in zip(points.max(0), (width, height), strict=True)
    )
    if x1 <= x0 or y1 <= y0:
        return
    scale = SUPERSAMPLE
    while scale > 1 and (x1 - x0) * (y1 - y0) * scale**2 > MAX_SUPERSAMPLED_PIXELS:
        scale //= 2
    fine = np.zeros(((y1 - y0) * scale, (x1 - x0) * scale), np.uint8)
    # cv2 puts pixel centres on integers: sub-pixel k's centre is at (k + 0.5) / scale.
    corners = np.round((points - (x0, y0)) * scale - 0.5).astype(np.int32)
    cv2.fillPoly(fine, [corners], 1)
    share = fine.reshape(y1 - y0, scale, x1 - x0, scale).mean(axis=(1, 3))
    mask[y0:y1, x0:x1] |= share >= 0.5


def _rle(value: dict) -> np.ndarray:
    height, width = (int(v) for v in value["size"])
    counts = value["counts"]
    runs = _uncompress(counts) if isinstance(counts, str) else [int(c) for c in counts]
    if sum(runs) != height * width or min(runs, default=0) < 0:
        raise ValueError(
            f"its runs cover {sum(runs)} pixels, size {height}×{width} has {height * width}"
        )
    flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(bool)  # runs alternate bg, fg
    return flat.reshape(width, height).T  # column-major


def _uncompress(text: str) -> list[int]:
    """COCO's compressed counts: each run is written in 5-bit groups, least significant first,
    as characters from '0' (48) with bit 0x20 meaning "another group follows" and bit 0x10 of
    the last group the sign; from the third run on, each is stored as its difference from the
    run two before it."""
    runs: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise ValueError("compressed counts end inside a run")
            group = ord(text[position]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value -= 1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs
