"""Fuse keypoints and a foreground mask into a part label map (pure numpy/cv2).

Every foreground pixel of the ``S×S`` map takes the part of its nearest point, where the points
are the visible keypoints of the species' parts, the midpoints of links inside one part, and
points traced along the tail. Background stays 0 and parts are 1..K in the species' order.

Conventions (the tests compute expected maps from these):

- The map covers the whole image, stretched to ``S×S``: image pixel ``(x, y)`` of a ``W×H``
  image sits at map coordinate ``(x·S/W, y·S/H)``, and map pixel ``(row i, column j)`` is
  represented by its centre ``(j + 0.5, i + 0.5)``. Distances are Euclidean in map pixels.
- A keypoint is used when its confidence ``v >= confidence`` and it belongs to a part.
- A link adds its midpoint only when both ends are used and belong to the same part. Links
  across parts add nothing: the boundary between two parts then stays the perpendicular bisector
  of their keypoints, where a cross-part midpoint would have to push it arbitrarily to one side.
- A labelled link ``[a, b, part]`` adds its midpoint to ``part`` whenever both ends are visible,
  whatever parts the ends belong to. It gives a part that has no keypoint of its own a point:
  with AP-10K keypoints, ``[left_shoulder, left_hip, body]`` puts the body at mid-torso instead
  of leaving the torso to the shoulders and hips.
- Ties go to the lower label.
- Tail: from the species' tail start keypoint, a shortest path runs through the foreground
  (8-connected) to the tail end keypoint if it is visible (in a part or not), else to the pixel geodesically farthest
  from the start among the pixels geodesically nearer the start than any other used keypoint.
  A tail that hangs beside a hind leg is thus followed to its tip (through the foreground the
  leg's keypoints are far from it), while the path cannot wander into parts that have their
  own keypoints. Points every ``TAIL_STEP`` pixels along it take the tail start's part. Coarse
  when few keypoints are used: with no hind-leg keypoint the path may end in a hind paw.

Bump ``FUSION_VERSION`` whenever a code change here, in the fallback template or in a member
changes the maps for the same settings: it is part of the teacher id, so cached maps are then
recomputed instead of silently reused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from pseudomasks.species import Species

FUSION_VERSION = 1

TAIL_STEP = 2
"""Spacing of tail path points in map pixels: dense enough that no tail pixel is nearer a body
point than a tail point, sparse enough to keep the distance matrix small."""

TAIL_SNAP = 3.0
"""For tail tracing, a keypoint up to this many map pixels outside the foreground is moved onto
its nearest foreground pixel; one farther out is not traced from."""

_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


@dataclass(frozen=True)
class PartMap:
    """One image's map with what the cache records beside it."""

    labels: np.ndarray
    visibility: np.ndarray
    orientation: str
    keypoint_confidence: float


def resize_foreground(foreground: np.ndarray, size: int) -> np.ndarray:
    """Foreground at ``size×size``: area averaging, then a pixel is foreground if ≥ half is."""
    if foreground.shape == (size, size):
        return foreground.astype(bool)
    resized = cv2.resize(foreground.astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
    return resized >= 0.5


def to_map_coords(keypoints: np.ndarray, image_shape: tuple[int, int], size: int) -> np.ndarray:
    """Keypoints ``N×3`` from image pixels to map coordinates (``v`` unchanged)."""
    h, w = image_shape
    out = np.asarray(keypoints, dtype=np.float64).copy()
    out[:, 0] *= size / w
    out[:, 1] *= size / h
    return out


def visible_keypoints(keypoints: np.ndarray, confidence: float) -> np.ndarray:
    """Which keypoints are confident enough (``v >= confidence``, all values finite)."""
    kps = np.asarray(keypoints, dtype=np.float64)
    return np.isfinite(kps).all(axis=1) & (kps[:, 2] >= confidence)


def used_keypoints(keypoints: np.ndarray, species: Species, confidence: float) -> np.ndarray:
    """Which keypoints take part in the map: visible and in one of the parts."""
    return visible_keypoints(keypoints, confidence) & (species.keypoint_labels > 0)


def fuse_part_map(
    keypoints: np.ndarray,
    foreground: np.ndarray,
    species: Species,
    confidence: float,
    mask_size: int,
) -> PartMap:
    """Map from keypoints ``N×3`` (image pixels, schema order) and an ``H×W`` foreground."""
    if keypoints.shape != (len(species.keypoints), 3):
        raise ValueError(f"keypoints must be {len(species.keypoints)}×3, got {keypoints.shape}")
    fg = resize_foreground(foreground, mask_size)
    kps = to_map_coords(keypoints, foreground.shape[:2], mask_size)
    visible = visible_keypoints(keypoints, confidence)
    used = visible & (species.keypoint_labels > 0)
    points, labels = _part_points(kps, visible, used, species)
    tail = _tail_points(fg, kps, visible, used, species)
    if len(tail):
        tail_label = species.keypoint_labels[species.keypoint_index(species.tail[0])]
        points = np.concatenate([points, tail])
        labels = np.concatenate([labels, np.full(len(tail), tail_label)])
    part_labels = nearest_point_labels(fg, points, labels)
    kp_conf = float(kps[used, 2].mean()) if used.any() else float("nan")
    return PartMap(
        labels=part_labels,
        visibility=part_visibility(part_labels, species.num_parts),
        orientation=estimate_orientation(part_labels, species),
        keypoint_confidence=kp_conf,
    )


def _part_points(
    kps: np.ndarray, visible: np.ndarray, used: np.ndarray, species: Species
) -> tuple[np.ndarray, np.ndarray]:
    points = [kps[used, :2]]
    labels = [species.keypoint_labels[used]]
    for a, b, part in species.links:
        ia, ib = species.keypoint_index(a), species.keypoint_index(b)
        if part is not None:
            add, label = visible[ia] and visible[ib], species.part_label(part)
        else:
            la, lb = species.keypoint_labels[ia], species.keypoint_labels[ib]
            add, label = used[ia] and used[ib] and la == lb, la
        if add:
            points.append(((kps[ia, :2] + kps[ib, :2]) / 2)[None])
            labels.append(np.array([label]))
    return np.concatenate(points).reshape(-1, 2), np.concatenate(labels).astype(np.int64)


def nearest_point_labels(fg: np.ndarray, points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Label each foreground pixel with its nearest point's label; ties to the lower label."""
    out = np.zeros(fg.shape, dtype=np.uint8)
    if len(points) == 0:
        return out
    order = np.argsort(labels, kind="stable")
    points, labels = points[order], labels[order]
    ys, xs = np.nonzero(fg)
    centres = np.stack([xs + 0.5, ys + 0.5], axis=1)
    d2 = ((centres[:, None, :] - points[None, :, :]) ** 2).sum(axis=2)
    out[ys, xs] = labels[d2.argmin(axis=1)]
    return out


def _tail_points(
    fg: np.ndarray, kps: np.ndarray, visible: np.ndarray, used: np.ndarray, species: Species
) -> np.ndarray:
    """Pixel centres sampled along the tail path, ``P×2`` (empty when there is no tail)."""
    none = np.zeros((0, 2))
    if species.tail is None or not fg.any():
        return none
    start_idx = species.keypoint_index(species.tail[0])
    if not used[start_idx]:
        return none
    start = _snap_to_foreground(fg, kps[start_idx, :2])
    if start is None:
        return none
    dist = _geodesic_distance(fg, [start])
    end = _tail_end(fg, dist, kps, visible, used, species, start_idx, start)
    if end is None:
        return none
    path = _backtrack(dist, end)
    sampled = [p for p in path if dist[p] % TAIL_STEP == 0 and dist[p] > 0]
    if path[0] not in sampled:
        sampled.append(path[0])
    return np.array([(c + 0.5, r + 0.5) for r, c in sampled], dtype=np.float64)


def _snap_to_foreground(fg: np.ndarray, xy: np.ndarray) -> tuple[int, int] | None:
    ys, xs = np.nonzero(fg)
    d2 = (xs + 0.5 - xy[0]) ** 2 + (ys + 0.5 - xy[1]) ** 2
    i = int(d2.argmin())
    if d2[i] > TAIL_SNAP**2:
        return None
    return int(ys[i]), int(xs[i])


def _geodesic_distance(fg: np.ndarray, sources: Sequence[tuple[int, int]]) -> np.ndarray:
    """8-connected step count from the nearest source inside the foreground; -1 where
    unreachable (breadth-first search as repeated 3×3 dilations, fast at map size)."""
    dist = np.full(fg.shape, -1, dtype=np.int32)
    frontier = np.zeros(fg.shape, dtype=np.uint8)
    for source in sources:
        frontier[source] = 1
        dist[source] = 0
    unreached = fg.astype(np.uint8) & (1 - frontier)
    kernel = np.ones((3, 3), np.uint8)
    step = 0
    while frontier.any():
        step += 1
        frontier = cv2.dilate(frontier, kernel) & unreached
        dist[frontier.astype(bool)] = step
        unreached &= 1 - frontier
    return dist


def _tail_end(
    fg: np.ndarray,
    dist: np.ndarray,
    kps: np.ndarray,
    visible: np.ndarray,
    used: np.ndarray,
    species: Species,
    start_idx: int,
    start: tuple[int, int],
) -> tuple[int, int] | None:
    end_name = species.tail[1]
    if end_name is not None and visible[species.keypoint_index(end_name)]:
        end = _snap_to_foreground(dist >= 0, kps[species.keypoint_index(end_name), :2])
        return end if end is not None and end != start else None
    others = [
        snapped
        for i in np.flatnonzero(used)
        if i != start_idx and (snapped := _snap_to_foreground(fg, kps[i, :2])) is not None
    ]
    own = dist > 0
    if others:
        dist_others = _geodesic_distance(fg, others)
        own &= (dist_others < 0) | (dist < dist_others)
    if not own.any():
        return None
    flat = int(np.where(own, dist, -1).argmax())
    return divmod(flat, fg.shape[1])


def _backtrack(dist: np.ndarray, end: tuple[int, int]) -> list[tuple[int, int]]:
    """Shortest path from ``end`` back to the start (distance 0), end first."""
    h, w = dist.shape
    path = [end]
    r, c = end
    while dist[r, c] > 0:
        for dr, dc in _NEIGHBOURS:
            rr, cc = r + dr, c + dc
            if 0 <= rr < h and 0 <= cc < w and dist[rr, cc] == dist[r, c] - 1:
                r, c = rr, cc
                break
        path.append((r, c))
    return path


def part_visibility(labels: np.ndarray, num_parts: int) -> np.ndarray:
    """``K`` bools: part ``k`` has at least one pixel."""
    present = np.bincount(labels.ravel(), minlength=num_parts + 1)[1 : num_parts + 1]
    return present > 0


def estimate_orientation(labels: np.ndarray, species: Species) -> str:
    """'left' if the front parts lie left of the rear parts in the map, 'right' if right of them,
    '' if either side is missing or they are level (or the species names no front/rear parts).

    'left' means the head points to the left of the image (the flank shown in a side view).
    """
    xs = np.arange(labels.shape[1]) + 0.5
    centroids = []
    for side in (species.front_parts, species.rear_parts):
        side_labels = [species.part_label(p) for p in side]
        cols = np.isin(labels, side_labels).sum(axis=0)
        if cols.sum() == 0:
            return ""
        centroids.append(float((cols * xs).sum() / cols.sum()))
    if centroids[0] < centroids[1]:
        return "left"
    if centroids[0] > centroids[1]:
        return "right"
    return ""


def mirror_map(labels: np.ndarray) -> np.ndarray:
    """The map of the horizontally flipped image. Orientation flips with it: use
    :func:`mirror_orientation`; visibility is unchanged."""
    return np.fliplr(labels).copy()


def mirror_orientation(orientation: str) -> str:
    return {"left": "right", "right": "left"}.get(orientation, orientation)
