"""Part-attention figure: panel layout, the predicted-parts panel against hand-made maps, and a
real render from a trained tiny PAW-ViT through the CLI."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from test_cli import error_line, train
from tiny_data import PART_NAMES, make_tiny_dataset

from reid.cli import main
from reid.figures.attention import (
    GAP,
    LABEL_HEIGHT,
    OVERLAY_ALPHA,
    draw_part_attention,
    part_palette,
)


def read_png(path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def panel(figure: np.ndarray, row: int, column: int, side: int) -> np.ndarray:
    y0 = LABEL_HEIGHT + GAP + row * (side + GAP)
    x0 = column * (side + GAP)
    return figure[y0 : y0 + side, x0 : x0 + side].astype(int)


def test_predicted_parts_follow_the_strongest_map(tmp_path):
    """Hand-made maps: part 1 strongest on the left half, background on the right half."""
    side = 32
    view = np.full((1, side, side, 3), 100, np.uint8)
    maps = np.zeros((1, 3, 8, 8), np.float32)  # K = 2 parts + background
    maps[0, 0, :, :4] = 0.9  # part 1 ("front") on the left
    maps[0, 2, :, 4:] = 0.8  # background on the right
    maps[0, 1] = 0.1
    out = tmp_path / "attention.png"
    titles = draw_part_attention(view, maps, PART_NAMES, out, side=side)
    assert titles == ["image", "predicted parts", "front", "rear", "background"]
    figure = read_png(out)
    assert figure.shape == (LABEL_HEIGHT + GAP + side, 5 * side + 4 * GAP, 3)
    predicted = panel(figure, 0, 1, side)
    front = np.round((1 - OVERLAY_ALPHA) * 100 + OVERLAY_ALPHA * part_palette(2)[1])
    np.testing.assert_allclose(predicted[:, :12], np.broadcast_to(front, (side, 12, 3)), atol=1)
    np.testing.assert_array_equal(predicted[:, 20:], 100)  # background stays bare
    # Heat panels: the part-1 map is bright where it is 0.9 and dark where it is 0.
    heat_front = panel(figure, 0, 2, side)
    assert heat_front[:, :12].mean() > heat_front[:, 20:].mean() + 50


def test_part_names_must_match_the_tokens(tmp_path):
    from reid.errors import UserError

    with pytest.raises(UserError, match="3 part names for a model with 2 part tokens"):
        draw_part_attention(
            np.zeros((1, 8, 8, 3), np.uint8),
            np.zeros((1, 3, 4, 4), np.float32),
            ["a", "b", "c"],
            tmp_path / "x.png",
        )


def test_cli_renders_a_trained_model(tmp_path, capsys):
    tiny = make_tiny_dataset(tmp_path)
    run = tmp_path / "run"
    assert train(tiny, run) == 0
    out = tmp_path / "attention.png"
    args = f"--model-dir {run} --catalogue {tiny.catalogue} --root {tiny.root} --n 3"
    assert main(["figure", "attention", *args.split(), "--device", "cpu", "--out", str(out)]) == 0
    figure = read_png(out)
    side = 160
    assert figure.shape == (LABEL_HEIGHT + 3 * (GAP + side), 5 * side + 4 * GAP, 3)
    rows = [[panel(figure, r, c, side) for c in range(5)] for r in range(3)]
    # Different images in different rows, and the part and background maps differ.
    assert np.abs(rows[0][0] - rows[2][0]).mean() > 1
    assert np.abs(rows[0][2] - rows[0][3]).mean() > 0.5
    assert np.abs(rows[0][2] - rows[0][4]).mean() > 0.5

    images = [str(tiny.root / p) for p in tiny.table["path"][:2]]
    out2 = tmp_path / "two.png"
    cmd = ["figure", "attention", "--model-dir", str(run), "--images", *images]
    assert main([*cmd, "--device", "cpu", "--out", str(out2)]) == 0
    assert read_png(out2).shape[0] == LABEL_HEIGHT + 2 * (GAP + side)

    assert main(["figure", "attention", "--model-dir", str(run), "--out", str(out2)]) == 2
    assert "give --images, or --catalogue and --root" in error_line(capsys)


def test_baselines_have_no_part_attention(tmp_path):
    import torch

    from reid.errors import UserError
    from reid.figures.attention import attention_maps
    from reid.models import ModelSpec, build_model

    vit = build_model(ModelSpec("vit_tiny_patch16_224", img_size=32), num_classes=3, num_parts=2)
    with pytest.raises(UserError, match="needs a part-aware model"):
        attention_maps(vit, [tmp_path / "a.png"], 32, torch.device("cpu"))
