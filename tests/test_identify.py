"""`reid identify`: new photos ranked against a gallery, checked against a brute-force ranking of
the same model's descriptors, with the on-disk descriptor cache and the user errors."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from test_cli import error_line, train
from tiny_data import make_tiny_dataset

from reid.cli import main
from reid.data.images import read_rgb
from reid.data.transforms import resize_image, to_tensor
from reid.engine.extract import load_trained_model
from reid.evaluation.false_positives import wrong_animal_scores
from reid.figures.retrieval import UNKNOWN
from reid.identify import (
    Gallery,
    rank_identities,
    results_json,
    results_table,
)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """A model trained for one epoch, a folder gallery of 3 photos per test identity, and the
    4th photo of each test identity as the new photos to identify."""
    tmp = tmp_path_factory.mktemp("identify")
    tiny = make_tiny_dataset(tmp)
    assert train(tiny, tmp / "run") == 0
    gallery, new = tmp / "gallery", []
    test_rows = tiny.table[tiny.table["split"] == "test"]
    for row in test_rows.itertuples():
        source = tiny.root / row.path
        if row.path.endswith("3.png"):
            new.append(source)
        else:
            (gallery / row.identity).mkdir(parents=True, exist_ok=True)
            shutil.copy(source, gallery / row.identity / Path(row.path).name)
    return tiny, tmp / "run", gallery, new


def descriptors(model_dir: Path, paths: list[Path]) -> np.ndarray:
    model, config = load_trained_model(model_dir, torch.device("cpu"))
    size = config["model"]["img_size"]
    batch = torch.stack([to_tensor(resize_image(read_rgb(p), size)) for p in paths])
    with torch.no_grad():
        values = model(batch).numpy()
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def brute_force(model_dir: Path, gallery: Path, new: list[Path], k: int) -> list[list[tuple]]:
    """Per new photo: (identity, best similarity, best photo) of the k best identities."""
    photos = sorted(p for p in gallery.rglob("*.png"))
    similarity = descriptors(model_dir, new) @ descriptors(model_dir, photos).T
    out = []
    for row in similarity:
        best: dict[str, tuple[float, str]] = {}
        for score, photo in zip(row, photos, strict=True):
            identity = photo.parent.name
            if identity not in best or score > best[identity][0]:
                best[identity] = (float(score), photo.relative_to(gallery).as_posix())
        ranked = sorted(best.items(), key=lambda item: -item[1][0])[:k]
        out.append([(identity, score, photo) for identity, (score, photo) in ranked])
    return out


def identify(run: Path, gallery: Path, images: list[Path], *extra: str) -> int:
    args = ["identify", *map(str, images), "--model-dir", str(run), "--gallery", str(gallery)]
    return main([*args, "--device", "cpu", "--workers", "0", *extra])


def test_matches_brute_force_and_writes_the_figure(setup, tmp_path):
    tiny, run, gallery, new = setup
    out, figure = tmp_path / "matches.json", tmp_path / "matches.png"
    code = identify(run, gallery, new, "--top-k", "3", "--format", "json", "--out", str(out))
    assert code == 0
    assert identify(run, gallery, new[:2], "--top-k", "3", "--figure", str(figure)) == 0
    results = json.loads(out.read_text())
    expected = brute_force(run, gallery, new, k=3)
    assert [r["image"] for r in results] == [str(p) for p in new]
    for result, wanted in zip(results, expected, strict=True):
        got = [(m["identity"], m["similarity"], m["best_match"]) for m in result["matches"]]
        assert [m["rank"] for m in result["matches"]] == [1, 2, 3]
        assert [g[0] for g in got] == [w[0] for w in wanted]
        assert [g[2] for g in got] == [w[2] for w in wanted]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in wanted], atol=1e-5)
        rates = [m["false_positive_rate"] for m in result["matches"]]
        assert all(0 < r <= 1 for r in rates) and rates == sorted(rates)
    drawn = cv2.cvtColor(cv2.imread(str(figure)), cv2.COLOR_BGR2RGB)
    # Two new photos × (query + 3 matches) tiles; matches have grey frames (identity unknown).
    assert drawn.shape[0] > drawn.shape[1] / 4 > 0
    assert (drawn == np.array(UNKNOWN, np.uint8)).all(axis=2).sum() > 100


def test_similarity_figure_explains_the_listed_matches(setup, cnn_run, tmp_path, caplog, capsys):
    """What each listed match rests on, drawn from the same photos and descriptors as the table:
    the cells' cosines agree with the listed similarities (no warning), one row per photo."""
    from reid.figures.similarity import LABEL_HEIGHT, MARGIN

    _, paw_run, gallery, new = setup
    figure = tmp_path / "why.png"
    with caplog.at_level(logging.INFO):
        code = identify(
            cnn_run, gallery, new[:2], "--top-k", "2", "--similarity-figure", str(figure)
        )
    assert code == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    drawn = cv2.imread(str(figure))
    side = 144  # two rows of a query and two (query, match) pairs
    assert drawn.shape[:2] == (
        2 * MARGIN + 2 * (side + LABEL_HEIGHT) + 8,
        2 * MARGIN + side + 12 + 2 * (2 * side + 4) + 10,
    )
    assert identify(paw_run, gallery, new[:1], "--similarity-figure", str(figure)) == 2
    assert "similarity maps need a convolutional baseline" in error_line(capsys)


def test_table_lists_every_rank(setup, capsys):
    _, run, gallery, new = setup
    assert identify(run, gallery, new[:1], "--top-k", "2") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["image", "rank", "identity", "similarity"]
    assert [line.split()[1] for line in lines[1:]] == ["1", "2"]


def test_cache_reuses_unchanged_photos_and_extracts_new_ones(setup, tmp_path, caplog):
    _, run, gallery_source, new = setup
    gallery = tmp_path / "gallery"
    shutil.copytree(gallery_source, gallery)
    cache = tmp_path / "cache.npz"
    caplog.set_level(logging.INFO, logger="reid.identify")

    def reuse_line() -> str:
        lines = [r.getMessage() for r in caplog.records if "reused" in r.getMessage()]
        caplog.clear()
        return lines[-1]

    assert identify(run, gallery, new[:1], "--cache", str(cache)) == 0
    total = len(list(gallery.rglob("*.png")))
    assert f"{total} images, 0 descriptors reused" in reuse_line()
    assert identify(run, gallery, new[:1], "--cache", str(cache)) == 0
    line = reuse_line()
    assert f"{total} descriptors reused" in line and line.endswith(" 0 to extract")
    # A new gallery photo: only it is extracted, and it can now be the best match.
    shutil.copy(new[0], gallery / "id09" / "new.png")
    assert identify(run, gallery, new[:1], "--cache", str(cache), "--format", "json") == 0
    assert f"{total + 1} images, {total} descriptors reused" in reuse_line()
    with np.load(cache) as data:
        assert len(data["keys"]) == total + 1


@pytest.fixture(scope="module")
def cnn_run(setup, tmp_path_factory):
    """A convolutional baseline trained for one epoch on the same tiny dataset."""
    tiny = setup[0]
    out = tmp_path_factory.mktemp("identify_cnn") / "run"
    assert train(tiny, out, model={"arch": "resnet18", "img_size": 32}) == 0
    return out


@pytest.mark.parametrize(
    ("model", "key", "value"),
    [("paw", "descriptor", "after_bnneck"), ("cnn", "output_stride", 16)],
    ids=["after-bnneck", "dilated"],
)
def test_the_same_weights_returning_other_descriptors_get_their_own_cache_entries(
    setup, cnn_run, tmp_path, caplog, model, key, value
):
    """The same weights returning the descriptor after the BNNeck, or run with a dilated last
    stage, give other descriptors: the cache must not serve the ones it holds for the first."""
    _, paw_run, gallery, new = setup
    run = paw_run if model == "paw" else cnn_run
    after = tmp_path / "after"
    shutil.copytree(run, after)
    config = json.loads((after / "model.json").read_text())
    config["model"][key] = value
    (after / "model.json").write_text(json.dumps(config))
    cache, out = tmp_path / "cache.npz", tmp_path / "m.json"
    caplog.set_level(logging.INFO, logger="reid.identify")
    assert identify(run, gallery, new[:1], "--cache", str(cache)) == 0
    caplog.clear()
    args = ("--cache", str(cache), "--top-k", "3", "--format", "json", "--out", str(out))
    assert identify(after, gallery, new, *args) == 0
    total = len(list(gallery.rglob("*.png")))
    assert any(f"{total} images, 0 descriptors reused" in r.getMessage() for r in caplog.records)
    expected = brute_force(after, gallery, new, k=3)
    assert expected != brute_force(run, gallery, new, k=3)
    for result, wanted in zip(json.loads(out.read_text()), expected, strict=True):
        got = [(m["identity"], m["similarity"]) for m in result["matches"]]
        assert [g[0] for g in got] == [w[0] for w in wanted]
        np.testing.assert_allclose([g[1] for g in got], [w[1] for w in wanted], atol=1e-5)


def test_catalogue_gallery(setup, tmp_path):
    tiny, run, _, new = setup
    out = tmp_path / "m.json"
    args = ["--gallery", str(tiny.catalogue), "--root", str(tiny.root)]
    code = main(
        ["identify", str(new[0]), "--model-dir", str(run), *args, "--gallery-splits", "test"]
        + ["--device", "cpu", "--workers", "0", "--format", "json", "--out", str(out)]
    )
    assert code == 0
    matches = json.loads(out.read_text())[0]["matches"]
    # The photo is itself in the catalogue gallery: its own identity wins with similarity 1.
    assert matches[0]["identity"] == new[0].parent.name
    assert matches[0]["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_user_errors_are_one_line(setup, tmp_path, capsys):
    _, run, gallery, new = setup
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image")
    assert identify(run, gallery, [corrupt]) == 2
    line = error_line(capsys)
    assert "corrupt.jpg" in line and "cannot be decoded" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    assert identify(run, empty, new[:1]) == 2
    assert "holds no images" in error_line(capsys)
    assert identify(run, tmp_path / "nowhere.csv", new[:1]) == 2
    assert "needs --root" in error_line(capsys)
    assert identify(tmp_path, gallery, new[:1]) == 2
    assert "no trained model" in error_line(capsys)


def angles(*degrees: float) -> np.ndarray:
    """Unit 2-d descriptors at these angles, scaled so that cosine, not length, must be used."""
    radians = np.deg2rad(degrees)
    return np.stack([np.cos(radians), np.sin(radians)], axis=1) * np.arange(1, len(degrees) + 1)[
        :, None
    ].astype(np.float32)


def test_false_positive_rate_is_the_share_of_wrong_animals_best_scores_at_or_above():
    # Gallery: a at 0° and 20°, b at 90°, c at 180° and 200°. Each photo searched without its own
    # animal; its best wrong score, by hand:
    #   a0: max(b cos90, c cos160) = 0        a20: max(b cos70, c cos160) = cos70
    #   b90: max(a cos70, c cos90) = cos70
    #   c180: max(a cos160, b cos90) = 0      c200: max(a cos160, b cos110) = cos110
    cos = lambda d: float(np.cos(np.deg2rad(d)))  # noqa: E731
    gallery_features = angles(0, 20, 90, 180, 200)
    gallery = Gallery(Path("g"), ["a/0", "a/20", "b/90", "c/180", "c/200"], list("aabcc"))
    wrong = wrong_animal_scores(gallery_features, gallery.identities)
    np.testing.assert_allclose(wrong, [cos(110), 0, 0, cos(70), cos(70)], atol=1e-6)

    # A new photo at 10°: a scores cos10 (above every wrong score), b cos80 (only the two cos70
    # are higher), c cos170 (below all); equal photos resolve to the first.
    [candidates] = rank_identities(angles(10), gallery_features, gallery, 3, wrong)
    assert [(c.identity, c.best_match) for c in candidates] == [
        ("a", "a/0"),
        ("b", "b/90"),
        ("c", "c/180"),
    ]
    # (wrong scores at or above + 1) / (5 + 1)
    np.testing.assert_allclose([c.false_positive_rate for c in candidates], [1 / 6, 3 / 6, 1])


def test_a_score_equal_to_a_wrong_animals_counts_as_reached():
    # Axis vectors, so every cosine is exactly 1, 0 or -1. Best wrong scores: a max(0, -1) = 0,
    # b max(0, 0) = 0, c max(-1, 0) = 0.
    gallery = Gallery(Path("g"), ["a/1", "b/1", "c/1"], ["a", "b", "c"])
    features = np.array([[1, 0], [0, 1], [-1, 0]], dtype=np.float32)
    wrong = wrong_animal_scores(features, gallery.identities)
    np.testing.assert_array_equal(wrong, [0, 0, 0])
    [candidates] = rank_identities(np.array([[0, 3]], np.float32), features, gallery, 3, wrong)
    assert [c.identity for c in candidates] == ["b", "a", "c"]
    assert [c.false_positive_rate for c in candidates] == pytest.approx([1 / 4, 1, 1])


def test_one_identity_gets_no_false_positive_rate():
    gallery = Gallery(Path("g"), ["a/1", "a/2"], ["a", "a"])
    features = angles(0, 30)
    wrong = wrong_animal_scores(features, gallery.identities)
    assert len(wrong) == 0
    results = rank_identities(angles(10), features, gallery, 1, wrong)
    assert results[0][0].false_positive_rate is None
    assert results_table([Path("new.jpg")], results).splitlines()[1].split()[4] == "-"
    assert results_json([Path("new.jpg")], results)[0]["matches"][0]["false_positive_rate"] is None


def test_a_large_gallery_calibrates_on_a_seeded_sample_of_its_photos(monkeypatch):
    rng = np.random.default_rng(3)
    features = rng.normal(size=(12, 8)).astype(np.float32)
    identities = [f"id{i % 3}" for i in range(12)]
    every = wrong_animal_scores(features, identities)
    assert len(every) == 12  # one search per photo
    monkeypatch.setattr("reid.evaluation.false_positives.STAND_IN_SEARCHES", 4)
    sample = wrong_animal_scores(features, identities)
    assert len(sample) == 4
    np.testing.assert_array_equal(sample, wrong_animal_scores(features, identities))
    assert np.isin(sample, every).all()  # the same searches, only fewer of them
