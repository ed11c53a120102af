"""Fallback for images without usable keypoints: split a side-view silhouette into parts.

Coarse by design; it only has to beat "no map" for side-view quadrupeds (e.g. nyala
photographs, which carry no keypoints). On the ``S×S`` foreground:

- torso band: the rows whose foreground width is at least half the widest row, but never the
  lowest ``LEG_SHARE`` of the silhouette's height; torso columns: the columns that fill at least
  half of that band's height.
- legs: foreground below the band; front or hind by which side of the torso centre they are on.
- head: above-band foreground in the front half, plus everything beyond the torso's front edge.
- tail: foreground beyond the torso's rear edge (a thin protrusion, since those columns fill
  less than half the band).
- body: the rest.

The front is given by the orientation ('left' = head on the left of the image). When the
catalogue has none, it is guessed from mass: head and neck are bulkier than a tail, so the side
of the torso centre holding more of the beyond-edge and above-band foreground is the front;
a tie guesses 'left'. The returned map carries the orientation it was drawn with.

Parts are matched to these regions by name (case-insensitive): a name containing "head" is the
head; "tail" the tail; "body", "torso" or "trunk" the body; a name containing "leg" is the
front legs if it also contains "front" or "fore", the hind legs if it contains "hind", "back" or
"rear", and all legs otherwise. A species without a head, tail or legs part gets those regions
as body. The species needs a body part, and any part matching none of these names is an error
(:func:`template_regions` checks this before any image is read).
"""

from __future__ import annotations

import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.fusion import PartMap, part_visibility, resize_foreground
from pseudomasks.species import Species

REGIONS = ("head", "body", "tail", "front_legs", "hind_legs")

LEG_SHARE = 0.35
"""The lowest this share of the silhouette's height is legs even where the mask fills the gaps
between the legs (segmenters often do, which makes those rows as wide as the torso)."""

BAND_FRACTION = 0.5
"""A row belongs to the torso band if its width is at least this share of the widest row, and a
column to the torso if it fills at least this share of the band's height."""


def template_regions(species: Species) -> dict[str, int]:
    """Label (1..K) for each template region, from the part names; UserError if impossible."""
    claims: dict[str, int] = {}
    for label, part in enumerate(species.parts, start=1):
        regions = _regions_of(part.lower())
        if not regions:
            raise UserError(
                f"species '{species.name}': part '{part}' has no silhouette_template region; "
                "name parts with head/tail/body/leg (front/hind) or set teacher.fallback: null"
            )
        for region in regions:
            if region in claims:
                raise UserError(
                    f"species '{species.name}': parts '{species.parts[claims[region] - 1]}' and "
                    f"'{part}' both match the template region '{region}'; rename one"
                )
            claims[region] = label
    if "body" not in claims:
        raise UserError(
            f"species '{species.name}': silhouette_template needs a part named like "
            "'body'/'torso'/'trunk'; add one or set teacher.fallback: null"
        )
    return {region: claims.get(region, claims["body"]) for region in REGIONS}


def _regions_of(name: str) -> tuple[str, ...]:
    if "leg" in name:
        if "front" in name or "fore" in name:
            return ("front_legs",)
        if any(word in name for word in ("hind", "back", "rear")):
            return ("hind_legs",)
        return ("front_legs", "hind_legs")
    if "head" in name:
        return ("head",)
    if "tail" in name:
        return ("tail",)
    if any(word in name for word in ("body", "torso", "trunk")):
        return ("body",)
    return ()


def silhouette_template_map(
    foreground: np.ndarray, species: Species, orientation: str, mask_size: int
) -> PartMap:
    """Map from an ``H×W`` foreground alone; ``orientation`` is 'left', 'right' or '' (guess)."""
    regions = template_regions(species)
    fg = resize_foreground(foreground, mask_size)
    labels = np.zeros(fg.shape, dtype=np.uint8)
    if not fg.any():
        return PartMap(labels, part_visibility(labels, species.num_parts), "", float("nan"))
    rows = fg.sum(axis=1)
    band_rows = np.flatnonzero(rows >= BAND_FRACTION * rows.max())
    filled = np.flatnonzero(rows)
    leg_line = int(filled[0] + (1 - LEG_SHARE) * (filled[-1] - filled[0] + 1))
    top, bottom = int(band_rows[0]), min(int(band_rows[-1]), leg_line)
    col_fill = fg[top : bottom + 1].sum(axis=0)
    torso_cols = np.flatnonzero(col_fill >= BAND_FRACTION * (bottom - top + 1))
    if len(torso_cols) == 0:
        torso_cols = np.flatnonzero(col_fill)
    left_edge, right_edge = int(torso_cols[0]), int(torso_cols[-1])
    centre = (left_edge + right_edge) / 2

    r, c = np.indices(fg.shape)
    upper = fg & (r <= bottom)
    left_extra = upper & ((c < left_edge) | ((r < top) & (c < centre)))
    right_extra = upper & ((c > right_edge) | ((r < top) & (c > centre)))
    if orientation not in ("left", "right"):
        orientation = "right" if right_extra.sum() > left_extra.sum() else "left"
    head_on_left = orientation == "left"
    front_side = c < centre if head_on_left else c > centre
    beyond_front = c < left_edge if head_on_left else c > right_edge
    beyond_rear = c > right_edge if head_on_left else c < left_edge

    labels[upper] = regions["body"]
    labels[upper & beyond_rear] = regions["tail"]
    labels[upper & (beyond_front | ((r < top) & front_side))] = regions["head"]
    legs = fg & (r > bottom)
    labels[legs & front_side] = regions["front_legs"]
    labels[legs & ~front_side] = regions["hind_legs"]
    return PartMap(labels, part_visibility(labels, species.num_parts), orientation, float("nan"))
