"""``keypoint_map``: how a pose model's keypoints land in the species' keypoint schema.

The option is a list with one entry per model keypoint: the species keypoint it is, or null to
drop it; absent (null), the model must have been trained in the species' own order. Shared by
the pose members that run a model (ultralytics, mmpose), so the rules and messages are the same.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pseudomasks.errors import UserError
from pseudomasks.species import Species


def check_keypoint_map(names: Any, where: str) -> None:
    """The option's shape, checked with the settings (the model's size is known only later)."""
    if names is None:
        return
    if not isinstance(names, list) or not all(n is None or isinstance(n, str) for n in names):
        raise UserError(
            f"{where}.keypoint_map: must be a list of species keypoint names (or null), "
            "one per model keypoint"
        )
    given = [n for n in names if n is not None]
    if len(set(given)) != len(given):
        raise UserError(f"{where}.keypoint_map: a species keypoint is listed twice")


def keypoint_targets(
    names: list[str | None] | None, model_keypoints: int, species: Species, where: str
) -> np.ndarray:
    """Species index of each model keypoint (-1: not in the species' schema)."""
    if names is None:
        if model_keypoints != len(species.keypoints):
            raise UserError(
                f"{where}: the model has {model_keypoints} keypoints, species "
                f"'{species.name}' has {len(species.keypoints)}; give keypoint_map"
            )
        return np.arange(model_keypoints)
    if len(names) != model_keypoints:
        raise UserError(
            f"{where}.keypoint_map: {len(names)} names for a model with {model_keypoints} "
            "keypoints; give one name (or null) per model keypoint"
        )
    unknown = [n for n in names if n is not None and n not in species.keypoints]
    if unknown:
        raise UserError(
            f"{where}.keypoint_map: {unknown[0]!r} is not a keypoint of species "
            f"'{species.name}' ({', '.join(species.keypoints)})"
        )
    return np.array([-1 if n is None else species.keypoint_index(n) for n in names])


def to_species(keypoints: np.ndarray, targets: np.ndarray, species: Species) -> np.ndarray:
    """Model keypoints ``K×3`` placed into the species' schema; species keypoints the model
    lacks are ``[0, 0, 0]`` (not predicted)."""
    out = np.zeros((len(species.keypoints), 3))
    kept = targets >= 0
    out[targets[kept]] = keypoints[kept]
    return out
