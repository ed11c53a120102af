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
from reid.figures.retrieval import UNKNOWN


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
    drawn = cv2.cvtColor(cv2.imread(str(figure)), cv2.COLOR_BGR2RGB)
    # Two new photos × (query + 3 matches) tiles; matches have grey frames (identity unknown).
    assert drawn.shape[0] > drawn.shape[1] / 4 > 0
    assert (drawn == np.array(UNKNOWN, np.uint8)).all(axis=2).sum() > 100


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
