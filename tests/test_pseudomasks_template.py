"""The silhouette template on a drawn side-view quadruped (head on the left)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pseudomasks.errors import UserError
from pseudomasks.fusion import mirror_map
from pseudomasks.silhouette_template import silhouette_template_map, template_regions
from pseudomasks.species import parse_species

S = 64
HEAD, FRONT, HIND, BODY, TAIL = 1, 2, 3, 4, 5


def species_with(parts: list[str]):
    return parse_species(
        {
            "name": "nyala",
            "keypoint_schema": "custom",
            "keypoints": [],
            "parts": [{"name": p, "keypoints": []} for p in parts],
        }
    )


TIGER = species_with(["head", "front_legs", "hind_legs", "body", "tail"])


def quadruped() -> np.ndarray:
    """Body rectangle, two front and two hind legs, a head circle, a thin tail."""
    fg = np.zeros((S, S), np.uint8)
    fg[24:41, 16:49] = 1  # body
    for x in (18, 25, 37, 44):
        fg[41:59, x : x + 4] = 1  # legs
    cv2.circle(fg, (10, 20), 7, 1, thickness=-1)  # head
    cv2.line(fg, (49, 26), (61, 18), 1, thickness=2)  # tail
    return fg.astype(bool)


def test_parts_land_where_they_were_drawn():
    fg = quadruped()
    result = silhouette_template_map(fg, TIGER, "", S)
    labels = result.labels
    assert result.orientation == "left"  # guessed: the head is bulkier than the tail
    assert (labels[~fg] == 0).all() and (labels[fg] > 0).all()
    assert (labels[fg & (np.arange(S) < 16)[None, :]] == HEAD).all()
    assert (labels[45:59, 18:29][fg[45:59, 18:29]] == FRONT).all()
    assert (labels[45:59, 37:48][fg[45:59, 37:48]] == HIND).all()
    assert (labels[28:38, 20:46] == BODY).all()
    tail_tip = fg.copy()
    tail_tip[:, :52] = False
    assert tail_tip.any() and (labels[tail_tip] == TAIL).all()
    assert result.visibility.all()
    assert np.isnan(result.keypoint_confidence)


def test_catalogue_orientation_and_mirroring():
    fg = quadruped()
    left = silhouette_template_map(fg, TIGER, "", S).labels
    mirrored = silhouette_template_map(np.fliplr(fg), TIGER, "", S)
    assert mirrored.orientation == "right"
    np.testing.assert_array_equal(mirrored.labels, mirror_map(left))
    # A (wrong) catalogue orientation is obeyed: the head goes to the tail end.
    forced = silhouette_template_map(fg, TIGER, "right", S)
    assert forced.orientation == "right"
    assert (forced.labels[fg & (np.arange(S) >= 52)[None, :]] == HEAD).all()


def test_parts_without_their_own_region_become_body():
    species = species_with(["torso", "legs"])
    labels = silhouette_template_map(quadruped(), species, "left", S).labels
    assert (labels[45:59][quadruped()[45:59]] == 2).all()
    assert (labels[quadruped() & (np.arange(S) < 16)[None, :]] == 1).all()  # head → torso


@pytest.mark.parametrize(
    ("parts", "message"),
    [
        (["head", "ears", "body"], "part 'ears'"),
        (["head", "legs"], "needs a part named like 'body'"),
        (["body", "legs", "front_legs"], "both match"),
    ],
)
def test_unsupported_part_names_are_user_errors(parts, message):
    with pytest.raises(UserError, match=message):
        template_regions(species_with(parts))


def test_empty_foreground_gives_an_empty_map():
    result = silhouette_template_map(np.zeros((S, S), bool), TIGER, "", S)
    assert not result.labels.any() and not result.visibility.any()
