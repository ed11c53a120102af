"""``pseudomasks run``: compute one shard of a teacher's maps, resumably."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from tqdm import tqdm

from pseudomasks.cache import shard_is_complete, shard_name, write_shard, write_teacher_json
from pseudomasks.catalogue import read_catalogue, shard_rows
from pseudomasks.settings import Settings, teacher_id
from pseudomasks.teacher import ImageFailure, ImageResult, Teacher, load_sample

log = logging.getLogger("pseudomasks")


def run_shard(
    catalogue: Path,
    root: Path,
    settings: Settings,
    masks_dir: Path,
    shard: int,
    num_shards: int,
    device: str = "cpu",
    batch_size: int = 8,
) -> Path:
    """Write ``masks_dir/{teacher_id}/shard-I-of-N.npz`` unless it is already complete;
    returns its path."""
    every_split = settings.crop_margin is not None
    rows = shard_rows(read_catalogue(catalogue), shard, num_shards, every_split)
    tid = teacher_id(settings)
    teacher_dir = masks_dir / tid
    teacher_dir.mkdir(parents=True, exist_ok=True)
    write_teacher_json(teacher_dir, settings, tid)
    path = teacher_dir / shard_name(shard, num_shards)
    if shard_is_complete(path, [r["image_id"] for r in rows]):
        log.info("%s is complete; skipping", path)
        return path

    teacher = Teacher(settings, device=device)
    results: list[ImageResult] = []
    failures: list[ImageFailure] = []
    start = time.perf_counter()
    with tqdm(total=len(rows), desc=f"teacher {tid} shard {shard}", unit="img") as bar:
        for begin in range(0, len(rows), batch_size):
            loaded = [load_sample(row, root) for row in rows[begin : begin + batch_size]]
            failures.extend(s for s in loaded if isinstance(s, ImageFailure))
            samples = [s for s in loaded if not isinstance(s, ImageFailure)]
            for item in teacher.process(samples) if samples else []:
                if isinstance(item, ImageFailure):
                    failures.append(item)
                else:
                    results.append(item)
            bar.update(len(loaded))
    write_shard(path, results, failures, settings.mask_size, settings.species.num_parts)
    elapsed = time.perf_counter() - start
    log.info(
        "%s: %d maps, %d failed, %.1f images/s",
        path,
        len(results),
        len(failures),
        len(rows) / elapsed if elapsed > 0 else float("inf"),
    )
    return path
