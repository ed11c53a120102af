"""``pseudomasks show``: a contact sheet of maps over their images, coloured by part, with a
legend of part names, to eyeball a teacher before training on it."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pseudomasks.atomic import atomic_open
from pseudomasks.cache import load_part_maps, read_teacher_json
from pseudomasks.catalogue import read_catalogue
from pseudomasks.errors import UserError
from pseudomasks.images import UnreadableInput, read_rgb

DISPLAY_SIDE = 256
"""Images are shrunk to this longer side: the sheet is for looking, not measuring."""

ALPHA = 0.55


def part_colours(num_parts: int) -> np.ndarray:
    """``(K + 1)×3`` uint8 palette; row 0 (background) is unused."""
    cmap = colormaps["tab10" if num_parts <= 10 else "tab20"]
    rgb = [(0.0, 0.0, 0.0)] + [cmap(k % cmap.N)[:3] for k in range(num_parts)]
    return (np.array(rgb) * 255).round().astype(np.uint8)


def overlay(image: np.ndarray, labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The image with each part pixel blended towards its part colour (map stretched to it)."""
    h, w = image.shape[:2]
    scale = min(1.0, DISPLAY_SIDE / max(h, w))
    if scale < 1:
        w, h = max(1, round(w * scale)), max(1, round(h * scale))
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    big = cv2.resize(labels, (w, h), interpolation=cv2.INTER_NEAREST)
    out = image.astype(np.float32)
    part = big > 0
    out[part] = (1 - ALPHA) * out[part] + ALPHA * palette[big[part]]
    return out.round().astype(np.uint8)


def write_contact_sheet(
    teacher_dir: Path, catalogue: Path, root: Path, out: Path, n: int = 24, columns: int = 6
) -> int:
    """Write the sheet of up to ``n`` maps, evenly spread over the sorted image ids; returns
    how many were drawn."""
    if n < 1:
        raise UserError(f"--n {n}: must be >= 1")
    parts: list[str] = read_teacher_json(teacher_dir)["part_names"]
    maps = load_part_maps(teacher_dir)
    if not maps:
        raise UserError(f"{teacher_dir}: the cache holds no maps (see qc.json for failures)")
    paths = dict(zip(*(read_catalogue(catalogue)[c] for c in ("image_id", "path")), strict=True))
    ids = sorted(maps)
    picked = [ids[i * len(ids) // min(n, len(ids))] for i in range(min(n, len(ids)))]
    palette = part_colours(len(parts))
    cols = min(columns, len(picked))
    rows = math.ceil(len(picked) / cols)
    fig = Figure(figsize=(2.4 * cols, 2.4 * rows + 0.7))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, image_id in zip(axes.ravel(), picked, strict=False):
        cached = maps[image_id]
        if image_id not in paths:
            raise UserError(f"catalogue {catalogue}: no row for cached image_id {image_id!r}")
        try:
            image = read_rgb(root / paths[image_id])
        except UnreadableInput as exc:
            raise UserError(f"{exc}; is --root the dataset root?") from exc
        box = cached.crop_box
        if box is not None:  # the map covers the animal's box: draw it over that crop
            image = image[box.y0 : box.y1, box.x0 : box.x1]
        ax.imshow(overlay(image, cached.labels, palette))
        ax.set_title(f"{image_id} {cached.orientation}".strip(), fontsize=7)
    handles = [
        Patch(color=palette[k + 1] / 255, label=f"{k + 1} {name}") for k, name in enumerate(parts)
    ]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(parts), 6), fontsize=8)
    fig.tight_layout(rect=(0, 0.6 / (2.4 * rows + 0.7), 1, 1))
    with atomic_open(out) as handle:
        fig.savefig(handle, format="png", dpi=100)
    return len(picked)
