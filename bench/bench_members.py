"""Teacher members' throughput: images/s of each member with its real architecture, random weights.

    .venv/bin/python bench/bench_members.py [--images DIR] [--n 8] [--device cpu]

Weights cannot be downloaded here, so every neural member runs its real architecture with random
initialisation (yolov8n-seg, yolov8n, yolo11n-pose with AP-10K's 17 keypoints, SAM ViT-B, the
SuperAnimal-Quadruped HRNet-w32 mapped to AP-10K, and the mmpose AP-10K HRNet-w32
and RTMPose-m configs when mmpose is installed). Speed does not depend on
the weights' values, except where the output size does: a random detector finds nothing, so
downstream work on detections is not exercised, which the table says. Images: the first --n
photos of --images (e.g. ../shared/data/nyala/train), else random 384×512 images.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import yaml

from pseudomasks.keypoint_schemas import AP10K, SUPERANIMAL_QUADRUPED
from pseudomasks.members.base import MemberContext, Sample, WeightsSpec
from pseudomasks.members.hrnet_heatmap import BACKBONE_PREFIX, HEAD_PREFIX, HeatmapNetwork
from pseudomasks.members.registry import member_class
from pseudomasks.species import parse_species

SPECIES = parse_species(
    {
        "name": "quadruped",
        "keypoint_schema": "ap10k",
        "parts": [
            {"name": "head", "keypoints": ["left_eye", "right_eye", "nose"]},
            {"name": "body", "keypoints": ["neck", "root_of_tail"]},
        ],
    }
)


def load_samples(images: Path | None, n: int) -> list[Sample]:
    if images is None:
        rng = np.random.default_rng(0)
        arrays = [rng.integers(0, 255, (384, 512, 3), dtype=np.uint8) for _ in range(n)]
    else:
        paths = sorted(p for p in images.rglob("*.jpg"))[:n]
        arrays = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]
    return [Sample(f"img{i}", a, {}, Path(".")) for i, a in enumerate(arrays)]


def centre_keypoints(samples: list[Sample]) -> list[np.ndarray]:
    """AP-10K keypoints spread over the middle of each image: prompts/seeds for SAM and GrabCut."""
    out = []
    for sample in samples:
        h, w = sample.image.shape[:2]
        xs = np.linspace(0.3 * w, 0.7 * w, len(AP10K))
        out.append(np.column_stack([xs, np.full(len(AP10K), 0.5 * h), np.ones(len(AP10K))]))
    return out


def random_weights(root: Path) -> dict[str, WeightsSpec]:
    """Save the random-initialised models as the files the members load."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import ultralytics
    from segment_anything import sam_model_registry
    from ultralytics import YOLO

    cfg = Path(ultralytics.__file__).parent / "cfg" / "models"
    pose = yaml.safe_load((cfg / "11" / "yolo11-pose.yaml").read_text())
    pose.update(nc=1, kpt_shape=[len(AP10K), 3])
    (root / "yolo11n-pose-ap10k.yaml").write_text(yaml.safe_dump(pose))
    paths = {}
    for name, source in (
        ("pose", str(root / "yolo11n-pose-ap10k.yaml")),
        ("seg", "yolov8n-seg.yaml"),
        ("detect", "yolov8n.yaml"),
    ):
        torch.manual_seed(0)
        paths[name] = root / f"{name}.pt"
        YOLO(source).save(paths[name])
    torch.manual_seed(0)
    paths["sam"] = root / "sam_vit_b.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), paths["sam"])
    torch.manual_seed(0)
    network = HeatmapNetwork(num_keypoints=39)
    state = {BACKBONE_PREFIX + k: v for k, v in network.backbone.state_dict().items()}
    state |= {HEAD_PREFIX + k: v for k, v in network.head.state_dict().items()}
    paths["superanimal"] = root / "superanimal_quadruped_hrnet_w32.pt"
    torch.save({"model": state}, paths["superanimal"])
    return {name: WeightsSpec(str(path), "", "") for name, path in paths.items()}


MMPOSE_MODELS = (
    (
        "hrnet",
        "animal_2d_keypoint/topdown_heatmap/ap10k/td-hm_hrnet-w32_8xb64-210e_ap10k-256x256.py",
        "AP-10K HRNet-w32, 256 px",
    ),
    (
        "rtmpose",
        "animal_2d_keypoint/rtmpose/ap10k/rtmpose-m_8xb64-210e_ap10k-256x256.py",
        "AP-10K RTMPose-m, 256 px",
    ),
)


def random_mmpose_weights(root: Path, name: str, config: str) -> WeightsSpec:
    """A random-initialised model of a config shipped with mmpose, saved as its checkpoint."""
    import mmpose
    from mmpose.apis import init_model

    torch.manual_seed(0)
    model = init_model(str(Path(mmpose.__file__).parent / ".mim" / "configs" / config), None, "cpu")
    path = root / f"{name}.pth"
    torch.save({"state_dict": model.state_dict()}, path)
    return WeightsSpec(str(path), "", "")


def superanimal_options() -> dict:
    """SuperAnimal's keypoints mapped to AP-10K names (the bench species' schema) through the
    counterparts the shipped superanimal_ap10k teacher pairs them with."""
    config = yaml.safe_load((Path(__file__).parents[1] / "config.yaml").read_text())
    pose = config["teachers"]["superanimal_ap10k"]["pose"]
    (ap10k,) = [m for m in pose if m["member"] == "mmpose"]
    counterpart = {sa: AP10K[i] for i, sa in enumerate(ap10k["keypoint_map"]) if sa is not None}
    return {
        "weights": "superanimal",
        "keypoint_map": [counterpart.get(name) for name in SUPERANIMAL_QUADRUPED],
    }


def member_images_per_s(
    kind: str,
    name: str,
    options: dict,
    context: MemberContext,
    samples: list[Sample],
    keypoints: list,
    repeats: int,
) -> float:
    """Build one teacher member and time its ``predict`` on ``samples`` (images/s)."""
    cls = member_class(kind, name, "bench")
    member = cls(cls.resolve_options(options, name), context)
    if kind == "segmentation":
        return time_member(lambda: member.predict(samples, keypoints), len(samples), repeats)
    return time_member(lambda: member.predict(samples), len(samples), repeats)


def time_member(run: Callable[[], object], n: int, repeats: int) -> float:
    """Best images/s over ``repeats`` runs after one warm-up run."""
    run()
    best = min(_seconds(run) for _ in range(repeats))
    return n / best


def _seconds(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path)
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    samples = load_samples(args.images, args.n)
    keypoints = centre_keypoints(samples)
    print(
        f"{platform.node()}: {os.cpu_count()} cores, torch {torch.__version__}, "
        f"device {args.device}, {len(samples)} images of {samples[0].image.shape[1]}×"
        f"{samples[0].image.shape[0]} px"
    )
    with tempfile.TemporaryDirectory() as tmp:
        weights = random_weights(Path(tmp))
        cases = [
            ("segmentation", "grabcut", {}, "no weights"),
            ("segmentation", "yolo_seg", {"weights": "seg"}, "yolov8n-seg, 640 px"),
            ("segmentation", "sam", {"weights": "sam", "model_type": "vit_b"}, "ViT-B, 1024 px"),
            ("pose", "ultralytics_pose", {"weights": "pose"}, "yolo11n-pose, 640 px"),
            ("pose", "superanimal", superanimal_options(), "SuperAnimal HRNet-w32, 256 px"),
            ("detector", "yolo_detect", {"weights": "detect"}, "yolov8n, 640 px"),
        ]
        try:
            for name, config, label in MMPOSE_MODELS:
                weights[name] = random_mmpose_weights(Path(tmp), name, config)
                cases.append(("pose", "mmpose", {"config": config, "weights": name}, label))
        except ImportError:
            print("mmpose not installed: its members are not measured")
        context = MemberContext(SPECIES, confidence=0.3, device=args.device, weights=weights)
        print(f"{'member':<18}{'architecture':<28}{'img/s':>8}")
        for kind, name, options, label in cases:
            repeats = 1 if name == "sam" else args.repeats  # SAM: ~1 min per run here
            rate = member_images_per_s(kind, name, options, context, samples, keypoints, repeats)
            print(f"{name:<18}{label:<28}{rate:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
