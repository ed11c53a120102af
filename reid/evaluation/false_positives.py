"""How much is a match worth? Its false-positive rate, read off the gallery.

A cosine similarity alone does not say whether a match is likely: a model's descriptors may all
lie close together (similarities of 0.99 between different animals) or far apart. So a match
gets its false-positive rate (biometrics' false-positive identification rate, FPIR), read off
the gallery itself: each gallery photo in turn is searched as a new photo of an animal the
gallery does not know (its own identity left out), and the best score among the other
identities is what a wrong animal reached. The rate is the share of those searches whose best
wrong score is at or above the match's (with an empirical p-value's +1, so never 0): how often a
score this high turns up when the right animal is not there at all. It is calibrated on this
model and this gallery, needs no labels beyond the gallery's, and keeps the ranking (it only
falls as the similarity rises). ``reid identify`` and the retrieval figures both label their
matches with it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

# Gallery photos searched as stand-ins for new photos of unknown animals, to calibrate the
# false-positive rate: all of them up to this many, else this many chosen at random (seeded),
# which bounds the cost for a large gallery.
STAND_IN_SEARCHES = 2000


def unit_rows(features: np.ndarray) -> np.ndarray:
    return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def best_per_identity(
    similarity: np.ndarray, codes: np.ndarray, count: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row and identity (codes 0..count-1 of the columns): the best similarity among that
    identity's columns and the column that has it (the first one on a tie)."""
    best = np.empty((len(similarity), count), dtype=np.float32)
    best_column = np.empty((len(similarity), count), dtype=np.int64)
    rows = np.arange(len(similarity))
    for identity in range(count):
        columns = np.flatnonzero(codes == identity)
        within = similarity[:, columns].argmax(axis=1)
        best_column[:, identity] = columns[within]
        best[:, identity] = similarity[rows, columns[within]]
    return best, best_column


def wrong_animal_scores(gallery_features: np.ndarray, identities: list[str]) -> np.ndarray:
    """Sorted best scores of wrong animals: each gallery photo (at most STAND_IN_SEARCHES of
    them, a seeded choice) searched against the gallery without its own identity."""
    codes, names = pd.factorize(pd.Series(identities), sort=True)
    if len(names) < 2:
        return np.empty(0, dtype=np.float32)
    g = unit_rows(gallery_features)
    rows = np.arange(len(g))
    if len(rows) > STAND_IN_SEARCHES:
        rows = np.sort(np.random.default_rng(0).choice(rows, STAND_IN_SEARCHES, replace=False))
    scores = []
    for start in range(0, len(rows), 256):  # bounded memory for a large gallery
        chunk = rows[start : start + 256]
        best, _ = best_per_identity(g[chunk] @ g.T, codes, len(names))
        best[np.arange(len(chunk)), codes[chunk]] = -np.inf  # the photo's own animal
        scores.append(best.max(axis=1))
    return np.sort(np.concatenate(scores))


def false_positive_rate(score: float, wrong: np.ndarray) -> float | None:
    """(searches whose best wrong score is at or above ``score`` + 1) / (searches + 1), ``wrong``
    from :func:`wrong_animal_scores`; None without any. The +1 is an empirical p-value's: a score
    above every wrong one gets 1/(n+1), "rarer than 1 in n", never an impossible 0."""
    if len(wrong) == 0:
        return None
    at_or_above = len(wrong) - np.searchsorted(wrong, np.float32(score), side="left")
    return float(at_or_above + 1) / (len(wrong) + 1)
