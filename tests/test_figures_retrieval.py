"""Top-k retrieval grid: matches against a brute-force ranking, and the drawn pixels read back.

Features lie on a lattice (1 or 4 entries of ±1 in 8 dimensions), so every cosine is 1, 0.5,
0.25 or 0 up to sign, exact in float32 and float64: the reference's ordering is therefore exact,
ties included (they go to the earlier gallery image, as in the metrics). Images are plain colour
PNGs, so a tile's interior is exactly its image's colour and its border exactly its frame colour.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reid.errors import UserError
from reid.figures.retrieval import (
    CORRECT,
    QUERY,
    UNKNOWN,
    WRONG,
    Match,
    QueryResult,
    draw_retrieval,
    match_label,
    top_k_matches,
)
from reid.figures.thumbnails import framed, label_strip, save_png, thumbnail

DIM = 8
SIDE = 48
FRAME = 2  # max(2, SIDE // 32)


def catalogue_of(rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    table["path"] = [f"images/{i}.png" for i in table["image_id"]]
    return table


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / math.sqrt(np.dot(a, a) * np.dot(b, b)))


def brute_force(
    table: pd.DataFrame, vectors: dict[str, np.ndarray], query: str, protocol: str, k: int
) -> list[tuple[str, float, bool]]:
    """(image id, similarity, correct) of the top k, junk removed, by a plain sort."""
    q = table.set_index("image_id").loc[query]
    if protocol == "all-vs-all":
        gallery = table[table["split"] == "test"]
        key = "encounter"
    else:
        gallery = table[table["split"] == "gallery"]
        key = "camera"
    kept = [
        (position, g)
        for position, (_, g) in enumerate(gallery.iterrows())
        if g["image_id"] != query
        and not (g["identity"] == q["identity"] and q[key] != "" and g[key] == q[key])
    ]
    ranked = sorted(
        kept, key=lambda pg: (-cosine(vectors[query], vectors[pg[1]["image_id"]]), pg[0])
    )
    return [
        (
            g["image_id"],
            cosine(vectors[query], vectors[g["image_id"]]),
            g["identity"] == q["identity"],
        )
        for _, g in ranked[:k]
    ]


def brute_force_false_positive_rate(
    table: pd.DataFrame, vectors: dict[str, np.ndarray], protocol: str, score: float
) -> float | None:
    """The rate by its definition: each gallery image searched against the gallery's other
    animals; the share of those searches whose best score is at or above ``score``, as an
    empirical p-value ((count + 1) / (searches + 1))."""
    gallery = table[table["split"] == ("test" if protocol == "all-vs-all" else "gallery")]
    if gallery["identity"].nunique() < 2:
        return None
    best_wrong = [
        max(
            cosine(vectors[g["image_id"]], vectors[h["image_id"]])
            for _, h in gallery.iterrows()
            if h["identity"] != g["identity"]
        )
        for _, g in gallery.iterrows()
    ]
    return (sum(w >= score for w in best_wrong) + 1) / (len(best_wrong) + 1)


lattice_vector = st.one_of(
    st.tuples(st.integers(0, DIM - 1), st.sampled_from([-1, 1])).map(
        lambda t: np.eye(DIM, dtype=np.float32)[t[0]] * t[1]
    ),
    st.tuples(
        st.lists(st.integers(0, DIM - 1), min_size=4, max_size=4, unique=True),
        st.lists(st.sampled_from([-1, 1]), min_size=4, max_size=4),
    ).map(lambda t: np.bincount(t[0], weights=t[1], minlength=DIM).astype(np.float32)),
)


@st.composite
def retrieval_cases(draw: st.DrawFn) -> tuple[str, pd.DataFrame, dict[str, np.ndarray], int]:
    protocol = draw(st.sampled_from(["all-vs-all", "query-gallery"]))
    n = draw(st.integers(3, 12))
    rows = []
    for i in range(n):
        if protocol == "all-vs-all":
            split = "test"
        else:
            split = (
                "query"
                if i == 0
                else "gallery"
                if i == 1
                else draw(st.sampled_from(["query", "gallery"]))
            )
        rows.append(
            {
                "image_id": f"im{draw(st.integers(0, 99)):02d}_{i}",
                "identity": draw(st.sampled_from(["a", "b", "c"])),
                "split": split,
                "encounter": draw(st.sampled_from(["", "e1", "e2"])),
                "camera": draw(st.sampled_from(["", "c1", "c2"])),
            }
        )
    table = catalogue_of(rows)
    vectors = {image_id: draw(lattice_vector) for image_id in table["image_id"]}
    return protocol, table, vectors, draw(st.integers(1, 6))


@settings(max_examples=80, deadline=None)
@given(case=retrieval_cases(), shuffle=st.randoms(use_true_random=False))
def test_top_k_matches_brute_force(case, shuffle) -> None:
    protocol, table, vectors, k = case
    order = list(vectors)
    shuffle.shuffle(order)  # features arrive in extraction order, not catalogue order
    features = np.stack([vectors[i] for i in order])
    results = top_k_matches(features, order, table, Path("/data"), protocol, k=k, queries=100)

    query_split = "test" if protocol == "all-vs-all" else "query"
    assert [r.image_id for r in results] == sorted(table["image_id"][table["split"] == query_split])
    by_id = table.set_index("image_id")
    for result in results:
        assert result.identity == by_id.at[result.image_id, "identity"]
        assert result.path == Path("/data/images") / f"{result.image_id}.png"
        expected = brute_force(table, vectors, result.image_id, protocol, k)
        assert [(m.image_id, m.similarity, m.correct) for m in result.matches] == expected
        for match in result.matches:
            assert match.identity == by_id.at[match.image_id, "identity"]
            assert match.path == Path("/data/images") / f"{match.image_id}.png"
            assert match.false_positive_rate == brute_force_false_positive_rate(
                table, vectors, protocol, match.similarity
            )


def angle_features(degrees: dict[str, float]) -> tuple[np.ndarray, list[str]]:
    ids = list(degrees)
    radians = np.radians([degrees[i] for i in ids])
    return np.stack([np.cos(radians), np.sin(radians)], axis=1).astype(np.float32), ids


# Six images on a circle: a2 is a1's nearest neighbour but the same encounter (junk).
HAND_ROWS = [
    {"image_id": "a1", "identity": "A", "split": "test", "encounter": "e1"},
    {"image_id": "a2", "identity": "A", "split": "test", "encounter": "e1"},
    {"image_id": "a3", "identity": "A", "split": "test", "encounter": "e2"},
    {"image_id": "b1", "identity": "B", "split": "test", "encounter": "e3"},
    {"image_id": "b2", "identity": "B", "split": "test", "encounter": "e4"},
    {"image_id": "c1", "identity": "C", "split": "test", "encounter": ""},
]
HAND_ANGLES = {"a1": 0, "a2": 5, "a3": 20, "b1": 10, "b2": 60, "c1": 30}


def test_top_k_matches_by_hand() -> None:
    features, ids = angle_features(HAND_ANGLES)
    results = top_k_matches(
        features, ids, catalogue_of(HAND_ROWS), Path("root"), "all-vs-all", k=3, queries=["a1"]
    )
    (result,) = results
    assert (result.image_id, result.identity) == ("a1", "A")
    # a1 itself and a2 (same encounter) are junk; then b1 (10°), a3 (20°), c1 (30°).
    assert [(m.image_id, m.correct) for m in result.matches] == [
        ("b1", False),
        ("a3", True),
        ("c1", False),
    ]
    expected = [math.cos(math.radians(d)) for d in (10, 20, 30)]
    assert [m.similarity for m in result.matches] == pytest.approx(expected, abs=1e-6)
    # Each image searched against the other animals, best score: a1 cos10 (b1), a2 cos5 (b1),
    # a3 cos10 (b1, c1), b1 cos5 (a2), b2 cos30 (c1), c1 cos10 (a3). a3's match at cos20 is
    # reached by the five searches at cos5 and cos10: (5 + 1) / (6 + 1).
    assert result.matches[1].false_positive_rate == pytest.approx(6 / 7)


def test_query_selection() -> None:
    features, ids = angle_features(HAND_ANGLES)
    table = catalogue_of(HAND_ROWS)

    def chosen(queries, features=features) -> list[str]:
        results = top_k_matches(features, ids, table, Path("r"), "all-vs-all", k=1, queries=queries)
        return [r.image_id for r in results]

    spread = chosen(3)
    assert len(spread) == 3 and spread == sorted(set(spread))
    assert spread[0] == "a1" and spread[-1] == "c1"  # first and last in image-id order
    other_model = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32)
    assert chosen(3, other_model) == spread  # the same queries whatever the features
    assert chosen(6) == chosen(50) == sorted(ids)
    assert chosen(["c1", "a2"]) == ["c1", "a2"]
    with pytest.raises(UserError, match="'zz'"):
        chosen(["a1", "zz"])
    with pytest.raises(UserError, match="at least 1 query"):
        chosen(0)
    with pytest.raises(UserError, match="k >= 1"):
        top_k_matches(features, ids, table, Path("r"), "all-vs-all", k=0)


def test_query_gallery_unknown_identity() -> None:
    rows = [
        {"image_id": "q1", "identity": "A", "split": "query", "camera": "c1"},
        {"image_id": "q2", "identity": "", "split": "query", "camera": "c1"},
        {"image_id": "g1", "identity": "A", "split": "gallery", "camera": "c1"},
        {"image_id": "g2", "identity": "A", "split": "gallery", "camera": "c2"},
        {"image_id": "g3", "identity": "B", "split": "gallery", "camera": "c1"},
    ]
    features, ids = angle_features({"q1": 0, "q2": 0, "g1": 1, "g2": 40, "g3": 20})
    table = catalogue_of(rows)
    results = top_k_matches(features, ids, table, Path("r"), "query-gallery", k=5, queries=2)
    q1, q2 = results
    # g1 has q1's identity and camera: junk. q2 has no identity: nothing is junk or judged.
    assert [(m.image_id, m.correct) for m in q1.matches] == [("g3", False), ("g2", True)]
    assert q2.identity is None
    assert [(m.image_id, m.correct) for m in q2.matches] == [
        ("g1", None),
        ("g3", None),
        ("g2", None),
    ]
    with pytest.raises(UserError, match="'g1' is not a query"):
        top_k_matches(features, ids, table, Path("r"), "query-gallery", queries=["g1"])


def test_a_gallery_with_an_unknown_animal_gives_no_false_positive_rate() -> None:
    # Which animal an unnamed gallery image shows is unknown, so no search can say it is wrong.
    rows = [
        {"image_id": "q1", "identity": "A", "split": "query", "camera": "c1"},
        {"image_id": "g1", "identity": "A", "split": "gallery", "camera": "c2"},
        {"image_id": "g2", "identity": "B", "split": "gallery", "camera": "c1"},
        {"image_id": "g3", "identity": "", "split": "gallery", "camera": "c1"},
    ]
    features, ids = angle_features({"q1": 0, "g1": 10, "g2": 40, "g3": 20})
    table = catalogue_of(rows)
    (q1,) = top_k_matches(features, ids, table, Path("r"), "query-gallery", k=3, queries=1)
    assert [m.image_id for m in q1.matches] == ["g1", "g3", "g2"]
    assert [m.false_positive_rate for m in q1.matches] == [None, None, None]
    known = table[table["identity"] != ""]
    (q1,) = top_k_matches(features[:3], ids[:3], known, Path("r"), "query-gallery", k=2, queries=1)
    # g1 searched: best wrong g2 cos30; g2 searched: g1 cos30. g1's match (cos10) is above both.
    assert [m.false_positive_rate for m in q1.matches] == pytest.approx([1 / 3, 3 / 3])


# --- thumbnails --------------------------------------------------------------------------------


def write_plain(path: Path, colour: tuple[int, int, int], size: tuple[int, int]) -> None:
    """A plain RGB image of (height, width) written as PNG."""
    save_png(np.full((*size, 3), colour, np.uint8), path)


def test_thumbnail_letterboxes(tmp_path: Path) -> None:
    write_plain(tmp_path / "wide.png", (10, 20, 30), (20, 40))
    thumb = thumbnail(tmp_path / "wide.png", 32)
    assert thumb.shape == (32, 32, 3) and thumb.dtype == np.uint8
    assert (thumb[8:24] == (10, 20, 30)).all()  # 40×20 → 32×16, centred
    assert (thumb[:8] == 255).all() and (thumb[24:] == 255).all()
    with pytest.raises(UserError, match="missing.png"):
        thumbnail(tmp_path / "missing.png", 32)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="bad.png"):
        thumbnail(tmp_path / "bad.png", 32)


def test_framed_and_label_strip() -> None:
    image = np.full((10, 12, 3), 50, np.uint8)
    out = framed(image, (1, 2, 3), 3)
    border = np.ones((10, 12), bool)
    border[3:-3, 3:-3] = False
    assert out.shape == image.shape
    assert (out[border] == (1, 2, 3)).all() and (out[~border] == 50).all()
    assert (image == 50).all()  # the input is left alone

    short = label_strip("id07 0.83", 120, 18)
    assert short.shape == (18, 120, 3) and (short < 128).any()
    long = label_strip("a very long identity name indeed 0.99", 48, 18)
    assert (long < 128).any()
    assert (long[:, 0] == 255).all() and (long[:, -1] == 255).all()  # cut to fit, not spilt


def test_save_png_is_atomic_and_exact(tmp_path: Path) -> None:
    image = np.random.default_rng(1).integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    out = tmp_path / "deep" / "figure.png"
    save_png(image, out)
    assert (cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB) == image).all()
    assert sorted(p.name for p in out.parent.iterdir()) == ["figure.png"]


# --- the drawn grid ----------------------------------------------------------------------------


def colour_of(index: int) -> tuple[int, int, int]:
    """Distinct image colours, far from every frame colour and from white."""
    return (40 + 23 * index, 90 + 11 * (index % 5), 140 - 9 * index)


@pytest.fixture
def drawn(tmp_path: Path):
    """Two models' top-3 on the hand-made catalogue, drawn: (results, layout, pixels, catalogue)."""
    table = catalogue_of(HAND_ROWS)
    for i, image_id in enumerate(table["image_id"]):
        size = (30, 50) if i % 2 else (50, 30)  # landscape and portrait, both letterboxed
        write_plain(tmp_path / "images" / f"{image_id}.png", colour_of(i), size)
    features, ids = angle_features(HAND_ANGLES)
    other_features, _ = angle_features(dict(HAND_ANGLES, a3=100, b1=3))
    results = {
        model: top_k_matches(f, ids, table, tmp_path, "all-vs-all", k=3, queries=3)
        for model, f in (("paw_vit", features), ("vit_baseline", other_features))
    }
    out = tmp_path / "fig" / "retrieval.png"
    layout = draw_retrieval(results, out, side=SIDE)
    pixels = cv2.cvtColor(cv2.imread(str(out)), cv2.COLOR_BGR2RGB)
    return results, layout, pixels, table


def test_draw_retrieval_tiles(drawn) -> None:
    results, layout, pixels, table = drawn
    assert pixels.shape == (layout.height, layout.width, 3)
    colour_by_path = {Path(p).name: colour_of(i) for i, p in enumerate(table["path"])}
    assert len(layout.tiles) == sum(len(r.matches) + 1 for rs in results.values() for r in rs)
    seen_correct = seen_wrong = False
    for tile in layout.tiles:
        result = results[tile.model][tile.row]
        if tile.rank == 0:
            path, expected = result.path, QUERY
        else:
            match = result.matches[tile.rank - 1]
            path, expected = match.path, CORRECT if match.correct else WRONG
            seen_correct |= expected == CORRECT
            seen_wrong |= expected == WRONG
        assert tile.colour == expected
        x0, y0, x1, y1 = tile.box
        assert (x1 - x0, y1 - y0) == (SIDE, SIDE)
        patch = pixels[y0:y1, x0:x1]
        border = np.ones((SIDE, SIDE), bool)
        border[FRAME:-FRAME, FRAME:-FRAME] = False
        assert (patch[border] == expected).all()
        assert tuple(patch[SIDE // 2, SIDE // 2]) == colour_by_path[path.name]
        label = pixels[y1 : y1 + 18, x0:x1]
        assert (label < 100).all(axis=2).any()  # identity and similarity written under it
    assert seen_correct and seen_wrong


def test_draw_retrieval_models_side_by_side(drawn) -> None:
    results, layout, _, _ = drawn
    first = [t for t in layout.tiles if t.model == "paw_vit"]
    second = [t for t in layout.tiles if t.model == "vit_baseline"]
    assert max(t.box[2] for t in first) < min(t.box[0] for t in second)
    for row in range(3):
        rows_y = {t.box[1] for t in layout.tiles if t.row == row}
        assert len(rows_y) == 1  # a query's row lines up across models
    # The two models ranked differently, so some tile shows a different image.
    assert [m.image_id for r in results["paw_vit"] for m in r.matches] != [
        m.image_id for r in results["vit_baseline"] for m in r.matches
    ]


def test_draw_retrieval_unknown_identity(tmp_path: Path) -> None:
    write_plain(tmp_path / "q.png", (10, 200, 10), (20, 20))
    write_plain(tmp_path / "g.png", (200, 10, 200), (20, 20))
    result = QueryResult(
        "q", tmp_path / "q.png", None, [Match("g", tmp_path / "g.png", "B", 0.5, None)]
    )
    layout = draw_retrieval({"m": [result]}, tmp_path / "f.png", side=SIDE)
    pixels = cv2.cvtColor(cv2.imread(str(tmp_path / "f.png")), cv2.COLOR_BGR2RGB)
    x0, y0, _, _ = layout.tile("m", 0, 1).box
    assert layout.tile("m", 0, 1).colour == UNKNOWN
    assert tuple(pixels[y0, x0]) == UNKNOWN


def test_draw_retrieval_errors(drawn, tmp_path: Path) -> None:
    results, _, _, _ = drawn
    with pytest.raises(UserError, match="no model results"):
        draw_retrieval({}, tmp_path / "x.png")
    with pytest.raises(UserError, match="'vit_baseline'"):
        draw_retrieval(
            {"paw_vit": results["paw_vit"], "vit_baseline": results["vit_baseline"][::-1]},
            tmp_path / "x.png",
        )
    with pytest.raises(UserError, match="no queries"):
        draw_retrieval({"paw_vit": []}, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


def test_a_tile_shows_the_false_positive_rate_when_the_match_has_one() -> None:
    # `reid identify` passes its rate: a collapsed model's similarity (0.999) says nothing.
    plain = Match("g", Path("g.png"), "B", 0.9994, None)
    assert match_label(plain) == "B 1.00"
    assert match_label(Match("g", Path("g.png"), "B", 0.9994, None, 0.01234)) == "B fpr 0.012"
