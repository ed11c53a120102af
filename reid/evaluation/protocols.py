"""Turn a catalogue into the queries, gallery and junk rule of an evaluation protocol.

- ``all-vs-all``: split ``test``; every image queries all others; junk = same identity and same
  non-empty ``encounter`` (Nyala-like data, where shots of one encounter are near-duplicates).
- ``query-gallery``: split ``query`` against split ``gallery`` (Market/YakReID style); junk = same
  identity and same non-empty ``camera``.
- ``atrw``: the official ATRW plain re-ID protocol on split ``test``; junk = same identity, same
  camera and at most 3 frames apart; queries are scored separately by group (``sing`` →
  single_cam, ``multi`` → cross_cam). Labels come from the official ground truth when given.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from reid.errors import UserError
from reid.evaluation.atrw_ground_truth import ATRW_GROUPS, load_atrw_ground_truth
from reid.evaluation.task import NO_KEY, RetrievalTask

PROTOCOLS = ("all-vs-all", "query-gallery", "atrw")
ATRW_FRAME_WINDOW = 3
ATRW_GROUP_NAMES = {"sing": "single_cam", "multi": "cross_cam"}


@dataclass(frozen=True)
class ProtocolSetup:
    """The images a protocol evaluates and how they are used.

    ``image_ids`` lists every evaluated image once (catalogue order, queries first when queries
    and gallery are disjoint); ``queries`` and ``gallery`` are slices of it. ``query_groups``
    maps a metric group name to a boolean mask over the queries (empty: one group of all).
    """

    image_ids: np.ndarray
    queries: slice
    gallery: slice
    task: RetrievalTask
    query_groups: dict[str, np.ndarray] = field(default_factory=dict)


def build_protocol(
    catalogue: pd.DataFrame, protocol: str, atrw_gt: Path | None = None
) -> ProtocolSetup:
    if protocol not in PROTOCOLS:
        raise UserError(
            f"unknown evaluation protocol {protocol!r}; use one of {', '.join(PROTOCOLS)}"
        )
    if atrw_gt is not None and protocol != "atrw":
        raise UserError(
            f"the ATRW ground truth {atrw_gt} only applies to the atrw protocol, not {protocol}"
        )
    _check_catalogue(catalogue)
    if protocol == "all-vs-all":
        return _all_vs_all(catalogue)
    if protocol == "query-gallery":
        return _query_gallery(catalogue)
    return _atrw(catalogue, atrw_gt)


def _check_catalogue(catalogue: pd.DataFrame) -> None:
    missing = [c for c in ("image_id", "identity", "split") if c not in catalogue.columns]
    if missing:
        raise UserError(f"catalogue has no column {missing[0]!r}; rebuild it with the adapter")
    duplicated = catalogue["image_id"][catalogue["image_id"].duplicated()]
    if len(duplicated):
        raise UserError(
            f"catalogue lists image_id {duplicated.iloc[0]!r} twice; ids must be unique"
        )


def _split_rows(catalogue: pd.DataFrame, split: str, protocol: str, at_least: int) -> pd.DataFrame:
    rows = catalogue[catalogue["split"] == split]
    if len(rows) < at_least:
        raise UserError(
            f"{protocol} protocol: the catalogue has {len(rows)} rows with split {split!r}, "
            f"it needs at least {at_least}"
        )
    return rows


def _codes(values: pd.Series) -> np.ndarray:
    return pd.factorize(values.to_numpy())[0].astype(np.int64)


def _key_codes(rows: pd.DataFrame, column: str) -> np.ndarray:
    """Codes of an optional junk-key column; empty values (or no column) get NO_KEY."""
    if column not in rows.columns:
        return np.full(len(rows), NO_KEY, dtype=np.int64)
    codes = _codes(rows[column])
    codes[rows[column].to_numpy() == ""] = NO_KEY
    return codes


def _all_vs_all(catalogue: pd.DataFrame) -> ProtocolSetup:
    rows = _split_rows(catalogue, "test", "all-vs-all", at_least=2)
    identity = _codes(rows["identity"])
    encounter = _key_codes(rows, "encounter")
    task = RetrievalTask(
        query_identity=identity,
        gallery_identity=identity,
        query_junk_key=encounter,
        gallery_junk_key=encounter,
        query_self=np.arange(len(rows)),
    )
    everyone = slice(0, len(rows))
    return ProtocolSetup(rows["image_id"].to_numpy(object), everyone, everyone, task)


def _query_gallery(catalogue: pd.DataFrame) -> ProtocolSetup:
    queries = _split_rows(catalogue, "query", "query-gallery", at_least=1)
    gallery = _split_rows(catalogue, "gallery", "query-gallery", at_least=1)
    both = pd.concat([queries, gallery])
    num_queries = len(queries)
    identity = _codes(both["identity"])
    camera = _key_codes(both, "camera")
    task = RetrievalTask(
        query_identity=identity[:num_queries],
        gallery_identity=identity[num_queries:],
        query_junk_key=camera[:num_queries],
        gallery_junk_key=camera[num_queries:],
        query_self=np.full(num_queries, -1),
    )
    return ProtocolSetup(
        both["image_id"].to_numpy(object),
        slice(0, num_queries),
        slice(num_queries, len(both)),
        task,
    )


def _atrw(catalogue: pd.DataFrame, atrw_gt: Path | None) -> ProtocolSetup:
    rows = _split_rows(catalogue, "test", "atrw", at_least=2)
    labels = _atrw_labels_from_file(rows, atrw_gt) if atrw_gt else _atrw_labels_from_rows(rows)
    for group in ATRW_GROUPS:
        if not (labels["group"] == group).any():
            raise UserError(f"atrw protocol: no test image has group {group!r}; it needs both")
    identity = _codes(labels["identity"])
    camera = _codes(labels["camera"])
    frame = labels["frame"].to_numpy(np.int64)
    task = RetrievalTask(
        query_identity=identity,
        gallery_identity=identity,
        query_junk_key=camera,
        gallery_junk_key=camera,
        query_self=np.arange(len(rows)),
        query_frame=frame,
        gallery_frame=frame,
        frame_window=ATRW_FRAME_WINDOW,
    )
    groups = {name: labels["group"].to_numpy() == g for g, name in ATRW_GROUP_NAMES.items()}
    everyone = slice(0, len(rows))
    return ProtocolSetup(rows["image_id"].to_numpy(object), everyone, everyone, task, groups)


def _atrw_labels_from_file(rows: pd.DataFrame, atrw_gt: Path) -> pd.DataFrame:
    truth = load_atrw_ground_truth(atrw_gt)
    ids = pd.Index(rows["image_id"])
    unknown = ids[~ids.isin(truth.index)]
    if len(unknown):
        raise UserError(
            f"{len(unknown)} test images of the catalogue are not in the ATRW ground truth "
            f"{atrw_gt} (e.g. {', '.join(unknown[:3])}); ids must be test/{{imgid:06d}}"
        )
    absent = truth.index[~truth.index.isin(ids)]
    if len(absent):
        raise UserError(
            f"{len(absent)} images of the ATRW ground truth {atrw_gt} are not test rows of the "
            f"catalogue (e.g. {', '.join(absent[:3])}); rebuild the catalogue from the full test set"
        )
    return truth.loc[ids]


def _atrw_labels_from_rows(rows: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in ("camera", "frame", "group") if c not in rows.columns]
    if missing:
        raise UserError(
            f"atrw protocol: the catalogue has no {missing[0]!r} column; "
            "add camera, frame and group or pass the ATRW ground truth file"
        )
    labels = rows[["image_id", "identity", "camera", "group"]].copy()
    frame = pd.to_numeric(rows["frame"], errors="coerce")
    bad_frame = frame.isna() | (frame != frame.round())
    _reject_first(rows, bad_frame, "frame", "an integer frame index")
    _reject_first(rows, rows["camera"] == "", "camera", "a camera such as 4_3")
    _reject_first(rows, ~rows["group"].isin(ATRW_GROUPS), "group", "sing or multi")
    labels["frame"] = frame.astype(np.int64)
    return labels.set_index("image_id")


def _reject_first(rows: pd.DataFrame, bad: pd.Series, column: str, expected: str) -> None:
    if bad.any():
        first = rows[bad].iloc[0]
        raise UserError(
            f"catalogue row {first['image_id']!r} has {column} {first[column]!r}; "
            f"the atrw protocol needs {expected}"
        )
