"""Keypoints from an mmpose top-down model (AP-10K HRNet, RTMPose, ... or a user's own config).

A re-ID image shows one animal (or, with a teacher detector, is the crop around it), so the box
given to the top-down model is the whole image. ``config`` is a path inside the installed
mmpose package's ``.mim/configs`` (e.g. the default AP-10K HRNet-w32) or an absolute path to a
config file; the model's keypoints (its config's dataset) are reordered into the species' schema
by ``keypoint_map`` as in ``ultralytics_pose``. ``v`` is the model's keypoint score (a heatmap
peak or SimCC maximum) clipped to [0, 1], the range the teacher's ``confidence`` and the other
members use. ``flip_test`` averages with the mirrored image through mmpose's own
``test_cfg.flip_test``. Images are batched ``batch_size`` at a time through the model's test
pipeline, exactly as ``mmpose.apis.inference_topdown`` runs the boxes of one image.

``weights`` names a checkpoint (mmpose's ``{"state_dict": ...}`` or a plain state dict). It is
read with ``torch.load(weights_only=True)`` so a file cannot run code; OpenMMLab checkpoints
that also pickle training metadata (numpy values, mmengine objects) are refused with the
one-line command that keeps only their weights. The keypoint names come from the config, not
from the checkpoint's metadata.

Installing mmpose (mmcv with compiled ops): ``make`` runs ``tools/install_mmpose.sh``.

The authors' SuperAnimal + AP-10K ensemble is configuration, not code: teacher
``superanimal_ap10k`` in config.yaml. SuperAnimal-Quadruped (39 keypoints, the ``superanimal``
member) is the base; this member runs AP-10K HRNet-w48 with a ``keypoint_map`` that names the 14
SuperAnimal keypoints it replaces (neck, tail base, the legs; null for its eyes and nose), and
SuperAnimal's shared ``keypoints`` option lists the other 21 (the antlers left out). Each
keypoint then comes from exactly one model, whatever its score, as in the authors' code.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.members.base import MemberContext, PoseMember, Sample, in_batches
from pseudomasks.members.devices import torch_device
from pseudomasks.members.keypoint_map import check_keypoint_map, keypoint_targets, to_species
from pseudomasks.weights import check_weights_option, resolve_weights

WHERE = "mmpose"
INSTALL = "run make (or tools/install_mmpose.sh <python>) to install it"


class MmposePose(PoseMember):
    DEFAULTS: ClassVar[Mapping[str, Any]] = {
        "config": "animal_2d_keypoint/topdown_heatmap/ap10k/"
        "td-hm_hrnet-w32_8xb64-210e_ap10k-256x256.py",
        "weights": "",
        "keypoint_map": None,
        "flip_test": False,
        "batch_size": 16,
    }

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        check_weights_option(options, where)
        check_keypoint_map(options["keypoint_map"], where)
        if not options["config"]:
            raise UserError(f"{where}.config: name an mmpose config file")
        if options["batch_size"] < 1:
            raise UserError(f"{where}.batch_size: must be >= 1, got {options['batch_size']}")

    def __init__(self, options: Mapping[str, Any], context: MemberContext) -> None:
        super().__init__(options, context)
        apis = _mmpose_apis()
        from mmengine.dataset import Compose

        config = _load_config(self.options["config"], self.options["flip_test"])
        path = resolve_weights(self.options["weights"], context.weights, WHERE)
        self.device = torch_device(context.device)
        self.model = apis.init_model(config, checkpoint=None, device=self.device)
        _load_weights(self.model, path, self.options["config"])
        self.pipeline = Compose(self.model.cfg.test_dataloader.dataset.pipeline)
        self.targets = keypoint_targets(
            self.options["keypoint_map"],
            int(self.model.dataset_meta["num_keypoints"]),
            context.species,
            WHERE,
        )

    def predict(self, samples: Sequence[Sample]) -> list[np.ndarray | None]:
        return in_batches(self._predict_batch, samples, self.options["batch_size"])

    def _predict_batch(self, samples: Sequence[Sample]) -> list[np.ndarray]:
        """One ``test_step`` over the samples, each with its whole image as the box: the data
        records are the ones ``inference_topdown`` builds (BGR image, as mmpose reads files)."""
        import torch
        from mmengine.dataset import pseudo_collate

        records = []
        for sample in samples:
            h, w = sample.image.shape[:2]
            record = {
                "img": np.ascontiguousarray(sample.image[:, :, ::-1]),
                "bbox": np.array([[0, 0, w, h]], dtype=np.float32),
                "bbox_score": np.ones(1, dtype=np.float32),
                **self.model.dataset_meta,
            }
            records.append(self.pipeline(record))
        with torch.no_grad():
            results = self.model.test_step(pseudo_collate(records))
        return [self._species_keypoints(r.pred_instances) for r in results]

    def _species_keypoints(self, instances: Any) -> np.ndarray:
        xy = np.asarray(instances.keypoints, dtype=np.float64)[0]
        v = np.clip(np.asarray(instances.keypoint_scores, dtype=np.float64)[0], 0.0, 1.0)
        return to_species(np.column_stack([xy, v]), self.targets, self.context.species)


def _mmpose_apis() -> Any:
    """``mmpose.apis``, or a UserError when the mmpose stack is missing or broken (mmcv
    without its compiled ops fails here too)."""
    try:
        import mmpose.apis
    except ImportError as exc:
        raise UserError(f"{WHERE}: cannot import mmpose.apis ({exc}); {INSTALL}") from exc
    return mmpose.apis


def _config_path(name: str) -> Path:
    """An absolute path as given; anything else inside the installed package's configs."""
    import mmpose

    path = Path(name)
    if not path.is_absolute():
        path = Path(mmpose.__file__).parent / ".mim" / "configs" / path
    if not path.is_file():
        raise UserError(
            f"{WHERE}.config: {name} not found (looked for {path}); give a path relative to "
            "mmpose's configs directory or an absolute path to a config file"
        )
    return path


def _load_config(name: str, flip_test: bool) -> Any:
    """The config with ``test_cfg.flip_test`` set from the option (mmpose's configs mostly
    switch it on; here it is the member's choice)."""
    from mmengine.config import Config

    config = Config.fromfile(str(_config_path(name)))
    model_type = config.model.get("type")
    if model_type != "TopdownPoseEstimator":
        raise UserError(
            f"{WHERE}.config: {name} builds a {model_type}; this member needs a top-down model "
            "(TopdownPoseEstimator)"
        )
    test_cfg = dict(config.model.get("test_cfg") or {})
    test_cfg["flip_test"] = flip_test
    config.model.test_cfg = test_cfg
    return config


def _load_weights(model: Any, path: Path, config: str) -> None:
    """Load a checkpoint into the built model, strictly: weights of another architecture or
    keypoint count are an error naming both files, not a silently half-random model."""
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as exc:
        refused = re.search(r"Unsupported (?:global: GLOBAL|class) ([\w.]+)", str(exc))
        if refused is None:
            raise UserError(
                f"{WHERE}: {path} is not a torch checkpoint; check the weights entry"
            ) from exc
        raise UserError(
            f"{WHERE}: {path} also pickles {refused[1]}, which weights_only loading refuses; if "
            f'you trust the file, keep only its weights: python -c "import torch; torch.save('
            f"torch.load('{path}', weights_only=False)['state_dict'], '{path}.weights.pth')\" "
            "and point the weights entry there"
        ) from exc
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, Mapping):
        raise UserError(f"{WHERE}: {path} holds no state dict; check the weights entry")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        reason = " ".join(str(exc).split())
        raise UserError(
            f"{WHERE}: {path} does not fit config {config} ({reason[:300]}); check the config "
            "and the weights entry"
        ) from exc
