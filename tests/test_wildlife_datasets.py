"""Adapter `wildlife_datasets` on miniature trees in the layouts the library's classes read.

Every expectation is computed independently by the library itself (its class's metadata, its
splitter on that metadata), so the tests check the mapping onto the catalogue, not our reading
of the library.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from test_workflow import shipped_config, snakemake, succeeded, tiny_training, write_config
from wildlife_tree import (
    CZOO_IDS,
    SEATURTLE_IDS,
    SEATURTLE_SPLITS,
    make_czoo_tree,
    make_seaturtle_tree,
    make_smalst_tree,
    make_stripespotter_tree,
)

from pseudomasks.coco_segmentation import decode
from reid.catalogue import COLUMNS, read_catalogue, write_catalogue
from reid.datasets import build_catalogue, expected_paths, wildlife
from reid.datasets.wildlife import SPLIT_KINDS
from reid.errors import UserError

wd_datasets = pytest.importorskip("wildlife_datasets.datasets")
wd_splits = pytest.importorskip("wildlife_datasets.splits")

REPO = Path(__file__).resolve().parents[1]
CLOSED = {"kind": "closed_set", "ratio_train": 0.5, "seed": 3}


def tiny_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (200, 120, 40)).save(path)


def catalogue(root: Path, dataset: str, split: dict, **options: object) -> pd.DataFrame:
    return build_catalogue(
        "wildlife_datasets", root, {"dataset": dataset, "split": split, **options}, "header"
    )


def library_splits(df: pd.DataFrame, splitter: object) -> dict[str, str]:
    """image_id -> 'train'/'test' as the library's splitter assigns them."""
    idx_train, idx_test = splitter.split(df)[0]
    where = {str(df.at[i, "image_id"]): "train" for i in idx_train}
    where.update({str(df.at[i, "image_id"]): "test" for i in idx_test})
    return where


@pytest.fixture(scope="module")
def stripespotter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_stripespotter_tree(tmp_path_factory.mktemp("wd"))


def test_stripespotter_rows_are_the_librarys_metadata_and_split(stripespotter: Path) -> None:
    table = catalogue(stripespotter, "StripeSpotter", CLOSED)
    assert list(table.columns) == list(COLUMNS)
    df = wd_datasets.StripeSpotter(str(stripespotter)).df
    expected = library_splits(df, wd_splits.ClosedSetSplit(ratio_train=0.5, seed=3))
    assert dict(zip(table["image_id"], table["split"], strict=True)) == expected
    assert set(table["split"]) == {"train", "test"}

    known = df[df["identity"] != "unknown"]
    known = known.set_index(known["image_id"].astype(str))
    assert len(table) == len(known) == 16  # the 2 unknown photos are in no split
    for row in table.to_dict("records"):
        source = known.loc[row["image_id"]]
        assert row["identity"] == source["identity"]
        assert row["path"] == source["path"] and (stripespotter / row["path"]).is_file()
        assert row["orientation"] == source["orientation"] in ("left", "right")
        assert row["encounter"] == pd.Timestamp(source["date"]).strftime("%Y-%m-%d")
        assert json.loads(row["bbox"]) == list(source["bbox"])
        assert row["silhouette"] == row["keypoints"] == row["camera"] == ""


@pytest.mark.parametrize(
    ("split", "splitter"),
    [
        ({"kind": "disjoint_set", "n_class_test": 2, "seed": 1}, "DisjointSetSplit"),
        ({"kind": "open_set", "ratio_train": 0.5, "n_class_test": 1, "seed": 2}, "OpenSetSplit"),
        ({"kind": "time_proportion", "ratio": 0.5}, "TimeProportionSplit"),
    ],
)
def test_split_kinds_are_the_librarys_splitters(
    stripespotter: Path, split: dict, splitter: str
) -> None:
    table = catalogue(stripespotter, "StripeSpotter", split)
    df = wd_datasets.StripeSpotter(str(stripespotter)).df
    arguments = {k: v for k, v in split.items() if k != "kind"}
    expected = library_splits(df, getattr(wd_splits, splitter)(**arguments))
    assert dict(zip(table["image_id"], table["split"], strict=True)) == expected
    if split["kind"] == "disjoint_set":
        train = set(table.loc[table["split"] == "train", "identity"])
        assert len(train) == 2 and not train & set(table.loc[table["split"] == "test", "identity"])
    if split["kind"] == "time_proportion":  # each animal's first day trains, its second tests
        by_split = table.groupby("split")["encounter"].agg(set)
        assert by_split["train"] == {"2011-07-12"} and by_split["test"] == {"2011-07-13"}


def test_orientations_outside_left_right_are_unknown_unless_mapped(tmp_path: Path) -> None:
    root = make_stripespotter_tree(tmp_path, flanks=("left", "frontleft"))
    plain = catalogue(root, "StripeSpotter", CLOSED)
    assert set(plain["orientation"]) == {"left", ""}
    mapped = catalogue(root, "StripeSpotter", CLOSED, orientation_map={"frontleft": "left"})
    assert set(mapped["orientation"]) == {"left"}
    with pytest.raises(UserError, match=r"orientation_map maps to \['front'\]; map each value"):
        catalogue(root, "StripeSpotter", CLOSED, orientation_map={"frontleft": "front"})


def test_smalst_masks_become_silhouettes(tmp_path: Path) -> None:
    root = make_smalst_tree(tmp_path)
    table = catalogue(root, "SMALST", {"kind": "disjoint_set", "n_class_test": 3, "seed": 0})
    df = wd_datasets.SMALST(str(root)).df.set_index("image_id")
    assert len(table) == len(df) == 24
    for row in table.to_dict("records"):
        assert row["silhouette"] == df.at[int(row["image_id"]), "segmentation"]
        assert (root / row["silhouette"]).is_file() and row["bbox"] == ""


def test_seaturtle_published_split_and_inline_masks(tmp_path: Path) -> None:
    """SeaTurtleID2022 keeps its masks in the metadata (polygons or RLE): they reach the
    catalogue as COCO JSON and decode to the masks drawn; `original` is its split_closed."""
    root, drawn = make_seaturtle_tree(tmp_path)
    table = catalogue(root, "SeaTurtleID2022", {"kind": "original"})
    write_catalogue(table, tmp_path / "catalogue.csv")  # the JSON survives the CSV file
    table = read_catalogue(tmp_path / "catalogue.csv")
    assert any(
        "\\" in json.loads(cell).get("counts", "") for cell in table["silhouette"] if "{" in cell
    )
    photos = len(SEATURTLE_IDS) * len(SEATURTLE_SPLITS)
    assert len(table) == photos - len(SEATURTLE_IDS)  # the 'valid' photos are left out
    for row in table.to_dict("records"):
        file_name = row["path"].removeprefix("turtles-data/data/")
        k = int(Path(file_name).stem) % 10 - 1
        assert row["split"] == SEATURTLE_SPLITS[k] and row["identity"] in SEATURTLE_IDS
        assert json.loads(row["silhouette"])  # inline, not a file
        mask = decode(row["silhouette"], drawn[file_name].shape, row["image_id"])
        np.testing.assert_array_equal(mask, drawn[file_name])
        x, y, w, h = json.loads(row["bbox"])
        ys, xs = np.nonzero(drawn[file_name])
        assert (x, y, x + w - 1, y + h - 1) == (xs.min(), ys.min(), xs.max(), ys.max())


def test_keypoints_pairs_or_triples_become_catalogue_triples(tmp_path: Path) -> None:
    """CZoo keeps five face landmarks as x, y pairs (inf where missing): each becomes x, y, 2,
    a missing one 0, 0, 0 (the COCO convention the annotations pose member reads)."""
    root, written = make_czoo_tree(tmp_path)
    table = catalogue(root, "CZoo", {"kind": "closed_set", "ratio_train": 0.5, "seed": 0})
    assert len(table) == len(written)
    for row in table.to_dict("records"):
        values = np.asarray(json.loads(row["keypoints"])).reshape(-1, 3)
        pairs = np.asarray(written[row["path"]]).reshape(-1, 2)
        missing = np.isnan(pairs).any(axis=1)
        np.testing.assert_array_equal(values[~missing, :2], pairs[~missing])
        assert (values[~missing, 2] == 2).all() and (values[missing] == 0).all()
    assert sum(json.loads(k)[-1] == 0 for k in table["keypoints"]) == len(CZOO_IDS)


def test_keypoints_triples_stay_as_they_are() -> None:
    """ATRW's keypoints are x, y, v triples (v in 0..2): copied as they are."""
    triples = [[10.0, 20.0, 2.0, 0.0, 0.0, 0.0, 30.5, 40.0, 1.0], [1.0, 2.0, 2.0] * 3, None]
    df = pd.DataFrame({"keypoints": triples})
    out = wildlife._keypoints(df, "ATRW")
    assert [json.loads(v) for v in out[:2]] == triples[:2] and out[2] == ""


def test_original_split_needs_the_datasets_own(stripespotter: Path) -> None:
    with pytest.raises(UserError, match="StripeSpotter has no published split"):
        catalogue(stripespotter, "StripeSpotter", {"kind": "original"})
    with pytest.raises(UserError, match="kind original takes no arguments"):
        catalogue(stripespotter, "StripeSpotter", {"kind": "original", "seed": 0})


def test_unknown_class_names_the_close_ones(stripespotter: Path) -> None:
    with pytest.raises(UserError) as err:
        catalogue(stripespotter, "StripeSpoter", CLOSED)
    message = str(err.value)
    assert message.startswith("wildlife_datasets has no dataset class 'StripeSpoter'")
    assert "did you mean StripeSpotter?" in message and "set option dataset" in message
    with pytest.raises(UserError, match="did you mean NyalaData"):
        catalogue(stripespotter, "nyaladata", CLOSED)


def test_a_root_without_the_dataset_says_where_to_point_it(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    with pytest.raises(UserError) as err:
        catalogue(tmp_path / "elsewhere", "StripeSpotter", CLOSED)
    message = str(err.value)
    assert message.startswith(f"wildlife_datasets StripeSpotter cannot read {tmp_path}/elsewhere")
    assert message.endswith(
        "set root to the folder that StripeSpotter.get_data(root) "
        "downloaded the dataset into, in the layout it left there"
    )
    assert "\n" not in message


def test_metadata_naming_a_missing_image(tmp_path: Path) -> None:
    """Files are checked by the catalogue's validation (rows and paths named), not the library."""
    for name in ("a.jpg", "b.jpg"):
        tiny_image(tmp_path / "images" / name)
    pd.DataFrame(
        {
            "image_id": [1, 2, 3],
            "identity": ["x", "x", "y"],
            "path": ["images/a.jpg", "images/b.jpg", "images/c.jpg"],
        }
    ).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(UserError, match=r"missing image file in 1 row.*path='images/c.jpg'"):
        catalogue(tmp_path, "Dataset_Metadata", CLOSED)


def test_metadata_without_identities(tmp_path: Path) -> None:
    """Dataset_Folder reads any folder of images, every one of the 'unknown' identity."""
    for name in ("a.jpg", "b.jpg"):
        tiny_image(tmp_path / name)
    with pytest.raises(UserError) as err:
        catalogue(tmp_path, "Dataset_Folder", CLOSED)
    assert str(err.value) == (
        f"wildlife_datasets Dataset_Folder at {tmp_path}: the metadata has no identities (every "
        "row is empty or 'unknown'); re-identification needs them: use a dataset with identity "
        "labels or label this one"
    )


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"kind": "random"}, "split.kind='random' is unknown; use one of closed_set, open_set"),
        ({"ratio_train": 0.5}, "split.kind=None is unknown"),
        (
            {"kind": "closed_set", "ratio": 0.5},
            "split: ratio is not an argument of ClosedSetSplit (kind closed_set); allowed: "
            "identity_skip, ratio_train, seed",
        ),
        ({"kind": "disjoint_set"}, "DisjointSetSplit refuses it (Either ratio_class_test or"),
        ({"kind": "time_cutoff", "year": 2011}, "puts no image in train"),
    ],
)
def test_bad_splits(stripespotter: Path, split: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        catalogue(stripespotter, "StripeSpotter", split)


def test_without_the_library_the_error_says_how_to_install_it(
    stripespotter: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "wildlife_datasets", None)
    with pytest.raises(UserError, match=r"pip install 'paw-reid\[wildlife\]'"):
        catalogue(stripespotter, "StripeSpotter", CLOSED)


def test_preflight_checks_only_the_root(tmp_path: Path) -> None:
    options = {"dataset": "NyalaData", "split": CLOSED}
    (expected,) = expected_paths("wildlife_datasets", tmp_path, options)
    assert expected.option is None and expected.path == tmp_path and expected.folder


def test_config_schema_accepts_the_adapter_and_checks_its_options() -> None:
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    config = shipped_config()
    entry = {
        "adapter": "wildlife_datasets",
        "root": "resources/nyala_wd",
        "options": {"dataset": "NyalaData", "split": {"kind": "disjoint_set", "seed": 0}},
        "species": "nyala",
        "teacher": "offline",
        "model": "paw_vit_small",
        "protocol": "all-vs-all",
    }
    config["datasets"]["nyala_wd"] = entry
    jsonschema.validate(config, schema)
    kinds = schema["$defs"]["dataset"]["then"]["properties"]["options"]["properties"]["split"]
    assert kinds["properties"]["kind"]["enum"] == [*SPLIT_KINDS, "original"]
    for options, message in (
        ({"split": {"kind": "closed_set"}}, "'dataset' is a required property"),
        ({"dataset": "NyalaData", "split": {"kind": "random"}}, "'random' is not one of"),
    ):
        config["datasets"]["nyala_wd"] = dict(entry, options=options)
        with pytest.raises(jsonschema.ValidationError, match=message):
            jsonschema.validate(config, schema)


@pytest.mark.slow
def test_seaturtle_through_the_dag_with_its_inline_masks_as_the_teachers_foreground(
    tmp_path: Path,
) -> None:
    """catalogue → teacher (the metadata's polygons and RLE, split by the template) → train →
    extract → evaluate, on a SeaTurtleID2022 tree with its published split, as a user
    configures it."""
    root, _ = make_seaturtle_tree(tmp_path)
    config = shipped_config()
    config["teachers"]["silhouettes"] = {
        "pose": [],
        "segmentation": [{"member": "annotations"}],
        "fallback": "silhouette_template",
    }
    config["datasets"]["turtles"] = {
        "adapter": "wildlife_datasets",
        "root": str(root),
        "options": {"dataset": "SeaTurtleID2022", "split": {"kind": "original"}},
        "species": "nyala",
        "teacher": "silhouettes",
        "model": "paw_vit_tiny",
        "protocol": "all-vs-all",
    }
    tiny_training(config, "turtles", "paw_vit_tiny")
    write_config(tmp_path, config)
    run = snakemake(tmp_path, "--cores", "2", "results/turtles/metrics.json")
    assert succeeded(run, tmp_path)

    table = read_catalogue(tmp_path / "results/turtles/catalogue.csv")
    assert table["silhouette"].str[:1].isin(["[", "{"]).all()
    assert table["split"].value_counts().to_dict() == {"train": 6, "test": 6}
    (masks,) = (tmp_path / "results/turtles/masks").iterdir()
    qc = json.loads((masks / "qc.json").read_text())
    assert qc["counts"] == {"images": 6, "maps": 6, "failed": 0}  # the training photos
    # The foreground is the masks' rectangle: half the height by three quarters of the width.
    assert qc["mean_foreground_fraction"] == pytest.approx(0.5 * 0.75, abs=0.03)
    metrics = json.loads((tmp_path / "results/turtles/metrics.json").read_text())
    for key in ("mAP", "rank1", "rank5", "rank10", "mINP"):
        assert 0.0 <= metrics[key] <= 1.0
    assert metrics["provenance"]["epochs"] == 2
