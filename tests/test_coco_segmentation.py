"""Inline COCO segmentations in the catalogue's silhouette column, checked against pycocotools
(the COCO reference implementation, installed with wildlife-datasets) and hand-drawn masks."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from pseudomasks.coco_segmentation import decode, is_inline
from pseudomasks.errors import UserError

coco_mask = pytest.importorskip("pycocotools.mask")


def compressed(mask: np.ndarray) -> dict:
    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


@settings(max_examples=150, deadline=None)
@given(
    arrays(
        np.bool_,
        st.tuples(st.integers(1, 40), st.integers(1, 40)),
        elements=st.booleans(),
    )
)
def test_compressed_rle_decodes_to_the_mask_pycocotools_encoded(mask):
    np.testing.assert_array_equal(decode(json.dumps(compressed(mask)), mask.shape, "x"), mask)


def test_large_runs_and_uncompressed_counts():
    mask = np.zeros((300, 400), bool)  # runs of tens of thousands: several 5-bit groups each
    mask[50:250, 100:380] = True
    mask[120, 10] = True
    np.testing.assert_array_equal(decode(json.dumps(compressed(mask)), mask.shape, "x"), mask)
    # Uncompressed counts: column-major runs starting with background, by hand.
    cell = json.dumps({"size": [2, 3], "counts": [1, 2, 3]})  # column-major 0 1 1 0 0 0
    expected = np.array([[False, True, False], [True, False, False]])
    np.testing.assert_array_equal(decode(cell, (2, 3), "x"), expected)


def test_an_rle_of_another_size_is_resized_like_a_mask_file():
    mask = np.zeros((10, 20), bool)
    mask[:, 10:] = True
    out = decode(json.dumps(compressed(mask)), (20, 40), "x")
    assert out.shape == (20, 40) and out[:, 20:].all() and not out[:, :20].any()


def test_polygons_one_or_several_fill_their_pixels():
    one = decode("[2, 1, 7, 1, 7, 5, 2, 5]", (8, 10), "x")  # pixel x spans [x, x + 1)
    expected = np.zeros((8, 10), bool)
    expected[1:5, 2:7] = True
    np.testing.assert_array_equal(one, expected)
    two = decode("[[0, 0, 2, 0, 2, 2, 0, 2], [2, 1, 7, 1, 7, 5, 2, 5]]", (8, 10), "x")
    expected[0:2, 0:2] = True
    np.testing.assert_array_equal(two, expected)


def test_polygons_agree_with_pycocotools_on_animal_sized_shapes():
    rng = np.random.default_rng(0)
    for _ in range(20):
        angles = np.sort(rng.uniform(0, 2 * np.pi, 9))
        radius = rng.uniform(25, 60, 9)
        polygon = np.stack([100 + radius * np.cos(angles), 80 + radius * np.sin(angles)], 1)
        polygon = polygon.ravel().round(1).tolist()
        reference = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects([polygon], 160, 200)))
        ours = decode(json.dumps(polygon), (160, 200), "x")
        iou = (ours & (reference > 0)).sum() / (ours | (reference > 0)).sum()
        assert iou > 0.98, iou  # the two differ only in a few boundary pixels


@pytest.mark.parametrize(
    "cell",
    [
        "[1, 2, 3]",  # not x, y pairs
        "[1, 2, 3, 4]",  # two points
        '{"size": [4, 4], "counts": [3, 2]}',  # covers 5 of 16 pixels
        '{"counts": "abc"}',  # no size
        "[1, 2,",  # not JSON
    ],
)
def test_a_malformed_segmentation_names_the_row(cell):
    with pytest.raises(UserError, match="row 'r7': silhouette is neither a mask file nor"):
        decode(cell, (4, 4), "r7")


def test_only_json_cells_are_inline():
    assert is_inline("[1, 2]") and is_inline(' {"size": [1, 1]}')
    assert not is_inline("masks/a.png") and not is_inline("")
