"""Non-neural teacher members and the ensembling rules."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pseudomasks.combine import combine_keypoints, combine_masks
from pseudomasks.errors import UserError
from pseudomasks.images import UnreadableInput
from pseudomasks.members.annotations import AnnotationPose, AnnotationSilhouette
from pseudomasks.members.base import MemberContext, Sample
from pseudomasks.members.grabcut import GrabCut
from pseudomasks.species import parse_species

SPECIES = parse_species(
    {
        "name": "toy",
        "keypoint_schema": "custom",
        "keypoints": ["a", "b", "c"],
        "parts": [{"name": "front", "keypoints": ["a"]}, {"name": "rear", "keypoints": ["b"]}],
    }
)
CONTEXT = MemberContext(species=SPECIES, confidence=0.3, device="cpu", weights={})


def sample(row: dict[str, str], image: np.ndarray | None = None, root: Path = Path(".")):
    image = np.zeros((32, 48, 3), np.uint8) if image is None else image
    return Sample(image_id=row.get("image_id", "img"), image=image, row=row, root=root)


def synthetic_animal(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright striped ellipse on a dark textured background (96×128) and its true mask."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.integers(0, 110, (96, 128, 3)).astype(np.uint8), (5, 5), 0)
    truth = np.zeros((96, 128), np.uint8)
    cv2.ellipse(truth, (64, 50), (38, 22), 0, 0, 360, 1, thickness=-1)
    animal = rng.integers(190, 255, (96, 128, 3)).astype(np.uint8)
    animal[:, ::9] = 40  # dark stripes, like a tiger's
    image = np.where(truth[:, :, None] > 0, animal, background)
    return image, truth.astype(bool)


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("with_keypoints", [True, False])
def test_grabcut_recovers_a_bright_object(with_keypoints: bool):
    image, truth = synthetic_animal()
    keypoints = np.array([[40.0, 50.0, 1.0], [88.0, 50.0, 1.0], [64.0, 40.0, 0.0]])
    member = GrabCut(GrabCut.resolve_options({"iterations": 5}, "grabcut"), CONTEXT)
    (mask,) = member.predict([sample({}, image)], [keypoints if with_keypoints else None])
    assert mask.shape == truth.shape and mask.dtype == bool
    assert iou(mask, truth) > 0.7


def test_grabcut_gives_no_mask_for_tiny_images():
    member = GrabCut(GrabCut.resolve_options({}, "grabcut"), CONTEXT)
    assert member.predict([sample({}, np.zeros((6, 40, 3), np.uint8))], [None]) == [None]


def test_grabcut_options_are_checked_and_defaulted():
    assert GrabCut.resolve_options({}, "g")["iterations"] == 5
    with pytest.raises(UserError, match="g.iterations"):
        GrabCut.resolve_options({"iterations": 0}, "g")
    with pytest.raises(UserError, match="unknown option 'iters'"):
        GrabCut.resolve_options({"iters": 3}, "g")
    with pytest.raises(UserError, match="expected int"):
        GrabCut.resolve_options({"iterations": "5"}, "g")


def test_annotation_keypoints_parse_and_length_is_checked():
    member = AnnotationPose({}, CONTEXT)
    row = {"image_id": "t1", "keypoints": json.dumps([1, 2, 1, 3, 4, 0.5, 5, 6, 0])}
    (kps,) = member.predict([sample(row)])
    np.testing.assert_array_equal(kps, [[1, 2, 1], [3, 4, 0.5], [5, 6, 0]])
    assert member.predict([sample({"image_id": "t2", "keypoints": ""})]) == [None]
    with pytest.raises(UserError, match="'t3'.*6 numbers.*needs 9"):
        member.predict([sample({"image_id": "t3", "keypoints": "[1, 2, 1, 3, 4, 1]"})])
    with pytest.raises(UserError, match="'t4'.*not a JSON list"):
        member.predict([sample({"image_id": "t4", "keypoints": "[1, 2,"})])


def test_annotation_silhouette_reads_and_resizes(tmp_path: Path):
    mask = np.zeros((16, 24), np.uint8)
    mask[4:12, 6:18] = 255
    cv2.imwrite(str(tmp_path / "m.png"), mask)
    member = AnnotationSilhouette({}, CONTEXT)
    rows = [{"silhouette": "m.png"}, {"silhouette": ""}]
    out = member.predict([sample(r, root=tmp_path) for r in rows], [None, None])
    expected = np.zeros((32, 48), bool)
    expected[8:24, 12:36] = True
    np.testing.assert_array_equal(out[0], expected)
    assert out[1] is None
    with pytest.raises(UnreadableInput, match="missing.png"):
        member.predict([sample({"silhouette": "missing.png"}, root=tmp_path)], [None])


def test_annotation_silhouette_reads_inline_coco_segmentations():
    member = AnnotationSilhouette({}, CONTEXT)
    rows = [
        {"image_id": "poly", "silhouette": "[[6, 4, 18, 4, 18, 12, 6, 12]]"},
        {"image_id": "rle", "silhouette": '{"size": [2, 3], "counts": [1, 2, 3]}'},
    ]
    out = member.predict([sample(r) for r in rows], [None, None])
    expected = np.zeros((32, 48), bool)
    expected[4:12, 6:18] = True
    np.testing.assert_array_equal(out[0], expected)
    # The 2×3 RLE (pixels (1, 0) and (0, 1) set) resized, nearest, to the 32×48 image.
    assert out[1][16:, :16].all() and out[1][:16, 16:32].all()
    assert not out[1][:16, :16].any() and not out[1][:, 32:].any()
    with pytest.raises(UserError, match="row 'bad': silhouette is neither"):
        member.predict([sample({"image_id": "bad", "silhouette": "[1, 2]"})], [None])


def test_keypoint_ensemble_takes_the_most_confident_member():
    first = np.array([[1.0, 1.0, 0.9], [2.0, 2.0, 0.2], [3.0, 3.0, 0.5]])
    second = np.array([[9.0, 9.0, 0.4], [8.0, 8.0, 0.8], [7.0, 7.0, 0.5]])
    combined = combine_keypoints([first, None, second])
    np.testing.assert_array_equal(combined, [[1, 1, 0.9], [8, 8, 0.8], [3, 3, 0.5]])
    assert combine_keypoints([None, None]) is None


def test_mask_votes():
    a = np.array([[1, 1, 0, 0]], bool)
    b = np.array([[1, 0, 1, 0]], bool)
    c = np.array([[1, 0, 0, 0]], bool)
    assert combine_masks([a, b, c], "majority").tolist() == [[True, False, False, False]]
    assert combine_masks([a, b], "majority").tolist() == [[True, True, True, False]]  # ties
    assert combine_masks([a, b, None], "union").tolist() == [[True, True, True, False]]
    assert combine_masks([a, b], "intersection").tolist() == [[True, False, False, False]]
    assert combine_masks([None], "majority") is None
