"""Evaluate extracted features under a protocol: the one entry point the CLI calls."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from reid.errors import UserError
from reid.evaluation.features import align_features
from reid.evaluation.protocols import build_protocol
from reid.evaluation.query_scores import QueryScores
from reid.evaluation.ranking import rank_gallery
from reid.evaluation.rankings import Rankings

RANKS = (1, 5, 10)
ATRW_RANKS = (1, 5)


@dataclass(frozen=True)
class EvaluationResult:
    """JSON-ready metrics (fractions in [0, 1]) and, when requested, every query's ranking.

    ``rankings`` maps a query image id to all other gallery image ids, best first (the query
    itself left out); it is None unless rankings were requested. It is a read-only mapping that
    builds each list on access (``dict(result.rankings)`` gives a plain dict).
    ``queries_without_match`` counts queries with no positive in their gallery: they score AP 0,
    INP 0 and no rank hit, and stay in every denominator.
    """

    metrics: dict
    queries_without_match: int
    rankings: Rankings | None = None


def evaluate_features(
    features: np.ndarray,
    image_ids: Sequence[str],
    catalogue: pd.DataFrame,
    protocol: str,
    atrw_gt: Path | None = None,
    chunk_bytes: int = 256 * 2**20,
    with_rankings: bool | None = None,
    threads: int | None = None,
) -> EvaluationResult:
    """Rank the protocol's gallery for each of its queries by cosine distance and score it.

    Ties in distance are broken by gallery order (catalogue order). ``chunk_bytes`` bounds the
    working memory of one chunk of queries. ``with_rankings`` (default: only for ``atrw``, whose
    submission needs them) also returns full rankings, which costs a sort of every query row.
    ``threads`` rank blocks of queries in parallel (default: every available CPU).
    """
    if threads is not None and threads < 1:
        raise UserError(f"evaluation needs at least 1 thread, not {threads}")
    setup = build_protocol(catalogue, protocol, atrw_gt)
    if with_rankings is None:
        with_rankings = protocol == "atrw"
    aligned = align_features(features, image_ids, catalogue["image_id"], setup.image_ids)
    scores, ranked = rank_gallery(
        aligned[setup.queries],
        aligned[setup.gallery],
        setup.task,
        chunk_bytes,
        with_rankings,
        threads,
    )
    if setup.query_groups:
        metrics = _grouped_metrics(scores, setup.query_groups)
    else:
        metrics = _retrieval_metrics(scores, RANKS, with_inp=True)
    metrics["num_queries"] = setup.task.num_queries
    metrics["num_gallery"] = setup.task.num_gallery
    rankings = None
    if ranked is not None:
        rankings = Rankings(setup.image_ids[setup.queries], setup.image_ids[setup.gallery], ranked)
    return EvaluationResult(
        metrics=metrics,
        queries_without_match=int((scores.num_positives == 0).sum()),
        rankings=rankings,
    )


def _retrieval_metrics(scores: QueryScores, ranks: tuple[int, ...], with_inp: bool) -> dict:
    """mAP, rank-k (and mINP) over the given queries, each query weighing the same."""
    hit = scores.first_rank > 0
    metrics = {"mAP": float(scores.ap.mean())}
    for k in ranks:
        metrics[f"rank{k}"] = float((hit & (scores.first_rank <= k)).mean())
    if with_inp:
        metrics["mINP"] = float(scores.inp.mean())
    return metrics


def _grouped_metrics(scores: QueryScores, groups: dict[str, np.ndarray]) -> dict:
    """ATRW style: metrics per query group, and mmAP, the mean of the groups' mAPs."""
    metrics: dict = {}
    for name, members in groups.items():
        group = scores.take(np.flatnonzero(members))
        metrics[name] = _retrieval_metrics(group, ATRW_RANKS, with_inp=False)
        metrics[name]["num_queries"] = int(members.sum())
    metrics["mmAP"] = float(np.mean([metrics[name]["mAP"] for name in groups]))
    return metrics
