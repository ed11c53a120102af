"""results/{dataset}/comparison.md: a dataset's models side by side, from their metrics.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reid.cli import main


def provenance(model: str, arch: str, dim: int, **extra) -> dict:
    return {"protocol": "all-vs-all", "model": model, "arch": arch, "descriptor_dim": dim, **extra}


TRAINED = {
    "mAP": 0.0541,
    "rank1": 0.0497,
    "rank5": 0.2073,
    "rank10": 0.3118,
    "mINP": 0.0237,
    "provenance": provenance(
        "paw_vit_efflite0", "paw_vit_efflite0", 192, epochs=8, train_wall_time_s=898.27
    ),
}
BASELINE = {
    "mAP": 0.0461,
    "rank1": 0.0600,
    "rank5": 0.1990,
    "provenance": provenance("vit_efflite0", "vit_efflite0", 192, epochs=8, train_wall_time_s=61),
}
FROZEN = {
    "mAP": 0.0644,
    "rank1": 0.0580,
    "rank5": 0.2600,
    "provenance": provenance(
        "efflite0_frozen", "cnn_efflite0", 1280, frozen=True, epochs=0, train_wall_time_s=None
    ),
}


def write(tmp_path: Path, name: str, metrics: dict) -> Path:
    path = tmp_path / name / "metrics.json"
    path.parent.mkdir()
    path.write_text(json.dumps(metrics))
    return path


def test_the_table_of_a_trained_model_its_baseline_and_a_frozen_one(tmp_path):
    paths = [
        write(tmp_path, "paw_vit_efflite0", TRAINED),
        write(tmp_path, "vit_efflite0", BASELINE),
        write(tmp_path, "efflite0_frozen", FROZEN),
    ]
    out, page = tmp_path / "comparison.md", tmp_path / "comparison.html"
    metrics = [f"baseline={paths[1]}" if i == 1 else str(p) for i, p in enumerate(paths)]
    argv = ["compare", "--metrics", *metrics, "--title", "nyala", "--out", str(out)]
    assert main([*argv, "--html", str(page)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "# Models compared on nyala"
    assert lines[2].startswith("Protocol all-vs-all: fractions of the test queries")
    assert lines[4:] == [
        "| model | arch | mAP | rank-1 | rank-5 | training | descriptor |",
        "|---|---|---|---|---|---|---|",
        "| paw_vit_efflite0 | paw_vit_efflite0 | 0.054 | 0.050 | 0.207 | 8 epochs, 15 min | 192-d |",
        "| baseline | vit_efflite0 | 0.046 | **0.060** | 0.199 | 8 epochs, 61 s | 192-d |",
        "| efflite0_frozen | cnn_efflite0 | **0.064** | 0.058 | **0.260** | frozen | 1280-d |",
    ]
    html = page.read_text()
    assert "<td><b>0.064</b></td>" in html and "<td>frozen</td>" in html
    assert html.count("<tr>") == 4


def test_atrw_metrics_get_the_per_group_columns(tmp_path):
    group = {"mAP": 0.5, "rank1": 0.8, "rank5": 0.9}
    atrw = {
        "single_cam": group,
        "cross_cam": {**group, "mAP": 0.3},
        "mmAP": 0.4,
        "provenance": {**provenance("m", "a", 768, frozen=True), "protocol": "atrw"},
    }
    out = tmp_path / "comparison.md"
    assert main(["compare", "--metrics", str(write(tmp_path, "m", atrw)), "--out", str(out)]) == 0
    header, _, row = out.read_text().splitlines()[4:7]
    assert header == (
        "| model | arch | mmAP | single-cam mAP | single-cam rank-1 | single-cam rank-5 | "
        "cross-cam mAP | cross-cam rank-1 | cross-cam rank-5 | training | descriptor |"
    )
    assert row == (
        "| m | a | **0.400** | **0.500** | **0.800** | **0.900** | **0.300** | **0.800** | "
        "**0.900** | frozen | 768-d |"
    )


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (
            {"a": TRAINED, "b": {"mmAP": 0.3, "single_cam": {}, "cross_cam": {}}},
            "different protocols",
        ),
        ({"a": {"rank1": 0.1}}, "holds no mAP or mmAP: it is not a metrics.json"),
        ({"a": "{not json"}, "is not valid JSON"),
        ({}, "does not exist: run `reid evaluate` first"),
    ],
)
def test_bad_metrics_are_one_line(tmp_path, capsys, files, expected):
    paths = []
    for name, content in files.items():
        path = write(tmp_path, name, {})
        path.write_text(content if isinstance(content, str) else json.dumps(content))
        paths.append(str(path))
    argv = ["compare", "--metrics", *(paths or [str(tmp_path / "none.json")])]
    assert main([*argv, "--out", str(tmp_path / "c.md")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected in err[0] and err[0].startswith("reid: error: ")
    assert not (tmp_path / "c.md").exists()
