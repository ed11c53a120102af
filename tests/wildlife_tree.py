"""Miniature datasets in the layouts three wildlife-datasets classes read, made by the tests.

StripeSpotter (zebras): images `img_NNN.jpg` anywhere under the root and `data/SightingData.csv`
(`#imgindex, animal_name, roi ("x y w h"), flank, photo_quality, sighting_date`); rows without
an animal name are the library's 'unknown' identity. SMALST (zebras): images
`zebra_training_set/images/zebra_<I>_frame_<NNNN>.jpg` and their masks, as files, under
`zebra_training_set/bgsub/` with the same name (the library's `segmentation` column).
SeaTurtleID2022 (turtles): images under `turtles-data/data/`, `metadata_splits.csv` (identity,
date, published split `split_closed`) and COCO `annotations.json` whose `head` annotations hold
a box and the mask inline, as polygons or RLE (the library's `segmentation` column).

Each identity is a fixed random stripe pattern on a rectangle "animal" on dark noise; its mask
is that rectangle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

SIZE = 48
STRIPESPOTTER_IDS = ("zeb_a", "zeb_b", "zeb_c", "zeb_d")
SMALST_IDS = ("A", "B", "C", "D", "F", "G")  # one upper-case letter (not in "zebra_")


def _photo(rng: np.random.Generator, pattern: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(RGB photo, 0/255 mask) of one animal with `pattern`."""
    image = rng.integers(0, 60, size=(SIZE, SIZE, 3), dtype=np.uint8)
    y0, x0 = SIZE // 4 + int(rng.integers(-2, 3)), SIZE // 8 + int(rng.integers(-2, 3))
    y1, x1 = 3 * SIZE // 4, 7 * SIZE // 8
    body = np.asarray(Image.fromarray(pattern).resize((x1 - x0, y1 - y0), Image.NEAREST))
    image[y0:y1, x0:x1] = body
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[y0:y1, x0:x1] = 255
    return image, mask


def _patterns(rng: np.random.Generator, n: int) -> list[np.ndarray]:
    return [
        (rng.integers(0, 2, size=(6, 12, 1)) * rng.integers(80, 255, size=(1, 1, 3))).astype(
            np.uint8
        )
        for _ in range(n)
    ]


def make_stripespotter_tree(
    tmp: Path,
    images: int = 4,
    unknown: int = 2,
    flanks: tuple[str, str] = ("left", "right"),
    seed: int = 0,
) -> Path:
    """StripeSpotter's layout: `images` photos of each of STRIPESPOTTER_IDS over two days (even
    photos on the first, odd on the second, flanks alternating between the two `flanks`) plus
    `unknown` photos without an animal name."""
    root = tmp / "stripespotter"
    (root / "data" / "images").mkdir(parents=True)
    rng = np.random.default_rng(seed)
    rows, index = [], 0
    names = [n for n in STRIPESPOTTER_IDS for _ in range(images)] + [None] * unknown
    patterns = dict(zip(STRIPESPOTTER_IDS, _patterns(rng, len(STRIPESPOTTER_IDS)), strict=True))
    for k, name in enumerate(names):
        index += 1
        pattern = patterns[name] if name else _patterns(rng, 1)[0]
        image, _ = _photo(rng, pattern)
        Image.fromarray(image).save(root / "data" / "images" / f"img_{index:03d}.jpg")
        rows.append(
            {
                "#imgindex": index,
                "animal_name": name,
                "roi": f"{2 + k % 3} 4 {40 - k % 5} 30",
                "flank": flanks[k % 2],
                "photo_quality": 1 + k % 3,
                "sighting_date": f"2011-07-{12 + k % 2:02d}",
            }
        )
    pd.DataFrame(rows).to_csv(root / "data" / "SightingData.csv", index=False)
    return root


def make_smalst_tree(tmp: Path, frames: int = 4, seed: int = 0) -> Path:
    """SMALST's layout: `frames` photos of each of SMALST_IDS, each with its mask file."""
    root = tmp / "smalst"
    images, masks = (root / "zebra_training_set" / d for d in ("images", "bgsub"))
    images.mkdir(parents=True)
    masks.mkdir()
    rng = np.random.default_rng(seed)
    frame = 0
    for identity, pattern in zip(SMALST_IDS, _patterns(rng, len(SMALST_IDS)), strict=True):
        for _ in range(frames):
            frame += 1
            image, mask = _photo(rng, pattern)
            name = f"zebra_{identity}_frame_{frame:04d}"
            Image.fromarray(image).save(images / f"{name}.jpg")
            Image.fromarray(mask).save(masks / f"{name}.png")
    return root


SEATURTLE_IDS = ("t001", "t002", "t003")
SEATURTLE_SPLITS = ("train", "train", "valid", "test", "test")  # split_closed of each one's photos


def make_seaturtle_tree(tmp: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """SeaTurtleID2022's layout: 5 photos of each of SEATURTLE_IDS (published split
    SEATURTLE_SPLITS), each with a `head` annotation whose segmentation is the animal's
    rectangle: a polygon for even photos, compressed RLE for odd ones. Returns the root and each
    photo's mask (file name -> bool H×W), as drawn."""
    from pycocotools import mask as coco_mask

    root = tmp / "seaturtle"
    data = root / "turtles-data" / "data"
    rng = np.random.default_rng(0)
    images, annotations, masks = [], [], {}
    patterns = _patterns(rng, len(SEATURTLE_IDS))
    for t, (identity, pattern) in enumerate(zip(SEATURTLE_IDS, patterns, strict=True)):
        for k, split in enumerate(SEATURTLE_SPLITS):
            image_id = 10 * t + k + 1
            file_name = f"images/{identity}/{image_id:04d}.jpg"
            image, mask = _photo(rng, pattern)
            (data / file_name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(data / file_name)
            masks[file_name] = mask > 0
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
            if k % 2 == 0:
                segmentation = [[x0, y0, x1 + 1, y0, x1 + 1, y1 + 1, x0, y1 + 1]]  # pixel edges
            else:
                segmentation = coco_mask.encode(np.asfortranarray((mask > 0).astype(np.uint8)))
                segmentation["counts"] = segmentation["counts"].decode("ascii")
            images.append(
                {
                    "id": image_id,
                    "file_name": file_name,
                    "identity": identity,
                    "date": f"2014:06:{10 + k:02d} 10:00:00",
                    "timestamp": f"2014-06-{10 + k:02d}T10:00:00",
                    "width": SIZE,
                    "height": SIZE,
                    "year": 2014,
                    "split_closed": split,
                    "split_closed_random": split,
                    "split_open": split,
                }
            )
            annotations.append(
                {
                    "id": image_id,
                    "image_id": image_id,
                    "category_id": 3,
                    "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],
                    "segmentation": segmentation,
                    "attributes": {"orientation": ("left", "right", "top", "front", "left")[k]},
                }
            )
    categories = [
        {"id": 1, "name": "turtle"},
        {"id": 2, "name": "flipper"},
        {"id": 3, "name": "head"},
    ]
    coco = {"images": [], "annotations": annotations, "categories": categories}
    (data / "annotations.json").write_text(json.dumps(coco))
    pd.DataFrame(images).to_csv(data / "metadata_splits.csv", index=False)
    return root, masks


CZOO_IDS = ("Alex", "Bobo")
CZOO_DIR = "chimpanzee_faces-master/datasets_cropped_chimpanzee_faces/data_CZoo"


def make_czoo_tree(tmp: Path, images: int = 3) -> tuple[Path, dict[str, list[float]]]:
    """CZoo's layout: face crops under CZOO_DIR and `annotations_czoo.txt`, one line per photo
    (`Filename <path> Name <id> Age <n> Age_Group <g> Gender <g>` then five landmarks as
    `<label> <x> <y>`); the second photo of each animal misses its last landmark (`inf inf`).
    Returns the root and each photo's landmarks as written (path -> [x, y, ...], NaN missing)."""
    root = tmp / "czoo"
    folder = root / CZOO_DIR
    (folder / "face_images").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines, written = [], {}
    for identity, pattern in zip(CZOO_IDS, _patterns(rng, len(CZOO_IDS)), strict=True):
        for k in range(images):
            name = f"face_images/{identity}_{k}.png"
            image, _ = _photo(rng, pattern)
            Image.fromarray(image).save(folder / name)
            points = rng.integers(4, SIZE - 4, size=10).astype(float).tolist()
            if k == 1:
                points[8:] = [float("nan"), float("nan")]
            written[f"{CZOO_DIR}/{name}"] = points
            marks = " ".join(
                f"{label} {'inf' if np.isnan(x) else int(x)} {'inf' if np.isnan(y) else int(y)}"
                for label, x, y in zip(
                    ("LE", "RE", "N", "LM", "RM"), points[::2], points[1::2], strict=True
                )
            )
            lines.append(f"Filename {name} Name {identity} Age 10 Age_Group Adult Gender F {marks}")
    (folder / "annotations_czoo.txt").write_text("\n".join(lines) + "\n")
    return root, written
