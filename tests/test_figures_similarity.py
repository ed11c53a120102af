"""Similarity maps of convolutional baselines: the cell split against hand-computed shares and
the cosine, per-cell descriptors against the model's own descriptor, and a real render through
the CLI from a tiny trained CNN."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_cli import error_line, extract, train
from tiny_data import make_tiny_dataset

from reid.cli import main
from reid.errors import UserError
from reid.figures.similarity import LABEL_HEIGHT, MARGIN, split_similarity
from reid.models import ModelSpec, build_model


def test_split_by_hand():
    # Query: two cells, [1, 0] and [0, 1], so its descriptor is [1/2, 1/2]; match: one cell [1, 0].
    query = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # D=2 × h=1 × w=2
    match = np.array([[[1.0]], [[0.0]]])  # D=2 × 1 × 1
    query_share, match_share, cosine = split_similarity(query, match)
    root_half = np.sqrt(0.5)
    assert cosine == pytest.approx(root_half)  # [1/2, 1/2]·[1, 0] / (√½ · 1)
    # Cell 1 alone carries the match; cell 2 is orthogonal to it.
    np.testing.assert_allclose(query_share, [[root_half, 0.0]], atol=1e-12)
    np.testing.assert_allclose(match_share, [[root_half]], atol=1e-12)


cells = st.integers(1, 3).flatmap(
    lambda h: arrays(np.float64, (4, h, 2), elements=st.floats(-3, 3, width=32))
)


@settings(max_examples=60, deadline=None)
@given(cells, cells)
def test_shares_sum_to_the_cosine_of_the_means(query, match):
    dq, dg = query.mean(axis=(1, 2)), match.mean(axis=(1, 2))
    norm = np.linalg.norm(dq) * np.linalg.norm(dg)
    assume(norm > 1e-6)
    query_share, match_share, cosine = split_similarity(query, match)
    assert cosine == pytest.approx(dq @ dg / norm, abs=1e-9)
    assert query_share.sum() == pytest.approx(cosine, abs=1e-9)
    assert match_share.sum() == pytest.approx(cosine, abs=1e-9)
    swapped = split_similarity(match, query)  # the split is symmetric
    np.testing.assert_allclose(swapped[0], match_share, atol=1e-12)
    np.testing.assert_allclose(swapped[1], query_share, atol=1e-12)


def test_a_zero_descriptor_has_no_cosine():
    with pytest.raises(UserError, match="all zeros"):
        split_similarity(np.zeros((2, 1, 1)), np.ones((2, 1, 1)))


@pytest.mark.parametrize("arch", ["cnn_efflite0", "resnet18"])
@pytest.mark.parametrize("descriptor", ["before_bnneck", "after_bnneck"])
def test_cells_average_to_the_descriptor(arch, descriptor):
    torch.manual_seed(0)
    model = build_model(ModelSpec(arch, img_size=64, descriptor=descriptor), 7, 5)
    for module in model.modules():  # statistics far from the identity, so the BNNeck counts
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.inference_mode():
        per_cell = model.cell_descriptors(x)
        descriptor_ = model(x)
    assert per_cell.shape == (3, descriptor_.shape[1], 2, 2)
    torch.testing.assert_close(per_cell.mean(dim=(2, 3)), descriptor_, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("flip_test", [False, True])
def test_rows_reproduce_the_extracted_similarity(tmp_path, flip_test):
    """The figure explains the similarity extraction gives, flip test (the photo's and its
    mirror's descriptors concatenated) included: the shares are of that same cosine."""
    from reid.data.transforms import PROJECT_NORMALISATION
    from reid.engine.extract import extract_descriptors
    from reid.figures.retrieval import Match, QueryResult
    from reid.figures.similarity import similarity_rows

    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(40, 56), (48, 48), (64, 40)]):
        paths.append(tmp_path / f"photo{i}.png")
        cv2.imwrite(str(paths[-1]), rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet18", img_size=64, descriptor="after_bnneck"), 5, 2)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    model.eval()
    device = torch.device("cpu")
    extracted = extract_descriptors(model, paths, 64, device, flip_test=flip_test)
    unit = extracted / np.linalg.norm(extracted, axis=1, keepdims=True)
    matches = [Match(f"m{i}", paths[i], "b", 0.0, False) for i in (1, 2)]
    (row,) = similarity_rows(
        model,
        [QueryResult("q", paths[0], "a", matches)],
        64,
        device,
        PROJECT_NORMALISATION,
        flip_test=flip_test,
    )
    for shares, i in zip(row.matches, (1, 2), strict=True):
        assert shares.cosine == pytest.approx(float(unit[0] @ unit[i]), abs=1e-5)
        assert shares.query_share.sum() == pytest.approx(shares.cosine, abs=1e-5)
        assert shares.match_share.sum() == pytest.approx(shares.cosine, abs=1e-5)
        assert shares.query_share.shape == (2, 2)


def test_flip_test_puts_the_mirror_cells_back_in_place(tmp_path):
    """With flip test, a cell's share is its own view's plus its mirror cell's in the mirrored
    view: expected from two plain splits, of the photos and of mirrored copies saved to disk."""
    from reid.data.transforms import PROJECT_NORMALISATION
    from reid.engine.extract import extract_descriptors
    from reid.figures.retrieval import Match, QueryResult
    from reid.figures.similarity import similarity_rows

    rng = np.random.default_rng(1)
    photos = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2)]
    paths, mirrored = [], []
    for i, photo in enumerate(photos):
        paths.append(tmp_path / f"p{i}.png")
        mirrored.append(tmp_path / f"p{i}_mirror.png")
        cv2.imwrite(str(paths[-1]), photo)
        cv2.imwrite(str(mirrored[-1]), photo[:, ::-1])
    torch.manual_seed(0)
    model = build_model(ModelSpec("resnet18", img_size=64), 5, 2).eval()
    device = torch.device("cpu")

    def rows(query, match, flip_test=False):
        result = QueryResult("q", query, "a", [Match("g", match, "b", 0.0, False)])
        (row,) = similarity_rows(
            model, [result], 64, device, PROJECT_NORMALISATION, None, flip_test
        )
        return row.matches[0]

    def descriptor(path):
        return extract_descriptors(model, [path], 64, device)[0].astype(np.float64)

    own, mirror = rows(paths[0], paths[1]), rows(mirrored[0], mirrored[1])
    dq, dg = descriptor(paths[0]), descriptor(paths[1])
    mq, mg = descriptor(mirrored[0]), descriptor(mirrored[1])
    combined = np.linalg.norm(np.r_[dq, mq]) * np.linalg.norm(np.r_[dg, mg])
    expected = (
        own.query_share * np.linalg.norm(dq) * np.linalg.norm(dg)
        + mirror.query_share[:, ::-1] * np.linalg.norm(mq) * np.linalg.norm(mg)
    ) / combined
    flipped = rows(paths[0], paths[1], flip_test=True)
    np.testing.assert_allclose(flipped.query_share, expected, atol=1e-5)
    assert not np.allclose(mirror.query_share, mirror.query_share[:, ::-1], atol=1e-3)


def test_a_vit_cannot_be_split_into_cells():
    vit = build_model(ModelSpec("vit_tiny_patch16_224", img_size=32), 3, 2).eval()
    with pytest.raises(UserError, match="not an average of feature-map cells"):
        vit.cell_descriptors(torch.zeros(1, 3, 32, 32))


def test_cli_renders_a_trained_cnn(tmp_path, capsys, caplog):
    tiny = make_tiny_dataset(tmp_path)
    run = tmp_path / "run"
    assert train(tiny, run, model={"arch": "resnet18", "img_size": 32}) == 0
    assert extract(tiny, run, run / "features.npz") == 0
    out = tmp_path / "similarity.png"
    args = f"--model-dir {run} --catalogue {tiny.catalogue} --root {tiny.root} --n 2 --top-k 2"
    command = ["figure", "similarity", *args.split(), "--protocol", "all-vs-all"]
    with caplog.at_level(logging.INFO):
        assert main([*command, "--device", "cpu", "--out", str(out)]) == 0
    # The cells reproduce the stored features' similarities: no warning about other weights.
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    figure = cv2.imread(str(out))
    side = 144
    assert figure.shape[0] == 2 * MARGIN + 2 * (side + LABEL_HEIGHT) + 8
    assert figure.shape[1] == 2 * MARGIN + side + 12 + 2 * (2 * side + 4) + 10

    # Another model's features: the figure is drawn, with a warning naming the features file.
    paw = tmp_path / "paw"
    assert train(tiny, paw) == 0
    assert extract(tiny, paw, paw / "features.npz") == 0
    caplog.clear()
    assert main([*command, "--features", str(paw / "features.npz"), "--out", str(out)]) == 0
    assert "were these features extracted by this model" in caplog.text

    command[command.index(str(run))] = str(paw)  # PAW-ViT has part attention instead
    assert main([*command, "--out", str(out)]) == 2
    assert "similarity maps need a convolutional baseline" in error_line(capsys)
