"""Miniature datasets in the layouts two wildlife-datasets classes read, made by the tests.

StripeSpotter (zebras): images `img_NNN.jpg` anywhere under the root and `data/SightingData.csv`
(`#imgindex, animal_name, roi ("x y w h"), flank, photo_quality, sighting_date`); rows without
an animal name are the library's 'unknown' identity. SMALST (zebras): images
`zebra_training_set/images/zebra_<I>_frame_<NNNN>.jpg` and their masks, as files, under
`zebra_training_set/bgsub/` with the same name (the library's `segmentation` column).

Each identity is a fixed random stripe pattern on a rectangle "animal" on dark noise; its mask
is that rectangle.
"""

from __future__ import annotations

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
