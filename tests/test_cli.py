"""The `reid` console script: real runs on tiny data, and one clear line for each user error."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tiny_data import TinyDataset, make_tiny_dataset, run_settings

from reid.cli import main
from reid.engine.extract import load_features, save_features


@pytest.fixture()
def tiny(tmp_path):
    return make_tiny_dataset(tmp_path)


def train(
    tiny: TinyDataset, out: Path, masks: Path | None = None, model: dict | None = None
) -> int:
    """One epoch of the tiny PAW-ViT of run_settings, or of ``model`` (a models entry)."""
    settings = json.dumps(run_settings(epochs=1) | ({"model": model} if model else {}))
    args = (
        f"--catalogue {tiny.catalogue} --root {tiny.root} --masks {masks or tiny.masks} --out {out}"
    )
    return main(
        [
            "train",
            "--settings-json",
            settings,
            *args.split(),
            *"--workers 0 --no-progress --device cpu".split(),
        ]
    )


def extract(tiny: TinyDataset, model_dir: Path, out: Path, *extra: str) -> int:
    args = f"extract --model-dir {model_dir} --catalogue {tiny.catalogue} --root {tiny.root} --device cpu --out {out}"
    return main([*args.split(), *extra])


def evaluate(features: Path, catalogue: Path, out: Path, *extra: str) -> int:
    args = (
        f"evaluate --features {features} --catalogue {catalogue} --protocol all-vs-all --out {out}"
    )
    return main([*args.split(), *extra])


def error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error printed"
    assert "Traceback" not in "\n".join(err)
    return err[-1]


def test_train_extract_evaluate(tiny, tmp_path):
    run, features, metrics_path = (
        tmp_path / "run",
        tmp_path / "features.npz",
        tmp_path / "metrics.json",
    )
    assert train(tiny, run) == 0
    assert extract(tiny, run, features, "--flip-test", "--workers", "0") == 0
    ids, values = load_features(features)
    test_ids = sorted(tiny.table.loc[tiny.table["split"] == "test", "image_id"])
    assert sorted(ids) == test_ids
    assert values.shape == (len(test_ids), 2 * 192)  # flip test: image and mirror concatenated
    assert evaluate(features, tiny.catalogue, metrics_path, "--model-dir", str(run)) == 0
    metrics = json.loads(metrics_path.read_text())
    assert 0 <= metrics["mAP"] <= 1 and metrics["num_queries"] == len(test_ids)
    provenance = metrics["provenance"]
    assert provenance["K"] == 2 and provenance["teacher_id"] == "abc123def456"
    assert provenance["epochs"] == 1 and provenance["seed"] == 0 and provenance["device"] == "cpu"
    assert provenance["precision"] == "fp32"
    assert {"torch", "timm", "numpy"} <= set(provenance["versions"])


def test_missing_catalogue_is_one_line(tmp_path, capsys):
    assert evaluate(tmp_path / "f.npz", tmp_path / "nope.csv", tmp_path / "m.json") == 2
    assert error_line(capsys).startswith("reid: error:")


def test_features_not_matching_the_catalogue(tiny, tmp_path, capsys):
    features = tmp_path / "features.npz"
    save_features(features, ["not/in/catalogue", "id07/0"], np.ones((2, 4), np.float32))
    assert evaluate(features, tiny.catalogue, tmp_path / "m.json") == 2
    assert "not/in/catalogue" in error_line(capsys)


def write_object_array(path: Path) -> None:
    np.savez(path, image_id=np.array(["a", 1], dtype=object), features=np.zeros((2, 3)))


@pytest.mark.parametrize(
    "write",
    [
        lambda path: path.write_bytes(b"not an npz"),
        lambda path: path.write_bytes(b""),
        write_object_array,
        lambda path: np.savez(path, image_id=np.array(["a"])),
    ],
    ids=["not-npz", "empty", "pickled", "no-features"],
)
def test_corrupt_features_file(tiny, tmp_path, capsys, write):
    """Our own line naming the file and the fix; never numpy's advice to unpickle the file."""
    features = tmp_path / "features.npz"
    write(features)
    assert evaluate(features, tiny.catalogue, tmp_path / "m.json") == 2
    line = error_line(capsys)
    assert line.startswith(f"reid: error: {features} is not a features file of `reid extract`")
    assert line.endswith("rerun `reid extract`")
    assert "trust" not in line and "pickle" not in line


def test_train_without_part_maps(tiny, tmp_path, capsys):
    assert train(tiny, tmp_path / "run", masks=tmp_path / "masks" / "0123") == 2
    assert "run the teacher first" in error_line(capsys)


def test_extract_without_a_trained_model(tiny, tmp_path, capsys):
    assert extract(tiny, tmp_path / "none", tmp_path / "f.npz") == 2
    assert "run `reid train` first" in error_line(capsys)


def test_corrupt_image_names_the_file(tiny, tmp_path, capsys):
    run = tmp_path / "run"
    assert train(tiny, run) == 0
    broken = tiny.root / tiny.table.loc[tiny.table["split"] == "test", "path"].iloc[0]
    broken.write_bytes(b"\x89PNG truncated")
    for workers in ("0", "1"):  # in a loader worker process too
        assert extract(tiny, run, tmp_path / "f.npz", "--workers", workers) == 2
        line = error_line(capsys)
        assert (
            line.startswith("reid: error: image ")
            and str(broken) in line
            and "cannot be decoded" in line
        )


def test_catalogue_command_and_unknown_adapter_option(tmp_path, capsys):
    out = tmp_path / "catalogue.csv"
    options = json.dumps(
        {"identities": 4, "encounters": 1, "images_per_encounter": 1, "test_fraction": 0.5}
    )
    base = [
        "catalogue",
        "--adapter",
        "synthetic",
        "--root",
        str(tmp_path / "data"),
        "--out",
        str(out),
    ]
    assert main([*base, "--options-json", options]) == 0
    assert out.read_text().startswith("image_id,path,identity,split")
    assert main([*base, "--options-json", '{"idents": 4}']) == 2
    assert "idents" in error_line(capsys)
