"""Training-curve figure: panels follow the columns a history actually has."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from reid.errors import UserError
from reid.figures.curves import draw_training_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def history(epochs: int, losses: list[str], eval_every: int | None) -> pd.DataFrame:
    """A history.csv as reid train writes it: eval columns empty (NaN) between evaluations."""
    epoch = np.arange(1, epochs + 1)
    table = {f"loss_{name}": 3.0 / epoch + i for i, name in enumerate(losses)}
    table["loss_total"] = sum(table.values())
    table |= {"epoch": epoch, "lr": 3e-4 * np.cos(epoch / epochs) ** 2 + 1e-6, "steps": 3}
    frame = pd.DataFrame(table)
    if eval_every:
        evaluated = epoch % eval_every == 0
        for metric, value in (("mAP", 0.3), ("rank1", 0.5), ("rank5", 0.8), ("mINP", 0.1)):
            frame[f"eval_{metric}"] = np.where(evaluated, value * epoch / epochs, np.nan)
        frame["eval_num_queries"] = np.where(evaluated, 144, np.nan)
    return frame


def read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    image = cv2.imread(str(path))
    assert image is not None
    return image


def test_full_history(tmp_path: Path) -> None:
    out = tmp_path / "figs" / "curves.png"
    table = history(12, ["id", "triplet", "orientation", "segmentation"], eval_every=4)
    panels = draw_training_curves(table, out, title="paw_vit on demo")
    assert panels == ["losses", "learning rate", "evaluation"]
    image = read_png(out)
    assert image.shape[0] >= 300 and image.shape[1] >= 900  # three panels side by side
    assert (image < 100).any() and (image == 255).any()  # drawn ink on a white figure
    assert sorted(p.name for p in out.parent.iterdir()) == ["curves.png"]  # no temp file left


def test_baseline_without_evaluation(tmp_path: Path) -> None:
    out = tmp_path / "curves.png"
    panels = draw_training_curves(history(5, ["id", "triplet"], eval_every=None), out)
    assert panels == ["losses", "learning rate"]
    read_png(out)


def test_history_of_only_evaluations(tmp_path: Path) -> None:
    """An epoch-0 row (the untrained model) and string cells, as pandas may read them."""
    table = pd.DataFrame({"epoch": ["0", "4"], "eval_mAP": ["0.01", "0.2"], "eval_rank1": ["", ""]})
    panels = draw_training_curves(table, tmp_path / "curves.png")
    assert panels == ["evaluation"]


def panel_interior(image: np.ndarray, panel: int) -> np.ndarray:
    """Pixels inside the axes frame of one of the three panels, found from its spines."""
    third = image.shape[1] // 3
    dark = cv2.cvtColor(image[:, panel * third : (panel + 1) * third], cv2.COLOR_BGR2GRAY) < 100
    columns = np.flatnonzero(dark.sum(axis=0) > dark.shape[0] // 2)
    rows = np.flatnonzero(dark.sum(axis=1) > dark.shape[1] // 2)
    assert len(columns) >= 2 and len(rows) >= 2, "no axes frame found"
    region = image[:, panel * third : (panel + 1) * third]
    return region[rows[0] + 2 : rows[-1] - 1, columns[0] + 2 : columns[-1] - 1]


def test_empty_panels_are_labelled(tmp_path: Path) -> None:
    """A panel with no data carries a message in its middle instead of being blank."""
    assert draw_training_curves(pd.DataFrame({"epoch": [1, 2]}), tmp_path / "c.png") == []
    image = read_png(tmp_path / "c.png")
    for panel in range(3):
        interior = panel_interior(image, panel)
        height, width = interior.shape[:2]
        middle = interior[height // 3 : 2 * height // 3, width // 4 : 3 * width // 4]
        assert (middle < 200).any(), f"panel {panel} is blank"
        outside = interior.copy()
        outside[height // 3 : 2 * height // 3, width // 4 : 3 * width // 4] = 255
        assert (outside == 255).all(), f"panel {panel} has more than its message"


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no rows"):
        draw_training_curves(pd.DataFrame(), tmp_path / "x.png")
    with pytest.raises(UserError, match="no rows"):
        draw_training_curves(pd.DataFrame({"epoch": []}), tmp_path / "x.png")
    with pytest.raises(UserError, match="'epoch'"):
        draw_training_curves(pd.DataFrame({"loss_total": [1.0]}), tmp_path / "x.png")
    with pytest.raises(UserError, match="'two'"):
        draw_training_curves(pd.DataFrame({"epoch": ["1", "two"]}), tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()
