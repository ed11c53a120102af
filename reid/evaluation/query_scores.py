"""Per-query AP, INP and first-hit rank from where a query's candidates sit in its ranking.

Removing junk from a ranking only shifts later items up, so the junk-removed rank of a positive is
its raw position minus the number of junk items ranked before it. Everything below works on the
sparse candidate list (positives and junk), never on whole rankings.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class QueryScores:
    """One entry per query. ``first_rank`` is the 1-based junk-removed rank of the best positive
    (0 when the query has no positive); AP and INP are 0 for such queries."""

    ap: np.ndarray
    inp: np.ndarray
    first_rank: np.ndarray
    num_positives: np.ndarray

    @staticmethod
    def concatenate(parts: list[QueryScores]) -> QueryScores:
        return QueryScores(
            ap=np.concatenate([p.ap for p in parts]),
            inp=np.concatenate([p.inp for p in parts]),
            first_rank=np.concatenate([p.first_rank for p in parts]),
            num_positives=np.concatenate([p.num_positives for p in parts]),
        )

    def take(self, order: np.ndarray) -> QueryScores:
        return QueryScores(
            self.ap[order], self.inp[order], self.first_rank[order], self.num_positives[order]
        )


def score_from_positions(
    rows: np.ndarray, positions: np.ndarray, is_junk: np.ndarray, num_rows: int
) -> QueryScores:
    """Scores of ``num_rows`` queries from their candidates.

    ``positions`` are 0-based positions in the full ranking (junk and the query itself included);
    a query with no candidates simply has no entries.
    """
    # By row, then position (one int64 key: twice as fast as a lexsort of the two).
    order = np.argsort(rows * (int(positions.max(initial=0)) + 1) + positions)
    rows, positions, is_junk = rows[order], positions[order], is_junk[order]

    junk_before = _count_before_within_row(rows, is_junk, num_rows)
    is_positive = ~is_junk
    positive_number = _count_before_within_row(rows, is_positive, num_rows) + 1

    pos_rows = rows[is_positive]
    rank = (positions + 1 - junk_before)[is_positive]
    number = positive_number[is_positive]

    num_positives = np.bincount(pos_rows, minlength=num_rows)
    precision_sum = np.bincount(pos_rows, weights=number / rank, minlength=num_rows)
    ap = np.divide(precision_sum, num_positives, out=np.zeros(num_rows), where=num_positives > 0)

    first_rank = np.zeros(num_rows, dtype=np.int64)
    is_first = number == 1
    first_rank[pos_rows[is_first]] = rank[is_first]

    hardest_rank = np.zeros(num_rows, dtype=np.int64)
    is_last = number == num_positives[pos_rows]
    hardest_rank[pos_rows[is_last]] = rank[is_last]
    inp = np.divide(num_positives, hardest_rank, out=np.zeros(num_rows), where=hardest_rank > 0)
    return QueryScores(ap=ap, inp=inp, first_rank=first_rank, num_positives=num_positives)


def _count_before_within_row(rows: np.ndarray, flags: np.ndarray, num_rows: int) -> np.ndarray:
    """For entries sorted by row: how many flagged entries of the same row precede each one."""
    running = np.cumsum(flags) - flags
    per_row = np.bincount(rows, weights=flags, minlength=num_rows).astype(np.int64)
    row_base = np.cumsum(per_row) - per_row
    return running - row_base[rows]
