"""Provenance carried by every metrics.json: what was trained, on what, with which versions."""

from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np


def package_versions() -> dict[str, str]:
    """Versions of the packages that decide the numbers."""
    import timm
    import torch

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
    }


def provenance(
    model_dir: Path | None,
    protocol: str,
    evaluate_seconds: float,
    descriptor_dim: int | None = None,
) -> dict[str, Any]:
    """Model, K, teacher id, epochs, seed, versions, device, precision and wall time of one
    evaluation. A frozen model (reid.engine.freeze) says so and has no K, teacher, seed or
    training time."""
    record: dict[str, Any] = {
        "protocol": protocol,
        "evaluated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "evaluate_wall_time_s": round(evaluate_seconds, 2),
        "descriptor_dim": descriptor_dim,
        "versions": package_versions(),
        "machine": platform.machine(),
    }
    if model_dir is not None:
        config = json.loads((model_dir / "model.json").read_text())
        record.update(
            model=model_dir.name,
            arch=config["model"]["arch"],
            frozen=bool(config.get("frozen", False)),  # pretrained weights used untrained
            K=config["num_parts"],
            part_names=config["part_names"],
            teacher_id=config["teacher_id"],
            # the teacher whose animal boxes the photos were cut to; null: whole photos
            crop_teacher_id=(config.get("crop") or {}).get("teacher_id"),
            epochs=config["epochs"],
            selected_epoch=config["selected_epoch"],
            select=config["select"],
            seed=config["seed"],
            device=config["device"],
            precision=config.get("precision"),  # absent from models trained before it existed
            pretrained_weights=config.get("pretrained_weights"),  # path/package, version, sha256
            world_size=config["world_size"],
            train_wall_time_s=config["train_wall_time_s"],
            train_versions=config["versions"],
        )
    return record
