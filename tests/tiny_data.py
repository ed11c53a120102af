"""Tiny re-ID datasets made by the tests: images, catalogue and teacher shards in the real formats.

Each identity is a fixed random stripe pattern on a rectangle "animal" whose part map is known
exactly (left half part 1, right half part 2), so training has something to learn and the maps
are true by construction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from reid.catalogue import write_catalogue

PART_NAMES = ["front", "rear"]


@dataclass
class TinyDataset:
    root: Path
    catalogue: Path
    masks: Path
    table: pd.DataFrame


def _draw(
    rng: np.random.Generator, pattern: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    image = rng.integers(0, 60, size=(size, size, 3), dtype=np.uint8)
    y0, y1 = size // 4 + int(rng.integers(-2, 3)), 3 * size // 4
    x0, x1 = size // 8 + int(rng.integers(-2, 3)), 7 * size // 8
    body = cv2.resize(pattern, (x1 - x0, y1 - y0), interpolation=cv2.INTER_NEAREST)
    image[y0:y1, x0:x1] = body
    labels = np.zeros((size, size), np.uint8)
    mid = (x0 + x1) // 2
    labels[y0:y1, x0:mid] = 1
    labels[y0:y1, mid:x1] = 2
    return image, labels


def make_tiny_dataset(
    tmp: Path,
    train_identities: int = 6,
    test_identities: int = 4,
    images: int = 4,
    size: int = 48,
    seed: int = 0,
    teacher_id: str = "abc123def456",
) -> TinyDataset:
    root = tmp / "data"
    rng = np.random.default_rng(seed)
    rows, maps, ids = [], [], []
    for n in range(train_identities + test_identities):
        identity = f"id{n:02d}"
        pattern = (
            rng.integers(0, 2, size=(6, 12, 1)) * rng.integers(80, 255, size=(1, 1, 3))
        ).astype(np.uint8)
        split = "train" if n < train_identities else "test"
        for k in range(images):
            image, labels = _draw(rng, pattern, size)
            path = Path(identity) / f"{k}.png"
            (root / identity).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            image_id = f"{identity}/{k}"
            rows.append(
                dict(
                    image_id=image_id,
                    path=str(path),
                    identity=identity,
                    split=split,
                    orientation="left" if k % 2 == 0 else "right",
                    encounter=str(k // 2),
                )
            )
            if split == "train":
                maps.append(cv2.resize(labels, (16, 16), interpolation=cv2.INTER_NEAREST))
                ids.append(image_id)
    table = pd.DataFrame(rows)
    catalogue = tmp / "catalogue.csv"
    write_catalogue(table, catalogue)
    masks = tmp / "masks" / teacher_id
    masks.mkdir(parents=True)
    (masks / "teacher.json").write_text(
        json.dumps({"teacher_id": teacher_id, "part_names": PART_NAMES})
    )
    np.savez(
        masks / "shard-0000-of-0001.npz",
        image_id=np.asarray(ids),
        labels=np.stack(maps),
        visibility=np.ones((len(ids), 2), bool),
        orientation=np.asarray([""] * len(ids)),
    )
    return TinyDataset(root, catalogue, masks, table)


def run_settings(**train_overrides) -> dict:
    """Resolved run settings for a tiny PAW-ViT at 32×32 (what the Snakefile would pass)."""
    train = {
        "epochs": 2,
        "eval_every": 0,
        "select": "final",
        "seed": 0,
        "skip_missing_maps": False,
        "precision": "auto",
        "batch": {"identities": 3, "images": 2},
        "optimizer": {
            "lr": 3e-4,
            "weight_decay": 5e-4,
            "stem_lr_scale": 1.0,
            "frozen_stem_blocks": 0,
        },
        "schedule": {"warmup_epochs": 1, "warmup_start_lr": 1e-5, "final_lr": 1e-4},
        "augment": {
            "rotation": 15,
            "erasing": 0.0,
            "min_crop_area": 1.0,
            "colour": 0.0,
            "flip_as_new_identity": True,
        },
        "losses": {
            "id": True,
            "triplet": True,
            "orientation": True,
            "segmentation": True,
            "label_smoothing": 0.2,
            "margin": 0.4,
            "alpha": 0.5,
            "lambda_ss": 1.0,
            "gamma_dice": 1.2,
            "gamma_cross": 1.2,
            "w_dice": 0.5,
            "w_cross": 0.5,
            "seg_prob_source": "sigmoid_softmax",
        },
    }
    for key, value in train_overrides.items():
        if isinstance(value, dict):
            train[key] = {**train[key], **value}
        else:
            train[key] = value
    return {
        "model": {"arch": "paw_vit_tiny_patch16_256", "img_size": 32, "drop_path_rate": 0.1},
        "train": train,
        "protocol": "all-vs-all",
        "flip_test": False,
    }
