"""The on-disk part map cache: ``{masks_dir}/{teacher_id}/`` with ``teacher.json``, shards,
``index.json`` and ``qc.json``.

A shard ``shard-{i:04d}-of-{n:04d}.npz`` (numpy, no pickles) holds, for the n maps it has:
``image_id`` (str), ``labels`` (n×S×S uint8; 0 background, 1..K parts), ``visibility``
(n×K bool), ``orientation`` (str, ''/'left'/'right'), ``orientation_source``
('catalogue'/'estimated'/''), ``keypoint_confidence`` (float, NaN without keypoints),
``foreground_fraction`` (float), ``detector_box`` (n×4 float: the crop ``x0, y0, x1, y1``,
ends exclusive, in image pixels that the pixel-reading members saw; NaN where no detector box
was used, i.e. no ``teacher.detector`` or no animal found, so the image was processed whole),
``foreground_components`` (int: the sizeable foreground components a segmentation member
counted, 2+ meaning several animals in the frame; -1 where no member counts them),
``crop_box`` (n×4 float ``x0, y0, x1, y1`` in image pixels, ends exclusive: the box the map
covers and the student crops the photo to, with ``teacher.crop_margin``; NaN: the whole image),
``image_shape`` (n×2 int ``H, W`` of the image the boxes are in; 0 where not recorded), and the
images that got no map: ``failed_image_id``, ``failed_reason`` (str). ``index.json`` maps
image_id → shard file name and is written last, by ``pseudomasks index``, so its presence means
the cache is complete.
"""

from __future__ import annotations

import json
import platform
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

import pseudomasks
from pseudomasks.atomic import atomic_open, write_json
from pseudomasks.errors import UserError
from pseudomasks.fusion import FUSION_VERSION
from pseudomasks.members.detection import CropBox
from pseudomasks.settings import Settings
from pseudomasks.teacher import ImageFailure, ImageResult

SHARD_ARRAYS = (
    "image_id",
    "labels",
    "visibility",
    "orientation",
    "orientation_source",
    "keypoint_confidence",
    "foreground_fraction",
    "failed_image_id",
    "failed_reason",
)
DETECTOR_BOX = "detector_box"
"""Read apart from SHARD_ARRAYS: shards written before detectors existed lack it, and no box was
used for any of their images, so it reads as all-NaN instead of forcing a recompute."""
FOREGROUND_COMPONENTS = "foreground_components"
"""Read apart too: shards written before it was recorded lack it; it reads as -1 (unknown)."""
CROP_BOX = "crop_box"
IMAGE_SHAPE = "image_shape"
"""Read apart too: older shards' maps cover whole images (NaN boxes, shape 0 × 0)."""
TEACHER_JSON = "teacher.json"
INDEX_JSON = "index.json"
QC_JSON = "qc.json"


def shard_name(shard: int, num_shards: int) -> str:
    return f"shard-{shard:04d}-of-{num_shards:04d}.npz"


def _strings(values: Sequence[str]) -> np.ndarray:
    return np.array(list(values), dtype=str) if values else np.zeros(0, dtype="<U1")


def write_shard(
    path: Path,
    results: Sequence[ImageResult],
    failures: Sequence[ImageFailure],
    mask_size: int,
    num_parts: int,
) -> None:
    arrays = {
        "image_id": _strings([r.image_id for r in results]),
        "labels": np.stack([r.part_map.labels for r in results]).astype(np.uint8)
        if results
        else np.zeros((0, mask_size, mask_size), np.uint8),
        "visibility": np.stack([r.part_map.visibility for r in results]).astype(bool)
        if results
        else np.zeros((0, num_parts), bool),
        "orientation": _strings([r.orientation for r in results]),
        "orientation_source": _strings([r.orientation_source for r in results]),
        "keypoint_confidence": np.array(
            [r.part_map.keypoint_confidence for r in results], dtype=np.float64
        ),
        "foreground_fraction": np.array([r.foreground_fraction for r in results], np.float64),
        DETECTOR_BOX: np.array([_box_row(r.detector_box) for r in results], np.float64).reshape(
            -1, 4
        ),
        FOREGROUND_COMPONENTS: np.array([r.foreground_components for r in results], np.int64),
        CROP_BOX: np.array([_box_row(r.crop_box) for r in results], np.float64).reshape(-1, 4),
        IMAGE_SHAPE: np.array([r.image_shape for r in results], np.int64).reshape(-1, 2),
        "failed_image_id": _strings([f.image_id for f in failures]),
        "failed_reason": _strings([f.reason for f in failures]),
    }
    with atomic_open(path) as handle:
        np.savez_compressed(handle, **arrays)


def _box_row(box: CropBox | None) -> list[float]:
    return [np.nan] * 4 if box is None else [box.x0, box.y0, box.x1, box.y1]


def read_shard(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a shard; UserError if it is missing, corrupt or lacks an array."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in SHARD_ARRAYS}
            n = len(arrays["image_id"])
            arrays[DETECTOR_BOX] = (
                data[DETECTOR_BOX] if DETECTOR_BOX in data.files else np.full((n, 4), np.nan)
            )
            arrays[FOREGROUND_COMPONENTS] = (
                data[FOREGROUND_COMPONENTS]
                if FOREGROUND_COMPONENTS in data.files
                else np.full(n, -1, np.int64)
            )
            arrays[CROP_BOX] = data[CROP_BOX] if CROP_BOX in data.files else np.full((n, 4), np.nan)
            arrays[IMAGE_SHAPE] = (
                data[IMAGE_SHAPE] if IMAGE_SHAPE in data.files else np.zeros((n, 2), np.int64)
            )
    except FileNotFoundError as exc:
        raise UserError(f"shard {path}: missing; run 'pseudomasks run' for it") from exc
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        # not numpy's text: for a file that is no .npz it advises unpickling "if you trust it"
        raise UserError(f"shard {path}: not an .npz of plain arrays; delete it and rerun") from exc
    except (OSError, KeyError) as exc:
        raise UserError(f"shard {path}: unreadable ({exc}); delete it and rerun") from exc
    return arrays


def shard_is_complete(path: Path, expected_ids: Sequence[str]) -> bool:
    """True if the shard exists, loads, and covers exactly ``expected_ids`` (maps + failures):
    a shard from an older catalogue is recomputed rather than trusted."""
    if not path.exists():
        return False
    try:
        arrays = read_shard(path)
    except UserError:
        return False
    done = [*arrays["image_id"].tolist(), *arrays["failed_image_id"].tolist()]
    return sorted(done) == sorted(expected_ids)


def teacher_record(settings: Settings, tid: str) -> dict[str, Any]:
    """Everything needed to know what made these maps (teacher.json)."""
    return {
        "teacher_id": tid,
        "teacher_name": settings.teacher_name,
        "part_names": list(settings.species.parts),
        "species": settings.species.name,
        "keypoint_schema": settings.species.keypoint_schema,
        "mask_size": settings.mask_size,
        "fusion_version": FUSION_VERSION,
        "weights": {name: w.sha256 for name, w in sorted(settings.weights.items())},
        "identity": settings.identity(),
        "settings": settings.document,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "opencv": cv2.__version__,
            "pseudomasks": pseudomasks.__version__,
        },
    }


def write_teacher_json(teacher_dir: Path, settings: Settings, tid: str) -> None:
    """Write teacher.json unless an identical one is there (parallel shard jobs race here
    harmlessly: each write is atomic and carries the same content)."""
    record = json.loads(json.dumps(teacher_record(settings, tid)))
    path = teacher_dir / TEACHER_JSON
    try:
        if json.loads(path.read_text(encoding="utf-8")) == record:
            return
    except (OSError, ValueError):
        pass
    write_json(path, record)


def _read_json(path: Path, when_missing: str, when_unreadable: str = "") -> Any:
    """A cache JSON file, or one UserError line saying what to do about it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UserError(f"{path}: missing; {when_missing}") from exc
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: unreadable ({exc}){when_unreadable}") from exc


def read_teacher_json(teacher_dir: Path) -> dict[str, Any]:
    return _read_json(
        teacher_dir / TEACHER_JSON, f"is {teacher_dir} a pseudomasks cache directory?"
    )


def read_index(teacher_dir: Path) -> dict[str, str]:
    return _read_json(
        teacher_dir / INDEX_JSON,
        f"run 'pseudomasks index --masks-dir {teacher_dir}' first",
        "; rerun 'pseudomasks index'",
    )


@dataclass(frozen=True)
class CachedMap:
    """One image's cached map: ``labels`` S×S uint8, ``visibility`` K bool, ``orientation``,
    and the ``crop_box`` of the image it covers (None: the whole image)."""

    labels: np.ndarray
    visibility: np.ndarray
    orientation: str
    crop_box: CropBox | None


def load_part_maps(masks_dir: str | Path) -> dict[str, CachedMap]:
    """image_id → its :class:`CachedMap`, for a complete cache (``masks_dir`` is the
    ``{teacher_id}`` directory; images that failed are absent)."""
    teacher_dir = Path(masks_dir)
    index = read_index(teacher_dir)
    maps: dict[str, CachedMap] = {}
    for name in sorted(set(index.values())):
        arrays = read_shard(teacher_dir / name)
        for i, image_id in enumerate(arrays["image_id"].tolist()):
            box = arrays[CROP_BOX][i]
            maps[image_id] = CachedMap(
                labels=arrays["labels"][i],
                visibility=arrays["visibility"][i],
                orientation=str(arrays["orientation"][i]),
                crop_box=CropBox(*(int(v) for v in box)) if np.isfinite(box).all() else None,
            )
    return maps
