"""Part attention (paper Fig. 2): what each part token of a trained PAW-ViT looks at.

One row per image: the image as the model sees it (resized to its input size), the part labels it
predicts (each pixel coloured by its strongest ATM map, background left bare), then the K + 1 ATM
maps as heat maps over the image, one panel per part and the background, named. The heat scale is
the sigmoid's own [0, 1] in every panel, never stretched per panel, so a part that attends to
nothing looks empty instead of being blown up into a confident-looking map.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from matplotlib import colormaps

from reid.data.crops import AnimalBox
from reid.data.transforms import PROJECT_NORMALISATION, Normalisation, to_tensor
from reid.errors import UserError
from reid.figures.thumbnails import OVERLAY_ALPHA, heat_overlay, label_strip, model_views, save_png
from reid.models import PawViT

LABEL_HEIGHT = 22
GAP = 4


def part_palette(num_parts: int) -> np.ndarray:
    """(K + 1)×3 uint8 colours; row 0 (background) is unused, parts 1..K follow tab10/tab20."""
    cmap = colormaps["tab10" if num_parts <= 10 else "tab20"]
    rgb = [(0.0, 0.0, 0.0)] + [cmap(k % cmap.N)[:3] for k in range(num_parts)]
    return (np.array(rgb) * 255).round().astype(np.uint8)


def attention_maps(
    model: torch.nn.Module,
    paths: Sequence[Path],
    img_size: int,
    device: torch.device,
    normalisation: Normalisation = PROJECT_NORMALISATION,
    boxes: Sequence[AnimalBox | None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The model's view of each image (N×S×S×3 uint8; cut to its animal box when ``boxes``
    gives one) and its ATM maps (N×(K+1)×M×M in [0, 1])."""
    if not isinstance(model, PawViT):
        raise UserError(
            f"part attention needs a part-aware model (paw_vit_*), not {type(model).__name__}: "
            "baselines have no part tokens"
        )
    if not paths:
        raise UserError("no images given for the part-attention figure")
    views = model_views(paths, boxes, img_size)
    batch = torch.stack([to_tensor(view, normalisation) for view in views]).to(device)
    maps = model.part_attention(batch).float().cpu().numpy()
    return views, maps


def draw_part_attention(
    views: np.ndarray, maps: np.ndarray, part_names: Sequence[str], out: Path, side: int = 160
) -> list[str]:
    """Write the figure; returns the panel titles (image, predicted parts, K parts, background)."""
    num_tokens = maps.shape[1]
    if len(part_names) != num_tokens - 1:
        raise UserError(
            f"{len(part_names)} part names for a model with {num_tokens - 1} part tokens: the "
            "model.json part_names must match the teacher the model was trained with"
        )
    titles = ["image", "predicted parts", *part_names, "background"]
    palette = part_palette(num_tokens - 1)
    width = len(titles) * side + (len(titles) - 1) * GAP
    header = np.full((LABEL_HEIGHT, width, 3), 255, np.uint8)
    for column, title in enumerate(titles):
        x0 = column * (side + GAP)
        header[:, x0 : x0 + side] = label_strip(title, side, LABEL_HEIGHT)
    rows = [header]
    for view, image_maps in zip(views, maps, strict=True):
        image = cv2.resize(view, (side, side), interpolation=cv2.INTER_AREA)
        big = np.stack(
            [cv2.resize(m, (side, side), interpolation=cv2.INTER_LINEAR) for m in image_maps]
        )
        predicted = big.argmax(axis=0)
        labels = np.where(predicted == num_tokens - 1, 0, predicted + 1)  # background token → 0
        parts = image.astype(np.float32)
        coloured = labels > 0
        parts[coloured] = (1 - OVERLAY_ALPHA) * parts[coloured] + OVERLAY_ALPHA * palette[
            labels[coloured]
        ]
        panels = [image, parts.round().astype(np.uint8)]
        panels += [heat_overlay(image, token_map) for token_map in big]
        row = np.full((side, width, 3), 255, np.uint8)
        for column, panel in enumerate(panels):
            x0 = column * (side + GAP)
            row[:, x0 : x0 + side] = panel
        rows.extend([np.full((GAP, width, 3), 255, np.uint8), row])
    save_png(np.concatenate(rows), out)
    return titles
