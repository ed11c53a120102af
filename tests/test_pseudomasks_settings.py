"""Settings validation, built-in schemas and the teacher id."""

from __future__ import annotations

import copy
import json

import pytest

from pseudomasks.errors import UserError
from pseudomasks.keypoint_schemas import BUILTIN_SCHEMAS
from pseudomasks.settings import parse_settings, read_settings, teacher_id


def tiger_settings() -> dict:
    return {
        "teacher": {
            "name": "ground_truth",
            "mask_size": 64,
            "pose": [{"member": "annotations"}],
            "segmentation": [{"member": "annotations"}, {"member": "grabcut", "iterations": 5}],
            "combine": "majority",
            "fallback": "silhouette_template",
            "detector": None,
            "confidence": 0.3,
        },
        "species": {
            "name": "tiger",
            "keypoint_schema": "atrw15",
            "keypoints": None,
            "parts": [
                {"name": "head", "keypoints": ["left_ear", "right_ear", "nose"]},
                {
                    "name": "front_legs",
                    "keypoints": [
                        "right_shoulder",
                        "right_front_paw",
                        "left_shoulder",
                        "left_front_paw",
                    ],
                },
                {
                    "name": "hind_legs",
                    "keypoints": [
                        "right_hip",
                        "right_knee",
                        "right_back_paw",
                        "left_hip",
                        "left_knee",
                        "left_back_paw",
                    ],
                },
                {"name": "body", "keypoints": ["center"]},
                {"name": "tail", "keypoints": ["tail"]},
            ],
            "links": [["right_hip", "right_knee"], ["left_hip", "left_knee"]],
            "tail": ["tail", None],
            "orientation": {"front": ["head", "front_legs"], "rear": ["hind_legs", "tail"]},
        },
        "weights": {"sam": {"path": "resources/weights/sam.pth", "sha256": "ab" * 32, "url": ""}},
    }


DETECTOR = {"member": "yolo_detect", "weights": "sam"}
"""Settings validation does not open weights files, so any entry name will do."""


def changed(path: str, value) -> dict:
    doc = tiger_settings()
    *keys, last = path.split(".")
    target = doc
    for key in keys:
        target = target[int(key)] if key.isdigit() else target[key]
    target[int(last) if last.isdigit() else last] = value
    return doc


def test_builtin_schemas_have_the_documented_sizes():
    assert {k: len(v) for k, v in BUILTIN_SCHEMAS.items()} == {
        "ap10k": 17,
        "atrw15": 15,
        "superanimal_quadruped": 39,
    }
    for names in BUILTIN_SCHEMAS.values():
        assert len(set(names)) == len(names)


def test_teacher_id_is_12_hex_and_stable():
    tid = teacher_id(tiger_settings())
    assert len(tid) == 12 and int(tid, 16) >= 0
    assert teacher_id(copy.deepcopy(tiger_settings())) == tid
    assert teacher_id(parse_settings(tiger_settings())) == tid


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("teacher.name", "renamed"),
        ("weights.sam.path", "/elsewhere/sam.pth"),
        ("weights.sam.url", "https://example.org/sam.pth"),
        ("species.name", "amur_tiger"),
        ("teacher.segmentation.1", {"member": "grabcut"}),  # iterations 5 is the default
        ("teacher.detector", None),
    ],
)
def test_teacher_id_ignores_what_does_not_change_maps(path, value):
    assert teacher_id(changed(path, value)) == teacher_id(tiger_settings())


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("teacher.confidence", 0.5),
        ("teacher.mask_size", 32),
        ("teacher.combine", "union"),
        ("teacher.fallback", None),
        ("teacher.segmentation.1", {"member": "grabcut", "iterations": 3}),
        ("weights.sam.sha256", "cd" * 32),
        ("species.parts.3", {"name": "torso", "keypoints": ["center"]}),
        ("species.links", []),
        ("species.tail", None),
        ("species.orientation", None),
        ("teacher.detector", DETECTOR),
    ],
)
def test_teacher_id_changes_with_what_changes_maps(path, value):
    assert teacher_id(changed(path, value)) != teacher_id(tiger_settings())


def test_detector_null_and_absent_are_the_same_teacher():
    absent = tiger_settings()
    del absent["teacher"]["detector"]
    assert parse_settings(absent).detector is None
    assert teacher_id(absent) == teacher_id(tiger_settings())
    assert parse_settings(tiger_settings()).identity()["detector"] is None


def test_teacher_id_follows_the_detector_options():
    with_detector = teacher_id(changed("teacher.detector", DETECTOR))
    spelled_out = DETECTOR | {"confidence": 0.25, "imgsz": 640, "margin": 0.1}
    assert teacher_id(changed("teacher.detector", spelled_out)) == with_detector
    for option, value in [("margin", 0.2), ("confidence", 0.5), ("imgsz", 320), ("classes", [15])]:
        other = changed("teacher.detector", DETECTOR | {option: value})
        assert teacher_id(other) != with_detector, option
    spec = parse_settings(changed("teacher.detector", DETECTOR)).detector
    assert (spec.kind, spec.name, spec.options["margin"]) == ("detector", "yolo_detect", 0.1)


def test_a_detector_needs_a_member_that_reads_pixels():
    doc = changed("teacher.detector", DETECTOR)
    doc["teacher"]["segmentation"] = [{"member": "annotations"}]
    with pytest.raises(UserError, match="teacher.detector: every pose and segmentation member"):
        parse_settings(doc)


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            "species.parts.2.keypoints",
            ["right_hipp"],
            "species 'tiger': part 'hind_legs' names keypoint 'right_hipp'",
        ),
        ("species.links", [["nose", "snout"]], "species 'tiger': a link names keypoint 'snout'"),
        ("species.parts", [], "K >= 1"),
        ("species.keypoint_schema", "coco", "unknown keypoint_schema 'coco'"),
        ("species.tail", ["tail_tip", None], "tail names keypoint 'tail_tip'"),
        ("species.orientation", {"front": ["neck"]}, "orientation.front names part 'neck'"),
        ("teacher.combine", "vote", "teacher.combine 'vote'"),
        ("teacher.pose", [{"member": "openpose"}], "unknown pose member 'openpose'"),
        ("teacher.detector", "yolo", r"teacher.detector: needs 'member: <name>'"),
        ("teacher.detector", {"member": "yolo"}, "unknown detector member 'yolo'"),
        ("teacher.detector", {"member": "yolo_detect"}, r"detector \(yolo_detect\).weights"),
        ("teacher.detector", DETECTOR | {"margin": 2}, r"detector \(yolo_detect\).margin"),
        ("teacher.detector", DETECTOR | {"iou": 0.5}, "unknown option 'iou'"),
        ("teacher.mask_size", 4, "teacher.mask_size"),
    ],
)
def test_bad_settings_are_one_line_user_errors(path, value, message):
    with pytest.raises(UserError, match=message) as info:
        parse_settings(changed(path, value))
    assert "\n" not in str(info.value)


def test_custom_schema_and_keypoint_in_two_parts():
    doc = tiger_settings()
    doc["species"] = {
        "name": "yak",
        "keypoint_schema": "custom",
        "keypoints": ["nose", "withers", "rump"],
        "parts": [{"name": "head", "keypoints": ["nose"]}, {"name": "body", "keypoints": []}],
    }
    assert parse_settings(doc).species.keypoints == ("nose", "withers", "rump")
    doc["species"]["parts"][1]["keypoints"] = ["nose"]
    with pytest.raises(UserError, match="'nose' is in both part 'head' and part 'body'"):
        parse_settings(doc)


def test_settings_from_file_and_string(tmp_path):
    path = tmp_path / "s.json"
    path.write_text(json.dumps(tiger_settings()))
    from_file = read_settings(str(path), None)
    from_string = read_settings(None, json.dumps(tiger_settings()))
    assert teacher_id(from_file) == teacher_id(from_string)
    with pytest.raises(UserError, match="not valid JSON"):
        read_settings(None, "{teacher:")
    with pytest.raises(UserError, match="settings file"):
        read_settings(str(tmp_path / "missing.json"), None)
