"""Closing a cache: check every shard is there, write ``qc.json`` and ``index.json``.

``qc.json`` is what a person reads to judge the teacher before training on its maps: how often
each part is seen, how often the foreground is empty, how confident the keypoints were, how
often the detector found the animal (the others were processed uncropped), how often the
foreground held several animals (so the segmentation member kept one), how much of the photo
the animal's box keeps (``teacher.crop_margin``), which images failed and why.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pseudomasks.atomic import write_json
from pseudomasks.cache import (
    CROP_BOX,
    DETECTOR_BOX,
    FOREGROUND_COMPONENTS,
    IMAGE_SHAPE,
    INDEX_JSON,
    QC_JSON,
    read_shard,
    read_teacher_json,
    shard_name,
)
from pseudomasks.errors import UserError


def build_index(teacher_dir: Path, num_shards: int) -> dict[str, Any]:
    """Merge the shards' per-image stats into qc.json, then write index.json; returns the qc."""
    if num_shards < 1:
        raise UserError(f"--num-shards {num_shards}: must be >= 1")
    teacher = read_teacher_json(teacher_dir)
    parts: list[str] = teacher["part_names"]
    names = [shard_name(i, num_shards) for i in range(num_shards)]
    missing = [n for n in names if not (teacher_dir / n).exists()]
    if missing:
        raise UserError(
            f"{teacher_dir}: {len(missing)} of {num_shards} shards missing (first: {missing[0]}); "
            "run 'pseudomasks run' for them"
        )
    index: dict[str, str] = {}
    visibility, fg_fraction, kp_conf, boxes, components, sources = [], [], [], [], [], []
    crops, shapes = [], []
    failed: list[dict[str, str]] = []
    for name in names:
        arrays = read_shard(teacher_dir / name)
        if arrays["visibility"].shape[1] != len(parts):
            raise UserError(
                f"{teacher_dir / name}: {arrays['visibility'].shape[1]} parts, teacher.json has "
                f"{len(parts)}; delete the shard and rerun"
            )
        for image_id in arrays["image_id"].tolist():
            if image_id in index:
                raise UserError(
                    f"{teacher_dir}: image_id {image_id!r} is in {index[image_id]} and {name}; "
                    "delete the shards of the older run and rerun"
                )
            index[image_id] = name
        visibility.append(arrays["visibility"])
        fg_fraction.append(arrays["foreground_fraction"])
        kp_conf.append(arrays["keypoint_confidence"])
        boxes.append(arrays[DETECTOR_BOX])
        components.append(arrays[FOREGROUND_COMPONENTS])
        crops.append(arrays[CROP_BOX])
        shapes.append(arrays[IMAGE_SHAPE])
        sources.extend(arrays["orientation_source"].tolist())
        failed.extend(
            {"image_id": i, "reason": r}
            for i, r in zip(
                arrays["failed_image_id"].tolist(), arrays["failed_reason"].tolist(), strict=True
            )
        )
    vis = np.concatenate(visibility) if visibility else np.zeros((0, len(parts)), bool)
    fg = np.concatenate(fg_fraction)
    conf = np.concatenate(kp_conf)
    with_kp = conf[np.isfinite(conf)]
    found = int(np.isfinite(np.concatenate(boxes)).all(axis=1).sum())
    counted = np.concatenate(components)
    counted = counted[counted >= 0]
    several = int((counted >= 2).sum())
    n = len(index)
    qc = {
        "teacher_id": teacher["teacher_id"],
        "num_shards": num_shards,
        "counts": {"images": n + len(failed), "maps": n, "failed": len(failed)},
        "part_coverage": {p: _share(vis[:, k].sum(), n) for k, p in enumerate(parts)},
        "empty_foreground_rate": _share((fg == 0).sum(), n),
        "mean_foreground_fraction": float(fg.mean()) if n else None,
        "maps_from_keypoints": int(len(with_kp)),
        "mean_keypoint_confidence": float(with_kp.mean()) if len(with_kp) else None,
        # share of maps whose image had a detector box; null for a teacher without a detector
        "detector_found_rate": _share(found, n) if teacher["identity"]["detector"] else None,
        # maps whose foreground had 2+ sizeable components (several animals; `keep` chose one),
        # among the maps whose segmentation member counted them; null when none did
        "several_objects": {
            "maps": several,
            "counted": len(counted),
            "rate": _share(several, len(counted)),
        }
        if len(counted)
        else None,
        # with teacher.crop_margin: how many maps cover a box (the rest: no foreground to crop
        # to, so the whole image) and how much of the photo the boxes keep; null without it
        "crop": _crop_stats(np.concatenate(crops), np.concatenate(shapes))
        if teacher["identity"].get("crop_margin") is not None
        else None,
        "orientation_source": {
            "catalogue": sources.count("catalogue"),
            "estimated": sources.count("estimated"),
            "unknown": sources.count(""),
        },
        "failed": sorted(failed, key=lambda f: f["image_id"]),
    }
    write_json(teacher_dir / QC_JSON, qc)
    write_json(teacher_dir / INDEX_JSON, dict(sorted(index.items())))
    return qc


def _crop_stats(boxes: np.ndarray, shapes: np.ndarray) -> dict[str, Any]:
    """How many maps are cropped, and their boxes' area and width as fractions of the image."""
    cropped = np.isfinite(boxes).all(axis=1)
    box, shape = boxes[cropped], shapes[cropped].astype(np.float64)
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1]) / (shape[:, 0] * shape[:, 1])
    width = (box[:, 2] - box[:, 0]) / shape[:, 1]
    return {
        "maps": int(cropped.sum()),
        "rate": _share(int(cropped.sum()), len(boxes)),
        "mean_area_fraction": float(area.mean()) if len(area) else None,
        "mean_width_fraction": float(width.mean()) if len(width) else None,
    }


def _share(count: int, total: int) -> float | None:
    return float(count) / total if total else None
