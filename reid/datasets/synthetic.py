"""A deterministic synthetic quadruped species: the embedded demo's and the tests' dataset.

Why it exists: the demo and the tests must run on a fresh machine with nothing to download,
yet they need data that behaves like camera-trap re-ID data, or a model trained on it proves
nothing. So every picture is a side view of a striped or spotted quadruped whose coat pattern
is the identity signal, drawn the way real data varies:

- The pattern of each flank is generated once per (identity, flank) in body-relative
  coordinates (torso, neck, head, leg and tail frames) and warped with the pose, so it is
  stable across sightings. The two flanks use independent seeds, as on tigers: a mirrored left
  flank is not the right flank.
- Identity also fixes a base coat colour and body proportions (small variations).
- Pose varies per image (gait, head, tail, scale, position, in-plane rotation); images of one
  encounter are near-duplicates, while encounters differ more and come from different cameras.
- Each camera has its own background, lighting and blur; about a fifth of the images have a
  vegetation occluder, which the silhouette excludes and which hides keypoints.

Geometry is built facing right (head on the right, the right flank shown) and mirrored for
'left' (head on the left of the frame, the left flank shown; the Nyala convention). The limbs
on the shown flank are the near-side limbs; the far-side limbs (``right_*`` when the left flank
is shown and vice versa) are drawn behind the body, offset and darker.

Keypoints (AP-10K order) are the true geometric points of the drawing. A keypoint is visible
(v=1) when the part it belongs to is the frontmost thing at that pixel: near-side joints on
the torso count as visible, far-side shoulders and hips (behind the torso), the far eye
(behind the head) and anything under the occluder get v=0.

Every random draw comes from a numpy Generator seeded by a tagged tuple (for an image:
seed, identity, encounter, flank, k), never by call order, and images are fixed-quality JPEGs,
so the same spec gives byte-identical files and the same catalogue on every run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from reid.atomic import atomic_write_bytes
from reid.errors import UserError

AP10K_KEYPOINTS: tuple[str, ...] = (
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
FLANKS: tuple[str, ...] = ("left", "right")
COLUMNS: tuple[str, ...] = (
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
)

JPEG_QUALITY = 92
OCCLUSION_RATE = 0.2
# Drawing happens at SUPERSAMPLE x the output size and is area-averaged down: cheap
# anti-aliasing that keeps the part-index buffer (used for keypoint visibility) exact.
SUPERSAMPLE = 2
_SHIFT = 3  # fixed-point bits for cv2 polygon vertices (1/8 px precision)

# Tags that keep the seed tuples of different kinds of draw apart.
_TAG_IDENTITY, _TAG_PATTERN, _TAG_CAMERA, _TAG_ENCOUNTER = 1, 2, 3, 4
_TAG_POSE, _TAG_IMAGE, _TAG_SPLIT, _TAG_CAMERA_ORDER = 5, 6, 7, 8


@dataclass(frozen=True)
class SyntheticSpec:
    """How many synthetic animals and photos to make; the seed fixes everything else."""

    identities: int = 24  # number of animals
    encounters: int = 3  # sightings per identity
    images_per_encounter: int = 2  # per flank per encounter
    test_fraction: float = 0.4  # share of identities whose images get split 'test'
    image_size: tuple[int, int] = (160, 256)  # H, W
    cameras: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("identities", "encounters", "images_per_encounter", "cameras"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"synthetic dataset option {name}={value!r}: use an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"synthetic dataset option seed={self.seed!r}: use an integer >= 0")
        if not isinstance(self.test_fraction, int | float) or not 0 <= self.test_fraction <= 1:
            raise UserError(
                f"synthetic dataset option test_fraction={self.test_fraction!r}: "
                f"use a number in [0, 1]"
            )
        size = self.image_size
        if (
            not isinstance(size, tuple)
            or len(size) != 2
            or not all(isinstance(v, int) and v >= 64 for v in size)
        ):
            raise UserError(
                f"synthetic dataset option image_size={size!r}: use [height, width], "
                f"both integers >= 64"
            )


def generate(root: Path, spec: SyntheticSpec) -> pd.DataFrame:
    """Write the spec's images and silhouettes under root; return their catalogue rows.

    Files: ``images/{identity}/{encounter}_{flank}_{k}.jpg`` and the matching binary (0/255)
    ``silhouettes/...png``. Each is written atomically, so a rerun overwrites cleanly. The
    caller writes the CSV. Columns are COLUMNS, all strings; rows are ordered by identity,
    encounter, flank, k.
    """
    root = Path(root)
    height, width = spec.image_size
    test_ids = _test_identities(spec)
    backgrounds = [_background(spec.seed, c, height, width) for c in range(spec.cameras)]
    rows = []
    digits = max(3, len(str(spec.identities - 1)))
    for i in range(spec.identities):
        identity = f"id{i:0{digits}d}"
        animal = _animal(spec.seed, i)
        order = _rng(_TAG_CAMERA_ORDER, spec.seed, i).permutation(spec.cameras)
        patterns = {
            flank: _flank_pattern(spec.seed, i, f, animal) for f, flank in enumerate(FLANKS)
        }
        for e in range(spec.encounters):
            encounter = f"{identity}_e{e}"
            camera = int(order[e % spec.cameras])
            light = _lighting(spec.seed, camera, i, e)
            for f, flank in enumerate(FLANKS):
                base_pose = _encounter_pose(_rng(_TAG_POSE, spec.seed, i, e, f))
                for k in range(spec.images_per_encounter):
                    rng = _rng(_TAG_IMAGE, spec.seed, i, e, f, k)
                    pose = _jitter_pose(base_pose, rng)
                    photo, silhouette, keypoints = _render(
                        animal, patterns[flank], flank, pose, backgrounds[camera], light, rng
                    )
                    stem = f"{encounter}_{flank}_{k}"
                    image_path = f"images/{identity}/{stem}.jpg"
                    mask_path = f"silhouettes/{identity}/{stem}.png"
                    atomic_write_bytes(root / image_path, _encode(".jpg", photo))
                    atomic_write_bytes(root / mask_path, _encode(".png", silhouette))
                    rows.append(
                        {
                            "image_id": stem,
                            "path": image_path,
                            "identity": identity,
                            "split": "test" if i in test_ids else "train",
                            "orientation": flank,
                            "camera": f"cam{camera}",
                            "frame": "",
                            "encounter": encounter,
                            "group": "",
                            "keypoints": json.dumps(keypoints),
                            "silhouette": mask_path,
                        }
                    )
    return pd.DataFrame(rows, columns=list(COLUMNS), dtype=str)


# --------------------------------------------------------------------------- randomness, split


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def _test_identities(spec: SyntheticSpec) -> set[int]:
    """Whole identities go to 'test': round(test_fraction x identities) of them.

    When the fraction is strictly between 0 and 1 both splits keep at least one identity, so a
    tiny spec still has something to train on and something to evaluate.
    """
    n = spec.identities
    count = math.floor(spec.test_fraction * n + 0.5)
    if 0 < spec.test_fraction < 1 and n >= 2:
        count = min(max(count, 1), n - 1)
    order = _rng(_TAG_SPLIT, spec.seed).permutation(n)
    return {int(i) for i in order[:count]}


# --------------------------------------------------------------------------- identity, pattern


@dataclass(frozen=True)
class _Animal:
    """What one identity looks like regardless of flank: proportions, colours, pattern kind."""

    half_length: float  # torso half length (canonical units; the torso is about 1 long)
    half_height: float
    chest: float  # how much deeper the chest is than the flank behind it
    leg: float  # leg length factor
    neck_length: float
    head_length: float
    tail_length: float
    coat: tuple[float, float, float]  # BGR
    belly: tuple[float, float, float]
    mark: tuple[float, float, float]
    striped: bool


def _animal(seed: int, identity: int) -> _Animal:
    rng = _rng(_TAG_IDENTITY, seed, identity)
    coat = np.array([35.0, 120.0, 205.0]) + rng.normal(0, [8, 14, 12])
    return _Animal(
        half_length=0.5 * rng.uniform(0.94, 1.06),
        half_height=rng.uniform(0.16, 0.2),
        chest=rng.uniform(0.1, 0.3),
        leg=rng.uniform(1.0, 1.2),
        neck_length=rng.uniform(0.17, 0.23),
        head_length=rng.uniform(0.24, 0.28),
        tail_length=rng.uniform(0.36, 0.5),
        coat=_bgr(coat),
        belly=_bgr(np.array([200.0, 222.0, 238.0]) + rng.normal(0, 6, 3)),
        mark=_bgr(np.array([28.0, 30.0, 36.0]) + rng.normal(0, 4, 3)),
        striped=bool(rng.random() < 0.5),
    )


def _bgr(values: np.ndarray) -> tuple[float, float, float]:
    b, g, r = np.clip(values, 0, 255)
    return float(b), float(g), float(r)


# A flank's pattern: for each part name, polygons in that part's own coordinates.
# Torso: (X, Y) in [-1, 1]^2, X from rump (-1) to chest (+1), Y from back (-1) to belly (+1).
# Ribbons (neck, head, leg segments, tail): (u, w), u in [0, 1] from the attached end to the
# free end, w in [-1, 1] across; w = +1 is the throat and jaw side of neck and head.
_Pattern = dict[str, list[np.ndarray]]
_LEG_SEGMENTS = ("front_upper", "front_lower", "hind_upper", "hind_lower")


def _flank_pattern(seed: int, identity: int, flank: int, animal: _Animal) -> _Pattern:
    rng = _rng(_TAG_PATTERN, seed, identity, flank)
    pattern: _Pattern = {}
    for side in ("near", "far"):
        for part in _LEG_SEGMENTS:
            name = f"{side}_{part}"
            if animal.striped:
                pattern[name] = _bands(rng, int(rng.integers(2, 5)), partial=True)
            else:
                pattern[name] = _ribbon_spots(rng, int(rng.integers(3, 7)), 0.07)
    if animal.striped:
        pattern["torso"] = _torso_stripes(rng)
        pattern["neck"] = _bands(rng, int(rng.integers(3, 6)), partial=True)
        pattern["head"] = _bands(rng, 3, partial=True, span=(0.05, 0.45))
    else:
        pattern["torso"] = _torso_spots(rng)
        pattern["neck"] = _ribbon_spots(rng, int(rng.integers(5, 9)), 0.08)
        pattern["head"] = _ribbon_spots(rng, 5, 0.05, span=(0.05, 0.5))
    # Tails are ringed on both kinds, with a dark tip.
    rings = _bands(rng, int(rng.integers(4, 7)), partial=False, span=(0.25, 0.82))
    pattern["tail"] = [*rings, np.array([[0.88, -2.0], [1.2, -2.0], [1.2, 2.0], [0.88, 2.0]])]
    return pattern


def _torso_stripes(rng: np.random.Generator) -> list[np.ndarray]:
    """Tiger-like stripes hanging from the spine, some forked or doubled."""
    n = int(rng.integers(11, 17))
    xs = np.linspace(-0.9, 0.82, n) + rng.normal(0, 0.035, n)
    stripes = []
    for x0 in xs:
        end = rng.uniform(-0.15, 0.75)
        slant = rng.uniform(-0.22, 0.22)
        width = rng.uniform(0.022, 0.045)
        wave = (rng.uniform(0.01, 0.05), rng.uniform(4, 9), rng.uniform(0, 2 * np.pi))
        stripes.append(_stripe(x0, -1.3, end, slant, width, wave))
        if rng.random() < 0.35:  # a fork leaving the stripe halfway down
            t = rng.uniform(0.3, 0.6)
            start = -1.3 + (end + 1.3) * t
            direction = rng.choice([-1.0, 1.0])
            stripes.append(
                _stripe(
                    x0 + slant * t,
                    start,
                    start + rng.uniform(0.3, 0.6),
                    direction * rng.uniform(0.12, 0.25),
                    width * 0.7,
                    wave,
                )
            )
        elif rng.random() < 0.25:  # a thin parallel companion
            offset = rng.choice([-1.0, 1.0]) * rng.uniform(0.06, 0.09)
            stripes.append(
                _stripe(x0 + offset, -1.3, end - rng.uniform(0.2, 0.6), slant, width * 0.6, wave)
            )
    return stripes


def _stripe(
    x0: float,
    y0: float,
    y1: float,
    slant: float,
    width: float,
    wave: tuple[float, float, float],
) -> np.ndarray:
    amplitude, frequency, phase = wave
    t = np.linspace(0.0, 1.0, 12)
    x = x0 + slant * t + amplitude * np.sin(frequency * t + phase)
    y = y0 + (y1 - y0) * t
    half = width * (1.0 - 0.85 * t**1.5) + 0.004
    return np.concatenate([np.stack([x - half, y], 1), np.stack([x + half, y], 1)[::-1]])


def _torso_spots(rng: np.random.Generator) -> list[np.ndarray]:
    """Solid spots and leopard-like rosettes (rings of blobs).

    Torso X spans about 2.7 times the distance Y does, so offsets along X are squashed by that
    ratio to keep the spots round on the animal.
    """
    squash = 1 / 2.7
    spots = []
    # A jittered grid spreads the spots over the whole flank, as on a real coat.
    columns, rows = 9, 4
    cells = [(c, r) for c in range(columns) for r in range(rows) if rng.random() < 0.85]
    for column, row in cells:
        x = -0.95 + 1.9 * (column + rng.uniform(0.15, 0.85)) / columns
        y = -0.95 + 1.6 * (row + rng.uniform(0.15, 0.85)) / rows
        r = rng.uniform(0.09, 0.16)
        if rng.random() < 0.45:
            blobs = int(rng.integers(3, 6))
            start = rng.uniform(0, 2 * np.pi)
            for b in range(blobs):
                a = start + 2 * np.pi * b / blobs + rng.normal(0, 0.2)
                spots.append(
                    _ellipse(
                        x + squash * 1.3 * r * np.cos(a),
                        y + 1.3 * r * np.sin(a),
                        0.6 * r,
                        0.32 * r,
                        a + np.pi / 2,
                        squash,
                    )
                )
        else:
            spots.append(
                _ellipse(x, y, r, r * rng.uniform(0.6, 1.0), rng.uniform(0, np.pi), squash)
            )
    return spots


def _bands(
    rng: np.random.Generator,
    n: int,
    partial: bool,
    span: tuple[float, float] = (0.12, 0.9),
) -> list[np.ndarray]:
    """Stripes across a ribbon part; 'partial' ones start at one edge and stop short."""
    centres = np.sort(rng.uniform(*span, n))
    bands = []
    for u in centres:
        half = rng.uniform(0.025, 0.05)
        slant = rng.uniform(-0.08, 0.08)
        w0, w1 = -1.5, 1.5
        if partial and rng.random() < 0.6:
            if rng.random() < 0.5:
                w1 = rng.uniform(-0.2, 0.6)
            else:
                w0 = rng.uniform(-0.6, 0.2)
        w = np.linspace(w0, w1, 6)
        taper = half * (1.0 - 0.5 * np.abs(np.linspace(-1, 1, 6)))
        centre = u + slant * w
        bands.append(
            np.concatenate(
                [np.stack([centre - taper, w], 1), np.stack([centre + taper, w], 1)[::-1]]
            )
        )
    return bands


def _ribbon_spots(
    rng: np.random.Generator,
    n: int,
    radius: float,
    span: tuple[float, float] = (0.08, 0.95),
) -> list[np.ndarray]:
    return [
        _ellipse(
            rng.uniform(*span),
            rng.uniform(-0.85, 0.85),
            radius * rng.uniform(0.6, 1.2),
            4 * radius * rng.uniform(0.6, 1.2),
            0.0,
        )
        for _ in range(n)
    ]


def _ellipse(
    cx: float, cy: float, rx: float, ry: float, angle: float, squash: float = 1.0
) -> np.ndarray:
    """A rotated ellipse polygon; `squash` scales x after rotation, for anisotropic frames."""
    t = np.linspace(0, 2 * np.pi, 14, endpoint=False)
    x, y = rx * np.cos(t), ry * np.sin(t)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([cx + squash * (c * x - s * y), cy + s * x + c * y], 1)


# --------------------------------------------------------------------------- cameras


@dataclass(frozen=True)
class _Lighting:
    gain: np.ndarray  # per BGR channel
    contrast: float
    blur: float  # Gaussian sigma in output pixels
    noise: float


def _background(seed: int, camera: int, height: int, width: int) -> np.ndarray:
    """One fixed scene per camera (float32 BGR): cameras are shared by all animals, so the
    background says where, never who."""
    rng = _rng(_TAG_CAMERA, seed, camera, 0)
    kind = camera % 4
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    if kind == 0:  # meadow: green gradient and grass blades
        top, bottom = np.array([90, 150, 120]), np.array([40, 110, 70])
    elif kind == 1:  # bare ground: brown with pebbles
        top, bottom = np.array([90, 120, 150]), np.array([60, 95, 125])
    elif kind == 2:  # forest: dark green with trunks
        top, bottom = np.array([60, 80, 55]), np.array([35, 60, 45])
    else:  # savanna: pale sky over dry grass
        top, bottom = np.array([120, 160, 170]), np.array([70, 150, 185])
    top = top + rng.normal(0, 10, 3)
    bottom = bottom + rng.normal(0, 10, 3)
    image = (top * (1 - yy) + bottom * yy).astype(np.float32) * np.ones((1, width, 1), np.float32)
    # Blotches mostly in brightness: strong per-channel noise would paint the scene in pastels.
    cells = (max(2, height // 16), max(2, width // 16))
    coarse = (rng.normal(0, 14, (*cells, 1)) + rng.normal(0, 3, (*cells, 3))).astype(np.float32)
    image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    if kind == 3:
        horizon = int(height * rng.uniform(0.25, 0.4))
        sky = np.array([215, 200, 175]) + rng.normal(0, 10, 3)
        image[:horizon] = (image[:horizon] * 0.2 + sky * 0.8).astype(np.float32)
    if kind == 2:
        for _ in range(int(rng.integers(3, 7))):
            x = int(rng.integers(0, width))
            w = int(rng.integers(6, 20))
            shade = (np.array([45, 55, 60]) + rng.normal(0, 8, 3)).tolist()
            cv2.rectangle(image, (x, 0), (x + w, height), shade, -1)
    if kind == 1:
        for _ in range(int(rng.integers(40, 80))):
            centre = (int(rng.integers(0, width)), int(rng.integers(height // 3, height)))
            axes = (int(rng.integers(1, 4)), int(rng.integers(1, 3)))
            shade = (np.array([120, 140, 160]) + rng.normal(0, 20, 3)).tolist()
            cv2.ellipse(image, centre, axes, 0, 0, 360, shade, -1)
    if kind in (0, 3):
        start = height // 3 if kind == 3 else 0
        for _ in range(int(rng.integers(250, 400))):
            x = float(rng.uniform(0, width))
            y = float(rng.uniform(start, height + 10))
            length = rng.uniform(4, 14)
            a = rng.normal(-np.pi / 2, 0.3)
            end = (int(x + length * np.cos(a)), int(y + length * np.sin(a)))
            base = np.array([40, 140, 90] if kind == 0 else [80, 170, 200])
            shade = (base + rng.normal(0, 22, 3)).tolist()
            cv2.line(image, (int(x), int(y)), end, shade, 1, cv2.LINE_AA)
    return image


def _lighting(seed: int, camera: int, identity: int, encounter: int) -> _Lighting:
    """The camera's lighting and optics, varied a little per encounter (time of day)."""
    cam = _rng(_TAG_CAMERA, seed, camera, 1)
    gain = cam.uniform(0.78, 1.15) * cam.uniform(0.9, 1.1, 3)
    contrast = cam.uniform(0.8, 1.15)
    blur = cam.uniform(0.0, 1.1)
    noise = cam.uniform(2.0, 6.0)
    enc = _rng(_TAG_ENCOUNTER, seed, identity, encounter)
    return _Lighting(
        gain=gain * enc.uniform(0.9, 1.1),
        contrast=contrast * enc.uniform(0.93, 1.07),
        blur=blur,
        noise=noise,
    )


# --------------------------------------------------------------------------- pose


@dataclass(frozen=True)
class _Pose:
    scale: float  # fraction of the frame the animal's box fills (its limiting side)
    position: tuple[float, float]  # where in the free space the box sits, each in [0, 1]
    rotation: float  # in-plane, radians
    phase: float  # gait phase, radians
    stride: float  # leg swing amplitude, radians
    neck: float  # neck direction (image angle, facing right; negative = up)
    head: float  # head tilt relative to the neck
    tail: float  # tail direction at its root (image angle)
    curl: float  # tail bend from root to tip, radians
    arch: float  # spine curvature (canonical units at mid-back; positive arches up)


def _encounter_pose(rng: np.random.Generator) -> _Pose:
    neck = rng.uniform(-1.25, 0.15)
    return _Pose(
        scale=rng.uniform(0.72, 0.95),
        position=(rng.uniform(0, 1), rng.uniform(0, 1)),
        rotation=np.radians(rng.uniform(-8, 8)),
        phase=rng.uniform(0, 2 * np.pi),
        stride=rng.uniform(0.1, 0.45),
        neck=neck,
        head=rng.uniform(1.0, 1.45),
        tail=rng.uniform(1.75, 2.5),
        curl=rng.uniform(-0.6, 0.9),
        arch=rng.uniform(-0.035, 0.035),
    )


def _jitter_pose(pose: _Pose, rng: np.random.Generator) -> _Pose:
    """A near-duplicate of the encounter's pose, as in a burst of camera-trap frames."""
    return _Pose(
        scale=float(np.clip(pose.scale + rng.normal(0, 0.02), 0.7, 0.97)),
        position=(
            float(np.clip(pose.position[0] + rng.normal(0, 0.06), 0, 1)),
            float(np.clip(pose.position[1] + rng.normal(0, 0.06), 0, 1)),
        ),
        rotation=float(np.clip(pose.rotation + np.radians(rng.normal(0, 1.0)), -0.14, 0.14)),
        phase=pose.phase + rng.normal(0, 0.25),
        stride=pose.stride,
        neck=pose.neck + rng.normal(0, 0.06),
        head=pose.head + rng.normal(0, 0.05),
        tail=pose.tail + rng.normal(0, 0.12),
        curl=pose.curl + rng.normal(0, 0.1),
        arch=pose.arch + rng.normal(0, 0.005),
    )


# --------------------------------------------------------------------------- body geometry


class _Ribbon:
    """A limb-like part: a centre line with a half width, and (u, w) coordinates along it."""

    def __init__(self, centre: np.ndarray, half: np.ndarray) -> None:
        self.centre = np.asarray(centre, dtype=np.float64)
        self.half = np.asarray(half, dtype=np.float64)
        steps = np.hypot(*np.diff(self.centre, axis=0).T)
        arc = np.concatenate([[0.0], np.cumsum(steps)])
        self.u = arc / arc[-1]
        tangent = np.gradient(self.centre, axis=0)
        self.tangent = tangent / np.linalg.norm(tangent, axis=1, keepdims=True)
        self.normal = np.stack([-self.tangent[:, 1], self.tangent[:, 0]], 1)

    def _at(self, values: np.ndarray, u: np.ndarray) -> np.ndarray:
        if values.ndim == 1:
            return np.interp(u, self.u, values)
        return np.stack([np.interp(u, self.u, values[:, j]) for j in range(2)], 1)

    def point(self, uw: np.ndarray) -> np.ndarray:
        u, w = uw[:, 0], uw[:, 1]
        return self._at(self.centre, u) + (w * self._at(self.half, u))[:, None] * self._at(
            self.normal, u
        )

    def outline(self) -> np.ndarray:
        """Both edges plus round caps at both ends."""
        lower = self.centre + self.half[:, None] * self.normal
        upper = self.centre - self.half[:, None] * self.normal
        phi = np.linspace(0, np.pi, 7)[1:-1, None]
        end_cap = self.centre[-1] + self.half[-1] * (
            self.normal[-1] * np.cos(phi) + self.tangent[-1] * np.sin(phi)
        )
        start_cap = self.centre[0] + self.half[0] * (
            -self.normal[0] * np.cos(phi) - self.tangent[0] * np.sin(phi)
        )
        return np.concatenate([lower, end_cap, upper[::-1], start_cap])


@dataclass(frozen=True)
class _Part:
    name: str
    outline: np.ndarray  # canonical coordinates
    local: Callable[[np.ndarray], np.ndarray]  # part coordinates -> canonical
    shade: float  # 1 for near-side parts, darker behind


@dataclass(frozen=True)
class _Body:
    parts: list[_Part]  # back to front
    keypoints: dict[str, np.ndarray]  # canonical coordinates, facing right
    owners: dict[str, tuple[str, ...]]  # parts on which each keypoint counts as visible
    details: list[tuple[np.ndarray, tuple[float, float, float]]]  # eye, its glint, nose pad


# Leg geometry: pivot in torso coordinates, upper and lower lengths, upper thickness, lean of
# the upper segment, backward bend of the lower one, extra bend when lifted, gait phase offset.
_FRONT_LEG = ((0.62, 0.0), 0.21, 0.25, 0.065, 0.0, -0.05, 0.6, 0.0)
_HIND_LEG = ((-0.6, -0.1), 0.23, 0.27, 0.09, 0.15, 0.4, 0.35, np.pi / 2)
_FRONT_NAMES = ("shoulder", "elbow", "front_paw")
_HIND_NAMES = ("hip", "knee", "back_paw")


def _torso_map(animal: _Animal, arch: float) -> Callable[[np.ndarray], np.ndarray]:
    """Torso coordinates -> canonical: an ellipse-like barrel whose underside bulges at the
    chest and the haunch and tucks up at the waist, with a slight dip behind the withers. The
    spine arches with the pose, so the coat pattern bends with the body instead of moving as a
    rigid stamp."""
    a, b, chest = animal.half_length, animal.half_height, animal.chest

    def bump(x: np.ndarray, centre: float, width: float) -> np.ndarray:
        return np.exp(-(((x - centre) / width) ** 2))

    def to_canonical(xy: np.ndarray) -> np.ndarray:
        x, y = xy[:, 0], xy[:, 1]
        under = chest * bump(x, 0.6, 0.4) + 0.14 * bump(x, -0.62, 0.3) - 0.12 * bump(x, -0.1, 0.35)
        depth = b * (1.0 + np.clip(y, 0, None) * under)
        dip = 0.02 * np.clip(-y, 0, None) * bump(x, 0.1, 0.4)
        return np.stack([a * x, y * depth + dip - arch * (1.0 - x**2)], 1)

    return to_canonical


def _superellipse(n: int = 48, power: float = 2.6) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    return np.stack(
        [np.sign(c) * np.abs(c) ** (2 / power), np.sign(s) * np.abs(s) ** (2 / power)], 1
    )


def _body(animal: _Animal, pose: _Pose, near: str, far: str) -> _Body:
    """The animal facing right: parts back to front, keypoints and what may hide them."""
    torso_map = _torso_map(animal, pose.arch)
    torso = _Part("torso", torso_map(_superellipse()), torso_map, 1.0)
    leg = animal.leg
    parts_back: list[_Part] = []
    parts_front: list[_Part] = []
    kp: dict[str, np.ndarray] = {}
    owners: dict[str, tuple[str, ...]] = {}
    # Per side: its parts' name prefix, its keypoints' prefix, shade, pivot offset and gait
    # phase lag. The far legs sit a little higher and further forward (perspective), darker,
    # and move in antiphase with the near ones.
    for side, prefix, shade, offset, lag in (
        ("far", far, 0.68, np.array([0.035, -0.02]), np.pi),
        ("near", near, 1.0, np.zeros(2), 0.0),
    ):
        target = parts_back if side == "far" else parts_front
        for limb, geometry, names in (
            ("front", _FRONT_LEG, _FRONT_NAMES),
            ("hind", _HIND_LEG, _HIND_NAMES),
        ):
            pivot_xy, upper_len, lower_len, thick, lean, bend, flex_gain, beat = geometry
            top_name, joint, paw_name = names
            # Angles from straight down, positive forward; a leg flexes while it swings forward.
            cycle = np.sin(pose.phase + lag + beat)
            pivot = torso_map(np.array([pivot_xy]))[0] + offset
            upper_angle = lean + pose.stride * cycle
            lower_angle = upper_angle - bend - flex_gain * max(0.0, cycle)
            joint_xy = pivot + leg * upper_len * np.array(
                [np.sin(upper_angle), np.cos(upper_angle)]
            )
            paw = joint_xy + leg * lower_len * np.array([np.sin(lower_angle), np.cos(lower_angle)])
            upper = _Ribbon(np.stack([pivot, joint_xy]), np.array([thick, 0.042]))
            lower = _Ribbon(np.stack([joint_xy, paw]), np.array([0.038, 0.028]))
            foot = _Ribbon(np.stack([paw, paw + np.array([0.055, 0.004])]), np.array([0.03, 0.022]))
            names = [f"{side}_{limb}_upper", f"{side}_{limb}_lower", f"{side}_{limb}_paw"]
            target.extend(
                [
                    _Part(names[0], upper.outline(), upper.point, shade),
                    _Part(names[1], lower.outline(), lower.point, shade),
                    _Part(names[2], foot.outline(), foot.point, shade),
                ]
            )
            kp[f"{prefix}_{top_name}"] = pivot
            kp[f"{prefix}_{joint}"] = joint_xy
            kp[f"{prefix}_{paw_name}"] = paw
            on_body = ("torso", "neck") if side == "near" else ()
            owners[f"{prefix}_{top_name}"] = (*on_body, names[0])
            owners[f"{prefix}_{joint}"] = (*on_body, names[0], names[1])
            owners[f"{prefix}_{paw_name}"] = (names[1], names[2])
    # Tail: hangs from the top of the rump, curling along its length.
    root = torso_map(np.array([[-0.97, -0.45]]))[0]
    steps = np.arange(10) / 9.0
    angles = pose.tail + pose.curl * steps
    step_len = animal.tail_length / 9.0
    centre = root + np.concatenate(
        [[[0.0, 0.0]], np.cumsum(step_len * np.stack([np.cos(angles), np.sin(angles)], 1)[1:], 0)]
    )
    tail = _Ribbon(centre, np.linspace(0.032, 0.016, 10))
    kp["root_of_tail"] = root
    owners["root_of_tail"] = ("torso", "tail")
    # Neck and head.
    neck_base = torso_map(np.array([[0.82, -0.55]]))[0]
    neck_dir = np.array([np.cos(pose.neck), np.sin(pose.neck)])
    neck_top = neck_base + animal.neck_length * neck_dir
    neck = _Ribbon(np.stack([neck_base - 0.05 * neck_dir, neck_top]), np.array([0.11, 0.08]))
    head_angle = pose.neck + pose.head
    head_dir = np.array([np.cos(head_angle), np.sin(head_angle)])
    skull = neck_top - 0.02 * head_dir
    head_centre = skull + animal.head_length * np.outer([0.0, 0.35, 0.75, 1.0], head_dir)
    head = _Ribbon(head_centre, np.array([0.085, 0.08, 0.055, 0.038]))
    eye = head.point(np.array([[0.4, -0.42]]))[0]
    up = -head.normal[0]
    kp[f"{near}_eye"] = eye
    kp[f"{far}_eye"] = eye + 0.012 * head_dir + 0.006 * up
    kp["nose"] = head_centre[-1] + 0.8 * head.half[-1] * head_dir  # inside the muzzle's cap
    kp["neck"] = neck_base
    owners[f"{near}_eye"] = ("head",)
    owners[f"{far}_eye"] = ()  # behind the head
    owners["nose"] = ("head",)
    owners["neck"] = ("torso", "neck", "head")
    ears = []
    for side, shade, shift in (("far", 0.68, 0.05), ("near", 1.0, 0.0)):
        base = head.point(np.array([[0.08 + shift, -0.85], [0.3 + shift, -0.9]]))
        back = np.array([-head_dir[0], -head_dir[1]])
        direction = up * np.cos(0.45) + back * np.sin(0.45)
        tip = base.mean(0) + 0.085 * direction
        ear = _Ribbon(np.stack([base.mean(0) - 0.01 * direction, tip]), np.array([0.045, 0.015]))
        ears.append(_Part(f"{side}_ear", ear.outline(), ear.point, shade))
    details = [
        (_circle(eye, 0.016), (20.0, 25.0, 25.0)),
        (_circle(eye - 0.004 * head_dir + 0.004 * up, 0.005), (220.0, 230.0, 230.0)),
        (_circle(kp["nose"] - 0.012 * head_dir, 0.02), (40.0, 40.0, 60.0)),
    ]
    parts = [
        *parts_back,
        _Part("tail", tail.outline(), tail.point, 0.95),
        ears[0],
        *parts_front,
        torso,
        _Part("neck", neck.outline(), neck.point, 1.0),
        _Part("head", head.outline(), head.point, 1.0),
        ears[1],
    ]
    return _Body(parts=parts, keypoints=kp, owners=owners, details=details)


def _circle(centre: np.ndarray, radius: float, n: int = 12) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return centre + radius * np.stack([np.cos(t), np.sin(t)], 1)


# --------------------------------------------------------------------------- rendering


def _placement(body: _Body, pose: _Pose, flank: str, height: int, width: int) -> np.ndarray:
    """2x3 affine from canonical (facing right) to output pixels: mirror for 'left', rotate,
    scale the animal's box to pose.scale of the frame and put it inside the frame."""
    mirror = -1.0 if flank == "left" else 1.0
    c, s = np.cos(pose.rotation), np.sin(pose.rotation)
    linear = np.array([[c, -s], [s, c]]) @ np.diag([mirror, 1.0])
    points = np.concatenate([p.outline for p in body.parts]) @ linear.T
    low, high = points.min(0), points.max(0)
    extent = high - low
    scale = pose.scale * min((width - 1) / extent[0], (height - 1) / extent[1])
    free = np.array([width - 1, height - 1]) - scale * extent
    offset = free * np.array(pose.position) - scale * low
    return np.concatenate([scale * linear, offset[:, None]], 1)


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _fixed(points: np.ndarray, origin: np.ndarray) -> np.ndarray:
    return np.round((points - origin) * (1 << _SHIFT)).astype(np.int32)


def _render(
    animal: _Animal,
    pattern: _Pattern,
    flank: str,
    pose: _Pose,
    background: np.ndarray,
    light: _Lighting,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """(BGR uint8 photo, 0/255 silhouette, flat AP-10K keypoints [x, y, v] * 17)."""
    height, width = background.shape[:2]
    near, far = flank, FLANKS[1 - FLANKS.index(flank)]
    body = _body(animal, pose, near, far)
    to_image = _placement(body, pose, flank, height, width)
    # Supersampled pixel centres: output pixel i covers supersampled pixels S*i .. S*i+S-1.
    ss = SUPERSAMPLE
    to_ss = np.concatenate([ss * to_image[:, :2], (ss * to_image[:, 2] + (ss - 1) / 2)[:, None]], 1)
    size = (height * ss, width * ss)
    colour = np.zeros((*size, 3), np.uint8)
    index = np.zeros(size, np.uint8)
    part_ids = {}
    for pid, part in enumerate(body.parts, start=1):
        part_ids[part.name] = pid
        layers = _part_layers(animal, pattern, part)
        if part.name == "head":
            layers += [([poly], col) for poly, col in body.details]
        _paint(colour, index, pid, _apply(to_ss, part.outline), layers, to_ss)
    occluder, occluded = _occluder(body, to_ss, size, rng)
    animal_mask = index > 0
    silhouette_ss = animal_mask & ~occluded

    photo = background.copy()
    alpha = cv2.resize(
        animal_mask.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA
    )
    fg = cv2.resize(colour, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
    photo = photo * (1 - alpha[..., None]) + fg
    if occluder is not None:
        occ_alpha = cv2.resize(
            occluded.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA
        )
        occ = cv2.resize(occluder, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32)
        photo = photo * (1 - occ_alpha[..., None]) + occ
    photo = _camera(photo, light, rng)
    silhouette = cv2.resize(
        silhouette_ss.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA
    )
    silhouette = np.where(silhouette >= 0.5, 255, 0).astype(np.uint8)

    keypoints: list[float] = []
    for name in AP10K_KEYPOINTS:
        x, y = _apply(to_image, body.keypoints[name][None])[0]
        sx, sy = _apply(to_ss, body.keypoints[name][None])[0]
        col, row = int(round(sx)), int(round(sy))
        inside = 0 <= x <= width - 1 and 0 <= y <= height - 1
        owner_ids = {part_ids[o] for o in body.owners[name]}
        visible = (
            inside
            and 0 <= row < size[0]
            and 0 <= col < size[1]
            and int(index[row, col]) in owner_ids
            and not occluded[row, col]
        )
        keypoints += [round(float(x), 1), round(float(y), 1), int(visible)]
    return photo, silhouette, keypoints


# Pale areas in part coordinates, with how far they go from coat to belly colour: a white
# belly with a wavy edge, a paler throat, pale cheeks and jaw.
_BELLY_EDGE = np.linspace(-1.2, 1.2, 13)
_LIGHT_AREAS: dict[str, tuple[np.ndarray, float]] = {
    "torso": (
        np.concatenate(
            [
                np.stack([_BELLY_EDGE, 0.55 + 0.06 * np.sin(3.0 * _BELLY_EDGE)], 1),
                [[1.2, 1.5], [-1.2, 1.5]],
            ]
        ),
        1.0,
    ),
    "neck": (np.array([[0.3, 0.75], [1.1, 0.4], [1.1, 1.5], [0.3, 1.5]]), 0.4),
    "head": (
        np.array([[-0.1, 0.5], [0.5, 0.25], [0.9, 0.45], [1.2, 0.5], [1.2, 1.5], [-0.1, 1.5]]),
        0.85,
    ),
}
_EAR_BACK = np.array([[0.15, -0.5], [0.75, -0.2], [0.75, 0.3], [0.15, 0.5]])


def _part_layers(
    animal: _Animal, pattern: _Pattern, part: _Part
) -> list[tuple[list[np.ndarray], tuple[float, float, float]]]:
    """Canonical polygons and colours painted over the part's base coat, in order."""

    def shaded(bgr: tuple[float, float, float]) -> tuple[float, float, float]:
        b, g, r = (part.shade * v for v in bgr)
        return b, g, r

    layers = [([part.outline], shaded(animal.coat))]
    if part.name in _LIGHT_AREAS:
        polygon, share = _LIGHT_AREAS[part.name]
        light = _bgr(share * np.array(animal.belly) + (1 - share) * np.array(animal.coat))
        layers.append(([part.local(polygon)], shaded(light)))
    if part.name.endswith("_ear"):
        layers.append(([part.local(_EAR_BACK)], shaded(animal.mark)))
    marks = pattern.get(part.name, [])
    if marks:
        layers.append(([part.local(m) for m in marks], shaded(animal.mark)))
    return layers


def _paint(
    colour: np.ndarray,
    index: np.ndarray,
    pid: int,
    outline: np.ndarray,
    layers: Sequence[tuple[list[np.ndarray], tuple[float, float, float]]],
    to_ss: np.ndarray,
) -> None:
    """Paint one part over what is already drawn, its layers clipped to its outline."""
    h, w = index.shape
    x0, y0 = np.floor(outline.min(0)).astype(int) - 1
    x1, y1 = np.ceil(outline.max(0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return
    origin = np.array([x0, y0], dtype=np.float64)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [_fixed(outline, origin)], 1, cv2.LINE_8, _SHIFT)
    patch = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    for polygons, bgr in layers:
        # One polygon per call: a single call fills by parity, so overlapping marks would
        # cancel each other into rings and holes.
        for polygon in polygons:
            cv2.fillPoly(patch, [_fixed(_apply(to_ss, polygon), origin)], bgr, cv2.LINE_8, _SHIFT)
    inside = mask.astype(bool)
    colour[y0:y1, x0:x1][inside] = patch[inside]
    index[y0:y1, x0:x1][inside] = pid


def _occluder(
    body: _Body, to_ss: np.ndarray, size: tuple[int, int], rng: np.random.Generator
) -> tuple[np.ndarray | None, np.ndarray]:
    """A leafy bush over one region of the animal in about OCCLUSION_RATE of the images.

    Returns (premultiplied BGR layer or None, boolean mask), both supersampled.
    """
    occluded = np.zeros(size, bool)
    if rng.random() >= OCCLUSION_RATE:
        return None, occluded
    anchors = ("nose", "neck", "root_of_tail") + tuple(
        n for n in AP10K_KEYPOINTS if n.endswith("paw") or n.endswith("knee") or n.endswith("elbow")
    )
    anchor = _apply(to_ss, body.keypoints[anchors[int(rng.integers(len(anchors)))]][None])[0]
    torso = _apply(to_ss, body.parts[[p.name for p in body.parts].index("torso")].outline)
    radius = 0.3 * (torso.max(0) - torso.min(0))[1] * rng.uniform(0.8, 1.3)
    layer = np.zeros((*size, 3), np.uint8)
    mask = np.zeros(size, np.uint8)
    for _ in range(int(rng.integers(18, 30))):
        centre = anchor + rng.normal(0, 0.55 * radius, 2)
        axes = np.array([rng.uniform(0.25, 0.5), rng.uniform(0.12, 0.25)]) * radius
        angle = rng.uniform(0, 180)
        shade = (np.array([40, 120, 60]) + rng.normal(0, [10, 30, 15])).clip(0, 255).tolist()
        box = (tuple(centre.tolist()), tuple((2 * axes).tolist()), float(angle))
        cv2.ellipse(layer, box, shade, -1, cv2.LINE_8)
        cv2.ellipse(mask, box, 1, -1, cv2.LINE_8)
        cv2.ellipse(layer, box, (20, 60, 30), 1, cv2.LINE_8)
    occluded = mask.astype(bool)
    layer[~occluded] = 0
    return layer, occluded


def _camera(photo: np.ndarray, light: _Lighting, rng: np.random.Generator) -> np.ndarray:
    """Lighting (contrast, per-channel gain), optics blur and sensor noise; uint8 BGR."""
    photo = ((photo - 110.0) * light.contrast + 110.0) * light.gain.astype(np.float32)
    if light.blur > 0.3:
        photo = cv2.GaussianBlur(photo, (0, 0), light.blur)
    photo = photo + rng.normal(0, light.noise, photo.shape).astype(np.float32)
    return np.clip(np.rint(photo), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- files


def _encode(extension: str, image: np.ndarray) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY] if extension == ".jpg" else []
    ok, data = cv2.imencode(extension, image, params)
    if not ok:
        raise RuntimeError(f"OpenCV could not encode a {extension} image")
    return data.tobytes()
