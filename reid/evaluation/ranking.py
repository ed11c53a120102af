"""Exact, chunked ranking of a gallery for every query, reduced to the positions that matter.

Order: descending cosine similarity (ascending distance 1 - dot), ties broken by gallery position.
Similarity and position are folded into one unique uint64 key per (query, gallery item): the high
32 bits are an order-preserving code of the float32 similarity, the low 32 bits the gallery
position. Plain (unstable, SIMD) sorts and comparisons of these keys give exactly the stable
order, and the position of any item is simply the number of keys below its own.

The metrics need only the positions of each query's candidates (its identity's gallery items).
They are found either by sorting each chunk row (needed anyway when full rankings are requested)
or, when every query of a chunk has few candidates, by one vectorised comparison pass per
candidate slot, which on a 200k gallery is several times cheaper than the sort. Queries are processed in order of their
candidate count so that a chunk's counting passes are not padded out by one large identity.
"""

from __future__ import annotations

import sys

import numpy as np

from reid.evaluation.query_scores import QueryScores, score_from_positions
from reid.evaluation.task import RetrievalTask


def counting_limit(num_gallery: int) -> int:
    """Most candidates per query for which counting positions beats sorting the row.

    Measured on a 2-core AVX-512 EPYC with numpy 2.4: a counting pass costs about 1.1 ns per key
    for 1.8k-key rows and 0.4 ns for 200k-key rows; sorting costs 15 and 45 ns per key. The
    break-even (about 14 and 110 candidates) grows faster than log2 of the row length; its
    square over 8 (15 and 40) is a conservative fit.
    """
    return num_gallery.bit_length() ** 2 // 8


_LOW, _HIGH = (0, 1) if sys.byteorder == "little" else (1, 0)
_BYTES_PER_KEY = 4 + 8  # similarity, key
_BYTES_PER_COUNTED_KEY = 1  # comparison mask
_BYTES_PER_RANKED_KEY = 1 + 4  # after-self mask, ranked positions before they are stored


def rank_gallery(
    queries: np.ndarray,
    gallery: np.ndarray,
    task: RetrievalTask,
    chunk_bytes: int,
    with_rankings: bool,
) -> tuple[QueryScores, np.ndarray | None]:
    """Scores of every query and, if asked, its full ranking of gallery positions, best first.

    ``queries`` and ``gallery`` are L2-normalised float32 rows. The rankings (int32, one row per
    query) leave out the query's own image when queries are part of the gallery.
    """
    num_gallery = task.num_gallery
    extra = _BYTES_PER_RANKED_KEY if with_rankings else _BYTES_PER_COUNTED_KEY
    bytes_per_row = num_gallery * (_BYTES_PER_KEY + extra)
    rows_per_chunk = max(1, chunk_bytes // bytes_per_row)
    order = np.argsort(task.candidate_counts(), kind="stable")
    ranking_length = num_gallery - 1 if task.queries_in_gallery else num_gallery
    rankings = (
        np.empty((task.num_queries, ranking_length), dtype=np.int32) if with_rankings else None
    )

    # Buffers are reused across chunks: fresh ones would be page-faulted in every time, which
    # cost a sixth of the run time on a 20k x 200k evaluation.
    buffer_rows = min(rows_per_chunk, task.num_queries)
    similarity_buffer = np.empty((buffer_rows, num_gallery), dtype=np.float32)
    keys_buffer = np.empty((buffer_rows, num_gallery), dtype=np.uint64)
    below_buffer = None if with_rankings else np.empty((buffer_rows, num_gallery), dtype=bool)

    parts = []
    for start in range(0, task.num_queries, rows_per_chunk):
        chunk = order[start : start + rows_per_chunk]
        similarity = np.matmul(queries[chunk], gallery.T, out=similarity_buffer[: len(chunk)])
        keys = ranking_keys(similarity, out=keys_buffer[: len(chunk)])
        rows, cols, is_junk = task.candidates(chunk)
        needles = keys[rows, cols]
        most_candidates = int(np.bincount(rows).max(initial=0))
        if below_buffer is None or most_candidates > counting_limit(num_gallery):
            keys.sort(axis=1)
            positions = _search_sorted_rows(keys, rows, needles)
            if rankings is not None:
                is_self = cols == task.query_self[chunk][rows]
                rankings[chunk] = _ranked_positions(
                    keys, positions[is_self] if is_self.any() else None
                )
        else:
            below = below_buffer[: len(chunk)]
            positions = _count_lower_keys(keys, rows, needles, most_candidates, below)
        parts.append(score_from_positions(rows, positions, is_junk, len(chunk)))

    scores = QueryScores.concatenate(parts).take(np.argsort(order))
    return scores, rankings


def ranking_keys(similarity: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Unique uint64 keys, ascending in (descending similarity, gallery position), per row.

    ``similarity`` (C-contiguous float32) is overwritten; ``out`` receives the keys if given.
    """
    np.add(similarity, 0.0, out=similarity)  # -0.0 -> +0.0, so equal similarities tie
    bits = similarity.view(np.int32)
    keys = np.empty(similarity.shape, dtype=np.uint64) if out is None else out
    words = keys.view(np.int32).reshape(*similarity.shape, 2)
    high = words[..., _HIGH]
    # Non-negative floats order like their bits, negative ones in reverse: flipping all but the
    # sign bit of non-negatives (and nothing of negatives) makes the unsigned word descend with
    # the similarity, non-negatives first.
    np.right_shift(bits, 31, out=high)
    np.invert(high, out=high)
    np.bitwise_and(high, np.int32(0x7FFFFFFF), out=high)
    np.bitwise_xor(high, bits, out=high)
    words[..., _LOW] = np.arange(similarity.shape[1], dtype=np.int32)
    return keys


def _search_sorted_rows(
    sorted_keys: np.ndarray, rows: np.ndarray, needles: np.ndarray
) -> np.ndarray:
    """Position of each needle in its sorted row: a binary search vectorised over needles.

    The count of smaller keys is built from the largest power of two down, one bit per step.
    """
    width = sorted_keys.shape[1]
    flat = sorted_keys.ravel()
    row_start = rows * width
    count = np.zeros(len(needles), dtype=np.int64)
    for bit in reversed(range(width.bit_length())):
        probe = count + (1 << bit) - 1
        inside = probe < width
        below = flat.take(row_start + np.minimum(probe, width - 1)) < needles
        count += (inside & below) << bit
    return count


def _count_lower_keys(
    keys: np.ndarray, rows: np.ndarray, needles: np.ndarray, most_candidates: int, below: np.ndarray
) -> np.ndarray:
    """Position of each needle in its (unsorted) row as the number of smaller keys there.

    ``below`` is a scratch boolean array of the shape of ``keys``.
    """
    per_row = np.bincount(rows, minlength=len(keys))
    slot = np.arange(len(rows)) - (np.cumsum(per_row) - per_row)[rows]
    # Padding slots hold key 0, the smallest possible: they count nothing and are never read.
    slot_needles = np.zeros((len(keys), most_candidates), dtype=np.uint64)
    slot_needles[rows, slot] = needles
    counts = np.empty_like(slot_needles, dtype=np.int64)
    for s in range(most_candidates):
        np.less(keys, slot_needles[:, s : s + 1], out=below)
        # Whole-row counts are SIMD popcounts; count_nonzero(axis=1) is several times slower.
        counts[:, s] = [np.count_nonzero(row) for row in below]
    return counts[rows, slot]


def _ranked_positions(sorted_keys: np.ndarray, self_position: np.ndarray | None) -> np.ndarray:
    """Gallery positions in ranked order, without each query's own image if it is there.

    ``self_position`` holds where each row's own image sits; later entries move up by one.
    """
    ranked = sorted_keys.view(np.int32).reshape(*sorted_keys.shape, 2)[..., _LOW]
    if self_position is None:
        return ranked.copy()
    after_self = np.arange(ranked.shape[1] - 1) >= self_position[:, None]
    return np.where(after_self, ranked[:, 1:], ranked[:, :-1])
