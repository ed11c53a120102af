"""Re-ID evaluation against an independent brute-force reference and hand-computed cases.

The reference ranks a gallery per query with Python's stable sort on 1 - dot, drops junk and walks
the ranking. Random features are drawn on a lattice (1 or 4 non-zero entries of equal magnitude,
any power-of-two scale) so that every cosine is a small dyadic number: float32 and float64 agree
exactly and equal distances, hence ties, are common.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reid.errors import UserError
from reid.evaluation import atrw_submission, evaluate_features, ranking
from reid.evaluation.ranking import _positions_by_sorted_segments, _segment_layout, ranking_keys
from reid.evaluation.task import NO_KEY, RetrievalTask

DIM = 8


@dataclass(frozen=True)
class Image:
    image_id: str
    identity: str
    split: str
    vector: tuple[float, ...]
    camera: str = ""
    frame: str = ""
    encounter: str = ""
    group: str = ""


def catalogue_of(images: list[Image]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "image_id": im.image_id,
                "path": f"{im.image_id}.jpg",
                "identity": im.identity,
                "split": im.split,
                "camera": im.camera,
                "frame": im.frame,
                "encounter": im.encounter,
                "group": im.group,
            }
            for im in images
        ]
    )


def features_of(images: list[Image], order: list[int] | None = None) -> tuple[np.ndarray, list]:
    order = list(range(len(images))) if order is None else order
    vectors = np.array([images[i].vector for i in order], dtype=np.float32)
    return vectors, [images[i].image_id for i in order]


# --- brute-force reference -------------------------------------------------------------------


def cosine_distance(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    norm_a = math.sqrt(sum(x * x for x in a))
    norm_b = math.sqrt(sum(x * x for x in b))
    return 1.0 - sum((x / norm_a) * (y / norm_b) for x, y in zip(a, b, strict=True))


def junk_all_vs_all(q: Image, g: Image) -> bool:
    return q.identity == g.identity and q.encounter != "" and q.encounter == g.encounter


def junk_query_gallery(q: Image, g: Image) -> bool:
    return q.identity == g.identity and q.camera != "" and q.camera == g.camera


def junk_atrw(q: Image, g: Image) -> bool:
    return (
        q.identity == g.identity and q.camera == g.camera and abs(int(q.frame) - int(g.frame)) <= 3
    )


def reference_query(q: Image, gallery: list[Image], is_junk) -> tuple[list[str], float, float, int]:
    """(ranking, AP, INP, rank of the first positive or 0) by walking the junk-free ranking."""
    ranking = sorted(gallery, key=lambda g: cosine_distance(q.vector, g.vector))
    kept = [g for g in ranking if not is_junk(q, g)]
    hit_ranks = [i + 1 for i, g in enumerate(kept) if g.identity == q.identity]
    ids = [g.image_id for g in ranking]
    if not hit_ranks:
        return ids, 0.0, 0.0, 0
    ap = sum((n + 1) / rank for n, rank in enumerate(hit_ranks)) / len(hit_ranks)
    return ids, ap, len(hit_ranks) / hit_ranks[-1], hit_ranks[0]


def summary(results: list, ranks: tuple[int, ...], with_inp: bool) -> dict:
    out = {"mAP": sum(r[1] for r in results) / len(results)}
    for k in ranks:
        out[f"rank{k}"] = sum(1 for r in results if 0 < r[3] <= k) / len(results)
    if with_inp:
        out["mINP"] = sum(r[2] for r in results) / len(results)
    return out


def reference_evaluate(images: list[Image], protocol: str) -> tuple[dict, int, dict]:
    """(metrics, queries without match, rankings) as the library should report them."""
    if protocol == "query-gallery":
        queries = [im for im in images if im.split == "query"]
        gallery = [im for im in images if im.split == "gallery"]
        results = [reference_query(q, gallery, junk_query_gallery) for q in queries]
    else:
        queries = gallery = [im for im in images if im.split == "test"]
        is_junk = junk_atrw if protocol == "atrw" else junk_all_vs_all
        results = [reference_query(q, [g for g in gallery if g is not q], is_junk) for q in queries]
    if protocol == "atrw":
        metrics: dict = {}
        for group, name in (("sing", "single_cam"), ("multi", "cross_cam")):
            members = [r for q, r in zip(queries, results, strict=True) if q.group == group]
            metrics[name] = {**summary(members, (1, 5), False), "num_queries": len(members)}
        metrics["mmAP"] = (metrics["single_cam"]["mAP"] + metrics["cross_cam"]["mAP"]) / 2
    else:
        metrics = summary(results, (1, 5, 10), True)
    metrics |= {"num_queries": len(queries), "num_gallery": len(gallery)}
    rankings = {q.image_id: r[0] for q, r in zip(queries, results, strict=True)}
    return metrics, sum(1 for r in results if r[3] == 0), rankings


def assert_metrics_equal(actual: dict, expected: dict) -> None:
    assert actual.keys() == expected.keys()
    for key, value in expected.items():
        if isinstance(value, dict):
            assert_metrics_equal(actual[key], value)
        else:
            assert actual[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


# --- random data -----------------------------------------------------------------------------


@st.composite
def lattice_vectors(draw: st.DrawFn) -> tuple[float, ...]:
    nonzero = draw(st.sampled_from([1, 4]))
    where = draw(st.permutations(range(DIM)))[:nonzero]
    signs = draw(st.lists(st.sampled_from([-1.0, 1.0]), min_size=nonzero, max_size=nonzero))
    scale = 2.0 ** draw(st.integers(-3, 3))
    vector = [0.0] * DIM
    for i, sign in zip(where, signs, strict=True):
        vector[i] = sign * scale
    return tuple(vector)


@st.composite
def image_sets(draw: st.DrawFn, protocol: str) -> list[Image]:
    """2-12 evaluated images (plus maybe a train image whose feature must be ignored)."""
    count = draw(st.integers(2, 12))
    images = []
    for i in range(count):
        if protocol == "query-gallery":
            split = (
                ("query", "gallery")[i] if i < 2 else draw(st.sampled_from(["query", "gallery"]))
            )
        else:
            split = "test"
        images.append(
            Image(
                image_id=f"test/{i:06d}",
                identity=draw(st.sampled_from("abc")),
                split=split,
                vector=draw(lattice_vectors()),
                camera=draw(st.sampled_from(["1_1", "2_1"] + [""] * (protocol != "atrw"))),
                frame=str(draw(st.integers(0, 9))),
                encounter=draw(st.sampled_from(["", "e1", "e2"])),
                group=("sing", "multi")[i] if i < 2 else draw(st.sampled_from(["sing", "multi"])),
            )
        )
    if draw(st.booleans()):
        images.append(Image("train/0", "a", "train", draw(lattice_vectors())))
    return images


def check_against_reference(data: st.DataObject, protocol: str) -> None:
    images = data.draw(image_sets(protocol))
    order = data.draw(st.permutations(range(len(images))))
    chunk_bytes = data.draw(st.sampled_from([1, 300, 2**30]))
    with_rankings = data.draw(st.booleans())
    threads = data.draw(st.sampled_from([1, 3]))
    segment = data.draw(st.sampled_from([1, 3, ranking.SEGMENT]))
    features, ids = features_of(images, order)

    with patch.object(ranking, "SEGMENT", segment):
        result = evaluate_features(
            features,
            ids,
            catalogue_of(images),
            protocol,
            chunk_bytes=chunk_bytes,
            with_rankings=with_rankings,
            threads=threads,
        )

    metrics, without_match, rankings = reference_evaluate(images, protocol)
    assert_metrics_equal(result.metrics, metrics)
    assert result.queries_without_match == without_match
    assert result.rankings == (rankings if with_rankings else None)


REFERENCE_SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@REFERENCE_SETTINGS
@given(st.data())
def test_all_vs_all_matches_reference(data: st.DataObject) -> None:
    check_against_reference(data, "all-vs-all")


@REFERENCE_SETTINGS
@given(st.data())
def test_query_gallery_matches_reference(data: st.DataObject) -> None:
    check_against_reference(data, "query-gallery")


@REFERENCE_SETTINGS
@given(st.data())
def test_atrw_matches_reference(data: st.DataObject) -> None:
    check_against_reference(data, "atrw")


def random_lattice_images(rng: np.random.Generator, identities: list[str]) -> list[Image]:
    images = []
    for i, identity in enumerate(identities):
        vector = np.zeros(DIM)
        where = rng.permutation(DIM)[: rng.choice([1, 4])]
        vector[where] = rng.choice([-1.0, 1.0], size=len(where))
        images.append(
            Image(
                image_id=f"img{i}",
                identity=identity,
                split="test",
                vector=tuple(vector),
                encounter=str(rng.integers(0, 3)) if i % 2 else "",
            )
        )
    return images


@pytest.mark.parametrize("chunk_bytes", [1, 2**30])
def test_identity_larger_than_segment_search_limit_matches_reference(
    chunk_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queries with many same-identity images are positioned by sorting whole rows."""
    monkeypatch.setattr(ranking, "SEGMENT_SEARCH_LIMIT", 20)
    rng = np.random.default_rng(7)
    identities = ["big"] * 60 + list("aabbbc")
    images = random_lattice_images(rng, identities)
    features, ids = features_of(images, list(rng.permutation(len(images))))

    result = evaluate_features(features, ids, catalogue_of(images), "all-vs-all", None, chunk_bytes)

    metrics, without_match, _ = reference_evaluate(images, "all-vs-all")
    assert_metrics_equal(result.metrics, metrics)
    assert result.queries_without_match == without_match == 1


@given(
    st.lists(
        st.floats(width=32, allow_nan=False, allow_infinity=False)
        | st.sampled_from([0.0, -0.0, 1.0, -1.0]),
        min_size=1,
        max_size=40,
    )
)
def test_ranking_keys_order_like_a_stable_descending_sort(values: list[float]) -> None:
    """Keys order items by descending similarity, equal ones (+0 and -0 too) by position."""
    similarity = np.array([values], dtype=np.float32)
    expected = np.argsort(-similarity[0], kind="stable")

    keys = ranking_keys(similarity.copy())

    assert np.argsort(keys[0]).tolist() == expected.tolist()


@given(
    st.lists(
        st.lists(st.sampled_from([0.5, 0.25, 0.0, -0.0, -0.25, 1.0]), min_size=7, max_size=7)
        | st.lists(st.floats(-1, 1, width=32), min_size=7, max_size=7, unique=True),
        min_size=1,
        max_size=5,
    ),
    st.integers(1, 8),
    st.data(),
)
def test_positions_from_sorted_segments_equal_a_stable_ranking(
    rows_of_values: list[list[float]], segment: int, data: st.DataObject
) -> None:
    """Rows with and without ties (+0 and -0 too), cut into segments of any length: a
    candidate's position is its index in a stable descending sort of its row."""
    similarity = np.array(rows_of_values, dtype=np.float32)
    picks = [data.draw(st.sets(st.integers(0, 6), min_size=1)) for _ in rows_of_values]
    rows = np.array([r for r, cols in enumerate(picks) for _ in sorted(cols)])
    cols = np.array([c for cols in picks for c in sorted(cols)])
    expected = [
        np.argsort(-similarity[r], kind="stable").tolist().index(c)
        for r, c in zip(rows, cols, strict=True)
    ]

    layout = _segment_layout(similarity.shape[1], segment)
    positions = _positions_by_sorted_segments(
        similarity.copy(), rows, cols, np.empty((len(similarity), *layout), dtype=np.float32)
    )

    assert positions.tolist() == expected


def test_zero_threads_is_a_user_error() -> None:
    images = [Image(f"t{i}", "a", "test", at_angle(10 * i)) for i in range(2)]
    with pytest.raises(UserError, match="at least 1 thread"):
        evaluate_features(*features_of(images), catalogue_of(images), "all-vs-all", threads=0)


# --- hand-computed cases ---------------------------------------------------------------------


def at_angle(degrees: float) -> tuple[float, ...]:
    radians = math.radians(degrees)
    return (math.cos(radians), math.sin(radians))


def test_hand_computed_ap_inp_and_query_without_match() -> None:
    """Query A ranks [A same camera (junk), A, B, B, A]; query C has no match at all.

    Junk removed, A's ranking is [A, B, B, A]: AP = (1/1 + 2/4) / 2 = 0.75, INP = 2/4 = 0.5,
    rank-1 hit. C: AP 0, INP 0, no hit, still counted.
    """
    images = [
        Image("qA", "A", "query", at_angle(0), camera="c1"),
        Image("qC", "C", "query", at_angle(180), camera="c1"),
        Image("junk", "A", "gallery", at_angle(5), camera="c1"),
        Image("a1", "A", "gallery", at_angle(10), camera="c2"),
        Image("b1", "B", "gallery", at_angle(20), camera="c2"),
        Image("b2", "B", "gallery", at_angle(30), camera="c2"),
        Image("a2", "A", "gallery", at_angle(40), camera="c3"),
    ]
    features, ids = features_of(images)

    result = evaluate_features(features, ids, catalogue_of(images), "query-gallery")

    assert result.metrics == pytest.approx(
        {
            "mAP": 0.375,
            "rank1": 0.5,
            "rank5": 0.5,
            "rank10": 0.5,
            "mINP": 0.25,
            "num_queries": 2,
            "num_gallery": 5,
        }
    )
    assert result.queries_without_match == 1
    assert result.rankings is None


@pytest.mark.parametrize(
    ("gallery_order", "expected_ap", "expected_rank1"),
    [(["b", "a"], 0.5, 0.0), (["a", "b"], 1.0, 1.0)],
)
def test_equal_distances_rank_in_catalogue_order(
    gallery_order: list[str], expected_ap: float, expected_rank1: float
) -> None:
    """A positive and a negative at the same distance: whichever the catalogue lists first wins,
    whatever the order of the feature rows."""
    gallery = {
        "a": Image("a", "A", "gallery", (1.0, 0.0)),
        "b": Image("b", "B", "gallery", (2.0, 0.0)),
    }
    images = [Image("q", "A", "query", (0.5, 0.0))] + [gallery[g] for g in gallery_order]
    features, ids = features_of(images, [2, 1, 0])

    result = evaluate_features(features, ids, catalogue_of(images), "query-gallery")

    assert result.metrics["mAP"] == expected_ap
    assert result.metrics["rank1"] == expected_rank1


def test_atrw_junk_window_is_three_frames_on_the_same_camera() -> None:
    """Same tiger as the query: frames 7 and 13 on its camera are junk, 14 is not, and another
    camera at the very same frame is a positive; the query itself is junk too."""
    frames = np.array([10, 13, 14, 7, 10, 10])
    camera = np.array([0, 0, 0, 0, 1, 0])
    identity = np.array([0, 0, 0, 0, 0, 1])
    task = RetrievalTask(
        query_identity=identity[:1],
        gallery_identity=identity,
        query_junk_key=camera[:1],
        gallery_junk_key=camera,
        query_self=np.array([0]),
        query_frame=frames[:1],
        gallery_frame=frames,
        frame_window=3,
    )

    rows, cols, is_junk = task.candidates(np.array([0]))

    assert rows.tolist() == [0] * 5
    assert dict(zip(cols.tolist(), is_junk.tolist(), strict=True)) == {
        0: True,
        1: True,
        2: False,
        3: True,
        4: False,
    }


def test_empty_junk_key_never_makes_junk() -> None:
    task = RetrievalTask(
        query_identity=np.array([0]),
        gallery_identity=np.array([0, 0]),
        query_junk_key=np.array([NO_KEY]),
        gallery_junk_key=np.array([NO_KEY, 3]),
        query_self=np.array([-1]),
    )

    _, _, is_junk = task.candidates(np.array([0]))

    assert not is_junk.any()


# --- official ATRW ground truth and submission -----------------------------------------------

ATRW_ENTRIES = [
    {"imgid": 0, "entityid": 1, "frame": [3, 4, 100], "query": "sing"},
    {"imgid": 4096, "entityid": 1, "frame": [3, 4, 103], "query": "multi"},
    {"imgid": 4, "entityid": 1, "frame": [3, 4, 104], "query": "multi"},
    {"imgid": 17, "entityid": 1, "frame": [5, 1, 100], "query": "sing"},
    {"imgid": 23, "entityid": 2, "frame": [3, 4, 100], "query": "multi"},
    {"imgid": 5000, "entityid": 2, "frame": [5, 1, 50], "query": "sing"},
    {"imgid": 61, "entityid": 3, "frame": [5, 1, 51], "query": "multi"},
]


def atrw_images(rng: np.random.Generator) -> list[Image]:
    """Test images labelled as in ATRW_ENTRIES, but only through the ground-truth file."""
    return [
        Image(f"test/{e['imgid']:06d}", "unknown", "test", tuple(rng.standard_normal(6)))
        for e in ATRW_ENTRIES
    ]


def write_ground_truth(tmp_path: Path, entries: list[dict]) -> Path:
    path = tmp_path / "gt_test_plain.json"
    path.write_text(json.dumps(entries))
    return path


def test_atrw_labels_come_from_the_ground_truth_file(tmp_path: Path) -> None:
    images = atrw_images(np.random.default_rng(3))
    labelled = [
        Image(
            im.image_id,
            str(e["entityid"]),
            "test",
            im.vector,
            camera=f"{e['frame'][0]}_{e['frame'][1]}",
            frame=str(e["frame"][2]),
            group=e["query"],
        )
        for im, e in zip(images, ATRW_ENTRIES, strict=True)
    ]
    features, ids = features_of(images, [6, 5, 4, 3, 2, 1, 0])

    result = evaluate_features(
        features, ids, catalogue_of(images), "atrw", write_ground_truth(tmp_path, ATRW_ENTRIES)
    )

    metrics, without_match, rankings = reference_evaluate(labelled, "atrw")
    assert_metrics_equal(result.metrics, metrics)
    assert result.queries_without_match == without_match == 1
    assert result.rankings == rankings


def test_atrw_submission_is_every_other_image_by_distance(tmp_path: Path) -> None:
    images = atrw_images(np.random.default_rng(5))
    features, ids = features_of(images)
    result = evaluate_features(
        features, ids, catalogue_of(images), "atrw", write_ground_truth(tmp_path, ATRW_ENTRIES)
    )

    submission = atrw_submission(result)

    imgids = [e["imgid"] for e in ATRW_ENTRIES]
    unit = features.astype(np.float64) / np.linalg.norm(features, axis=1, keepdims=True)
    distance = 1.0 - unit @ unit.T
    assert [s["query_id"] for s in submission] == imgids
    for q, entry in enumerate(submission):
        others = [i for i in np.argsort(distance[q], kind="stable") if i != q]
        assert entry["ans_ids"] == [imgids[i] for i in others]
        assert len(entry["ans_ids"]) == len(imgids) - 1
    json.dumps(submission)


def test_submission_of_non_atrw_ids_is_a_user_error() -> None:
    images = [
        Image("tiger_a", "a", "test", (1.0, 0.0), camera="1_1", frame="1", group="sing"),
        Image("tiger_b", "a", "test", (0.0, 1.0), camera="1_1", frame="9", group="multi"),
    ]
    features, ids = features_of(images)
    result = evaluate_features(features, ids, catalogue_of(images), "atrw")

    with pytest.raises(UserError, match="'tiger_a' is not an ATRW test id"):
        atrw_submission(result)


def test_submission_needs_rankings() -> None:
    images = [Image("x", "a", "test", (1.0, 0.0)), Image("y", "a", "test", (0.0, 1.0))]
    features, ids = features_of(images)
    result = evaluate_features(features, ids, catalogue_of(images), "all-vs-all")

    with pytest.raises(ValueError, match="with_rankings"):
        atrw_submission(result)


# --- user errors -----------------------------------------------------------------------------

TWO_BY_TWO = [
    Image("q1", "a", "query", (1.0, 0.0)),
    Image("q2", "b", "query", (0.0, 1.0)),
    Image("g1", "a", "gallery", (1.0, 1.0)),
    Image("g2", "b", "gallery", (1.0, -1.0)),
]


def user_error(images: list[Image], features, ids, protocol: str, **kwargs) -> str:
    with pytest.raises(UserError) as error:
        evaluate_features(features, ids, catalogue_of(images), protocol, **kwargs)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_unknown_protocol_is_a_user_error() -> None:
    features, ids = features_of(TWO_BY_TWO)
    assert "market" in user_error(TWO_BY_TWO, features, ids, "market")


def test_feature_ids_missing_from_catalogue_are_a_user_error() -> None:
    features, ids = features_of(TWO_BY_TWO)
    message = user_error(TWO_BY_TWO, features, ["q1", "q2", "g1", "zz"], "query-gallery")
    assert "1 feature image ids are not in the catalogue" in message
    assert "'zz'" in message


def test_catalogue_rows_without_features_are_a_user_error() -> None:
    images = TWO_BY_TWO + [Image(f"g{i}", "c", "gallery", (1.0, 2.0)) for i in range(3, 8)]
    features, ids = features_of(images[:4])
    message = user_error(images, features, ids, "query-gallery")
    assert "5 evaluated catalogue images have no feature" in message
    assert "'g3', 'g4', 'g5')" in message


def test_empty_gallery_is_a_user_error() -> None:
    queries = [im for im in TWO_BY_TWO if im.split == "query"]
    features, ids = features_of(queries)
    assert "split 'gallery'" in user_error(queries, features, ids, "query-gallery")


def test_atrw_without_labels_is_a_user_error() -> None:
    images = [Image("test/000001", "a", "test", (1.0, 0.0), camera="1_1", frame="x", group="sing")]
    images.append(Image("test/000002", "a", "test", (0.0, 1.0), camera="1_1", frame="3"))
    features, ids = features_of(images)
    assert "'test/000001' has frame 'x'" in user_error(images, features, ids, "atrw")


def test_ground_truth_not_matching_the_catalogue_is_a_user_error(tmp_path: Path) -> None:
    images = atrw_images(np.random.default_rng(1))[:-1]
    features, ids = features_of(images)
    gt = write_ground_truth(tmp_path, ATRW_ENTRIES)
    message = user_error(images, features, ids, "atrw", atrw_gt=gt)
    assert "1 images of the ATRW ground truth" in message
    assert "test/000061" in message
