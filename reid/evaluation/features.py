"""Match extracted features to the evaluated catalogue rows and L2-normalise them.

Features come in whatever order extraction produced them; evaluation order (and so the tie-break
order of the gallery) is the catalogue's, so results never depend on extraction order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from reid.errors import UserError


def _examples(ids: Sequence[str]) -> str:
    return ", ".join(repr(str(i)) for i in ids[:3])


def align_features(
    features: np.ndarray,
    image_ids: Sequence[str],
    catalogue_ids: pd.Series,
    evaluated_ids: np.ndarray,
) -> np.ndarray:
    """Unit-length float32 features of ``evaluated_ids``, one row each, in that order."""
    features = np.asarray(features)
    if features.ndim != 2 or features.shape[0] != len(image_ids):
        raise UserError(
            f"features have shape {features.shape} for {len(image_ids)} image ids; "
            "expected one row per image id (N x D); re-run feature extraction"
        )
    index = pd.Index(np.asarray(image_ids, dtype=object))
    if index.has_duplicates:
        duplicate = index[index.duplicated()][0]
        raise UserError(f"features list image_id {duplicate!r} twice; re-run feature extraction")
    unknown = index[~index.isin(catalogue_ids)]
    if len(unknown):
        raise UserError(
            f"{len(unknown)} feature image ids are not in the catalogue (e.g. "
            f"{_examples(unknown)}); extract features with the same catalogue"
        )
    rows = index.get_indexer(evaluated_ids)
    missing = evaluated_ids[rows < 0]
    if len(missing):
        raise UserError(
            f"{len(missing)} evaluated catalogue images have no feature (e.g. "
            f"{_examples(missing)}); re-run feature extraction on the whole catalogue"
        )
    aligned = features[rows].astype(np.float32, copy=False)
    if not np.isfinite(aligned).all():
        bad = evaluated_ids[~np.isfinite(aligned).all(axis=1)]
        raise UserError(f"features of {len(bad)} images are not finite (e.g. {_examples(bad)})")
    norms = np.linalg.norm(aligned, axis=1, keepdims=True)
    if (norms == 0).any():
        zero = evaluated_ids[norms[:, 0] == 0]
        raise UserError(
            f"features of {len(zero)} images are all zero (e.g. {_examples(zero)}); "
            "cosine distance is undefined for them"
        )
    aligned /= norms
    return aligned
