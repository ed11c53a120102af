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

from pseudomasks.errors import UserError
from pseudomasks.members.base import MemberContext, PoseMember, Sample
from pseudomasks.members.devices import torch_device
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
        names = options["keypoint_map"]
        if names is None:
            return
        if not isinstance(names, list) or not all(n is None or isinstance(n, str) for n in names):
            raise UserError(
                f"{where}.keypoint_map: must be a list of species keypoint names (or null), "
                "one per model keypoint"
            )
        given = [n for n in names if n is not None]
        if len(set(given)) != len(given):
            raise UserError(f"{where}.keypoint_map: a species keypoint is listed twice")

    def __init__(self, options: Mapping[str, Any], context: MemberContext) -> None:
        super().__init__(options, context)
        path = resolve_weights(self.options["weights"], context.weights, WHERE)
        self.model = load_yolo(path, "pose", WHERE)
        self.device = torch_device(context.device)
        self.targets = self._targets(int(self.model.model.kpt_shape[0]))

    def _targets(self, model_keypoints: int) -> np.ndarray:
        """Species index of each model keypoint (-1: not in the species' schema)."""
        species = self.context.species
        names = self.options["keypoint_map"]
        if names is None:
            if model_keypoints != len(species.keypoints):
                raise UserError(
                    f"{WHERE}: the model has {model_keypoints} keypoints, species "
                    f"'{species.name}' has {len(species.keypoints)}; give keypoint_map"
                )
            return np.arange(model_keypoints)
        if len(names) != model_keypoints:
            raise UserError(
                f"{WHERE}.keypoint_map: {len(names)} names for a model with {model_keypoints} "
                "keypoints; give one name (or null) per model keypoint"
            )
        unknown = [n for n in names if n is not None and n not in species.keypoints]
        if unknown:
            raise UserError(
                f"{WHERE}.keypoint_map: {unknown[0]!r} is not a keypoint of species "
                f"'{species.name}' ({', '.join(species.keypoints)})"
            )
        return np.array([-1 if n is None else species.keypoint_index(n) for n in names])

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
        out = np.zeros((len(self.context.species.keypoints), 3))
        kept = self.targets >= 0
        out[self.targets[kept]] = chosen[kept]
        return out
