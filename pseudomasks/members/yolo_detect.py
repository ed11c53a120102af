"""The animal's box from an ultralytics YOLO detection model, for ``teacher.detector``.

Only ``classes`` count (default: the COCO mammals); of the boxes above ``confidence`` the
largest is the subject (one animal per re-ID image), grown by ``margin`` on each side so that
legs and tails the detector cut off stay in the crop.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from pseudomasks.errors import UserError
from pseudomasks.members.base import MemberContext, Sample
from pseudomasks.members.detection import CropBox, DetectorMember, padded_box
from pseudomasks.members.devices import torch_device
from pseudomasks.members.ultralytics_models import (
    COCO_ANIMALS,
    check_classes,
    check_model_classes,
    check_yolo_options,
    largest_box,
    load_yolo,
    predict_batch,
)
from pseudomasks.weights import resolve_weights

WHERE = "yolo_detect"


class YoloDetect(DetectorMember):
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "weights": "",
        "classes": COCO_ANIMALS,
        "confidence": 0.25,
        "imgsz": 640,
        "margin": 0.1,
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        check_yolo_options(options, where)
        check_classes(options["classes"], where)
        if not 0 <= options["margin"] <= 1:
            raise UserError(f"{where}.margin: must be in [0, 1], got {options['margin']}")

    def __init__(self, options: Mapping[str, Any], context: MemberContext) -> None:
        super().__init__(options, context)
        path = resolve_weights(self.options["weights"], context.weights, WHERE)
        self.model = load_yolo(path, "detect", WHERE)
        check_model_classes(self.model, self.options["classes"], path, WHERE)
        self.device = torch_device(context.device)

    def predict(self, samples: Sequence[Sample]) -> list[CropBox | None]:
        if not samples:
            return []
        results = predict_batch(
            self.model, samples, self.device, self.options, classes=self.options["classes"]
        )
        out: list[CropBox | None] = []
        for sample, result in zip(samples, results, strict=True):
            boxes = result.boxes.xyxy.cpu().numpy()
            out.append(
                padded_box(boxes[largest_box(boxes)], self.options["margin"], sample.image.shape)
                if len(boxes)
                else None
            )
        return out
