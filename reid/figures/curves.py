"""Training curves of one run: losses, learning rate and evaluation metrics per epoch.

Drawn from the run's history.csv, whose columns differ between models (baselines have no
segmentation loss, ablations drop others, evaluation runs only every few epochs), so every panel
plots whatever its columns hold and says so when there is nothing, instead of failing or leaving
an empty frame that looks like a plotting bug.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from reid.errors import UserError
from reid.figures.thumbnails import save_png

LOSS_PREFIX = "loss_"
TOTAL_LOSS = "loss_total"
EVAL_PREFIX = "eval_"
# eval_num_queries / eval_num_gallery are counts, not fractions: they do not belong on a [0, 1] axis.
EVAL_COUNT_PREFIX = "eval_num_"
# The usual metrics first, in this order; any other eval_* fraction (ATRW's
# eval_single_cam_mAP, ...) follows in column order.
EVAL_ORDER = ("eval_mAP", "eval_rank1", "eval_rank5", "eval_rank10", "eval_mINP")
DPI = 100
FIGSIZE = (15.0, 5.0)


def draw_training_curves(history: pd.DataFrame, out: Path, title: str | None = None) -> list[str]:
    """Write a three-panel PNG of ``history`` to ``out``; return the panels that had data.

    ``history`` is a run's history.csv as read by pandas: one row per epoch (plus an epoch-0 row
    of the untrained model's metrics when evaluation is on), empty cells where a value was not
    recorded.
    """
    if history.empty:
        raise UserError("training history has no rows; train for at least one epoch first")
    if "epoch" not in history.columns:
        raise UserError(
            "training history has no 'epoch' column "
            f"(columns: {', '.join(map(str, history.columns))}); pass a history.csv of reid train"
        )
    numeric = history.apply(pd.to_numeric, errors="coerce")
    epoch = numeric["epoch"]
    if epoch.isna().any():
        bad = history["epoch"][epoch.isna()].iloc[0]
        raise UserError(f"training history has epoch {bad!r}, not a number; fix the history file")

    losses = [c for c in numeric.columns if str(c).startswith(LOSS_PREFIX)]
    evals = [c for c in EVAL_ORDER if c in numeric.columns] + [
        c
        for c in numeric.columns
        if str(c).startswith(EVAL_PREFIX)
        and not str(c).startswith(EVAL_COUNT_PREFIX)
        and c not in EVAL_ORDER
    ]
    figure = Figure(figsize=FIGSIZE, dpi=DPI, layout="constrained")
    canvas = FigureCanvasAgg(figure)
    loss_ax, lr_ax, eval_ax = figure.subplots(1, 3)
    has_data = {
        "losses": _plot_losses(loss_ax, epoch, numeric[losses]),
        "learning rate": _plot_learning_rate(lr_ax, epoch, numeric.get("lr")),
        "evaluation": _plot_metrics(eval_ax, epoch, numeric[evals]),
    }
    # One epoch range for all panels, so a metric point lines up with the losses of its epoch.
    first, last = float(epoch.min()), float(epoch.max())
    pad = max(0.5, 0.02 * (last - first))
    drawn = []
    for (name, plotted), ax in zip(has_data.items(), (loss_ax, lr_ax, eval_ax), strict=True):
        ax.set_title(name)
        if plotted:
            ax.set_xlabel("epoch")
            ax.set_xlim(first - pad, last + pad)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            drawn.append(name)
        else:
            _mark_empty(ax, name)
    if title:
        figure.suptitle(title)
    canvas.draw()
    save_png(np.asarray(canvas.buffer_rgba())[..., :3].copy(), out)
    return drawn


def _plot_losses(ax: Axes, epoch: pd.Series, losses: pd.DataFrame) -> bool:
    """Every loss term, the total drawn thicker since it is what the optimiser minimises."""
    plotted = False
    for column in losses.columns:
        kept = losses[column].notna()
        if not kept.any():
            continue
        total = column == TOTAL_LOSS
        ax.plot(
            epoch[kept],
            losses[column][kept],
            label=column.removeprefix(LOSS_PREFIX),
            linewidth=2.6 if total else 1.2,
            color="black" if total else None,
            zorder=3 if total else 2,
        )
        plotted = True
    if plotted:
        ax.set_ylabel("loss")
        _legend_below(ax)
    return plotted


def _plot_learning_rate(ax: Axes, epoch: pd.Series, lr: pd.Series | None) -> bool:
    """The schedule, on a log axis because warm-up and decay span decades.

    Non-positive values, which a log axis cannot show, are left out.
    """
    if lr is None:
        return False
    kept = lr.notna() & (lr > 0)
    if not kept.any():
        return False
    ax.plot(epoch[kept], lr[kept], marker=".", color="tab:purple")
    ax.set_yscale("log")
    ax.set_ylabel("learning rate")
    return True


def _plot_metrics(ax: Axes, epoch: pd.Series, metrics: pd.DataFrame) -> bool:
    """Each metric at the epochs that evaluated, with markers since those epochs are sparse."""
    plotted = False
    for column in metrics.columns:
        kept = metrics[column].notna()
        if not kept.any():
            continue
        ax.plot(
            epoch[kept],
            metrics[column][kept],
            marker="o",
            label=column.removeprefix(EVAL_PREFIX),
            clip_on=False,
        )
        plotted = True
    if plotted:
        ax.set_ylim(0.0, 1.0)
        ax.set_ylabel("fraction")
        _legend_below(ax)
    return plotted


def _legend_below(ax: Axes) -> None:
    """Legend under the panel: inside, it would hide the curves whatever corner it took."""
    ax.legend(
        loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize="small", frameon=False
    )


def _mark_empty(ax: Axes, name: str) -> None:
    """Say in the panel's middle that it has no data, so it does not look like a plotting bug."""
    ax.text(
        0.5,
        0.5,
        f"no {name} recorded",
        transform=ax.transAxes,
        ha="center",
        va="center",
        color="grey",
    )
    ax.set_xticks([])
    ax.set_yticks([])
