"""DeepLabCut 3's top-down HRNet-w32 heatmap inference (SuperAnimal-Quadruped), ported to timm.

Imported by :mod:`pseudomasks.members.superanimal` only when a teacher uses it (torch, timm and
OpenCV load here). See that module for what is reproduced and how it is checked.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import timm
import torch
from torch import nn

from pseudomasks.errors import UserError

WHERE = "superanimal"
BACKBONE_PREFIX = "backbone.model."
HEAD_PREFIX = "heads.bodypart.heatmap_head.deconv_layers.0."
STRIDE = 4  # hrnet_w32's high-resolution branch; the head does not upsample
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class HeatmapNetwork(nn.Module):
    """timm HRNet-w32 branches; the stride-4 one through a 1×1 transposed convolution."""

    def __init__(self, num_keypoints: int) -> None:
        super().__init__()
        self.num_keypoints = num_keypoints
        self.backbone = timm.create_model(
            "hrnet_w32",
            pretrained=False,
            features_only=True,
            feature_location="",
            out_indices=(1, 2, 3, 4),
        )
        self.head = nn.ConvTranspose2d(32, num_keypoints, kernel_size=1, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x)[0])


def load_network(path: Path) -> HeatmapNetwork:
    """The HRNet-w32 heatmap network with the snapshot's weights, in eval mode. Weights of
    another architecture are an error naming the file, not a silently half-random model."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        raise UserError(
            f"{WHERE}: {path} is not a torch checkpoint readable with weights_only=True; check "
            "the weights entry (a DeepLabCut 3 snapshot .pt is expected)"
        ) from exc
    state = checkpoint.get("model", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, Mapping) or f"{HEAD_PREFIX}bias" not in state:
        raise UserError(
            f"{WHERE}: {path} is not a DeepLabCut 3 HRNet-w32 heatmap snapshot (no "
            f"{HEAD_PREFIX}* weights); check the weights entry"
        )
    other = sorted(k for k in state if not k.startswith((BACKBONE_PREFIX, HEAD_PREFIX)))
    if other:
        raise UserError(
            f"{WHERE}: {path} has weights this member does not run ({other[0]}, ...): only "
            "HRNet-w32 models with one heatmap head and no location refinement are supported"
        )
    network = HeatmapNetwork(num_keypoints=int(state[f"{HEAD_PREFIX}bias"].shape[0]))
    try:
        network.backbone.load_state_dict(_strip(state, BACKBONE_PREFIX), strict=True)
        network.head.load_state_dict(_strip(state, HEAD_PREFIX), strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())
        raise UserError(
            f"{WHERE}: {path} does not fit HRNet-w32 ({reason[:300]}); check the weights entry"
        ) from exc
    return network.eval()


def _strip(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def square_crop(
    image: np.ndarray, box: tuple[float, float, float, float], size: int
) -> tuple[np.ndarray, tuple[int, int], tuple[float, float]]:
    """The ``size``×``size`` network crop of box ``(x, y, w, h)``, with the offset and scale
    that map crop pixels back to the image (``image = crop * scale + offset``)."""
    height, width = image.shape[:2]
    x, y, w, h = np.asarray(box, dtype=np.float32)  # DeepLabCut's box arithmetic is float32
    cx, cy = x + w / 2, y + h / 2
    w = h = max(w, h)  # keep the context: the short side grows to a square
    # Python's round (half to even) on purpose: DeepLabCut's crops are placed this way.
    x1, y1 = int(round(cx - w / 2)), int(round(cy - h / 2))
    x2, y2 = int(round(cx + w / 2)), int(round(cy + h / 2))
    left, top = max(0, -x1), max(0, -y1)
    right, bottom = max(0, x2 - width), max(0, y2 - height)
    x1, y1, x2, y2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
    region = np.zeros((y2 - y1 + top + bottom, x2 - x1 + left + right, 3), dtype=np.uint8)
    region[top : top + y2 - y1, left : left + x2 - x1] = image[y1:y2, x1:x2]
    crop = cv2.resize(region, (size, size), interpolation=cv2.INTER_LINEAR)
    scale = (region.shape[1] / size, region.shape[0] / size)
    return crop, (x1 - left, y1 - top), scale


def normalise(crop: np.ndarray) -> np.ndarray:
    """ImageNet normalisation of an RGB uint8 crop, in float32 as DeepLabCut computes it."""
    mean = np.array(IMAGENET_MEAN, dtype=np.float32) * 255
    inverse_std = np.reciprocal(np.array(IMAGENET_STD, dtype=np.float32) * 255)
    return (crop.astype(np.float32) - mean) * inverse_std


def predict_keypoints(
    network: HeatmapNetwork,
    images: Sequence[np.ndarray],
    boxes: Sequence[tuple[float, float, float, float]],
    crop_size: int,
) -> list[np.ndarray]:
    """Keypoints ``K×3`` ``[x, y, score]`` in image pixels for each image's box, one batch."""
    crops, offsets, scales = [], [], []
    for image, box in zip(images, boxes, strict=True):
        crop, offset, scale = square_crop(image, box, crop_size)
        crops.append(normalise(crop).transpose(2, 0, 1))
        offsets.append(offset)
        scales.append(scale)
    device = next(network.parameters()).device
    # Contiguous NCHW: a channels-last batch would take other convolution kernels, whose
    # rounding moves the heatmaps by about 1e-5 from DeepLabCut's.
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(crops))).to(device)
    with torch.inference_mode():
        heatmaps = network(batch).float().cpu()
    b, k, _, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, -1)
    peak = flat.argmax(dim=2)  # the first maximum in row-major order
    score = flat.gather(2, peak[..., None])[..., 0].clamp(0, 1).numpy().astype(np.float64)
    cell_x, cell_y = (peak % w).numpy(), (peak // w).numpy()
    crop_xy = np.stack([cell_x, cell_y], axis=-1) * STRIDE + STRIDE / 2
    image_xy = crop_xy * np.array(scales)[:, None, :] + np.array(offsets)[:, None, :]
    return [np.column_stack([xy, s]) for xy, s in zip(image_xy, score, strict=True)]
