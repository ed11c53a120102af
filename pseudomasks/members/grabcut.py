"""GrabCut segmentation seeded by the pose keypoints; needs no weights.

Initial labels: a strip of ``border`` × the image size along the edges is sure background, so
GrabCut always has background to learn from; the keypoints' bounding box, padded on each side by
``box_margin`` × max(box width, box height, a quarter of the image's longer side), is probable
foreground (keypoints sit on joints, inside the silhouette, so the box must grow); the rest is
probable background, so the animal may still extend past the box. Visible keypoints are
sure-foreground discs. Without keypoints, everything inside the border strip is probable
foreground and a central box of ``centre_seed`` × the image size is sure foreground: unseeded,
GrabCut often collapses to an empty mask on field photographs (a fifth of a nyala sample), and
photographers centre the animal. Images are shrunk to ``max_side`` first: GrabCut's cost grows
with the pixel count and the map is only 64×64 anyway. Images under ``MIN_SIDE`` pixels get no
mask (None): other members or an empty-foreground failure take over.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import cv2
import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.members.base import Sample, SegmentationMember

MIN_SIDE = 8
"""Below this many pixels per side GrabCut has too few samples for its colour models."""


class GrabCut(SegmentationMember):
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "iterations": 5,
        "box_margin": 0.25,
        "border": 0.03,
        "max_side": 256,
        "centre_seed": 0.1,
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        if options["iterations"] < 1:
            raise UserError(f"{where}.iterations: must be >= 1, got {options['iterations']}")
        if not 0 <= options["box_margin"] <= 2:
            raise UserError(f"{where}.box_margin: must be in [0, 2]")
        if not 0 < options["border"] < 0.5:
            raise UserError(f"{where}.border: must be in (0, 0.5)")
        if options["max_side"] < 32:
            raise UserError(f"{where}.max_side: must be >= 32")
        if not 0 <= options["centre_seed"] < 1:
            raise UserError(f"{where}.centre_seed: must be in [0, 1)")

    def predict(
        self, samples: Sequence[Sample], keypoints: Sequence[np.ndarray | None]
    ) -> list[np.ndarray | None]:
        return [self._segment(s.image, k) for s, k in zip(samples, keypoints, strict=True)]

    def _segment(self, image: np.ndarray, keypoints: np.ndarray | None) -> np.ndarray | None:
        h, w = image.shape[:2]
        if min(h, w) < MIN_SIDE:
            return None
        scale = min(1.0, self.options["max_side"] / max(h, w))
        small = image
        if scale < 1:
            size = (max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
        sh, sw = small.shape[:2]
        seeds = self._seed_points(keypoints, sw / w, sh / h)
        mask = self._initial_mask(sh, sw, seeds)
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        # GrabCut's k-means draws from OpenCV's global RNG: seeded per image, a photo's mask
        # does not depend on which photos were cut before it (shard, batch, `reid identify`)
        cv2.setRNGSeed(0)
        cv2.grabCut(
            np.ascontiguousarray(small[:, :, ::-1]),
            mask,
            None,
            bgd,
            fgd,
            self.options["iterations"],
            cv2.GC_INIT_WITH_MASK,
        )
        fg = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
        if (sh, sw) != (h, w):
            fg = cv2.resize(fg, (w, h), interpolation=cv2.INTER_NEAREST)
        return fg.astype(bool)

    def _seed_points(self, keypoints: np.ndarray | None, sx: float, sy: float) -> np.ndarray:
        if keypoints is None:
            return np.zeros((0, 2))
        ok = np.isfinite(keypoints).all(axis=1) & (keypoints[:, 2] >= self.context.confidence)
        return keypoints[ok, :2] * [sx, sy]

    def _initial_mask(self, h: int, w: int, seeds: np.ndarray) -> np.ndarray:
        bx = max(1, round(self.options["border"] * w))
        by = max(1, round(self.options["border"] * h))
        x0, y0, x1, y1 = bx, by, w - bx, h - by
        inside = (seeds[:, 0] >= 0) & (seeds[:, 0] < w) & (seeds[:, 1] >= 0) & (seeds[:, 1] < h)
        seeds = seeds[inside]
        if len(seeds):
            lo, hi = seeds.min(axis=0), seeds.max(axis=0)
            pad = self.options["box_margin"] * max(*(hi - lo), 0.25 * max(h, w))
            x0 = max(x0, int(lo[0] - pad))
            y0 = max(y0, int(lo[1] - pad))
            x1 = min(x1, int(np.ceil(hi[0] + pad)) + 1)
            y1 = min(y1, int(np.ceil(hi[1] + pad)) + 1)
        mask = np.full((h, w), cv2.GC_BGD, np.uint8)
        mask[by : h - by, bx : w - bx] = cv2.GC_PR_BGD
        mask[y0:y1, x0:x1] = cv2.GC_PR_FGD
        radius = max(1, round(0.01 * np.hypot(h, w)))
        for x, y in seeds:
            cv2.circle(mask, (int(x), int(y)), radius, int(cv2.GC_FGD), thickness=-1)
        if len(seeds) == 0 and self.options["centre_seed"] > 0:
            half_w = max(1, round(self.options["centre_seed"] * w / 2))
            half_h = max(1, round(self.options["centre_seed"] * h / 2))
            mask[h // 2 - half_h : h // 2 + half_h, w // 2 - half_w : w // 2 + half_w] = cv2.GC_FGD
        return mask
