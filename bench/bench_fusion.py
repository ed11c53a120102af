"""Fusion throughput: keypoints + foreground → 64×64 part map, on random quadruped-like inputs.

Usage: python bench/bench_fusion.py [--n 500] [--mask-size 64] [--height 384] [--width 512]

Inputs are made before timing (a side-view tiger: ellipse body, four legs, head disc, tail
line, random size, position and facing; ATRW keypoints on them with 15% dropped), so the
number is fusion alone, including the foreground resize and the tail trace.
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from pseudomasks.fusion import fuse_part_map
from pseudomasks.silhouette_template import silhouette_template_map
from pseudomasks.species import Species, parse_species

TIGER = {
    "name": "tiger",
    "keypoint_schema": "atrw15",
    "parts": [
        {"name": "head", "keypoints": ["left_ear", "right_ear", "nose"]},
        {
            "name": "front_legs",
            "keypoints": ["right_shoulder", "right_front_paw", "left_shoulder", "left_front_paw"],
        },
        {
            "name": "hind_legs",
            "keypoints": [
                "right_hip",
                "right_knee",
                "right_back_paw",
                "left_hip",
                "left_knee",
                "left_back_paw",
            ],
        },
        {"name": "body", "keypoints": ["center"]},
        {"name": "tail", "keypoints": ["tail"]},
    ],
    "links": [["right_hip", "right_knee"], ["right_knee", "right_back_paw"]],
    "tail": ["tail", None],
    "orientation": {"front": ["head", "front_legs"], "rear": ["hind_legs", "tail"]},
}


def random_tiger(
    rng: np.random.Generator, species: Species, h: int, w: int
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground ``h×w`` and ATRW keypoints ``15×3`` of a head-left tiger, maybe mirrored."""
    fg = np.zeros((h, w), np.uint8)
    length = rng.uniform(0.45, 0.7) * w
    cx, cy = rng.uniform(0.4, 0.6) * w, rng.uniform(0.35, 0.5) * h
    bh = length * rng.uniform(0.25, 0.35)
    cv2.ellipse(fg, (int(cx), int(cy)), (int(length / 2), int(bh / 2)), 0, 0, 360, 1, -1)
    leg_len = bh * rng.uniform(1.0, 1.6)
    front_x, hind_x = cx - 0.35 * length, cx + 0.35 * length
    for x in (front_x - 8, front_x + 8, hind_x - 8, hind_x + 8):
        cv2.rectangle(fg, (int(x - 6), int(cy)), (int(x + 6), int(cy + leg_len)), 1, -1)
    head = (int(cx - 0.55 * length), int(cy - 0.4 * bh))
    cv2.circle(fg, head, int(0.3 * bh), 1, -1)
    tail_root = (int(cx + 0.5 * length), int(cy - 0.2 * bh))
    tail_tip = (int(tail_root[0] + 0.3 * length), int(tail_root[1] + rng.uniform(-0.5, 1) * bh))
    cv2.line(fg, tail_root, tail_tip, 1, thickness=5)
    named = {
        "left_ear": (head[0] + 5, head[1] - 0.2 * bh),
        "right_ear": (head[0] - 5, head[1] - 0.2 * bh),
        "nose": (head[0] - 0.25 * bh, head[1] + 5),
        "right_shoulder": (front_x, cy),
        "left_shoulder": (front_x + 8, cy),
        "right_front_paw": (front_x - 8, cy + leg_len),
        "left_front_paw": (front_x + 8, cy + leg_len),
        "right_hip": (hind_x, cy),
        "left_hip": (hind_x + 8, cy),
        "right_knee": (hind_x - 8, cy + leg_len / 2),
        "left_knee": (hind_x + 8, cy + leg_len / 2),
        "right_back_paw": (hind_x - 8, cy + leg_len),
        "left_back_paw": (hind_x + 8, cy + leg_len),
        "tail": tail_root,
        "center": (cx, cy),
    }
    kps = np.array([[*named[k], 2.0] for k in species.keypoints])
    kps[:, :2] += rng.normal(0, 3, (len(kps), 2))
    kps[rng.random(len(kps)) < 0.15, 2] = 0.0
    if rng.random() < 0.5:
        fg = np.ascontiguousarray(fg[:, ::-1])
        kps[:, 0] = w - kps[:, 0]
    return fg.astype(bool), kps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--mask-size", type=int, default=64)
    parser.add_argument("--height", type=int, default=384)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    species = parse_species(TIGER)
    rng = np.random.default_rng(args.seed)
    inputs = [random_tiger(rng, species, args.height, args.width) for _ in range(args.n)]

    start = time.perf_counter()
    maps = [fuse_part_map(k, fg, species, 0.3, args.mask_size) for fg, k in inputs]
    fusion_s = time.perf_counter() - start
    start = time.perf_counter()
    for fg, _ in inputs:
        silhouette_template_map(fg, species, "", args.mask_size)
    template_s = time.perf_counter() - start

    coverage = np.mean([m.visibility for m in maps], axis=0)
    print(f"{args.n} images {args.height}x{args.width} -> {args.mask_size}x{args.mask_size}")
    print(f"fusion:              {args.n / fusion_s:8.1f} images/s")
    print(f"silhouette_template: {args.n / template_s:8.1f} images/s")
    print("part coverage:", dict(zip(species.parts, coverage.round(2).tolist(), strict=True)))


if __name__ == "__main__":
    main()
