"""Read the teacher's cached part maps (DESIGN.md contract) for training.

`results/{dataset}/masks/{teacher_id}/` holds `teacher.json` (settings, part names in label order)
and shards `shard-*.npz` with `image_id`, `labels` (n×S×S uint8, 0 = background, 1..K parts) and
`orientation`. All shards are loaded into memory once: 64×64 uint8 maps are 4 KiB an image, so even
100k images fit in a few hundred MiB and the data loader never opens a file per sample for them.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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


def load_part_maps(masks_dir: Path) -> PartMaps:
    """Load `teacher.json` and every shard of one teacher directory."""
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
    ids, labels, orientation = [], [], []
    for shard in shards:
        with read_npz(shard, "a part-map shard", "delete it and rerun the teacher") as data:
            ids.extend(str(i) for i in data["image_id"])
            labels.append(data["labels"])
            orientation.extend(str(o) for o in data["orientation"])
    return PartMaps(
        teacher_id=str(meta["teacher_id"]),
        part_names=list(meta["part_names"]),
        row_of={image_id: row for row, image_id in enumerate(ids)},
        labels=np.concatenate(labels).astype(np.uint8, copy=False),
        orientation=np.asarray(orientation),
    )
