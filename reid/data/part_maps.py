"""Read the teacher's cached part maps (DESIGN.md contract) for training.

`results/{dataset}/masks/{teacher_id}/` holds `teacher.json` (settings, part names in label order)
and shards `shard-*.npz` with `image_id`, `labels` (n×S×S uint8, 0 = background, 1..K parts),
`orientation` and, from a teacher with `crop_margin`, each map's `crop_box` in its image of
`image_shape` (the maps then cover the animal's box, and the student crops the photo alike).
All shards are loaded into memory once: 64×64 uint8 maps are 4 KiB an image, so even 100k images
fit in a few hundred MiB and the data loader never opens a file per sample for them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid.data.crops import AnimalBox, boxes_from_arrays
from reid.errors import UserError
from reid.npz import read_npz

_logger = logging.getLogger(__name__)


@dataclass
class PartMaps:
    """All maps of one teacher: `labels[row_of[image_id]]`."""

    teacher_id: str
    part_names: list[str]
    row_of: dict[str, int]
    labels: np.ndarray  # N×S×S uint8
    orientation: np.ndarray  # N str: 'left' | 'right' | ''
    boxes: dict[str, AnimalBox]  # the maps that cover a box instead of their whole image
    crop: dict | None  # see crop_record; None: the maps cover whole images

    @property
    def num_parts(self) -> int:
        return len(self.part_names)

    def select(self, image_ids: list[str], skip_missing: bool) -> list[str]:
        """Return the ids that have a map; missing ones are an error unless `skip_missing`."""
        missing = [i for i in image_ids if i not in self.row_of]
        if missing and not skip_missing:
            raise UserError(
                f"{len(missing)} of {len(image_ids)} training images have no part map from teacher "
                f"{self.teacher_id} (e.g. {', '.join(missing[:3])}): rerun the teacher for this "
                "catalogue, or set train.skip_missing_maps: true to train without them"
            )
        if missing:
            _logger.warning(
                "skipping %d training images without a part map from teacher %s (e.g. %s)",
                len(missing),
                self.teacher_id,
                ", ".join(missing[:3]),
            )
        return [i for i in image_ids if i in self.row_of]


def _teacher_meta(masks_dir: Path) -> tuple[dict, list[Path]]:
    """`teacher.json` and the shard paths of one teacher directory."""
    meta_path = masks_dir / "teacher.json"
    if not meta_path.is_file():
        raise UserError(
            f"no part maps at {masks_dir} (teacher.json missing): run the teacher first "
            "(`pseudomasks run`, or the Snakemake target)"
        )
    meta = json.loads(meta_path.read_text())
    shards = sorted(masks_dir.glob("shard-*.npz"))
    if not shards:
        raise UserError(f"no shard-*.npz files in {masks_dir}: run the teacher first")
    return meta, shards


def crop_record(meta: dict) -> dict | None:
    """model.json's ``crop`` from a teacher.json: which teacher's boxes the model sees photos cut
    to, with that teacher's settings (relative weights paths made absolute) so `reid identify`
    can have new photos boxed the same way; None for a teacher whose maps cover whole photos."""
    margin = meta.get("identity", {}).get("crop_margin")
    if margin is None:
        return None
    settings = json.loads(json.dumps(meta.get("settings", {})))
    for entry in (settings.get("weights") or {}).values():
        if isinstance(entry, dict) and entry.get("path"):
            entry["path"] = str(Path(entry["path"]).expanduser().absolute())
    return {"teacher_id": str(meta["teacher_id"]), "margin": margin, "teacher_settings": settings}


def cropping_teacher(masks_dir: Path) -> tuple[dict, list[Path]]:
    """The crop record and shard paths of a teacher directory; UserError for a teacher that
    does not crop."""
    meta, shards = _teacher_meta(masks_dir)
    record = crop_record(meta)
    if record is None:
        raise UserError(
            f"teacher {meta['teacher_id']} ({masks_dir}) has no crop_margin, so it records no "
            "animal boxes: drop --crops, or set crop_margin in its config.yaml teacher entry"
        )
    return record, shards


def load_crop_boxes(masks_dir: Path) -> tuple[dict, dict[str, AnimalBox]]:
    """The crop record (see :func:`cropping_teacher`) and image_id → box of one teacher
    directory, reading no label maps."""
    record, shards = cropping_teacher(masks_dir)
    boxes: dict[str, AnimalBox] = {}
    for shard in shards:
        with read_npz(shard, "a part-map shard", "delete it and rerun the teacher") as data:
            ids = [str(i) for i in data["image_id"]]
            boxes |= boxes_from_arrays(ids, data["crop_box"], data["image_shape"])
    return record, boxes


def load_part_maps(masks_dir: Path) -> PartMaps:
    """Load `teacher.json` and every shard of one teacher directory."""
    meta, shards = _teacher_meta(masks_dir)
    ids, labels, orientation, boxes = [], [], [], {}
    for shard in shards:
        with read_npz(shard, "a part-map shard", "delete it and rerun the teacher") as data:
            shard_ids = [str(i) for i in data["image_id"]]
            ids.extend(shard_ids)
            labels.append(data["labels"])
            orientation.extend(str(o) for o in data["orientation"])
            if "crop_box" in data.files:  # older shards' maps all cover whole images
                boxes |= boxes_from_arrays(shard_ids, data["crop_box"], data["image_shape"])
    return PartMaps(
        teacher_id=str(meta["teacher_id"]),
        part_names=list(meta["part_names"]),
        row_of={image_id: row for row, image_id in enumerate(ids)},
        labels=np.concatenate(labels).astype(np.uint8, copy=False),
        orientation=np.asarray(orientation),
        boxes=boxes,
        crop=crop_record(meta),
    )
