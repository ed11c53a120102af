"""A dataset's models side by side: one markdown table, results/{dataset}/comparison.md.

One row per model, each read from its metrics.json (`reid evaluate`): the retrieval metrics of the
dataset's protocol, how long the model trained ("frozen" for pretrained weights used as they are,
which is the baseline any training has to beat) and the length of its descriptor, which sets the
memory of a gallery and the cost of matching against it. The best value of each metric is bold.
The same table is written as HTML for the Snakemake report, which shows HTML but not markdown.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any

from reid.errors import UserError

FLAT_COLUMNS = (("mAP", ("mAP",)), ("rank-1", ("rank1",)), ("rank-5", ("rank5",)))
"""Header and key path of each metric column under the query-gallery and all-vs-all protocols."""
ATRW_COLUMNS = (
    ("mmAP", ("mmAP",)),
    *(
        (f"{group} {header}", (key, *path))
        for group, key in (("single-cam", "single_cam"), ("cross-cam", "cross_cam"))
        for header, path in FLAT_COLUMNS
    ),
)
"""The same under the ATRW protocol: per query group, and mmAP, the mean of their mAPs."""


def read_metrics(path: Path) -> dict[str, Any]:
    """A metrics.json of `reid evaluate`, with one clear error when it is missing or not one."""
    if not path.is_file():
        raise UserError(f"metrics file {path} does not exist: run `reid evaluate` first")
    try:
        metrics = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"{path} is not valid JSON ({error}): rerun `reid evaluate`") from None
    if not isinstance(metrics, dict) or not ("mAP" in metrics or "mmAP" in metrics):
        raise UserError(f"{path} holds no mAP or mmAP: it is not a metrics.json of `reid evaluate`")
    return metrics


@dataclass(frozen=True)
class Comparison:
    """The table of a dataset's models: header, and per model its cells (text, best of column)."""

    title: str
    protocol: str
    header: list[str]
    rows: list[list[tuple[str, bool]]]

    @property
    def note(self) -> str:
        return (
            f"Protocol {self.protocol}: fractions of the test queries, higher is better, the best "
            "of each column in bold. Training: epochs and wall time of `reid train`; frozen: "
            "pretrained weights used as they are, no training. Descriptor: values per image "
            "(doubled by flip_test), compared by cosine similarity."
        )

    def markdown(self) -> str:
        cells = [[f"**{text}**" if best else text for text, best in row] for row in self.rows]
        lines = [self.header, *cells]
        table = ["| " + " | ".join(line) + " |" for line in lines]
        table.insert(1, "|" + "---|" * len(self.header))
        return "\n".join([f"# Models compared on {self.title}", "", self.note, "", *table, ""])

    def html(self) -> str:
        """A standalone page (the Snakemake report shows HTML items inline, not markdown)."""
        head = "".join(f"<th>{escape(name)}</th>" for name in self.header)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td><b>{escape(text)}</b></td>" if best else f"<td>{escape(text)}</td>"
                for text, best in row
            )
            + "</tr>"
            for row in self.rows
        )
        return (
            f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(self.title)}"
            "</title><style>body{font-family:sans-serif}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
            "td:first-child,td:nth-child(2),th{text-align:left}</style></head><body>"
            f"<h1>Models compared on {escape(self.title)}</h1><p>{escape(self.note)}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n"
        )


def compare_models(models: Sequence[tuple[str, dict[str, Any]]], title: str) -> Comparison:
    """The comparison of ``models`` ((name, metrics.json content), in row order)."""
    if not models:
        raise UserError("no models to compare: give at least one metrics.json")
    atrw = ["mmAP" in metrics for _, metrics in models]
    if any(atrw) and not all(atrw):
        raise UserError(
            "the metrics files were evaluated under different protocols (ATRW and another): "
            "compare models of one dataset"
        )
    columns = ATRW_COLUMNS if all(atrw) else FLAT_COLUMNS
    values = [[_lookup(metrics, path) for _, path in columns] for _, metrics in models]
    best = [max(column) for column in zip(*values, strict=True)]
    rows = []
    for (name, metrics), row in zip(models, values, strict=True):
        provenance = metrics.get("provenance", {})
        dim = provenance.get("descriptor_dim")
        rows.append(
            [
                (name, False),
                (str(provenance.get("arch", "")), False),
                *((f"{value:.3f}", value == top) for value, top in zip(row, best, strict=True)),
                (_training(provenance), False),
                (f"{dim}-d" if dim else "not recorded", False),
            ]
        )
    return Comparison(
        title=title,
        protocol=str(models[0][1].get("provenance", {}).get("protocol", "")),
        header=["model", "arch", *(name for name, _ in columns), "training", "descriptor"],
        rows=rows,
    )


def _lookup(metrics: dict[str, Any], path: tuple[str, ...]) -> float:
    value: Any = metrics
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise UserError(
                f"metrics of model {metrics.get('provenance', {}).get('model')} "
                f"lack {'.'.join(path)}: rerun `reid evaluate`"
            )
        value = value[key]
    return float(value)


def _training(provenance: dict[str, Any]) -> str:
    if provenance.get("frozen"):
        return "frozen"
    seconds = provenance.get("train_wall_time_s")
    if seconds is None:
        return "not recorded"
    return f"{provenance.get('epochs')} epochs, {_duration(float(seconds))}"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
