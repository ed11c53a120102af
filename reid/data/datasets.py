"""Catalogue-backed datasets: training samples with their part maps, and plain images to embed.

Training follows paper §4.1: every training image also appears mirrored, with its map mirrored, a
new class id and the orientation label inverted ("flip as a new identity", as left and right flanks
of one animal are different patterns). Nothing is written to disk for it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset, Sampler

from reid.data.crops import AnimalBox, cut_to
from reid.data.images import read_rgb
from reid.data.part_maps import PartMaps
from reid.data.transforms import (
    PROJECT_NORMALISATION,
    Normalisation,
    augment_pair,
    erase_rectangle,
    jitter_colour,
    random_crop_box,
    resize_image,
    to_tensor,
)
from reid.losses import ORIENTATION_CODES


@dataclass(frozen=True)
class TrainSample:
    """One entry of the training set: a catalogue row, possibly mirrored."""

    image_id: str
    path: Path
    class_id: int
    orientation: int  # 0 left, 1 right, −1 unknown (after mirroring)
    mirrored: bool
    map_row: int


class TrainDataset(Dataset):
    """Training images with their part maps, augmented identically (optional random crop,
    rotation, resize, mirror); optionally random erasing of the image alone.

    Items are addressed as ``(index, seed)`` so augmentation depends only on the seed the batch
    sampler assigns (see :class:`SeededBatches`), not on which worker process draws it: a resumed
    run sees exactly the augmentations an uninterrupted one would.
    """

    def __init__(
        self,
        rows: pd.DataFrame,
        root: Path,
        part_maps: PartMaps,
        img_size: int,
        mask_size: int,
        rotation: float,
        flip_as_new_identity: bool,
        normalisation: Normalisation = PROJECT_NORMALISATION,
        erasing: float = 0.0,
        min_crop_area: float = 1.0,
        colour: float = 0.0,
    ) -> None:
        self.root = root
        self.normalisation = normalisation
        self.maps = part_maps
        self.img_size = img_size
        self.mask_size = mask_size
        self.rotation = rotation
        self.erasing = erasing
        self.min_crop_area = min_crop_area
        self.colour = colour
        self.identities = sorted(rows["identity"].unique())
        identity_index = {identity: i for i, identity in enumerate(self.identities)}
        num_identities = len(self.identities)
        samples: list[TrainSample] = []
        for mirrored in (False, True) if flip_as_new_identity else (False,):
            for row in rows.itertuples(index=False):
                map_row = part_maps.row_of[row.image_id]
                orientation = row.orientation or part_maps.orientation[map_row]
                code = ORIENTATION_CODES.get(orientation, -1)
                if mirrored and code >= 0:
                    code = 1 - code
                samples.append(
                    TrainSample(
                        image_id=row.image_id,
                        path=root / row.path,
                        class_id=identity_index[row.identity] + (num_identities if mirrored else 0),
                        orientation=code,
                        mirrored=mirrored,
                        map_row=map_row,
                    )
                )
        self.samples = samples
        self.num_classes = num_identities * (2 if flip_as_new_identity else 1)

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def class_ids(self) -> list[int]:
        """Labels for the PK sampler, straight from the catalogue (no image is opened)."""
        return [s.class_id for s in self.samples]

    def __getitem__(self, key: tuple[int, int]) -> dict[str, torch.Tensor]:
        index, seed = key
        sample = self.samples[index]
        rng = np.random.default_rng(seed)
        degrees = float(rng.uniform(-self.rotation, self.rotation)) if self.rotation else 0.0
        image = cut_to(read_rgb(sample.path), self.maps.boxes.get(sample.image_id))
        crop = (
            random_crop_box(image.shape, self.min_crop_area, rng)
            if self.min_crop_area < 1
            else None
        )
        image, labels = augment_pair(
            image,
            self.maps.labels[sample.map_row],
            self.img_size,
            self.mask_size,
            mirror=sample.mirrored,
            degrees=degrees,
            crop=crop,
        )
        if self.colour:
            image = jitter_colour(image, self.colour, rng)
        if self.erasing and rng.random() < self.erasing:
            image = erase_rectangle(image, rng)
        num_parts = self.maps.num_parts
        # A part is visible when any of its pixels survived the augmentation (paper §3.4).
        visible = np.zeros(num_parts, dtype=bool)
        present = np.unique(labels)
        visible[present[(present >= 1) & (present <= num_parts)] - 1] = True
        return {
            "image": to_tensor(image, self.normalisation),
            "target_map": torch.from_numpy(labels.astype(np.int64)),
            "visibility": torch.from_numpy(visible),
            "label": torch.tensor(sample.class_id),
            "orientation": torch.tensor(sample.orientation),
        }


class SeededBatches(Sampler[list[tuple[int, int]]]):
    """Attach a per-sample augmentation seed to each index of a batch sampler's batches.

    Seeds are derived from (seed, epoch, batch, rank, position), so they are fixed by the
    training state alone. `start` is the number of batches of this epoch already consumed (for resume).
    """

    def __init__(self, batch_sampler: Sampler[list[int]], seed: int, rank: int = 0) -> None:
        self.batch_sampler = batch_sampler
        self.seed = seed
        self.rank = rank  # under DDP each rank draws its own seeds for its own batches
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start

    def __len__(self) -> int:
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for number, batch in enumerate(self.batch_sampler, start=self.start):
            rng = np.random.default_rng([self.seed, self.epoch, number, self.rank])
            seeds = rng.integers(0, 2**63 - 1, size=len(batch))
            yield [(int(i), int(s)) for i, s in zip(batch, seeds, strict=True)]


class ImageDataset(Dataset):
    """Catalogue images, each cut to its animal box if it has one, resized for the model, for
    descriptor extraction."""

    def __init__(
        self,
        paths: list[Path],
        img_size: int,
        normalisation: Normalisation = PROJECT_NORMALISATION,
        boxes: list[AnimalBox | None] | None = None,
    ) -> None:
        self.paths = paths
        self.img_size = img_size
        self.normalisation = normalisation
        self.boxes = boxes if boxes is not None else [None] * len(paths)
        if len(self.boxes) != len(paths):
            raise ValueError(f"{len(self.boxes)} boxes for {len(paths)} images")

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        image = cut_to(read_rgb(self.paths[index]), self.boxes[index])
        return to_tensor(resize_image(image, self.img_size), self.normalisation)
