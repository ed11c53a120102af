"""The interface every teacher member implements, and what it is given.

Members work on batches so that neural members (mmpose, ultralytics, SAM, ...) can batch on a
GPU; the non-neural ones just loop. A member module imports its heavy libraries (torch,
mmpose, ...) inside its methods, never at module top: settings validation imports the class to
read its ``DEFAULTS``, and ``pseudomasks teacher-id`` must stay instant.

- A pose member returns, per sample, keypoints ``N×3`` ``[x, y, v]`` in image pixels in the
  *species'* keypoint schema order (a model with another schema maps its output), or ``None``
  when it has nothing for that image. Every pose member also takes the shared ``keypoints``
  option (:data:`POSE_DEFAULTS`), which the teacher applies to its output.
- A segmentation member returns, per sample, an ``H×W`` bool foreground or ``None``; it sees
  the pose ensemble's keypoints (prompts for SAM, seeds for GrabCut). One that keeps one of
  several foreground components reports how many it found through
  :meth:`SegmentationMember.foreground_components`.
- A member that cannot read one image's input raises :class:`UnreadableInput`; the teacher then
  retries the batch one sample at a time and lists only the unreadable images as failed.
- With a ``teacher.detector``, members whose ``reads_pixels`` is True see the detector's crop
  (and return crop coordinates, which the teacher maps back); the others see the full image.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.images import UnreadableInput
from pseudomasks.species import Species

__all__ = [
    "Member",
    "MemberContext",
    "POSE_DEFAULTS",
    "PoseMember",
    "Sample",
    "SegmentationMember",
    "UnreadableInput",
    "WeightsSpec",
]


@dataclass(frozen=True)
class Sample:
    """One catalogue row with its decoded image (``H×W×3`` uint8, RGB)."""

    image_id: str
    image: np.ndarray
    row: Mapping[str, str]
    root: Path


@dataclass(frozen=True)
class WeightsSpec:
    """A model file from ``settings.weights``; only ``sha256`` enters the teacher id."""

    path: str
    sha256: str
    url: str
    imgly_resource: str = ""
    """Set when ``url`` is an npm tarball of @imgly/background-removal-data: the file is this
    resource of it (e.g. ``/models/small``), stored as chunks that fetching joins."""


@dataclass(frozen=True)
class MemberContext:
    """Run-wide facts a member may need. ``device`` is 'cpu', 'cuda' or 'auto'."""

    species: Species
    confidence: float
    device: str
    weights: Mapping[str, WeightsSpec]


class Member:
    """Common option handling: ``DEFAULTS`` lists every option and its default value, so that
    settings that differ only by spelling out a default give the same teacher id."""

    DEFAULTS: ClassVar[Mapping[str, Any]] = {}
    reads_pixels: ClassVar[bool] = True
    """False for members that read the catalogue's annotations of the *full* image (keypoint
    coordinates, silhouette files): they must not be given a detector's crop."""

    def __init__(self, options: Mapping[str, Any], context: MemberContext) -> None:
        self.options = dict(options)
        self.context = context

    @classmethod
    def option_defaults(cls) -> Mapping[str, Any]:
        """Every option with its default: the member's ``DEFAULTS`` plus those its kind shares."""
        return cls.DEFAULTS

    @classmethod
    def resolve_options(cls, options: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Defaults filled in, unknown names and wrong types rejected."""
        defaults = cls.option_defaults()
        unknown = sorted(set(options) - set(defaults))
        if unknown:
            known = ", ".join(defaults) or "none"
            raise UserError(f"{where}: unknown option '{unknown[0]}'; known options: {known}")
        resolved = dict(defaults)
        for key, value in options.items():
            resolved[key] = _typed(value, defaults[key], f"{where}.{key}")
        cls.check_options(resolved, where)
        return resolved

    @classmethod
    def check_options(cls, options: Mapping[str, Any], where: str) -> None:
        """Range checks beyond types; members with constrained options override this."""


def _typed(value: Any, default: Any, where: str) -> Any:
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise UserError(f"{where}: expected {type(default).__name__}, got {value!r}")
    return value


POSE_DEFAULTS: Mapping[str, Any] = {"keypoints": None}
"""Options every pose member has, applied by the teacher rather than by each member:
``keypoints`` lists the species keypoints the member contributes to the ensemble (null: all of
them; the others are dropped from its output, see :func:`pseudomasks.combine.restrict_keypoints`)."""


class PoseMember(Member, ABC):
    @classmethod
    def option_defaults(cls) -> Mapping[str, Any]:
        return {**cls.DEFAULTS, **POSE_DEFAULTS}

    @classmethod
    def resolve_options(cls, options: Mapping[str, Any], where: str) -> dict[str, Any]:
        resolved = super().resolve_options(options, where)
        names = resolved["keypoints"]
        if names is not None and (
            not isinstance(names, list)
            or not names
            or not all(isinstance(n, str) for n in names)
            or len(set(names)) != len(names)
        ):
            raise UserError(
                f"{where}.keypoints: must be a non-empty list of distinct species keypoint "
                f"names (or null for all), got {names!r}"
            )
        return resolved

    @abstractmethod
    def predict(self, samples: Sequence[Sample]) -> list[np.ndarray | None]:
        """Keypoints ``N×3`` per sample in the species' schema order, or None."""


def in_batches(
    predict_batch: Callable[[Sequence[Sample]], list[np.ndarray]],
    samples: Sequence[Sample],
    size: int,
) -> list[np.ndarray | None]:
    """``predict_batch`` over consecutive batches of at most ``size`` samples, in order: a
    member's ``batch_size`` bounds what one forward pass holds in (GPU) memory."""
    out: list[np.ndarray | None] = []
    for start in range(0, len(samples), size):
        out.extend(predict_batch(samples[start : start + size]))
    return out


class SegmentationMember(Member, ABC):
    @abstractmethod
    def predict(
        self, samples: Sequence[Sample], keypoints: Sequence[np.ndarray | None]
    ) -> list[np.ndarray | None]:
        """Foreground ``H×W`` bool per sample, or None."""

    def foreground_components(self) -> Mapping[str, int]:
        """image_id → the number of sizeable connected foreground components found, for the
        images predicted so far: 2 or more means several animals in the frame, so a member that
        keeps one had to choose, and ``qc.json`` says how often. Empty for members that do not
        count them (their foreground is whatever the model or annotation gives)."""
        return {}
