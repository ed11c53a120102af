"""Every query's ranking of the gallery as a read-only mapping, query image id -> gallery ids.

Rankings are kept as one int32 array of gallery positions (4 bytes per entry) and turned into
lists of image ids only when a query's ranking is read. A dict of lists would hold a pointer per
entry and per-list overhead: 3x the memory on ATRW, and far more on larger all-vs-all sets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np


class Rankings(Mapping[str, list[str]]):
    """Query image id -> all gallery image ids but the query's own, best first."""

    def __init__(self, query_ids: np.ndarray, gallery_ids: np.ndarray, positions: np.ndarray):
        """``positions[i]`` are the ranked gallery positions (into ``gallery_ids``) of query i."""
        self.query_ids = query_ids
        self.gallery_ids = gallery_ids
        self.positions = positions
        self._row = {query: row for row, query in enumerate(query_ids.tolist())}

    def __getitem__(self, query_id: str) -> list[str]:
        return self.gallery_ids[self.positions[self._row[query_id]]].tolist()

    def __iter__(self) -> Iterator[str]:
        return iter(self._row)

    def __len__(self) -> int:
        return len(self._row)
