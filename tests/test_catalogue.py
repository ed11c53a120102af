"""The catalogue contract: reading, deterministic atomic writing, and validation messages."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from reid.catalogue import (
    COLUMNS,
    read_catalogue,
    validate_catalogue,
    write_catalogue,
)
from reid.errors import UserError


def tiny_jpeg(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (120, 30, 200)).save(path, format="JPEG")


def catalogue(rows: list[dict[str, str]]) -> pd.DataFrame:
    """Rows with only the fields a test cares about; the rest default as in the schema."""
    return pd.DataFrame([{c: row.get(c, "") for c in COLUMNS} for row in rows])


def dataset(root: Path, rows: list[dict[str, str]]) -> pd.DataFrame:
    """A catalogue whose image files all exist as tiny JPEGs under root."""
    for row in rows:
        tiny_jpeg(root / row["path"])
    return catalogue(rows)


def image_row(image_id: str, identity: str, split: str = "train", **extra: str) -> dict[str, str]:
    return {
        "image_id": image_id,
        "path": f"{image_id}.jpg",
        "identity": identity,
        "split": split,
        **extra,
    }


GOOD = [
    image_row("a/1", "a", orientation="left", keypoints="[1, 2, 2, 3.5, 4, 0]"),
    image_row("a/2", "a", orientation="right"),
    image_row("b/1", "b", "query", camera="c1"),
    image_row("b/2", "b", "gallery", camera="c2"),
]


def problem_message(root: Path, df: pd.DataFrame, **kwargs: object) -> str:
    with pytest.raises(UserError) as err:
        validate_catalogue(df, root, **kwargs)
    return str(err.value)


# --- reading ---------------------------------------------------------------------------------


def test_read_adds_missing_optional_columns_and_keeps_text(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_text("split,identity,path,image_id\ntrain,007,x/1.jpg,NA\n")
    df = read_catalogue(path)
    assert list(df.columns) == list(COLUMNS)
    row = df.iloc[0].to_dict()
    # Leading zeros and 'NA' survive: every value is text, nothing is parsed as number or NaN.
    assert row == {
        "image_id": "NA",
        "path": "x/1.jpg",
        "identity": "007",
        "split": "train",
        "orientation": "",
        "camera": "",
        "frame": "",
        "encounter": "",
        "group": "",
        "keypoints": "",
        "silhouette": "",
        "bbox": "",
    }


def test_read_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="nowhere.csv not found"):
        read_catalogue(tmp_path / "nowhere.csv")


def test_read_missing_required_columns_names_them(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_text("image_id,path\nx,x.jpg\n")
    with pytest.raises(UserError, match=r"missing required column\(s\) identity, split"):
        read_catalogue(path)


def test_read_unknown_column_lists_allowed_ones(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_text("image_id,path,identity,split,idenity\nx,x.jpg,a,train,a\n")
    with pytest.raises(UserError) as err:
        read_catalogue(path)
    assert "unknown column(s) idenity" in str(err.value)
    assert "allowed: image_id, path, identity, split, orientation" in str(err.value)


@pytest.mark.parametrize("extra_row", ["a,a.jpg,x,train,surplus", "b,b.jpg,y,train,1,2"])
def test_read_row_with_too_many_fields_is_an_error(tmp_path: Path, extra_row: str) -> None:
    path = tmp_path / "catalogue.csv"
    path.write_text(f"image_id,path,identity,split\n{extra_row}\nc,c.jpg,z,train\n")
    with pytest.raises(UserError, match="catalogue.csv is not valid CSV"):
        read_catalogue(path)


# --- writing ---------------------------------------------------------------------------------


def test_write_orders_columns_and_rows(tmp_path: Path) -> None:
    rows = pd.DataFrame(
        {
            "split": ["test", "train", "query", "train", "gallery"],
            "identity": ["b", "b", "a", "a", "a"],
            "image_id": ["t1", "x2", "q1", "x1", "g1"],
            "path": ["t1.jpg", "x2.jpg", "q1.jpg", "x1.jpg", "g1.jpg"],
            "camera": ["", "", "c1", "", "c2"],
        }
    )
    path = tmp_path / "out" / "catalogue.csv"
    write_catalogue(rows, path)
    # Splits in protocol order (train, query, gallery, test), then identity, then image_id.
    assert path.read_text() == (
        "image_id,path,identity,split,orientation,camera,frame,encounter,group,keypoints,"
        "silhouette,bbox\n"
        "x1,x1.jpg,a,train,,,,,,,,\n"
        "x2,x2.jpg,b,train,,,,,,,,\n"
        "q1,q1.jpg,a,query,,c1,,,,,,\n"
        "g1,g1.jpg,a,gallery,,c2,,,,,,\n"
        "t1,t1.jpg,b,test,,,,,,,,\n"
    )


def test_write_is_byte_identical_whatever_the_input_order(tmp_path: Path) -> None:
    df = catalogue(GOOD + [image_row("c/1", "c", "test", keypoints="[1,2,0.5]")])
    first, second = tmp_path / "first.csv", tmp_path / "second.csv"
    write_catalogue(df, first)
    write_catalogue(df.sample(frac=1.0, random_state=3)[list(reversed(COLUMNS))], second)
    assert first.read_bytes() == second.read_bytes()
    assert read_catalogue(first).equals(read_catalogue(second))


def test_write_replaces_atomically_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.csv"
    write_catalogue(catalogue(GOOD), path)
    write_catalogue(catalogue(GOOD[:1]), path)
    assert len(read_catalogue(path)) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["catalogue.csv"]


def test_failed_write_keeps_nothing_half_written(tmp_path: Path) -> None:
    # The target is a directory, so the final os.replace fails after the temp file is written.
    target = tmp_path / "catalogue.csv"
    target.mkdir()
    with pytest.raises(OSError):
        write_catalogue(catalogue(GOOD), target)
    assert [p.name for p in tmp_path.iterdir()] == ["catalogue.csv"]
    assert target.is_dir()


# --- validation ------------------------------------------------------------------------------


def test_valid_catalogue_passes(tmp_path: Path) -> None:
    assert validate_catalogue(dataset(tmp_path, GOOD), tmp_path) == []


def test_duplicate_image_id_names_rows_and_fix(tmp_path: Path) -> None:
    rows = GOOD + [image_row("a/1", "a")]
    message = problem_message(tmp_path, dataset(tmp_path, rows))
    # Header is row 1, so the first data row is row 2 and the fifth is row 6.
    assert "duplicate image_id in 2 row(s): row 2 (image_id=a/1), row 6 (image_id=a/1)" in message
    assert "make every image_id unique" in message


def test_missing_file_names_row_path_and_root(tmp_path: Path) -> None:
    df = dataset(tmp_path, GOOD)
    (tmp_path / "b/1.jpg").unlink()
    message = problem_message(tmp_path, df)
    assert "missing image file in 1 row(s): row 4 (image_id=b/1, path='b/1.jpg')" in message
    assert f"fix path (relative to the dataset root {tmp_path})" in message


def test_unknown_split_lists_valid_splits(tmp_path: Path) -> None:
    rows = GOOD + [image_row("c/1", "c", "validation")]
    message = problem_message(tmp_path, dataset(tmp_path, rows))
    assert "unknown split in 1 row(s): row 6 (image_id=c/1, split='validation')" in message
    assert "use one of train, query, gallery, test" in message


def test_query_without_gallery_is_an_error(tmp_path: Path) -> None:
    rows = [GOOD[0], GOOD[2]]
    message = problem_message(tmp_path, dataset(tmp_path, rows))
    assert "split has query rows but no gallery rows" in message


def test_bad_orientation_quotes_value(tmp_path: Path) -> None:
    rows = GOOD + [image_row("c/1", "c", orientation="Left")]
    message = problem_message(tmp_path, dataset(tmp_path, rows))
    assert "bad orientation in 1 row(s): row 6 (image_id=c/1, orientation='Left')" in message
    assert "use 'left', 'right' or leave it empty" in message


@pytest.mark.parametrize(
    "keypoints", ["[1, 2]", "not json", '{"x": 1}', '[1, 2, "v"]', "[[1, 2, 3]]"]
)
def test_malformed_keypoints(tmp_path: Path, keypoints: str) -> None:
    rows = GOOD + [image_row("c/1", "c", keypoints=keypoints)]
    message = problem_message(tmp_path, dataset(tmp_path, rows))
    assert "malformed keypoints in 1 row(s): row 6 (image_id=c/1)" in message
    assert "JSON list of numbers [x, y, v, ...]" in message


@pytest.mark.parametrize("bbox", ["[1, 2, 3]", "1 2 3 4", "[1, 2, 0, 4]", '[1, 2, "w", 4]'])
def test_malformed_bbox(tmp_path: Path, bbox: str) -> None:
    rows = GOOD + [image_row("c/1", "c", bbox="[0, 1.5, 6, 7]"), image_row("c/2", "c", bbox=bbox)]
    message = problem_message(tmp_path, dataset(tmp_path, rows))
    assert f"malformed bbox in 1 row(s): row 7 (image_id=c/2, bbox={bbox!r})" in message
    assert "JSON list [x, y, w, h] in pixels" in message


def test_inline_silhouettes_are_checked_as_coco_segmentations_not_as_files(tmp_path: Path) -> None:
    good = [
        image_row("c/1", "c", silhouette="[[0, 0, 4, 0, 4, 4]]"),
        image_row("c/2", "c", silhouette='{"size": [8, 8], "counts": "PP0"}'),
        image_row("c/3", "c", silhouette="[0, 0, 4, 0, 4, 4, 0, 4.5]"),
    ]
    validate_catalogue(dataset(tmp_path, GOOD + good), tmp_path)  # no file looked for
    bad = ["[1, 2, 3, 4]", '{"size": [8], "counts": "PP0"}', "[[1, 2, 3, 4, 5, true]]", "[1,"]
    rows = GOOD + [image_row(f"d/{i}", "d", silhouette=cell) for i, cell in enumerate(bad)]
    message = problem_message(tmp_path, dataset(tmp_path, rows))
    assert "malformed silhouette in 4 row(s): row 6 (image_id=d/0)" in message
    assert "COCO segmentation in JSON" in message and "missing silhouette file" not in message


def test_corrupt_image_found_by_header_check_only_when_asked(tmp_path: Path) -> None:
    df = dataset(tmp_path, GOOD)
    (tmp_path / "a/2.jpg").write_bytes(b"this is not an image")
    message = problem_message(tmp_path, df)
    assert "unreadable image in 1 row(s): row 3 (image_id=a/2, path='a/2.jpg')" in message
    assert "replace the file with a valid JPEG/PNG or remove the row" in message
    assert validate_catalogue(df, tmp_path, check_images="none") == []
    assert validate_catalogue(df, tmp_path, check_images=False) == []
    with pytest.raises(UserError, match="unreadable image"):
        validate_catalogue(df, tmp_path, check_images=True)


def test_truncated_jpeg_needs_a_full_decode(tmp_path: Path) -> None:
    df = dataset(tmp_path, GOOD)
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 80).convert("RGB").save(buffer, format="JPEG")
    data = buffer.getvalue()
    (tmp_path / "b/2.jpg").write_bytes(data[: len(data) // 2])  # header intact, pixels cut
    assert validate_catalogue(df, tmp_path, check_images="header") == []
    message = problem_message(tmp_path, df, check_images="decode")
    assert "unreadable image in 1 row(s): row 5 (image_id=b/2" in message


def test_unknown_image_check_mode(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="use 'none', 'header' or 'decode'"):
        validate_catalogue(dataset(tmp_path, GOOD), tmp_path, check_images="full")


def test_all_problems_in_one_error_with_counts(tmp_path: Path) -> None:
    rows = GOOD + [image_row(f"z/{i}", "z", "val") for i in range(5)]
    df = dataset(tmp_path, rows)
    df.loc[0, "orientation"] = "up"
    message = problem_message(tmp_path, df)
    assert message.startswith("catalogue has 2 kind(s) of problem: ")
    # Only the first three offending rows are quoted, then a count of the rest.
    assert (
        "unknown split in 5 row(s): row 6 (image_id=z/0, split='val'), "
        "row 7 (image_id=z/1, split='val'), row 8 (image_id=z/2, split='val') and 2 more"
    ) in message
    assert "bad orientation in 1 row(s): row 2 (image_id=a/1, orientation='up')" in message
    assert "\n" not in message


def test_missing_silhouette_is_an_error(tmp_path: Path) -> None:
    rows = [dict(GOOD[0], silhouette="masks/a1.png"), *GOOD[1:]]
    message = problem_message(tmp_path, dataset(tmp_path, rows), check_images="none")
    assert "missing silhouette file in 1 row(s): row 2 (image_id=a/1" in message


def test_single_training_image_identities_warn(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rows = GOOD + [
        image_row("c/1", "c"),  # alone in train: warned
        image_row("d/1", "d", "test"),  # alone but not training: fine
        image_row("e/1", "e"),
        image_row("e/2", "e"),
    ]
    with caplog.at_level(logging.WARNING, logger="reid.catalogue"):
        warnings = validate_catalogue(dataset(tmp_path, rows), tmp_path)
    assert len(warnings) == 1
    assert "identity 'c' has a single training image (image_id=c/1)" in warnings[0]
    assert "1 identities have a single training image ('c')" in caplog.text
