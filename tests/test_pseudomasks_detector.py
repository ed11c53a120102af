"""``teacher.detector`` in the teacher: pixel-reading members run on the detector's crop, their
keypoints and masks come back in full-image pixels, annotation members see the full image, and
images without a detection are processed whole and recorded as such.

The detector is the real yolov8n architecture, random-initialised and saved here. Where exact
answers are needed the models' ``predict`` returns constructed ultralytics ``Results``, and the
expected full-image keypoints and masks are worked out by hand from the box.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from random_yolo import save_random_yolo_models

from pseudomasks.cache import read_shard, shard_is_complete
from pseudomasks.cli import main
from pseudomasks.fusion import fuse_part_map
from pseudomasks.members.base import Sample
from pseudomasks.members.detection import CropBox
from pseudomasks.members.ultralytics_models import bgr
from pseudomasks.settings import parse_settings, teacher_id
from pseudomasks.teacher import ImageResult, Teacher

SPECIES = {
    "name": "toy",
    "keypoint_schema": "custom",
    "keypoints": ["a", "b", "c"],
    "parts": [
        {"name": "front", "keypoints": ["a"]},
        {"name": "middle", "keypoints": ["c"]},
        {"name": "rear", "keypoints": ["b"]},
    ],
}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Iterator[dict[str, dict[str, str]]]:
    """Settings ``weights`` entries for a random yolov8n (``detect``), yolov8n-seg (``seg``) and
    a yolo11n-pose with the toy species' 3 keypoints (``pose``)."""
    root = tmp_path_factory.mktemp("models")
    entries = {}
    for name, path in save_random_yolo_models(root).items():
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        entries[name] = {"path": str(path), "sha256": digest, "url": ""}
    yield entries


def document(teacher: dict[str, Any], weights: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {"teacher": teacher, "species": SPECIES, "weights": weights}


# ---------------------------------------------------------------------------------------------
# Exact mapping, with the models' predictions constructed
# ---------------------------------------------------------------------------------------------

H, W = 100, 200
DETECTION = [50.0, 20.0, 150.0, 70.0]
BOX = CropBox(40, 15, 160, 75)
"""DETECTION grown by margin 0.1 × (100 wide, 50 high) on each side: 10 and 5 pixels."""


def results(image: np.ndarray, boxes: list[list[float]], **extra: torch.Tensor) -> Any:
    from ultralytics.engine.results import Results

    box_tensor = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 6)
    return Results(bgr(image), "x", {i: str(i) for i in range(80)}, boxes=box_tensor, **extra)


def box_mask(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[rows, cols] = True
    return mask


def recording(calls: dict[str, list], name: str, answer: list) -> Any:
    """A ``model.predict`` that keeps the images it was given and returns ``answer``."""

    def predict(images: list[np.ndarray], **kwargs: Any) -> list:
        calls[name] = images
        return answer

    return predict


def spy(calls: dict[str, list], name: str, predict: Any) -> Any:
    """A member's own ``predict``, run as is, keeping the samples (and keypoint prompts) it was
    given."""

    def wrapped(samples: list[Sample], *args: Any) -> Any:
        calls[name] = list(samples)
        if args:  # a segmentation member's keypoint prompts
            calls[f"{name}_prompts"] = list(args[0])
        return predict(samples, *args)

    return wrapped


def test_crops_map_back_to_full_image_pixels(weights, tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 255, (H, W, 3), dtype=np.uint8) for _ in range(2)]
    silhouettes = [
        box_mask((H, W), slice(40, 60), slice(150, 190)),  # reaches past the crop's right edge
        box_mask((H, W), slice(0, 10), slice(0, 20)),
    ]
    for name, sil in zip(("found", "missed"), silhouettes, strict=True):
        cv2.imwrite(str(tmp_path / f"{name}.png"), sil.astype(np.uint8) * 255)
    rows = [
        {"image_id": "found", "keypoints": "[0, 0, 0, 0, 0, 0, 100, 50, 1.0]"},
        {"image_id": "missed", "keypoints": ""},
    ]
    samples = [
        Sample(r["image_id"], image, {**r, "silhouette": f"{r['image_id']}.png"}, tmp_path)
        for r, image in zip(rows, images, strict=True)
    ]
    teacher = Teacher(
        parse_settings(
            document(
                {
                    "mask_size": 64,
                    "pose": [
                        {"member": "ultralytics_pose", "weights": "pose"},
                        {"member": "annotations"},
                    ],
                    "segmentation": [
                        {"member": "yolo_seg", "weights": "seg"},
                        {"member": "annotations"},
                    ],
                    "combine": "union",
                    "detector": {"member": "yolo_detect", "weights": "detect", "margin": 0.1},
                },
                weights,
            )
        )
    )
    crop = images[0][BOX.y0 : BOX.y1, BOX.x0 : BOX.x1]
    assert crop.shape == (60, 120, 3)
    calls: dict[str, list] = {}
    detector, (pose, pose_annotations) = teacher.detector, teacher.pose
    seg, seg_annotations = teacher.segmentation
    detections = [
        results(images[0], [[*DETECTION, 0.9, 15]]),
        results(images[1], []),  # no animal: 'missed' is processed whole
    ]
    monkeypatch.setattr(detector.model, "predict", recording(calls, "detect", detections))
    # pose on the crop (crop pixels) and on the whole 'missed' image (full pixels)
    crop_keypoints = [[10, 20, 0.9], [100, 40, 0.8], [50, 30, 0.1]]
    whole_keypoints = [[30, 40, 0.9], [170, 60, 0.8], [0, 0, 0.1]]
    poses = [
        results(crop, [[0, 0, 120, 60, 0.9, 0]], keypoints=torch.tensor([crop_keypoints])),
        results(images[1], [[0, 0, 200, 100, 0.9, 0]], keypoints=torch.tensor([whole_keypoints])),
    ]
    monkeypatch.setattr(pose.model, "predict", recording(calls, "pose", poses))
    crop_mask = box_mask((60, 120), slice(10, 50), slice(5, 115))
    whole_mask = box_mask((H, W), slice(30, 70), slice(20, 180))
    masks = [
        results(crop, [[0, 0, 120, 60, 0.9, 15]], masks=torch.tensor(crop_mask[None]).float()),
        results(
            images[1], [[0, 0, 200, 100, 0.9, 15]], masks=torch.tensor(whole_mask[None]).float()
        ),
    ]
    monkeypatch.setattr(seg.model, "predict", recording(calls, "seg", masks))
    for name, member in (
        ("pose_annotations", pose_annotations),
        ("seg_member", seg),
        ("seg_annotations", seg_annotations),
    ):
        monkeypatch.setattr(member, "predict", spy(calls, name, member.predict))

    found, missed = teacher.process(samples)

    assert isinstance(found, ImageResult) and isinstance(missed, ImageResult)
    assert found.detector_box == BOX and missed.detector_box is None
    # the neural members saw the crop of 'found' and the whole of 'missed'
    for name in ("pose", "seg"):
        np.testing.assert_array_equal(calls[name][0], bgr(crop))
        np.testing.assert_array_equal(calls[name][1], bgr(images[1]))
    # the annotation members saw the full images
    for name in ("pose_annotations", "seg_annotations"):
        assert [s.image.shape for s in calls[name]] == [(H, W, 3)] * 2
        assert calls[name][0] is samples[0]
    # by hand: crop keypoints + (40, 15); 'c' comes from the catalogue, in full pixels already
    found_keypoints = np.array([[50, 35, 0.9], [140, 55, 0.8], [100, 50, 1.0]])
    # segmentation prompts: the crop's member gets them in crop pixels, minus (40, 15)
    np.testing.assert_allclose(
        calls["seg_member_prompts"][0], [[10, 20, 0.9], [100, 40, 0.8], [60, 35, 1.0]]
    )
    np.testing.assert_allclose(calls["seg_member_prompts"][1], whole_keypoints)
    np.testing.assert_allclose(calls["seg_annotations_prompts"][0], found_keypoints)
    # by hand: the crop's rows 10:50, cols 5:115 are rows 25:65, cols 45:155 of the image
    found_fg = box_mask((H, W), slice(25, 65), slice(45, 155)) | silhouettes[0]
    missed_fg = whole_mask | silhouettes[1]
    species = teacher.settings.species
    for result, kps, fg in (
        (found, found_keypoints, found_fg),
        (missed, np.array(whole_keypoints, float), missed_fg),
    ):
        expected = fuse_part_map(kps, fg, species, 0.3, 64).labels
        np.testing.assert_array_equal(result.part_map.labels, expected)
    labels = found.part_map.labels  # image (x, y) is map cell [y * 64 / 100, x * 64 / 200]
    assert (labels[22, 16], labels[35, 44], labels[32, 32]) == (1, 3, 2)  # a, b, c
    assert labels[30, 55] > 0  # the silhouette outside the crop is foreground
    assert labels[60, 60] == 0 and labels[5, 5] == 0  # outside every mask: background


# ---------------------------------------------------------------------------------------------
# `pseudomasks run` end to end with the real (random) detector
# ---------------------------------------------------------------------------------------------

IMAGE_H, IMAGE_W = 48, 64


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, Path]:
    """Four images of a bright box-shaped animal with catalogue keypoints, no silhouettes."""
    root = tmp_path / "data"
    root.mkdir()
    rows = []
    for i in range(4):
        image = np.random.default_rng(i).integers(0, 80, (IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
        x0 = 8 + 4 * i
        image[14:34, x0 : x0 + 36] = (220, 180, 90)
        cv2.imwrite(str(root / f"{i}.png"), image[:, :, ::-1])
        keypoints = [x0 + 4, 20, 2, x0 + 32, 28, 2, x0 + 18, 24, 2]
        rows.append(
            {
                "image_id": f"im{i}",
                "path": f"{i}.png",
                "identity": str(i % 2),
                "split": "train",
                "keypoints": json.dumps(keypoints),
            }
        )
    catalogue = tmp_path / "catalogue.csv"
    pd.DataFrame(rows).to_csv(catalogue, index=False)
    return {"root": root, "catalogue": catalogue, "out": tmp_path / "masks"}


def run_teacher(dataset: dict[str, Path], doc: dict[str, Any]) -> dict[str, Any]:
    """``pseudomasks run`` + ``index`` for ``doc``; the shard's arrays and the qc."""
    args = ["--catalogue", str(dataset["catalogue"]), "--root", str(dataset["root"])]
    args += ["--settings-json", json.dumps(doc), "--out", str(dataset["out"]), "--device", "cpu"]
    assert main(["run", *args]) == 0
    teacher_dir = dataset["out"] / teacher_id(doc)
    assert main(["index", "--masks-dir", str(teacher_dir), "--num-shards", "1"]) == 0
    with np.load(teacher_dir / "shard-0000-of-0001.npz") as shard:
        arrays = dict(shard)
    return arrays | {"qc": json.loads((teacher_dir / "qc.json").read_text())}


def detector_teacher(weights: dict[str, dict[str, str]], **detector: Any) -> dict[str, Any]:
    return document(
        {
            "mask_size": 32,
            "pose": [{"member": "annotations"}],
            "segmentation": [{"member": "grabcut", "iterations": 2}],
            "detector": {"member": "yolo_detect", "weights": "detect", "imgsz": 64, **detector}
            if detector
            else None,
        },
        {"detect": weights["detect"]} if detector else {},
    )


def test_run_with_a_real_detector(weights, dataset):
    # all 80 COCO classes: the random model's best class is rarely one of the mammals
    doc = detector_teacher(weights, confidence=0.0, classes=list(range(80)))
    out = run_teacher(dataset, doc)
    plain = run_teacher(dataset, detector_teacher(weights))
    assert out["image_id"].tolist() == ["im0", "im1", "im2", "im3"]
    assert out["labels"].shape == (4, 32, 32) and out["failed_image_id"].tolist() == []
    boxes = out["detector_box"]
    assert boxes.shape == (4, 4) and boxes.dtype == np.float64
    found = np.isfinite(boxes).all(axis=1)
    assert found.any() and (found | np.isnan(boxes).all(axis=1)).all()  # a box or all NaN
    assert out["qc"]["detector_found_rate"] == found.mean()
    assert (boxes[found] == np.round(boxes[found])).all()  # whole pixels
    cell_x, cell_y = 32 / IMAGE_W, 32 / IMAGE_H
    for i in np.flatnonzero(found):
        x0, y0, x1, y1 = boxes[i]
        assert 0 <= x0 < x1 <= IMAGE_W and 0 <= y0 < y1 <= IMAGE_H
        rows, cols = np.nonzero(out["labels"][i])
        # a map cell can be foreground only if it overlaps the crop: outside it is background
        assert ((cols + 1 > x0 * cell_x) & (cols < x1 * cell_x)).all()
        assert ((rows + 1 > y0 * cell_y) & (rows < y1 * cell_y)).all()
        if (x0, y0, x1, y1) == (0, 0, IMAGE_W, IMAGE_H):  # a crop that is the whole image
            np.testing.assert_array_equal(out["labels"][i], plain["labels"][i])


def test_no_detection_means_the_whole_image_recorded_as_such(weights, dataset):
    # detector scores are < 1, and ultralytics keeps only scores above the threshold
    missed = run_teacher(dataset, detector_teacher(weights, confidence=1.0))
    plain = run_teacher(dataset, detector_teacher(weights))
    assert np.isnan(missed["detector_box"]).all() and missed["qc"]["detector_found_rate"] == 0.0
    np.testing.assert_array_equal(missed["labels"], plain["labels"])
    assert (missed["foreground_fraction"] > 0).all()  # real maps, not empty ones
    assert np.isnan(plain["detector_box"]).all() and plain["qc"]["detector_found_rate"] is None


def test_shards_from_before_detectors_read_as_no_box(weights, dataset):
    """A shard without ``detector_box`` (written before detectors existed) is still complete:
    it reads as all-NaN and indexes, rather than being recomputed."""
    doc = detector_teacher(weights)
    run_teacher(dataset, doc)
    path = dataset["out"] / teacher_id(doc) / "shard-0000-of-0001.npz"
    with np.load(path) as shard:
        old = {k: shard[k] for k in shard.files if k != "detector_box"}
    np.savez_compressed(path, **old)
    assert shard_is_complete(path, ["im0", "im1", "im2", "im3"])
    boxes = read_shard(path)["detector_box"]
    assert boxes.shape == (4, 4) and np.isnan(boxes).all()
    assert main(["index", "--masks-dir", str(path.parent), "--num-shards", "1"]) == 0
