"""ATRW (Amur tiger re-ID in the wild): catalogue rows from the official plain re-ID release.

Layout under the dataset root (every file is an option, relative to root or absolute):

    train/                      training images
    reid_list_train.csv         rows `identity,filename` (no header in the release; one is allowed)
    reid_keypoints_train.json   {filename: [x, y, v] * 15} in the ATRW-15 order below
    test/                       test images, named {imgid:06d}.jpg
    reid_list_test.csv          one test filename per row
    gt_test_plain.json          [{imgid, entityid, frame: [cam_a, cam_b, index], query: sing|multi}]

Training rows carry the keypoints and an orientation read from them. Test rows carry what the
official evaluation needs: identity = entityid, camera = "a_b" and frame = index (junk is the
same entity and camera within 3 frames), group = sing|multi (single- vs cross-camera queries).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from reid.datasets import option_path
from reid.errors import UserError

# ATRW-15 keypoint order, as in the CVWC2019 pose annotation (mmpose's atrw dataset_info).
KEYPOINTS: tuple[str, ...] = (
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
HEAD = tuple(KEYPOINTS.index(k) for k in ("left_ear", "right_ear", "nose"))
REAR = tuple(KEYPOINTS.index(k) for k in ("tail", "right_hip", "left_hip"))

FILE_OPTIONS = {
    "train_list": "ATRW training list",
    "keypoints": "ATRW training keypoints",
    "test_list": "ATRW test list",
    "gt": "ATRW test ground truth",
}
FOLDER_OPTIONS = {"train_images": "ATRW training images", "test_images": "ATRW test images"}


def load(
    root: Path,
    train_list: str = "reid_list_train.csv",
    keypoints: str = "reid_keypoints_train.json",
    train_images: str = "train",
    test_list: str = "reid_list_test.csv",
    gt: str = "gt_test_plain.json",
    test_images: str = "test",
) -> pd.DataFrame:
    """Catalogue rows for the ATRW training set (split 'train') and plain test set ('test')."""
    root = Path(root)
    train = _train_rows(
        root,
        option_path(root, train_list, "train_list", FILE_OPTIONS["train_list"]),
        option_path(root, keypoints, "keypoints", FILE_OPTIONS["keypoints"]),
        train_images,
    )
    test = _test_rows(
        option_path(root, test_list, "test_list", FILE_OPTIONS["test_list"]),
        option_path(root, gt, "gt", FILE_OPTIONS["gt"]),
        test_images,
    )
    return pd.DataFrame(train + test)


def orientation_from_keypoints(values: list[float]) -> str:
    """The flank shown: 'left' when the head is on the left of the frame, else 'right'.

    Head on the left of the frame means the animal faces left and shows its own left flank
    (the same convention as the Nyala file names). The head position is the mean x of the
    visible ears and nose, the rear position the mean x of the visible tail and hips; when
    either group has no visible keypoint (v <= 0) or they coincide, the flank is unknown ('').
    """
    points = [values[i : i + 3] for i in range(0, len(values), 3)]
    head = [points[i][0] for i in HEAD if points[i][2] > 0]
    rear = [points[i][0] for i in REAR if points[i][2] > 0]
    if not head or not rear:
        return ""
    head_x, rear_x = sum(head) / len(head), sum(rear) / len(rear)
    if head_x == rear_x:
        return ""
    return "left" if head_x < rear_x else "right"


def _train_rows(
    root: Path, list_file: Path, keypoints_file: Path, images: str
) -> list[dict[str, str]]:
    keypoints = _read_json(keypoints_file, "keypoints")
    if not isinstance(keypoints, dict):
        raise UserError(
            f"{keypoints_file}: expected a JSON object {{filename: [x, y, v] * 15}}; "
            f"point option keypoints at reid_keypoints_train.json"
        )
    rows = []
    for line_no, fields in _csv_rows(list_file):
        if len(fields) != 2:
            raise UserError(
                f"{list_file} line {line_no}: expected 'identity,filename', got {fields}; "
                f"fix the line or point option train_list at reid_list_train.csv"
            )
        if line_no == 1 and not _is_image_name(fields[1]):
            continue  # a header row: the original release has none, edited copies often do
        identity, filename = (f.strip() for f in fields)
        points = keypoints.get(filename)
        rows.append(
            {
                "image_id": f"train/{Path(filename).stem}",
                "path": f"{images}/{filename}",
                "identity": identity,
                "split": "train",
                **_keypoint_fields(points, keypoints_file, filename),
            }
        )
    return rows


def _keypoint_fields(points: object, source: Path, filename: str) -> dict[str, str]:
    if points is None:
        return {"keypoints": "", "orientation": ""}
    if (
        not isinstance(points, list)
        or len(points) != 3 * len(KEYPOINTS)
        or not all(isinstance(v, int | float) for v in points)
    ):
        raise UserError(
            f"{source}: keypoints of {filename} are not {3 * len(KEYPOINTS)} numbers "
            f"[x, y, v] * {len(KEYPOINTS)}; fix or remove that entry"
        )
    return {
        "keypoints": json.dumps(points, separators=(",", ":")),
        "orientation": orientation_from_keypoints(points),
    }


def _test_rows(list_file: Path, gt_file: Path, images: str) -> list[dict[str, str]]:
    listed = set()
    for line_no, fields in _csv_rows(list_file):
        name = fields[0].strip()
        if line_no == 1 and not _is_image_name(name):
            continue  # header row
        try:
            listed.add(int(Path(name).stem))
        except ValueError:
            raise UserError(
                f"{list_file} line {line_no}: {name!r} is not a test image name like 000123.jpg; "
                f"point option test_list at reid_list_test.csv"
            ) from None
    gt = _read_json(gt_file, "gt")
    try:
        truth = {int(e["imgid"]): e for e in gt}
        for entry in truth.values():
            cam_a, cam_b, frame = entry["frame"]
            entry["camera"], entry["frame_index"] = f"{cam_a}_{cam_b}", str(frame)
    except (TypeError, KeyError, ValueError) as err:
        raise UserError(
            f"{gt_file}: expected a list of {{imgid, entityid, frame: [a, b, index], query}} "
            f"({err!r}); point option gt at gt_test_plain.json"
        ) from None
    only_list, only_gt = listed - set(truth), set(truth) - listed
    if only_list or only_gt:
        raise UserError(
            f"ATRW test list {list_file} and ground truth {gt_file} disagree: "
            f"{len(only_list)} listed image(s) have no ground truth "
            f"(e.g. {sorted(only_list)[:3]}), {len(only_gt)} ground-truth image(s) are not "
            f"listed (e.g. {sorted(only_gt)[:3]}); use the list and gt of the same release"
        )
    return [
        {
            "image_id": f"test/{imgid:06d}",
            "path": f"{images}/{imgid:06d}.jpg",
            "identity": str(truth[imgid]["entityid"]),
            "split": "test",
            "camera": truth[imgid]["camera"],
            "frame": truth[imgid]["frame_index"],
            "group": str(truth[imgid]["query"]),
        }
        for imgid in sorted(truth)
    ]


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows with their 1-based line numbers."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [(i, row) for i, row in enumerate(csv.reader(handle), start=1) if any(row)]


def _read_json(path: Path, option: str) -> object:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err}); fix option {option}") from None


def _is_image_name(name: str) -> bool:
    return Path(name.strip()).suffix.lower() in (".jpg", ".jpeg", ".png", ".bmp")
