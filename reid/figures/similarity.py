"""What a match rests on: each photo's share of a query-match similarity, cell by cell.

For a convolutional baseline the descriptor is the average of per-cell descriptors
(:meth:`reid.models.ReidBaseline.cell_descriptors`), so the cosine similarity of a query q and a
match g splits exactly over either photo's cells:

    cos(q, g) = Σ_ij  D^q_ij · d^g / (h w |d^q| |d^g|)

where d = mean_ij D_ij is each photo's descriptor. The figure shows, for some test queries and
their best matches (from the evaluation protocol, as the retrieval figure picks them), the query's
cells' shares of the similarity with each match beside the match's cells' shares with the query:
stripes lighting up on both means the model matched the coat; grass lighting up means it matched
the setting. The heat is a cell's share times h w (the mean over a map is the pair's cosine),
on one scale for every panel of the figure, so a weak match looks weak.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from reid.data.crops import AnimalBox
from reid.data.transforms import Normalisation, to_tensor
from reid.errors import UserError
from reid.figures.retrieval import QUERY, Match, QueryResult, match_colour, match_label
from reid.figures.thumbnails import framed, heat_overlay, label_strip, model_views, save_png
from reid.models import ReidBaseline

log = logging.getLogger(__name__)

LABEL_HEIGHT = 18
GAP = 4
QUERY_GAP = 12
PAIR_GAP = 10
ROW_GAP = 8
MARGIN = 8
SCALE_PERCENTILE = 99.0
SIMILARITY_TOLERANCE = 0.01
"""How far a pair's cosine from the cells may be from the similarity it was ranked by: bf16
extraction moves it by about 1e-3; more means other weights, crops or photos."""


def split_similarity(
    query_cells: np.ndarray, match_cells: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    """Each photo's cells' shares of the two descriptors' cosine similarity.

    ``query_cells`` D×h×w and ``match_cells`` D×h'×w' are per-cell descriptors whose means over
    the cells are the two descriptors. Returns the query's h×w shares, the match's h'×w' shares
    and the cosine; each map sums to the cosine.
    """
    q = query_cells.reshape(query_cells.shape[0], -1).astype(np.float64)
    g = match_cells.reshape(match_cells.shape[0], -1).astype(np.float64)
    dq, dg = q.mean(axis=1), g.mean(axis=1)
    norm = np.linalg.norm(dq) * np.linalg.norm(dg)
    if norm == 0:
        raise UserError("a descriptor is all zeros, so its cosine similarity is undefined")
    query_share = (dg @ q) / (q.shape[1] * norm)
    match_share = (dq @ g) / (g.shape[1] * norm)
    return (
        query_share.reshape(query_cells.shape[1:]),
        match_share.reshape(match_cells.shape[1:]),
        float(dq @ dg / norm),
    )


@dataclass(frozen=True)
class MatchShares:
    """One match of a query with both photos' cell shares (each summing to ``cosine``)."""

    match: Match
    view: np.ndarray  # the match as the model sees it, S×S×3 uint8
    query_share: np.ndarray  # h×w
    match_share: np.ndarray  # h×w
    cosine: float


@dataclass(frozen=True)
class SimilarityRow:
    """One row of the figure: a query, its view as the model sees it (S×S×3 uint8) and its
    matches' shares."""

    query: QueryResult
    view: np.ndarray
    matches: list[MatchShares]


def similarity_rows(
    model: torch.nn.Module,
    results: Sequence[QueryResult],
    img_size: int,
    device: torch.device,
    normalisation: Normalisation,
    boxes: Mapping[str, AnimalBox] | None = None,
    flip_test: bool = False,
) -> list[SimilarityRow]:
    """Each query's and match's view and cell descriptors, split into the pairs' shares.

    ``boxes`` maps image ids to the animal boxes extraction cut them to (None: whole photos).
    With ``flip_test`` the descriptor is the photo's and its mirror image's concatenated, so a
    cell's descriptor is its own beside its mirror cell's (the mirror's map flipped back), whose
    mean over the cells is that concatenation: the split stays exact.
    """
    if not isinstance(model, ReidBaseline):
        raise UserError(
            f"similarity maps need a convolutional baseline (cnn_*, resnet*, ...), not "
            f"{type(model).__name__}; for PAW-ViT draw its part attention (`reid figure attention`)"
        )
    if not results:
        raise UserError("no queries to draw in the similarity figure")
    images: dict[str, Path] = {}
    for result in results:
        images[result.image_id] = result.path
        images.update({m.image_id: m.path for m in result.matches})
    ids = list(images)
    box_list = None if boxes is None else [boxes.get(i) for i in ids]
    views = model_views([images[i] for i in ids], box_list, img_size)
    cells = []
    with torch.inference_mode():
        for start in range(0, len(ids), 32):
            batch = torch.stack([to_tensor(v, normalisation) for v in views[start : start + 32]])
            batch_cells = model.cell_descriptors(batch.to(device))
            if flip_test:
                mirrored = model.cell_descriptors(batch.flip(3).to(device)).flip(3)
                batch_cells = torch.cat([batch_cells, mirrored], dim=1)
            cells.append(batch_cells.float().cpu().numpy())
    by_id = dict(zip(ids, zip(views, np.concatenate(cells), strict=True), strict=True))
    rows = []
    for result in results:
        query_view, query_cells = by_id[result.image_id]
        shares = []
        for match in result.matches:
            match_view, match_cells = by_id[match.image_id]
            query_share, match_share, cosine = split_similarity(query_cells, match_cells)
            shares.append(MatchShares(match, match_view, query_share, match_share, cosine))
        rows.append(SimilarityRow(result, query_view, shares))
    return rows


def trained_model_rows(
    model: torch.nn.Module,
    config: Mapping,
    results: Sequence[QueryResult],
    device: torch.device,
    boxes: Mapping[str, AnimalBox] | None = None,
) -> list[SimilarityRow]:
    """:func:`similarity_rows` at a trained model's own input size, normalisation and flip test
    (its model.json ``config``)."""
    from reid.engine.extract import flip_tested

    return similarity_rows(
        model,
        results,
        config["model"]["img_size"],
        device,
        Normalisation.of(config["model"]),
        boxes,
        flip_tested(config),
    )


def largest_disagreement(rows: Sequence[SimilarityRow]) -> float:
    """The largest difference between a pair's cosine from the cells and the similarity the match
    was ranked by (0 without matches)."""
    return max(
        (abs(m.cosine - m.match.similarity) for row in rows for m in row.matches), default=0.0
    )


def warn_if_disagreeing(rows: Sequence[SimilarityRow], ranked_by: str, likely_cause: str) -> None:
    """Log a warning when the cells' cosines stray from the similarities the matches were ranked
    by (``ranked_by``) by more than :data:`SIMILARITY_TOLERANCE`; ``likely_cause`` says what to
    check."""
    worst = largest_disagreement(rows)
    if worst > SIMILARITY_TOLERANCE:
        log.warning(
            "the similarity figure's cells give cosines up to %.3f away from %s: %s",
            worst,
            ranked_by,
            likely_cause,
        )


def draw_similarity(rows: Sequence[SimilarityRow], out: Path, side: int = 144) -> float:
    """Write the figure: per query row, the query, then for each match the query's shares of
    their similarity beside the match's (framed right or wrong, labelled as in the retrieval
    figure). Returns the heat value drawn brightest (shared by every panel)."""
    if not rows:
        raise UserError("no queries to draw in the similarity figure")
    maps = [_per_cell(m.query_share) for r in rows for m in r.matches]
    maps += [_per_cell(m.match_share) for r in rows for m in r.matches]
    top = (
        float(np.percentile(np.concatenate([m.ravel() for m in maps]), SCALE_PERCENTILE))
        if maps
        else 1.0
    )
    top = top if top > 0 else 1.0
    most = max(len(r.matches) for r in rows)
    width = 2 * MARGIN + side + QUERY_GAP + most * (2 * side + GAP) + max(most - 1, 0) * PAIR_GAP
    row_height = side + LABEL_HEIGHT
    height = 2 * MARGIN + len(rows) * (row_height + ROW_GAP) - ROW_GAP
    canvas = np.full((height, width, 3), 255, np.uint8)
    frame = max(2, side // 36)
    for r, row in enumerate(rows):
        y0 = MARGIN + r * (row_height + ROW_GAP)
        identity = row.query.identity if row.query.identity is not None else "?"
        query_image = _square(row.view, side)
        tiles = [(query_image, QUERY, f"query {identity}")]
        for rank, shares in enumerate(row.matches, start=1):
            match_image = _square(shares.view, side)
            tiles.append(
                (
                    _heat(query_image, shares.query_share, top),
                    QUERY,
                    f"#{rank} cos {shares.cosine:.2f}",
                )
            )
            tiles.append(
                (
                    _heat(match_image, shares.match_share, top),
                    match_colour(shares.match),
                    match_label(shares.match),
                )
            )
        x = MARGIN
        for t, (image, colour, text) in enumerate(tiles):
            canvas[y0 : y0 + side, x : x + side] = framed(image, colour, frame)
            canvas[y0 + side : y0 + row_height, x : x + side] = label_strip(
                text, side, LABEL_HEIGHT
            )
            x += side + (QUERY_GAP if t == 0 else GAP if t % 2 else PAIR_GAP)
    save_png(canvas, out)
    return top


def _square(view: np.ndarray, side: int) -> np.ndarray:
    return cv2.resize(view, (side, side), interpolation=cv2.INTER_AREA)


def _per_cell(share: np.ndarray) -> np.ndarray:
    """A share map times its cell count: the scale of one cell's share whatever the grid (a
    similarity spread evenly over the cells is that similarity in every cell)."""
    return share * share.size


def _heat(image: np.ndarray, share: np.ndarray, top: float) -> np.ndarray:
    """The share map, per cell, over ``image``: 0 and below dark, ``top`` brightest."""
    side = image.shape[0]
    scaled = (_per_cell(share) / top).astype(np.float32)
    return heat_overlay(image, cv2.resize(scaled, (side, side), interpolation=cv2.INTER_NEAREST))
