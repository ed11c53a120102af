"""Keypoints from an ultralytics YOLO pose model (e.g. one trained on the species' keypoints).

One animal per re-ID image: of the instances above ``confidence`` the largest box is the
subject. The model's keypoints are reordered into the species' schema by ``keypoint_map`` (model
keypoint index → species keypoint name, or null to drop it; the default means the model was
trained in the species' order); species keypoints the model lacks get ``v = 0``. ``v`` is the
model's keypoint confidence, so the teacher's own ``confidence`` threshold applies to it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from pseudomasks.members.base import MemberContext, PoseMember, Sample
from pseudomasks.members.devices import torch_device
from pseudomasks.members.keypoint_map import check_keypoint_map, keypoint_targets, to_species
from pseudomasks.members.ultralytics_models import (
    check_yolo_options,
    largest_box,
    load_yolo,
    predict_batch,
)
from pseudomasks.weights import resolve_weights

WHERE = "ultralytics_pose"


class UltralyticsPose(PoseMember):
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "weights": "",
        "keypoint_map": None,
        "confidence": 0.25,
        "imgsz": 640,
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        check_yolo_options(options, where)
        check_keypoint_map(options["keypoint_map"], where)

    def __init__(self, options: Mapping[str, Any], context: MemberContext) -> None:
        super().__init__(options, context)
        path = resolve_weights(self.options["weights"], context.weights, WHERE)
        self.model = load_yolo(path, "pose", WHERE)
        self.device = torch_device(context.device)
        self.targets = keypoint_targets(
            self.options["keypoint_map"], int(self.model.model.kpt_shape[0]), context.species, WHERE
        )

    def predict(self, samples: Sequence[Sample]) -> list[np.ndarray | None]:
        if not samples:
            return []
        results = predict_batch(self.model, samples, self.device, self.options)
        return [
            self._species_keypoints(
                r.boxes.xyxy.cpu().numpy(), r.keypoints.data.cpu().numpy() if len(r.boxes) else None
            )
            for r in results
        ]

    def _species_keypoints(
        self, boxes: np.ndarray, keypoints: np.ndarray | None
    ) -> np.ndarray | None:
        """The largest instance's keypoints (instances × model keypoints × 2 or 3) reordered
        into the species' schema; None when nothing was detected."""
        if keypoints is None or len(boxes) == 0:
            return None
        chosen = keypoints[largest_box(boxes)].astype(np.float64)
        if chosen.shape[1] == 2:  # a kpt_shape [K, 2] model has no visibility: all are given
            chosen = np.column_stack([chosen, np.ones(len(chosen))])
        return to_species(chosen, self.targets, self.context.species)
