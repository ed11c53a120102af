"""Exact, chunked ranking of a gallery for every query, reduced to the positions that matter.

Order: descending cosine similarity (ascending distance 1 - dot), ties broken by gallery position.
Similarity and position are folded into one unique uint64 key per (query, gallery item): the high
32 bits are an order-preserving code of the float32 similarity, the low 32 bits the gallery
position. Plain (unstable, SIMD) sorts and comparisons of these keys give exactly the stable
order, and the position of any item is simply the number of keys below its own.

The metrics need only the positions of each query's candidates (its identity's gallery items).
With full rankings requested, every row's keys are sorted and the candidates' keys searched in
them. For the metrics alone, rows of float32 similarities (half the bytes of keys) are sorted, in
segments of at most 512 when queries have few candidates, and a candidate's position is the
number of more similar items summed over the segments (one binary search per segment). numpy's
SIMD sort is a sorting network up to 512 float32 (256 uint64) and several times slower per item
on longer rows, so segments are 3-5x cheaper than a whole-row sort, until the searches (one per
candidate and segment) outweigh it. A candidate whose similarity ties with another item's also
counts the equal items before it in the gallery, found by one comparison over the rest of its
row.

Each chunk's rows are ranked in parallel blocks on threads, each block computing its own
similarities. Queries are processed in order of their candidate count, and a block never mixes
queries above and below the segment search limit.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from functools import cache
from itertools import repeat

import numpy as np
from threadpoolctl import ThreadpoolController

from reid.evaluation.query_scores import QueryScores, score_from_positions
from reid.evaluation.task import RetrievalTask

SEGMENT = 512
"""Most float32 similarities per sorted segment (the longest sort numpy does as a network)."""

SEGMENT_SEARCH_LIMIT = 64
"""Most candidates per query for which rows are sorted in segments rather than whole.

Measured (2-core AVX-512 EPYC, numpy 2.4): segments and a whole float32 row cost the same at
about 64, 190 and 250 candidates on galleries of 1.8k, 20k and 200k items, so 64 is right for
galleries of wildlife size and cautious for larger ones. Either is 2x faster than sorting keys.
"""

_LOW, _HIGH = (0, 1) if sys.byteorder == "little" else (1, 0)
# Working memory per (query, gallery item) of a chunk. With rankings: similarity, key, after-self
# mask, ranked position before it is stored. Without: similarity, its sorted copy (padded) and the
# searches' arrays, about 40 bytes per candidate and segment, bounded by searching at most one
# (candidate, segment) pair per _ITEMS_PER_SEARCH items at a time.
_ITEMS_PER_SEARCH = 8
_BYTES_PER_ITEM = max(4 + 8 + 1 + 4, 4 + 4 + 40 // _ITEMS_PER_SEARCH)


def available_cpus() -> int:
    """CPUs this process may run on (the Slurm/cgroup share, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def rank_gallery(
    queries: np.ndarray,
    gallery: np.ndarray,
    task: RetrievalTask,
    chunk_bytes: int,
    with_rankings: bool,
    threads: int | None = None,
) -> tuple[QueryScores, np.ndarray | None]:
    """Scores of every query and, if asked, its full ranking of gallery positions, best first.

    ``queries`` and ``gallery`` are L2-normalised float32 rows. The rankings (int32, one row per
    query) leave out the query's own image when queries are part of the gallery. A chunk's rows
    are ranked in ``threads`` blocks at once, each computing its own similarities (numpy releases
    the GIL in matmuls, sorts and comparisons); default: every available CPU.
    """
    num_gallery = task.num_gallery
    threads = threads or available_cpus()
    rows_per_chunk = max(1, chunk_bytes // (num_gallery * _BYTES_PER_ITEM))
    candidate_counts = task.candidate_counts()
    order = np.argsort(candidate_counts, kind="stable")
    ranking_length = num_gallery - 1 if task.queries_in_gallery else num_gallery
    rankings = (
        np.empty((task.num_queries, ranking_length), dtype=np.int32) if with_rankings else None
    )

    # Buffers are reused across chunks: fresh ones would be page-faulted in every time, which
    # cost a sixth of the run time on a 20k x 200k evaluation. Blocks own disjoint rows of them.
    buffer_rows = min(rows_per_chunk, task.num_queries)
    similarity_buffer = np.empty((buffer_rows, num_gallery), dtype=np.float32)
    scratch = _Scratch(buffer_rows, num_gallery, with_rankings)

    def rank_block(chunk: np.ndarray, lo: int, hi: int) -> QueryScores:
        block = chunk[lo:hi]
        similarity = np.matmul(queries[block], gallery.T, out=similarity_buffer[lo:hi])
        rows, cols, is_junk = task.candidates(block)
        if rankings is not None:
            positions, keys = _positions_by_sorted_keys(similarity, rows, cols, scratch.keys[lo:hi])
            is_self = cols == task.query_self[block][rows]
            rankings[block] = _ranked_positions(keys, positions[is_self] if is_self.any() else None)
        else:
            few = candidate_counts[block].max(initial=0) <= SEGMENT_SEARCH_LIMIT
            segments = _segment_layout(num_gallery, SEGMENT if few else num_gallery)
            size = (hi - lo) * segments[0] * segments[1]
            buffer = scratch.segments[lo * scratch.padded_width :][:size]
            positions = _positions_by_sorted_segments(
                similarity, rows, cols, buffer.reshape(hi - lo, *segments)
            )
        return score_from_positions(rows, positions, is_junk, len(block))

    parts = []
    # Blocks in parallel run single-threaded BLAS: BLAS threads that spin-wait after a
    # multi-threaded matmul would take the cores from the other blocks' sorts.
    blas_limit = (
        _blas_controller().limit(limits=1, user_api="blas") if threads > 1 else nullcontext()
    )
    with ThreadPoolExecutor(threads) as pool, blas_limit:
        for start in range(0, task.num_queries, rows_per_chunk):
            chunk = order[start : start + rows_per_chunk]
            # One block per thread, and a cut where the candidate counts (ascending) pass the
            # segment search limit, so no block mixes the two ways of positioning candidates.
            limit = np.searchsorted(candidate_counts[chunk], SEGMENT_SEARCH_LIMIT, side="right")
            even = np.linspace(0, len(chunk), min(threads, len(chunk)) + 1).astype(int)
            bounds = np.union1d(even, limit)
            parts += pool.map(rank_block, repeat(chunk), bounds[:-1], bounds[1:])

    scores = QueryScores.concatenate(parts).take(np.argsort(order))
    return scores, rankings


@cache
def _blas_controller() -> ThreadpoolController:
    """The thread pools of the loaded BLAS libraries (found once: the search takes a millisecond)."""
    return ThreadpoolController()


class _Scratch:
    """Per-item working arrays of a chunk: keys with rankings, else padded sorted similarities
    (flat, so that each block takes a contiguous stretch of its own rows)."""

    def __init__(self, rows: int, width: int, with_rankings: bool):
        self.keys = np.empty((rows, width), dtype=np.uint64) if with_rankings else None
        num, length = _segment_layout(width, SEGMENT)
        self.padded_width = num * length
        self.segments = None if with_rankings else np.empty(rows * num * length, np.float32)


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


def _positions_by_sorted_keys(
    similarity: np.ndarray, rows: np.ndarray, cols: np.ndarray, keys_out: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the candidates (``rows``, ``cols``) and the rows' sorted keys."""
    keys = ranking_keys(similarity, out=keys_out)
    needles = keys[rows, cols]
    keys.sort(axis=1)
    below, _ = _search_segments(keys[:, None, :], rows, needles)
    return below[:, 0], keys


def _segment_layout(width: int, most: int) -> tuple[int, int]:
    """Number and length of the equal segments, at most ``most`` long, a row is cut into."""
    num = -(-width // most)
    return num, -(-width // num)


def _positions_by_sorted_segments(
    similarity: np.ndarray, rows: np.ndarray, cols: np.ndarray, segments: np.ndarray
) -> np.ndarray:
    """Positions of the candidates (``rows``, ``cols``): the number of more similar items in
    each sorted segment of their row, summed, plus the equally similar items earlier in it.

    ``segments`` is the (rows, number, length) buffer the sorted segments are written to.
    """
    num_rows, width = similarity.shape
    padded = segments.reshape(num_rows, -1)
    padded[:, :width] = similarity
    padded[:, width:] = -np.inf  # less similar than anything
    segments.sort(axis=2)
    needles = similarity[rows, cols]
    below = np.empty(len(rows), dtype=np.int64)
    tied = np.empty(len(rows), dtype=bool)
    batch = max(1, num_rows * width // _ITEMS_PER_SEARCH // segments.shape[1])
    for start in range(0, len(rows), batch):
        part = slice(start, start + batch)
        segment_below, start = _search_segments(segments, rows[part], needles[part])
        below[part] = segment_below.sum(axis=1)
        tied[part] = _ties(segments, segment_below, start, needles[part])
    # Of the items as similar as a needle, those at or after its gallery position (itself
    # included) are not ranked before it; without a tie that is the needle alone.
    equal_from_here = np.ones(len(rows), dtype=np.int64)
    for k in np.flatnonzero(tied):
        equal_from_here[k] = np.count_nonzero(similarity[rows[k], cols[k] :] == needles[k])
    return padded.shape[1] - below - equal_from_here


def _search_segments(
    segments: np.ndarray, rows: np.ndarray, needles: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """How many values lie below each needle in each ascending segment of its row.

    ``segments`` is (rows, segments, length), C-contiguous. Returns the counts and the flat
    start of each segment, both (needles, segments). One binary search vectorised over needles
    and segments: the count is built from the largest power of two down, one bit per step.
    """
    _, num, length = segments.shape
    values = segments.reshape(-1)
    start = (rows[:, None] * num + np.arange(num)) * length
    below = np.zeros(start.shape, dtype=np.int64)
    column = needles[:, None]
    for bit in reversed(range(length.bit_length())):
        probe = below + ((1 << bit) - 1)
        inside = probe < length
        np.minimum(probe, length - 1, out=probe)
        probe += start
        below += (inside & (values.take(probe) < column)) << bit
    return below, start


def _ties(
    segments: np.ndarray, below: np.ndarray, start: np.ndarray, needles: np.ndarray
) -> np.ndarray:
    """Whether a value other than the needle itself equals it, from ``_search_segments``.

    Each needle sits at index ``below`` of its own segment. Another value equal to it is at
    index ``below`` of another segment or right after that index in any segment.
    """
    values = segments.reshape(-1)
    length = segments.shape[2]
    column = needles[:, None]
    at = (below < length) & (values.take(start + np.minimum(below, length - 1)) == column)
    next_at = (below + 1 < length) & (
        values.take(start + np.minimum(below + 1, length - 1)) == column
    )
    return (at.sum(axis=1) > 1) | next_at.any(axis=1)


def _ranked_positions(sorted_keys: np.ndarray, self_position: np.ndarray | None) -> np.ndarray:
    """Gallery positions in ranked order, without each query's own image if it is there.

    ``self_position`` holds where each row's own image sits; later entries move up by one.
    """
    ranked = sorted_keys.view(np.int32).reshape(*sorted_keys.shape, 2)[..., _LOW]
    if self_position is None:
        return ranked.copy()
    after_self = np.arange(ranked.shape[1] - 1) >= self_position[:, None]
    return np.where(after_self, ranked[:, 1:], ranked[:, :-1])
