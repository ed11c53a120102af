"""Segment Anything (SAM) prompted with the animal's box and its confident keypoints.

Prompt: the bounding box of the keypoints with ``v >= confidence`` inside the image, grown by
``box_margin`` × its width/height on each side (keypoints sit on joints, inside the outline),
plus those keypoints as positive points; with no such keypoints (or all on one line), the whole
image minus a ``border`` strip, and no points. One mask per prompt (``multimask_output=False``):
the box and points already say which object is meant.

``model_type`` is a key of ``segment_anything.sam_model_registry`` (vit_h, vit_l, vit_b, or a
builder registered there by the caller); the architecture is built from it and the weights file
is loaded into it as a plain state dict (``weights_only``, so a checkpoint cannot run code).
A batch goes through ``Sam.forward`` in one call, so the image encoder runs batched on a GPU.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.members.base import MemberContext, Sample, SegmentationMember
from pseudomasks.members.devices import torch_device
from pseudomasks.weights import check_weights_option, resolve_weights

WHERE = "sam"


def sam_prompt(
    keypoints: np.ndarray | None,
    shape: tuple[int, ...],
    confidence: float,
    box_margin: float,
    border: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The box ``[x0, y0, x1, y1]`` and positive points ``P×2`` (image pixels) for one image."""
    h, w = shape[:2]
    points = np.zeros((0, 2))
    if keypoints is not None:
        ok = np.isfinite(keypoints).all(axis=1) & (keypoints[:, 2] >= confidence)
        xy = keypoints[ok, :2]
        points = xy[(xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)]
    if len(points) and (np.ptp(points, axis=0) > 0).all():
        lo, hi = points.min(axis=0), points.max(axis=0)
        pad = box_margin * (hi - lo)
        box = np.concatenate([np.maximum(lo - pad, 0), np.minimum(hi + pad, [w, h])])
    else:
        box = np.array([border * w, border * h, (1 - border) * w, (1 - border) * h])
    return box, points


class SamSegmentation(SegmentationMember):
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "model_type": "vit_h",
        "weights": "",
        "box_margin": 0.1,
        "border": 0.02,
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        check_weights_option(options, where)
        if not 0 <= options["box_margin"] <= 1:
            raise UserError(f"{where}.box_margin: must be in [0, 1]")
        if not 0 <= options["border"] < 0.5:
            raise UserError(f"{where}.border: must be in [0, 0.5)")

    def __init__(self, options: Mapping[str, Any], context: MemberContext) -> None:
        import torch
        from segment_anything import sam_model_registry
        from segment_anything.utils.transforms import ResizeLongestSide

        super().__init__(options, context)
        model_type = self.options["model_type"]
        if model_type not in sam_model_registry:
            raise UserError(
                f"{WHERE}.model_type: {model_type!r} unknown; use one of "
                f"{', '.join(sorted(sam_model_registry))}"
            )
        path = resolve_weights(self.options["weights"], context.weights, WHERE)
        model = sam_model_registry[model_type]()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except (RuntimeError, pickle.UnpicklingError, EOFError, AttributeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(
                f"{WHERE}: {path} is not a SAM {model_type!r} state dict ({first}); check "
                "model_type and the weights entry"
            ) from exc
        self.device = torch_device(context.device)
        self.model = model.to(self.device).eval()
        self.transform = ResizeLongestSide(model.image_encoder.img_size)

    def predict(
        self, samples: Sequence[Sample], keypoints: Sequence[np.ndarray | None]
    ) -> list[np.ndarray | None]:
        if not samples:
            return []
        batch = [self._input(s.image, k) for s, k in zip(samples, keypoints, strict=True)]
        outputs = self.model(batch, multimask_output=False)
        return [o["masks"][0, 0].cpu().numpy() for o in outputs]

    def _input(self, image: np.ndarray, keypoints: np.ndarray | None) -> dict[str, Any]:
        """One ``Sam.forward`` record: the resized image and the prompt in its coordinates."""
        import torch

        size = image.shape[:2]
        box, points = sam_prompt(
            keypoints,
            size,
            self.context.confidence,
            self.options["box_margin"],
            self.options["border"],
        )
        resized = torch.as_tensor(self.transform.apply_image(image), device=self.device)
        record: dict[str, Any] = {
            "image": resized.permute(2, 0, 1).contiguous(),
            "original_size": size,
            "boxes": self._tensor(self.transform.apply_boxes(box[None], size)),
        }
        if len(points):
            record["point_coords"] = self._tensor(self.transform.apply_coords(points, size))[None]
            record["point_labels"] = torch.ones((1, len(points)), device=self.device)
        return record

    def _tensor(self, array: np.ndarray) -> Any:
        import torch

        return torch.as_tensor(array, dtype=torch.float32, device=self.device)
