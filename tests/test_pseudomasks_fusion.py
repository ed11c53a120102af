"""Fusion against maps computed here from the documented rule: each foreground pixel centre
(j + 0.5, i + 0.5) takes the label of its nearest point, ties to the lower label."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pseudomasks.fusion import (
    fuse_part_map,
    mirror_map,
    mirror_orientation,
    nearest_point_labels,
)
from pseudomasks.species import parse_species

S = 64


def make_species(parts, links=(), tail=None, keypoints=("a", "b", "c", "d"), orientation=None):
    return parse_species(
        {
            "name": "toy",
            "keypoint_schema": "custom",
            "keypoints": list(keypoints),
            "parts": [{"name": n, "keypoints": list(k)} for n, k in parts],
            "links": [list(link) for link in links],
            "tail": tail,
            "orientation": orientation,
        }
    )


def rectangle(rows: slice, cols: slice, shape=(S, S)) -> np.ndarray:
    fg = np.zeros(shape, bool)
    fg[rows, cols] = True
    return fg


def expected_map(fg: np.ndarray, points: list[tuple[float, float, int]]) -> np.ndarray:
    """Brute force, pixel by pixel."""
    out = np.zeros(fg.shape, np.uint8)
    for i, j in zip(*np.nonzero(fg), strict=True):
        best = min(((j + 0.5 - x) ** 2 + (i + 0.5 - y) ** 2, label) for x, y, label in points)
        out[i, j] = best[1]
    return out


def kps(*rows) -> np.ndarray:
    return np.array(rows, dtype=np.float64)


def test_two_keypoints_split_along_the_bisector():
    species = make_species([("front", ["a"]), ("rear", ["b"])])
    fg = rectangle(slice(20, 44), slice(8, 56))
    keypoints = kps([16.0, 30.0, 1.0], [40.0, 34.0, 1.0], [0, 0, 0], [0, 0, 0])
    result = fuse_part_map(keypoints, fg, species, confidence=0.3, mask_size=S)
    ys, xs = np.indices(fg.shape)
    # Pixel centre p is label 1 iff |p - a|² <= |p - b|² (tie to lower label).
    da = (xs + 0.5 - 16) ** 2 + (ys + 0.5 - 30) ** 2
    db = (xs + 0.5 - 40) ** 2 + (ys + 0.5 - 34) ** 2
    expected = np.where(fg, np.where(da <= db, 1, 2), 0)
    np.testing.assert_array_equal(result.labels, expected)
    assert result.labels.dtype == np.uint8
    assert result.visibility.tolist() == [True, True]
    assert result.keypoint_confidence == pytest.approx(1.0)


def test_image_coordinates_are_scaled_to_the_map():
    species = make_species([("front", ["a"]), ("rear", ["b"])])
    # A 128×192 (H×W) image: x scales by 64/192, y by 64/128; the rectangle maps exactly.
    fg = rectangle(slice(40, 88), slice(24, 168), shape=(128, 192))
    keypoints = kps([48.0, 60.0, 2.0], [120.0, 68.0, 2.0], [0, 0, 0], [0, 0, 0])
    result = fuse_part_map(keypoints, fg, species, confidence=0.3, mask_size=S)
    small_fg = rectangle(slice(20, 44), slice(8, 56))
    expected = expected_map(small_fg, [(16.0, 30.0, 1), (40.0, 34.0, 2)])
    np.testing.assert_array_equal(result.labels, expected)


def test_link_midpoint_claims_pixels_only_within_one_part():
    fg = rectangle(slice(4, 60), slice(4, 40))
    keypoints = kps([10.0, 10.0, 1], [30.0, 32.0, 1], [10.0, 54.0, 1], [0, 0, 0])
    plain = make_species([("spine", ["a", "c"]), ("side", ["b"])])
    linked = make_species([("spine", ["a", "c"]), ("side", ["b"])], links=[("a", "c")])
    without = fuse_part_map(keypoints, fg, plain, 0.3, S).labels
    with_link = fuse_part_map(keypoints, fg, linked, 0.3, S).labels
    np.testing.assert_array_equal(
        without, expected_map(fg, [(10, 10, 1), (10, 54, 1), (30, 32, 2)])
    )
    np.testing.assert_array_equal(
        with_link, expected_map(fg, [(10, 10, 1), (10, 54, 1), (10, 32, 1), (30, 32, 2)])
    )
    changed = without != with_link
    assert changed.any()
    # Only pixels nearer the midpoint (10, 32) than to b switched, all from part 2 to part 1.
    assert (without[changed] == 2).all() and (with_link[changed] == 1).all()
    # A link across parts adds no point.
    across = make_species([("spine", ["a", "c"]), ("side", ["b"])], links=[("a", "b")])
    np.testing.assert_array_equal(fuse_part_map(keypoints, fg, across, 0.3, S).labels, without)


def test_keypoints_below_threshold_or_outside_parts_are_ignored():
    species = make_species([("front", ["a"]), ("rear", ["b"])])
    fg = rectangle(slice(20, 44), slice(8, 56))
    # b under the threshold, c and d in no part (d would otherwise win everywhere near it).
    keypoints = kps([16.0, 30.0, 0.3], [40.0, 34.0, 0.29], [50, 30, 1], [45, 32, 1])
    result = fuse_part_map(keypoints, fg, species, confidence=0.3, mask_size=S)
    np.testing.assert_array_equal(result.labels, fg.astype(np.uint8))
    assert result.visibility.tolist() == [True, False]
    assert result.keypoint_confidence == pytest.approx(0.3)
    nothing = fuse_part_map(keypoints * [1, 1, 0], fg, species, 0.3, S)
    assert not nothing.labels.any() and np.isnan(nothing.keypoint_confidence)


def test_background_stays_zero_for_any_foreground():
    rng = np.random.default_rng(0)
    species = make_species([("p1", ["a", "b"]), ("p2", ["c"]), ("p3", ["d"])])
    for _ in range(5):
        fg = rng.random((S, S)) < 0.4
        keypoints = np.concatenate([rng.uniform(0, S, (4, 2)), np.ones((4, 1))], axis=1)
        labels = fuse_part_map(keypoints, fg, species, 0.3, S).labels
        assert (labels[~fg] == 0).all() and (labels[fg] > 0).all()


def test_orientation_from_front_and_rear_centroids():
    species = make_species(
        [("head", ["a"]), ("hind", ["b"])], orientation={"front": ["head"], "rear": ["hind"]}
    )
    fg = rectangle(slice(20, 44), slice(8, 56))
    head_left = kps([12.0, 30, 1], [50.0, 30, 1], [0, 0, 0], [0, 0, 0])
    head_right = kps([50.0, 30, 1], [12.0, 30, 1], [0, 0, 0], [0, 0, 0])
    no_rear = kps([12.0, 30, 1], [50.0, 30, 0], [0, 0, 0], [0, 0, 0])
    assert fuse_part_map(head_left, fg, species, 0.3, S).orientation == "left"
    assert fuse_part_map(head_right, fg, species, 0.3, S).orientation == "right"
    assert fuse_part_map(no_rear, fg, species, 0.3, S).orientation == ""


def test_mirrored_map_equals_map_of_mirrored_inputs():
    rng = np.random.default_rng(1)
    species = make_species(
        [("head", ["a"]), ("body", ["b", "c"]), ("hind", ["d"])],
        links=[("b", "c")],
        orientation={"front": ["head"], "rear": ["hind"]},
    )
    fg = np.zeros((S, S), bool)
    fg[18:46, 6:60] = True
    fg[10:30, 2:14] = True
    keypoints = np.column_stack([rng.uniform(4, 60, 4), rng.uniform(12, 44, 4), np.ones(4)])
    keypoints[0, 0], keypoints[3, 0] = 7.3, 55.1
    mirrored_kps = keypoints.copy()
    mirrored_kps[:, 0] = S - keypoints[:, 0]
    original = fuse_part_map(keypoints, fg, species, 0.3, S)
    flipped = fuse_part_map(mirrored_kps, np.fliplr(fg), species, 0.3, S)
    np.testing.assert_array_equal(mirror_map(original.labels), flipped.labels)
    np.testing.assert_array_equal(original.visibility, flipped.visibility)
    assert original.orientation == "left"
    assert mirror_orientation(original.orientation) == flipped.orientation == "right"


half_pixel = st.integers(0, 32).map(lambda v: v / 2)  # on half-pixels, so ties happen


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    points=st.lists(st.tuples(half_pixel, half_pixel, st.integers(1, 4)), min_size=1, max_size=6),
)
def test_nearest_point_labels_match_brute_force(seed, points):
    fg = np.random.default_rng(seed).random((16, 16)) < 0.5
    xy = np.array([(x, y) for x, y, _ in points], dtype=np.float64)
    labels = np.array([label for _, _, label in points])
    np.testing.assert_array_equal(nearest_point_labels(fg, xy, labels), expected_map(fg, points))


def test_ties_go_to_the_lower_label():
    fg = np.ones((1, 4), bool)
    # Pixel centres x = 0.5, 1.5, 2.5, 3.5; label 2 at x = 1.5, label 1 at x = 3.5.
    # The centre 2.5 is 1.0 from both, so it takes label 1.
    points = np.array([[1.5, 0.5], [3.5, 0.5]])
    labels = nearest_point_labels(fg, points, np.array([2, 1]))
    assert labels.tolist() == [[2, 2, 1, 1]]


def test_tail_path_reaches_a_tail_tip_nearer_a_leg_keypoint():
    # Body rectangle, a leg below it, and a tail leaving the top right corner, running right
    # and then down beside the leg. Without tracing, the tail tip is nearer the leg keypoint.
    fg = np.zeros((S, S), bool)
    fg[20:40, 8:40] = True  # body
    fg[40:62, 30:37] = True  # leg
    fg[21:23, 40:55] = True  # tail, horizontal
    fg[21:52, 53:55] = True  # tail, hanging down
    parts = [("body", ["a"]), ("legs", ["b"]), ("tail", ["c"])]
    keypoints = kps([20.0, 30.0, 1], [33.5, 52.0, 1], [40.5, 22.0, 1], [0, 0, 0])
    untraced = fuse_part_map(keypoints, fg, make_species(parts), 0.3, S).labels
    traced = fuse_part_map(keypoints, fg, make_species(parts, tail=["c", None]), 0.3, S).labels
    tail_pixels = np.zeros_like(fg)
    tail_pixels[21:23, 41:55] = True
    tail_pixels[21:52, 53:55] = True
    assert (untraced[50:52, 53:55] == 2).all()  # the tip went to the leg
    assert (traced[tail_pixels] == 3).all()
    assert (traced[40:62, 30:37] == 2).all()  # the leg stays a leg
    # With a tail end keypoint the path ends there instead.
    with_end = make_species(parts, tail=["c", "d"])
    end_kps = keypoints.copy()
    end_kps[3] = [54.0, 28.0, 1]
    half = fuse_part_map(end_kps, fg, with_end, 0.3, S).labels
    assert (half[21:29, 53:55] == 3).all() and (half[50:52, 53:55] == 2).all()


def test_labelled_link_gives_its_part_the_midpoint():
    # Torso with a shoulder (front) and a hip (rear); the body part has no keypoint of its own.
    species = make_species(
        [("front", ["a"]), ("body", []), ("rear", ["b"])],
        links=[("a", "b", "body")],
    )
    fg = rectangle(slice(20, 44), slice(4, 60))
    keypoints = kps([8.0, 32.0, 1.0], [56.0, 32.0, 1.0], [0, 0, 0], [0, 0, 0])
    result = fuse_part_map(keypoints, fg, species, confidence=0.3, mask_size=S)
    expected = expected_map(fg, [(8.0, 32.0, 1), (32.0, 32.0, 2), (56.0, 32.0, 3)])
    np.testing.assert_array_equal(result.labels, expected)
    assert result.visibility.tolist() == [True, True, True]
    # An end below the confidence threshold removes the midpoint: body disappears.
    keypoints[1, 2] = 0.1
    result = fuse_part_map(keypoints, fg, species, confidence=0.3, mask_size=S)
    assert not result.visibility[1]


def test_labelled_link_must_name_a_part():
    with pytest.raises(Exception, match="names part 'torso'"):
        make_species([("front", ["a"]), ("rear", ["b"])], links=[("a", "b", "torso")])
