"""Keypoints from DeepLabCut's SuperAnimal-Quadruped HRNet-w32 model, without DeepLabCut.

SuperAnimal-Quadruped (39 keypoints, DeepLabCut 3's PyTorch model zoo) is the base of the
authors' pose ensemble. DeepLabCut itself pins numpy < 2 and pandas < 3, so this member runs
its top-down inference with timm and OpenCV, exactly as DeepLabCut 3.0 does (:mod:`pseudomasks.members.hrnet_heatmap`); a test checks it
against keypoints DeepLabCut's own code produced (``tests/fixtures/superanimal_dlc_reference.json``):

- network: timm ``hrnet_w32`` (``features_only``, no incre/final layers), of which only the
  stride-4, 32-channel branch is used, then a 1×1 transposed convolution to one heatmap per
  keypoint (no activation): 64×64 heatmaps for a 256×256 crop;
- crop: the box (here the whole image: a re-ID image shows one animal, or the teacher
  detector's crop of it) grown on its short side to a square around its centre, corners
  rounded half-to-even, the part outside the image black; resized to ``crop_size`` with
  bilinear OpenCV resizing; RGB normalised with the ImageNet mean and std;
- keypoints: the first maximum of each heatmap (no sub-pixel refinement) at the centre of its
  stride-4 cell, mapped back to the image; ``v`` is the heatmap value there clipped to [0, 1].

``weights`` names a DeepLabCut 3 snapshot (``{"model": state_dict, "metadata": ...}``, as
``superanimal_quadruped_hrnet_w32.pt`` from the DeepLabCut model zoo) or a bare state dict
with the same keys. The number of keypoints is read from the head, so a user's own
DeepLabCut 3 HRNet-w32 heatmap model (without location refinement) loads too; its keypoints
land in the species' schema through ``keypoint_map`` as for the other pose members. Loading
uses ``torch.load(weights_only=True)``, so a file cannot run code.

DeepLabCut's inference crop is 256×256 because its SuperAnimal config sets none; ``crop_size``
changes it (the training resolution is not recorded in DeepLabCut's sources).

The authors ran another file of the same model family, ``hrnet_w32_quadruped80k.pth``, through
their own fork of mmpose (mmpose's affine crop with its 1.25 box padding and a flip test), so
keypoints from this member will differ somewhat from theirs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.members.base import MemberContext, PoseMember, Sample, in_batches
from pseudomasks.members.devices import torch_device
from pseudomasks.members.keypoint_map import check_keypoint_map, keypoint_targets, to_species
from pseudomasks.weights import check_weights_option, resolve_weights

WHERE = "superanimal"


class SuperAnimalPose(PoseMember):
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "weights": "",
        "keypoint_map": None,
        "crop_size": 256,
        "batch_size": 16,
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        check_weights_option(options, where)
        check_keypoint_map(options["keypoint_map"], where)
        if options["crop_size"] < 32 or options["crop_size"] % 32:
            raise UserError(
                f"{where}.crop_size: must be a multiple of 32 (the network's coarsest stride), "
                f"got {options['crop_size']}"
            )
        if options["batch_size"] < 1:
            raise UserError(f"{where}.batch_size: must be >= 1, got {options['batch_size']}")

    def __init__(self, options: Mapping[str, Any], context: MemberContext) -> None:
        super().__init__(options, context)
        from pseudomasks.members.hrnet_heatmap import load_network

        path = resolve_weights(self.options["weights"], context.weights, WHERE)
        self.device = torch_device(context.device)
        self.network = load_network(path).to(self.device)
        self.targets = keypoint_targets(
            self.options["keypoint_map"],
            self.network.num_keypoints,
            context.species,
            WHERE,
        )

    def predict(self, samples: Sequence[Sample]) -> list[np.ndarray | None]:
        return in_batches(self._predict_batch, samples, self.options["batch_size"])

    def _predict_batch(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """One forward pass, each sample's whole image as its box."""
        from pseudomasks.members.hrnet_heatmap import predict_keypoints

        images = [s.image for s in samples]
        boxes = [(0.0, 0.0, float(im.shape[1]), float(im.shape[0])) for im in images]
        keypoints = predict_keypoints(self.network, images, boxes, self.options["crop_size"])
        return [to_species(k, self.targets, self.context.species) for k in keypoints]
