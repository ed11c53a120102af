"""The official ATRW plain re-ID submission: every test image's full ranking of the others."""

from __future__ import annotations

import numpy as np

from reid.errors import UserError
from reid.evaluation.evaluate import EvaluationResult


def atrw_submission(result: EvaluationResult) -> list[dict]:
    """``[{"query_id": int, "ans_ids": [int, ...]}]`` from an ``atrw`` evaluation's rankings.

    ATRW numbers images by ``imgid``; catalogue test ids are ``test/{imgid:06d}``, so the number
    is the last path part of the id. Rankings already leave the query itself out.
    """
    rankings = result.rankings
    if rankings is None:
        raise ValueError("the evaluation was run without rankings; pass with_rankings=True")
    gallery_numbers = np.array([_imgid(i) for i in rankings.gallery_ids.tolist()])
    return [
        {"query_id": _imgid(query), "ans_ids": gallery_numbers[positions].tolist()}
        for query, positions in zip(rankings.query_ids.tolist(), rankings.positions, strict=True)
    ]


def _imgid(image_id: str) -> int:
    last = image_id.rsplit("/", 1)[-1]
    if not (last.isascii() and last.isdigit()):
        raise UserError(
            f"image id {image_id!r} is not an ATRW test id test/NNNNNN; "
            "build the catalogue with the ATRW adapter"
        )
    return int(last)
