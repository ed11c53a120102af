"""Top-k retrieval grid (paper Figs. 7 and 9): each query beside its best gallery matches.

The matches come from the evaluation protocol itself (same queries, gallery and junk rule as the
metrics), so the figure shows what the numbers measured: a near-duplicate shot of the same
encounter or camera, which the metrics ignore, is never shown as an easy "correct" match.
Several models can be drawn side by side on the same queries so they compare at a glance. Each
match is labelled with its false-positive rate on the protocol's gallery, as ``reid identify``
labels its matches: unlike a cosine similarity it means the same for every model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reid.errors import UserError
from reid.evaluation.false_positives import false_positive_rate, wrong_animal_scores
from reid.evaluation.features import align_features
from reid.evaluation.protocols import build_protocol
from reid.figures.thumbnails import framed, label_strip, save_png, thumbnail

CORRECT = (0, 170, 0)
WRONG = (220, 0, 0)
UNKNOWN = (150, 150, 150)
QUERY = (0, 90, 200)

HEADER_HEIGHT = 24
LABEL_HEIGHT = 18
TILE_GAP = 4
QUERY_GAP = 12  # wider gap after the query, so it reads as the question and not a match
ROW_GAP = 8
MODEL_GAP = 28
MARGIN = 8


@dataclass(frozen=True)
class Match:
    """One retrieved gallery image; ``correct`` is None when the query's identity is unknown."""

    image_id: str
    path: Path
    identity: str
    similarity: float
    correct: bool | None
    # How often a wrong animal scores this high on the gallery (reid.evaluation.false_positives),
    # shown instead of the similarity; None where the gallery cannot give one.
    false_positive_rate: float | None = None


@dataclass(frozen=True)
class QueryResult:
    """A query and its top-k gallery matches, best first; ``identity`` None when unknown."""

    image_id: str
    path: Path
    identity: str | None
    matches: list[Match]


@dataclass(frozen=True)
class Tile:
    """Where one thumbnail of the grid was drawn: ``box`` is (x0, y0, x1, y1), ends exclusive.

    ``rank`` 0 is the query, 1..k its matches; ``row`` is the query's position in the results.
    """

    model: str
    row: int
    rank: int
    box: tuple[int, int, int, int]
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class RetrievalLayout:
    """The drawn figure's size and every tile in it, so callers can locate and check tiles."""

    width: int
    height: int
    tiles: tuple[Tile, ...]

    def tile(self, model: str, row: int, rank: int) -> Tile:
        for tile in self.tiles:
            if (tile.model, tile.row, tile.rank) == (model, row, rank):
                return tile
        raise KeyError(f"no tile for model {model!r}, row {row}, rank {rank}")


def top_k_matches(
    features: np.ndarray,
    image_ids: Sequence[str],
    catalogue: pd.DataFrame,
    root: Path,
    protocol: str,
    k: int = 5,
    queries: Sequence[str] | int = 6,
    atrw_gt: Path | None = None,
) -> list[QueryResult]:
    """The k most cosine-similar non-junk gallery images of some of the protocol's queries.

    ``queries`` is either a number n, giving n queries spread evenly over the protocol's queries
    sorted by image id (deterministic, so every model is shown the same queries), or a list of
    query image ids. Ties in similarity go to the earlier gallery image, as in the metrics. An
    empty catalogue identity counts as unknown: its matches are neither correct nor wrong. Each
    match's false-positive rate is calibrated on the protocol's gallery; there is none when the
    gallery has fewer than two identities or any unknown one.
    """
    if k < 1:
        raise UserError(f"top-k retrieval needs k >= 1, got {k}")
    setup = build_protocol(catalogue, protocol, atrw_gt)
    aligned = align_features(features, image_ids, catalogue["image_id"], setup.image_ids)
    query_ids = setup.image_ids[setup.queries]
    gallery_ids = setup.image_ids[setup.gallery]
    chosen = _choose_queries(query_ids, queries, protocol)

    similarity = aligned[setup.queries][chosen] @ aligned[setup.gallery].T
    usable = np.ones(similarity.shape, dtype=bool)
    rows, cols, is_junk = setup.task.candidates(chosen)
    usable[rows[is_junk], cols[is_junk]] = False

    by_id = catalogue.set_index("image_id")
    gallery_identities = by_id.loc[gallery_ids, "identity"].astype(str).tolist()
    wrong = (
        wrong_animal_scores(aligned[setup.gallery], gallery_identities)
        if all(gallery_identities)
        else np.empty(0, dtype=np.float32)
    )
    results = []
    for row, query in enumerate(chosen):
        query_id = query_ids[query]
        query_identity = str(by_id.at[query_id, "identity"]) or None
        order = np.argsort(-similarity[row], kind="stable")
        matches = []
        for g in order[usable[row, order]][:k]:
            identity = gallery_identities[g]
            matches.append(
                Match(
                    image_id=gallery_ids[g],
                    path=Path(root) / by_id.at[gallery_ids[g], "path"],
                    identity=identity,
                    similarity=float(similarity[row, g]),
                    correct=None if query_identity is None else identity == query_identity,
                    false_positive_rate=false_positive_rate(similarity[row, g], wrong),
                )
            )
        query_path = Path(root) / by_id.at[query_id, "path"]
        results.append(QueryResult(query_id, query_path, query_identity, matches))
    return results


def evenly_spread(total: int, n: int) -> np.ndarray:
    """``min(n, total)`` distinct positions in ``range(total)`` spread evenly, first and last
    included: a deterministic sample that covers a sorted list from end to end."""
    count = min(n, total)
    # linspace steps are >= 1 when count <= total, so rounding never repeats a position.
    return np.linspace(0, total - 1, count).round().astype(int)


def _choose_queries(
    query_ids: np.ndarray, queries: Sequence[str] | int, protocol: str
) -> np.ndarray:
    """Positions in ``query_ids`` of the requested queries."""
    if isinstance(queries, (int, np.integer)):
        if queries < 1:
            raise UserError(f"the retrieval figure needs at least 1 query, got {queries}")
        by_id = np.argsort(query_ids.astype(str), kind="stable")
        return by_id[evenly_spread(len(by_id), queries)]
    if not len(queries):
        raise UserError("the retrieval figure needs at least 1 query, got an empty list")
    position = {image_id: i for i, image_id in enumerate(query_ids)}
    missing = [q for q in queries if q not in position]
    if missing:
        raise UserError(
            f"image id {missing[0]!r} is not a query of the {protocol} protocol for this "
            "catalogue; pick query images (split query, or test for all-vs-all and atrw)"
        )
    return np.array([position[q] for q in queries], dtype=int)


def draw_retrieval(
    results: Mapping[str, Sequence[QueryResult]], out: Path, side: int = 128
) -> RetrievalLayout:
    """Write the grid of every model's results to ``out`` (PNG) and return where each tile is.

    One row per query; per model, in the mapping's order, a block of the query (framed in the
    QUERY colour) and its matches framed CORRECT, WRONG or UNKNOWN, the model's name above the
    block and each tile's :func:`match_label` under it.
    """
    if not results:
        raise UserError("no model results to draw in the retrieval figure")
    models = list(results)
    reference = [r.image_id for r in results[models[0]]]
    if not reference:
        raise UserError(f"model {models[0]!r} has no queries to draw in the retrieval figure")
    for model in models[1:]:
        ids = [r.image_id for r in results[model]]
        if ids != reference:
            raise UserError(
                f"model {model!r} shows queries {ids} but {models[0]!r} shows {reference}; "
                "select the same queries for every model of the retrieval figure"
            )

    frame = max(2, side // 32)
    row_height = side + LABEL_HEIGHT
    block_widths = [_block_width(_num_matches(results[m]), side) for m in models]
    width = 2 * MARGIN + sum(block_widths) + MODEL_GAP * (len(models) - 1)
    height = 2 * MARGIN + HEADER_HEIGHT + len(reference) * (row_height + ROW_GAP) - ROW_GAP
    canvas = np.full((height, width, 3), 255, np.uint8)
    thumbs: dict[Path, np.ndarray] = {}  # queries recur in every block: read each image once
    tiles = []
    block_x = MARGIN
    for model, block_width in zip(models, block_widths, strict=True):
        canvas[MARGIN : MARGIN + HEADER_HEIGHT, block_x : block_x + block_width] = label_strip(
            model, block_width, HEADER_HEIGHT
        )
        for row, result in enumerate(results[model]):
            y0 = MARGIN + HEADER_HEIGHT + row * (row_height + ROW_GAP)
            query_text = f"query {result.identity if result.identity is not None else '?'}"
            drawn = [(result.path, QUERY, query_text)] + [
                (m.path, match_colour(m), match_label(m)) for m in result.matches
            ]
            for rank, (path, colour, text) in enumerate(drawn):
                x0 = block_x + _block_width(rank, side) - side  # right end of `rank` tiles
                if path not in thumbs:
                    thumbs[path] = thumbnail(path, side)
                canvas[y0 : y0 + side, x0 : x0 + side] = framed(thumbs[path], colour, frame)
                canvas[y0 + side : y0 + row_height, x0 : x0 + side] = label_strip(
                    text, side, LABEL_HEIGHT
                )
                tiles.append(Tile(model, row, rank, (x0, y0, x0 + side, y0 + side), colour))
        block_x += block_width + MODEL_GAP

    save_png(canvas, out)
    return RetrievalLayout(width, height, tuple(tiles))


def _num_matches(results: Sequence[QueryResult]) -> int:
    return max(len(r.matches) for r in results)


def _block_width(num_matches: int, side: int) -> int:
    """Width of a query tile followed by ``num_matches`` match tiles."""
    if num_matches == 0:
        return side
    return 2 * side + QUERY_GAP + (num_matches - 1) * (side + TILE_GAP)


def match_label(match: Match) -> str:
    """Identity and similarity under a tile, or identity and false-positive rate when the match
    has one (the rate is what says how much the match is worth)."""
    if match.false_positive_rate is None:
        return f"{match.identity} {match.similarity:.2f}"
    return f"{match.identity} fpr {match.false_positive_rate:.2g}"


def match_colour(match: Match) -> tuple[int, int, int]:
    if match.correct is None:
        return UNKNOWN
    return CORRECT if match.correct else WRONG
