"""A frozen model's directory: the files `reid train` writes, for a model that is not trained.

``model.safetensors`` holds the pretrained backbone as loaded (reid.models.frozen) and
``model.json`` what built it, with the keys of a trained model's model.json so that extraction,
evaluation, identification, export and the figures read it unchanged: ``frozen: true``, the
weights' provenance (file or package, version, sha256), and no teacher, parts, epochs or
training time, because none of them exist for it. No catalogue or part map is read; only when
the dataset's teacher crops is its record (``crop``) copied, so `reid identify` cuts photos alike.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from reid.data.part_maps import cropping_teacher
from reid.engine.extract import save_trained_model
from reid.errors import UserError
from reid.models import ModelSpec, build_model
from reid.provenance import package_versions
from reid.weights import resolve_weights


def freeze(
    spec: ModelSpec, out: Path, flip_test: bool = False, crops: Path | None = None
) -> dict[str, Any]:
    """Write ``out``/model.safetensors and model.json for the frozen model ``spec``; return
    model.json. ``flip_test`` is the dataset's and ``crops`` its cropping teacher's directory
    (both recorded for `reid identify`, which then sees photos as extraction does)."""
    if not spec.frozen:
        raise UserError(
            f"model {spec.arch} is not frozen: train it (`reid train`), or set 'frozen: true' in "
            "its config.yaml entry to use its pretrained weights as they are"
        )
    if spec.pretrained is None:
        raise UserError(
            f"frozen model {spec.arch} has no pretrained weights: name an entry of config.yaml → "
            "weights as its 'pretrained' (a frozen model with random weights describes nothing)"
        )
    started = time.perf_counter()
    model = build_model(spec, num_classes=0, num_parts=0)
    weights = resolve_weights(spec.pretrained)  # its sha256 computed once, while loading
    settings = dataclasses.asdict(spec)
    config = {
        "model": settings,
        "frozen": True,
        "pretrained_weights": weights.record,
        "num_classes": 0,
        "num_parts": 0,
        "part_names": [],
        "teacher_id": None,
        "crop": cropping_teacher(crops)[0] if crops else None,
        "settings": {"model": settings, "flip_test": flip_test},
        "epochs": 0,
        "selected_epoch": 0,
        "select": None,
        "seed": None,
        "device": None,
        "precision": None,
        "world_size": None,
        "train_wall_time_s": None,
        "freeze_wall_time_s": round(time.perf_counter() - started, 2),
        "versions": package_versions(),
    }
    save_trained_model(out, model, config)
    return config
