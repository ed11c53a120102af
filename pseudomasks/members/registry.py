"""Member names as written in the settings, mapped to the class implementing each.

Classes are named as ``module:Class`` strings and imported on first use, so adding a neural
member is one module plus one line here, and its libraries load only for teachers that use it.
"""

from __future__ import annotations

import importlib

from pseudomasks.errors import UserError
from pseudomasks.members.base import Member, PoseMember, SegmentationMember
from pseudomasks.members.detection import DetectorMember

POSE_MEMBERS: dict[str, str] = {
    "annotations": "pseudomasks.members.annotations:AnnotationPose",
    "ultralytics_pose": "pseudomasks.members.ultralytics_pose:UltralyticsPose",
    "mmpose": "pseudomasks.members.mmpose_pose:MmposePose",
    "superanimal": "pseudomasks.members.superanimal:SuperAnimalPose",
}

SEGMENTATION_MEMBERS: dict[str, str] = {
    "annotations": "pseudomasks.members.annotations:AnnotationSilhouette",
    "grabcut": "pseudomasks.members.grabcut:GrabCut",
    "yolo_seg": "pseudomasks.members.yolo_seg:YoloSeg",
    "sam": "pseudomasks.members.sam:SamSegmentation",
    "salient": "pseudomasks.members.salient:SalientObject",
}

DETECTOR_MEMBERS: dict[str, str] = {
    "annotations": "pseudomasks.members.annotations:AnnotationBox",
    "yolo_detect": "pseudomasks.members.yolo_detect:YoloDetect",
}

_KINDS: dict[str, dict[str, str]] = {
    "pose": POSE_MEMBERS,
    "segmentation": SEGMENTATION_MEMBERS,
    "detector": DETECTOR_MEMBERS,
}


def member_class(kind: str, name: str, where: str) -> type[Member]:
    """The class of member ``name`` of ``kind`` ('pose', 'segmentation' or 'detector')."""
    table = _KINDS[kind]
    if name not in table:
        raise UserError(
            f"{where}: unknown {kind} member {name!r}; available: {', '.join(sorted(table))}"
        )
    module_name, class_name = table[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def pose_member_class(name: str, where: str) -> type[PoseMember]:
    cls = member_class("pose", name, where)
    assert issubclass(cls, PoseMember), f"{POSE_MEMBERS[name]} is not a PoseMember"
    return cls


def segmentation_member_class(name: str, where: str) -> type[SegmentationMember]:
    cls = member_class("segmentation", name, where)
    assert issubclass(cls, SegmentationMember), (
        f"{SEGMENTATION_MEMBERS[name]} is not a SegmentationMember"
    )
    return cls


def detector_member_class(name: str, where: str) -> type[DetectorMember]:
    cls = member_class("detector", name, where)
    assert issubclass(cls, DetectorMember), f"{DETECTOR_MEMBERS[name]} is not a DetectorMember"
    return cls
