"""Who queries whom, as small integer codes, and which gallery items are junk for a query.

Every protocol reduces to the same rule, so the ranking code needs no protocol branches: a gallery
item is junk for a query when it is the query itself, or when it has the query's identity and the
same non-empty junk key (encounter or camera) and, if frames are given, lies within
``frame_window`` frames of the query. Every other item of the query's identity is a positive.

Positives and junk are therefore always items of the query's own identity ("candidates"). Their
number per query is small next to the gallery, which is what lets the metrics be computed from a
few positions per query instead of whole rankings.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

NO_KEY = -1
"""Junk-key code of an empty camera/encounter value: such items are never junk by key."""


@dataclass
class RetrievalTask:
    """Integer-coded labels of the queries and the gallery (codes shared between both sides).

    ``query_self`` holds the gallery position of each query's own image, or -1 when queries are
    not part of the gallery; either every query has one or none has, so rankings with the query
    removed all have the same length.
    """

    query_identity: np.ndarray
    gallery_identity: np.ndarray
    query_junk_key: np.ndarray
    gallery_junk_key: np.ndarray
    query_self: np.ndarray
    query_frame: np.ndarray | None = None
    gallery_frame: np.ndarray | None = None
    frame_window: int = 3
    _gallery_by_identity: np.ndarray = field(init=False, repr=False)
    _identity_start: np.ndarray = field(init=False, repr=False)
    _identity_count: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        has_self = self.query_self >= 0
        if has_self.any() and not has_self.all():
            raise ValueError("either every query is in the gallery or none is")
        if (self.query_frame is None) != (self.gallery_frame is None):
            raise ValueError("frames must be given for both queries and gallery, or neither")
        num_codes = int(max(self.query_identity.max(initial=-1), self.gallery_identity.max())) + 1
        # Gallery positions grouped by identity (ascending within a group): a CSR index that
        # yields each query's candidates without touching the rest of the gallery.
        self._gallery_by_identity = np.argsort(self.gallery_identity, kind="stable")
        self._identity_count = np.bincount(self.gallery_identity, minlength=num_codes)
        self._identity_start = np.cumsum(self._identity_count) - self._identity_count

    @property
    def num_queries(self) -> int:
        return len(self.query_identity)

    @property
    def num_gallery(self) -> int:
        return len(self.gallery_identity)

    @property
    def queries_in_gallery(self) -> bool:
        return bool(self.num_queries) and bool(self.query_self[0] >= 0)

    def candidate_counts(self) -> np.ndarray:
        """Number of same-identity gallery items (positives plus junk) of every query."""
        return self._identity_count[self.query_identity]

    def candidates(self, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Candidates of the given queries as (row in ``queries``, gallery position, is junk).

        Rows come out grouped in ascending order, gallery positions ascending within a row.
        """
        identity = self.query_identity[queries]
        count = self._identity_count[identity]
        rows = np.repeat(np.arange(len(queries)), count)
        row_first = np.cumsum(count) - count
        offset = np.arange(len(rows)) - row_first[rows]
        cols = self._gallery_by_identity[self._identity_start[identity][rows] + offset]

        query_key = self.query_junk_key[queries][rows]
        is_junk = (query_key != NO_KEY) & (query_key == self.gallery_junk_key[cols])
        if self.query_frame is not None and self.gallery_frame is not None:
            frame_gap = np.abs(self.query_frame[queries][rows] - self.gallery_frame[cols])
            is_junk &= frame_gap <= self.frame_window
        is_junk |= cols == self.query_self[queries][rows]
        return rows, cols, is_junk
