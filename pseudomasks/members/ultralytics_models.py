"""Loading ultralytics YOLO models offline, and what the YOLO members share.

ultralytics reaches for the network on its own: at import it probes DNS for an "online" flag,
on predict it sends analytics when online, and drawing fetches ``Arial.ttf``. Teacher runs must
never depend on (or leak to) the network, so every YOLO member loads models through
:func:`load_yolo`, which sets ``YOLO_OFFLINE=1`` before the first ultralytics import and puts
matplotlib's DejaVuSans in place of the font.
"""

from __future__ import annotations

import os
import pickle
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.members.base import Sample
from pseudomasks.weights import check_weights_option

COCO_ANIMALS = [15, 16, 17, 18, 19, 20, 21, 22, 23]
"""COCO class ids of the mammals: cat, dog, horse, sheep, cow, elephant, bear, zebra, giraffe
(birds, 14, are left out: their shape has nothing in common with a quadruped's parts)."""


def _offline_ultralytics() -> None:
    """Import ultralytics with its network features off; idempotent."""
    os.environ["YOLO_OFFLINE"] = "1"
    from matplotlib import get_data_path
    from ultralytics.utils import USER_CONFIG_DIR  # resolves $YOLO_CONFIG_DIR like ultralytics

    font = Path(USER_CONFIG_DIR) / "Arial.ttf"
    if not font.exists():
        font.parent.mkdir(parents=True, exist_ok=True)
        # parallel shard jobs may race here: copy to a private name, then rename atomically
        fd, tmp = tempfile.mkstemp(dir=font.parent, prefix=".Arial.", suffix=".ttf")
        os.close(fd)
        shutil.copyfile(Path(get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", tmp)
        os.replace(tmp, font)


def load_yolo(path: Path, task: str, where: str) -> Any:
    """An ``ultralytics.YOLO`` from a local ``.pt`` file, checked to be a ``task`` model
    ('pose', 'segment' or 'detect'): a detection file given to a pose member fails here, with
    its name, instead of deep inside predict."""
    if path.suffix.lower() != ".pt":
        # other suffixes make ultralytics treat the file as a model yaml (a random model) or an
        # exported format (whose runtime it would try to pip-install)
        raise UserError(
            f"{where}: {path} is not a .pt file; give an ultralytics PyTorch checkpoint"
        )
    _offline_ultralytics()
    from ultralytics import YOLO

    try:
        model = YOLO(str(path))
    except (RuntimeError, TypeError, pickle.UnpicklingError, EOFError, KeyError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(
            f"{where}: {path} is not a loadable ultralytics model ({reason}); check the weights entry"
        ) from exc
    if model.task != task:
        raise UserError(
            f"{where}: {path} is an ultralytics {model.task!r} model, this member needs a "
            f"{task!r} model; check the weights entry"
        )
    return model


def bgr(image: np.ndarray) -> np.ndarray:
    """ultralytics reads numpy images as OpenCV does (BGR); samples are RGB."""
    return np.ascontiguousarray(image[:, :, ::-1])


def predict_batch(
    model: Any, samples: Sequence[Sample], device: str, options: Mapping[str, Any], **extra: Any
) -> list[Any]:
    """One batched ``predict`` over the samples (RGB, converted to the BGR ultralytics expects)
    with the member's ``imgsz`` and ``confidence`` options; ``extra`` adds task options.

    ultralytics' CPU device selection sets torch to one thread for the whole process; the
    previous count is restored so that the members after it (SAM, mmpose) keep every core.
    """
    import torch

    threads = torch.get_num_threads()
    try:
        return model.predict(
            [bgr(s.image) for s in samples],
            device=device,
            imgsz=options["imgsz"],
            conf=options["confidence"],
            verbose=False,
            **extra,
        )
    finally:
        torch.set_num_threads(threads)


def largest_box(xyxy: np.ndarray) -> int:
    """Index of the box with the largest area (the first on ties): with one animal per re-ID
    image, the biggest detection is the subject and smaller ones are background animals or
    fragments of it."""
    areas = np.clip(xyxy[:, 2] - xyxy[:, 0], 0, None) * np.clip(xyxy[:, 3] - xyxy[:, 1], 0, None)
    return int(np.argmax(areas))


def check_classes(classes: Any, where: str) -> None:
    """``classes`` must be a non-empty list of class ids (ints >= 0)."""
    if (
        not isinstance(classes, list)
        or not classes
        or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in classes)
    ):
        raise UserError(f"{where}.classes: must be a non-empty list of class ids, got {classes!r}")


def check_model_classes(model: Any, classes: list[int], path: Path, where: str) -> None:
    """Every requested class id must exist in the model (a custom model may have one class)."""
    missing = [c for c in classes if c not in model.names]
    if missing:
        raise UserError(
            f"{where}.classes: {path} has classes 0..{len(model.names) - 1}, not {missing[0]}; "
            "set classes to the model's animal class ids"
        )


def check_yolo_options(options: Mapping[str, Any], where: str) -> None:
    """The options every YOLO member has: ``weights``, ``confidence`` and ``imgsz``."""
    check_weights_option(options, where)
    if not 0 <= options["confidence"] <= 1:
        raise UserError(f"{where}.confidence: must be in [0, 1], got {options['confidence']}")
    if options["imgsz"] < 32:
        raise UserError(f"{where}.imgsz: must be >= 32 pixels, got {options['imgsz']}")
