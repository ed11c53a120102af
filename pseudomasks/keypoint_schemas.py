"""Built-in keypoint schemas: the order in which a pose source lists its keypoints.

A catalogue's ``keypoints`` column and every pose member speak one of these orders, so the
species' parts can name keypoints instead of indices. The lists were checked against the
sources that define them: AP-10K and ATRW against mmpose's ``configs/_base_/datasets``, and
SuperAnimal-Quadruped against DeepLabCut's ``modelzoo/project_configs/superanimal_quadruped.yaml``
(which spells the upper legs ``*_thai``; the misspelling is kept because it is what the model
emits).
"""

AP10K: tuple[str, ...] = (
    "left_eye",
    "right_eye",
    "nose",
    "neck",
    "root_of_tail",
    "left_shoulder",
    "left_elbow",
    "left_front_paw",
    "right_shoulder",
    "right_elbow",
    "right_front_paw",
    "left_hip",
    "left_knee",
    "left_back_paw",
    "right_hip",
    "right_knee",
    "right_back_paw",
)

ATRW15: tuple[str, ...] = (
    "left_ear",
    "right_ear",
    "nose",
    "right_shoulder",
    "right_front_paw",
    "left_shoulder",
    "left_front_paw",
    "right_hip",
    "right_knee",
    "right_back_paw",
    "left_hip",
    "left_knee",
    "left_back_paw",
    "tail",
    "center",
)

SUPERANIMAL_QUADRUPED: tuple[str, ...] = (
    "nose",
    "upper_jaw",
    "lower_jaw",
    "mouth_end_right",
    "mouth_end_left",
    "right_eye",
    "right_earbase",
    "right_earend",
    "right_antler_base",
    "right_antler_end",
    "left_eye",
    "left_earbase",
    "left_earend",
    "left_antler_base",
    "left_antler_end",
    "neck_base",
    "neck_end",
    "throat_base",
    "throat_end",
    "back_base",
    "back_end",
    "back_middle",
    "tail_base",
    "tail_end",
    "front_left_thai",
    "front_left_knee",
    "front_left_paw",
    "front_right_thai",
    "front_right_knee",
    "front_right_paw",
    "back_left_paw",
    "back_left_thai",
    "back_right_thai",
    "back_left_knee",
    "back_right_knee",
    "back_right_paw",
    "belly_bottom",
    "body_middle_right",
    "body_middle_left",
)

BUILTIN_SCHEMAS: dict[str, tuple[str, ...]] = {
    "ap10k": AP10K,
    "atrw15": ATRW15,
    "superanimal_quadruped": SUPERANIMAL_QUADRUPED,
}

CUSTOM_SCHEMA = "custom"
"""Schema name meaning "the species lists its own keypoint names" (``species.keypoints``)."""
