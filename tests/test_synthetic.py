"""The synthetic demo species: deterministic files, a valid catalogue, true keypoints, and an
identity signal (same flank alike, other flank different) that makes re-ID learnable."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from reid.datasets.synthetic import AP10K_KEYPOINTS, SyntheticSpec, generate
from reid.errors import UserError

SPEC = SyntheticSpec(
    identities=5, encounters=2, images_per_encounter=2, image_size=(96, 160), cameras=3, seed=3
)
COLUMNS = [
    "image_id",
    "path",
    "identity",
    "split",
    "orientation",
    "camera",
    "frame",
    "encounter",
    "group",
    "keypoints",
    "silhouette",
]
KP = {name: i for i, name in enumerate(AP10K_KEYPOINTS)}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("synthetic")
    return root, generate(root, SPEC)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _keypoints(row: pd.Series) -> np.ndarray:
    return np.array(json.loads(row["keypoints"]), dtype=float).reshape(-1, 3)


def _silhouette(root: Path, row: pd.Series) -> np.ndarray:
    return cv2.imread(str(root / row["silhouette"]), cv2.IMREAD_UNCHANGED)


def test_same_spec_gives_identical_files_and_rows(
    dataset: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    root, frame = dataset
    before = _digests(root)
    again = generate(tmp_path, SPEC)
    pd.testing.assert_frame_equal(again, frame)
    assert _digests(tmp_path) == before
    # A rerun into the same root overwrites in place and leaves no temporary files behind.
    pd.testing.assert_frame_equal(generate(root, SPEC), frame)
    assert _digests(root) == before


def test_another_seed_gives_other_pictures(
    dataset: tuple[Path, pd.DataFrame], tmp_path: Path
) -> None:
    root, frame = dataset
    other = generate(tmp_path, dataclasses.replace(SPEC, identities=1, seed=4))
    first = frame.iloc[0]
    assert other.iloc[0]["path"] == first["path"]
    assert (tmp_path / first["path"]).read_bytes() != (root / first["path"]).read_bytes()


def test_catalogue_columns_and_values(dataset: tuple[Path, pd.DataFrame]) -> None:
    root, frame = dataset
    assert list(frame.columns) == COLUMNS
    assert all(isinstance(v, str) for column in COLUMNS for v in frame[column])
    # 5 identities x 2 encounters x 2 flanks x 2 images.
    assert len(frame) == 40
    assert frame["image_id"].is_unique
    assert set(frame["orientation"]) == {"left", "right"}
    assert (frame["orientation"] == "left").sum() == 20
    assert set(frame["frame"]) == {""} and set(frame["group"]) == {""}
    assert set(frame["camera"]) <= {"cam0", "cam1", "cam2"}
    assert frame.groupby("identity")["encounter"].nunique().eq(2).all()
    # An encounter is one sighting: one camera; a second sighting uses another camera.
    assert frame.groupby("encounter")["camera"].nunique().eq(1).all()
    assert frame.groupby("identity")["camera"].nunique().eq(2).all()
    height, width = SPEC.image_size
    for _, row in frame.iterrows():
        image = cv2.imread(str(root / row["path"]), cv2.IMREAD_COLOR)
        mask = _silhouette(root, row)
        assert image.shape == (height, width, 3)
        assert mask.shape == (height, width) and mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255} and mask.any()
        values = json.loads(row["keypoints"])
        assert len(values) == 3 * 17
        kp = np.array(values, dtype=float).reshape(-1, 3)
        assert set(kp[:, 2]) <= {0.0, 1.0}
        assert np.allclose(kp[:, :2], np.round(kp[:, :2], 1))


def test_split_is_by_identity_with_the_requested_fraction(
    dataset: tuple[Path, pd.DataFrame],
) -> None:
    _, frame = dataset
    assert set(frame["split"]) == {"train", "test"}
    assert frame.groupby("identity")["split"].nunique().eq(1).all()
    # round(0.4 x 5) = 2 identities for test.
    assert frame[frame["split"] == "test"]["identity"].nunique() == 2


@pytest.mark.parametrize(
    ("fraction", "expected"), [(0.0, 0), (0.01, 1), (0.5, 2), (0.99, 3), (1.0, 4)]
)
def test_test_fraction_counts_identities(tmp_path: Path, fraction: float, expected: int) -> None:
    """round(f x 4), but a fraction strictly between 0 and 1 keeps both splits non-empty."""
    spec = SyntheticSpec(
        identities=4,
        encounters=1,
        images_per_encounter=1,
        image_size=(64, 64),
        test_fraction=fraction,
    )
    frame = generate(tmp_path, spec)
    assert frame[frame["split"] == "test"]["identity"].nunique() == expected


def test_keypoints_lie_in_the_image_and_visible_ones_on_the_animal(
    dataset: tuple[Path, pd.DataFrame],
) -> None:
    root, frame = dataset
    height, width = SPEC.image_size
    near, total = 0, 0
    for _, row in frame.iterrows():
        kp = _keypoints(row)
        assert (kp[:, 0] >= 0).all() and (kp[:, 0] <= width - 1).all()
        assert (kp[:, 1] >= 0).all() and (kp[:, 1] <= height - 1).all()
        grown = cv2.dilate(_silhouette(root, row), np.ones((5, 5), np.uint8))  # 2 px
        for x, y, v in kp:
            if v:
                total += 1
                near += bool(grown[int(round(y)), int(round(x))])
    assert near / total >= 0.9


def test_near_side_is_visible_and_far_side_eye_is_hidden(
    dataset: tuple[Path, pd.DataFrame],
) -> None:
    """The shown flank's eye is visible unless occluded; the far eye is behind the head."""
    _, frame = dataset
    seen = 0
    for _, row in frame.iterrows():
        kp = _keypoints(row)
        far = "right" if row["orientation"] == "left" else "left"
        assert kp[KP[f"{far}_eye"], 2] == 0
        seen += kp[KP[f"{row['orientation']}_eye"], 2] == 1
    assert seen >= 0.7 * len(frame)


def test_head_is_on_the_side_the_orientation_names(dataset: tuple[Path, pd.DataFrame]) -> None:
    _, frame = dataset
    for _, row in frame.iterrows():
        kp = _keypoints(row)
        head_x = kp[[KP["left_eye"], KP["right_eye"], KP["nose"]], 0]
        tail_x = kp[KP["root_of_tail"], 0]
        if row["orientation"] == "left":
            assert (head_x < tail_x).all()
        else:
            assert (head_x > tail_x).all()


def test_occluded_keypoints_are_hidden_and_off_the_silhouette(
    dataset: tuple[Path, pd.DataFrame],
) -> None:
    """Every keypoint lies on the drawn animal, so one well away from the silhouette can only be
    under the vegetation occluder: it must be v=0. Some images have such points, most do not."""
    root, frame = dataset
    occluded_images = 0
    for _, row in frame.iterrows():
        kp = _keypoints(row)
        grown = cv2.dilate(_silhouette(root, row), np.ones((5, 5), np.uint8))
        off = [v for x, y, v in kp if not grown[int(round(y)), int(round(x))]]
        assert not any(off)
        occluded_images += bool(off)
    assert 1 <= occluded_images <= 0.5 * len(frame)


def _torso_crop(root: Path, row: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Grayscale torso crop and its silhouette mask, aligned on torso keypoints.

    root_of_tail, neck and the centre of the four leg pivots are rigid on the torso, so an
    affine map of these three points aligns the coat whatever the pose; for a left flank the
    map includes the mirroring, so left and right flanks are compared in the same frame.
    """
    kp = _keypoints(row)[:, :2]
    pivots = kp[[KP[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]]
    source = np.float32([kp[KP["root_of_tail"]], kp[KP["neck"]], pivots.mean(0)])
    target = np.float32([[8, 14], [152, 10], [80, 30]])
    warp = cv2.getAffineTransform(source, target)
    image = cv2.imread(str(root / row["path"]), cv2.IMREAD_GRAYSCALE).astype(np.float32)
    crop = cv2.warpAffine(image, warp, (160, 64), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(_silhouette(root, row), warp, (160, 64), flags=cv2.INTER_NEAREST)
    return crop, mask > 127


def _correlation(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    both = a[1] & b[1]
    return float(np.corrcoef(a[0][both], b[0][both])[0, 1])


def test_same_flank_correlates_more_than_the_other_flank(
    dataset: tuple[Path, pd.DataFrame],
) -> None:
    """The identity signal: across encounters (other pose, camera, lighting) a flank's coat
    still matches itself better than the same animal's other flank."""
    root, frame = dataset
    same, other = [], []
    for _, rows in frame[frame["image_id"].str.endswith("_0")].groupby("identity"):
        crops = {
            (r["encounter"], r["orientation"]): _torso_crop(root, r) for _, r in rows.iterrows()
        }
        encounters = sorted({e for e, _ in crops})
        same.append(
            np.mean(
                [
                    _correlation(crops[(a, flank)], crops[(b, flank)])
                    for a, b in itertools.combinations(encounters, 2)
                    for flank in ("left", "right")
                ]
            )
        )
        other.append(
            np.mean(
                [
                    _correlation(crops[(a, "left")], crops[(b, "right")])
                    for a, b in itertools.product(encounters, repeat=2)
                ]
            )
        )
    assert np.mean(same) > np.mean(other) + 0.2
    assert sum(s > o for s, o in zip(same, other, strict=True)) >= len(same) - 1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("identities", 0),
        ("encounters", 1.5),
        ("cameras", 0),
        ("seed", -1),
        ("test_fraction", 1.5),
        ("image_size", (32, 256)),
        ("image_size", [160, 256]),
    ],
)
def test_bad_spec_is_a_user_error_naming_the_option(field: str, value: object) -> None:
    with pytest.raises(UserError, match=field):
        SyntheticSpec(**{field: value})
