"""Foreground from an ultralytics YOLO instance-segmentation model (COCO or custom).

Only instances of ``classes`` count (default: the COCO mammals). Of those above ``confidence``
the one with the most mask pixels is the animal: a re-ID image shows one subject, and other
detections are background animals or fragments. Masks are predicted at the image's own size
(``retina_masks``), which undoes ultralytics' letterboxing exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from pseudomasks.members.base import MemberContext, Sample, SegmentationMember
from pseudomasks.members.devices import torch_device
from pseudomasks.members.ultralytics_models import (
    COCO_ANIMALS,
    check_classes,
    check_model_classes,
    check_yolo_options,
    load_yolo,
    predict_batch,
)
from pseudomasks.weights import resolve_weights

WHERE = "yolo_seg"


def largest_mask(masks: np.ndarray) -> np.ndarray | None:
    """The ``H×W`` bool mask with the most pixels of ``N×H×W`` instance masks (first on ties),
    or None for no instances."""
    if len(masks) == 0:
        return None
    areas = (masks > 0).reshape(len(masks), -1).sum(axis=1)
    return masks[int(np.argmax(areas))] > 0


class YoloSeg(SegmentationMember):
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "weights": "",
        "classes": COCO_ANIMALS,
        "confidence": 0.25,
        "imgsz": 640,
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        check_yolo_options(options, where)
        check_classes(options["classes"], where)

    def __init__(self, options: Mapping[str, Any], context: MemberContext) -> None:
        super().__init__(options, context)
        path = resolve_weights(self.options["weights"], context.weights, WHERE)
        self.model = load_yolo(path, "segment", WHERE)
        check_model_classes(self.model, self.options["classes"], path, WHERE)
        self.device = torch_device(context.device)

    def predict(
        self, samples: Sequence[Sample], keypoints: Sequence[np.ndarray | None]
    ) -> list[np.ndarray | None]:
        if not samples:
            return []
        results = predict_batch(
            self.model,
            samples,
            self.device,
            self.options,
            classes=self.options["classes"],
            retina_masks=True,
        )
        return [
            None if r.masks is None else largest_mask(r.masks.data.cpu().numpy()) for r in results
        ]
