"""Dataset adapters on tiny trees written in each dataset's real on-disk format."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from reid.catalogue import COLUMNS
from reid.datasets import build_catalogue, expected_paths
from reid.datasets.atrw import KEYPOINTS, orientation_from_keypoints
from reid.datasets.folder import NYALA_PATTERN
from reid.errors import UserError


def tiny_image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fmt = {".png": "PNG", ".bmp": "BMP"}.get(path.suffix.lower(), "JPEG")
    Image.new("RGB", (8, 8), (200, 120, 40)).save(path, format=fmt)


def rows_of(df: pd.DataFrame) -> list[dict[str, str]]:
    """Rows as dicts without the empty fields, so expectations name only what matters."""
    return [{k: v for k, v in row.items() if v != ""} for row in df.to_dict("records")]


# --- ATRW ------------------------------------------------------------------------------------


def pose(**points: tuple[float, float, float]) -> list[float]:
    """An ATRW-15 keypoint list [x, y, v] * 15; unnamed keypoints are (0, 0, 0)."""
    values: list[float] = []
    for name in KEYPOINTS:
        values += points.get(name, (0, 0, 0))
    return values


HEAD_LEFT = pose(
    left_ear=(10, 5, 2),
    right_ear=(14, 5, 2),
    nose=(6, 10, 2),
    tail=(60, 10, 2),
    right_hip=(50, 12, 2),
    left_hip=(52, 12, 2),
    center=(30, 12, 2),
)
HEAD_RIGHT = pose(
    left_ear=(60, 5, 2),
    right_ear=(56, 5, 2),
    nose=(64, 10, 2),
    tail=(6, 10, 2),
    right_hip=(16, 12, 1),
    left_hip=(18, 12, 1),
)
# Head points have coordinates but v = 0: the flank is unknown.
HEAD_HIDDEN = pose(
    left_ear=(10, 5, 0),
    right_ear=(14, 5, 0),
    nose=(6, 10, 0),
    tail=(60, 10, 2),
    left_hip=(52, 12, 2),
)
# Only some points visible. Visible head mean x = (30 + 34) / 2 = 32, visible rear = 31, so the
# head is right of the rear; counting the invisible points would give head 54.7 < rear 70.3.
PARTLY_VISIBLE = pose(
    left_ear=(30, 0, 1),
    right_ear=(100, 0, 0),
    nose=(34, 0, 2),
    tail=(31, 0, 2),
    right_hip=(90, 0, 0),
    left_hip=(90, 0, 0),
)

GT = [
    {"query": "multi", "entityid": 235, "frame": [31, 4, 1089], "imgid": 4096},
    {"query": "sing", "entityid": 199, "frame": [23, 4, 657], "imgid": 0},
]


def atrw_tree(root: Path, header: str = "") -> Path:
    train = {
        "000010.jpg": ("3", HEAD_LEFT),
        "000011.jpg": ("3", HEAD_RIGHT),
        "000020.jpg": ("12", HEAD_HIDDEN),
        "000021.jpg": ("12", PARTLY_VISIBLE),
        "000022.jpg": ("12", None),  # no keypoints entry at all
    }
    for name in train:
        tiny_image(root / "train" / name)
    (root / "reid_list_train.csv").write_text(
        header + "".join(f"{identity},{name}\n" for name, (identity, _) in train.items())
    )
    (root / "reid_keypoints_train.json").write_text(
        json.dumps({name: kp for name, (_, kp) in train.items() if kp is not None})
    )
    for entry in GT:
        tiny_image(root / "test" / f"{entry['imgid']:06d}.jpg")
    (root / "reid_list_test.csv").write_text("000000.jpg\n004096.jpg\n")
    (root / "gt_test_plain.json").write_text(json.dumps(GT))
    return root


ATRW_TEST_ROWS = [
    {
        "image_id": "test/000000",
        "path": "test/000000.jpg",
        "identity": "199",
        "split": "test",
        "camera": "23_4",
        "frame": "657",
        "group": "sing",
    },
    {
        "image_id": "test/004096",
        "path": "test/004096.jpg",
        "identity": "235",
        "split": "test",
        "camera": "31_4",
        "frame": "1089",
        "group": "multi",
    },
]


@pytest.mark.parametrize("header", ["", "id,filename\n"])
def test_atrw_train_and_test_rows(tmp_path: Path, header: str) -> None:
    df = build_catalogue("atrw", atrw_tree(tmp_path, header), {})
    assert list(df.columns) == list(COLUMNS)
    keypoints = [json.loads(k) if k else None for k in df["keypoints"]]
    rows = rows_of(df.drop(columns="keypoints"))
    assert rows == [
        {
            "image_id": "train/000020",
            "path": "train/000020.jpg",
            "identity": "12",
            "split": "train",
        },
        {
            "image_id": "train/000021",
            "path": "train/000021.jpg",
            "identity": "12",
            "split": "train",
            "orientation": "right",
        },
        {
            "image_id": "train/000022",
            "path": "train/000022.jpg",
            "identity": "12",
            "split": "train",
        },
        {
            "image_id": "train/000010",
            "path": "train/000010.jpg",
            "identity": "3",
            "split": "train",
            "orientation": "left",
        },
        {
            "image_id": "train/000011",
            "path": "train/000011.jpg",
            "identity": "3",
            "split": "train",
            "orientation": "right",
        },
        *ATRW_TEST_ROWS,
    ]
    assert keypoints == [HEAD_HIDDEN, PARTLY_VISIBLE, None, HEAD_LEFT, HEAD_RIGHT, None, None]


def test_atrw_orientation_convention() -> None:
    assert orientation_from_keypoints(HEAD_LEFT) == "left"
    assert orientation_from_keypoints(HEAD_RIGHT) == "right"
    assert orientation_from_keypoints(HEAD_HIDDEN) == ""
    assert orientation_from_keypoints(PARTLY_VISIBLE) == "right"
    rear_hidden = pose(nose=(6, 10, 2), tail=(60, 10, 0), left_hip=(52, 12, 0))
    assert orientation_from_keypoints(rear_hidden) == ""


def test_atrw_gt_option_accepts_an_absolute_path(tmp_path: Path) -> None:
    root = atrw_tree(tmp_path / "atrw")
    elsewhere = tmp_path / "shared" / "gt.json"
    elsewhere.parent.mkdir()
    (root / "gt_test_plain.json").rename(elsewhere)
    df = build_catalogue("atrw", root, {"gt": str(elsewhere)})
    assert rows_of(df[df["split"] == "test"]) == ATRW_TEST_ROWS


def test_atrw_list_and_gt_disagree(tmp_path: Path) -> None:
    root = atrw_tree(tmp_path)
    extra = {"query": "sing", "entityid": 1, "frame": [0, 0, 5], "imgid": 7}
    (root / "gt_test_plain.json").write_text(json.dumps([*GT, extra]))
    (root / "reid_list_test.csv").write_text("000000.jpg\n004096.jpg\n000009.jpg\n000011.jpg\n")
    with pytest.raises(UserError) as err:
        build_catalogue("atrw", root, {})
    message = str(err.value)
    assert "2 listed image(s) have no ground truth (e.g. [9, 11])" in message
    assert "1 ground-truth image(s) are not listed (e.g. [7])" in message


def test_atrw_missing_gt_names_the_option(tmp_path: Path) -> None:
    root = atrw_tree(tmp_path)
    (root / "gt_test_plain.json").unlink()
    with pytest.raises(UserError, match="ATRW test ground truth not found at .*set option gt"):
        build_catalogue("atrw", root, {})


def test_atrw_bad_keypoint_count(tmp_path: Path) -> None:
    root = atrw_tree(tmp_path)
    (root / "reid_keypoints_train.json").write_text(json.dumps({"000010.jpg": [1, 2, 2]}))
    with pytest.raises(UserError, match="keypoints of 000010.jpg are not 45 numbers"):
        build_catalogue("atrw", root, {})


# --- YakReID-103 -----------------------------------------------------------------------------


def yak_tree(root: Path) -> Path:
    lists = {
        "train_list.txt": "# path identity camera\ntrain/y1_a.jpg y1 c1\n\ntrain/y1_b.jpg y1 c2\n"
        "train/y2_a.jpg  y2\n",
        "simple/query_list.txt": "test/y3_q.jpg y3 c1\n",
        "simple/gallery_list.txt": "test/y3_g.jpg y3 c2\ntest/y4_g.jpg y4 c1\n",
        "hard/query_list.txt": "test hard/y5 q.jpg, y5, c3\n",
        "hard/gallery_list.txt": "test/y5_g.jpg y5 c4\ntest/y3_g.jpg y3 c2\n",
    }
    for name, text in lists.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for image in (
        "train/y1_a.jpg",
        "train/y1_b.jpg",
        "train/y2_a.jpg",
        "test/y3_q.jpg",
        "test/y3_g.jpg",
        "test/y4_g.jpg",
        "test hard/y5 q.jpg",
        "test/y5_g.jpg",
    ):
        tiny_image(root / image)
    return root


YAK_TRAIN = [
    {
        "image_id": "train/y1_a",
        "path": "train/y1_a.jpg",
        "identity": "y1",
        "split": "train",
        "camera": "c1",
    },
    {
        "image_id": "train/y1_b",
        "path": "train/y1_b.jpg",
        "identity": "y1",
        "split": "train",
        "camera": "c2",
    },
    {"image_id": "train/y2_a", "path": "train/y2_a.jpg", "identity": "y2", "split": "train"},
]


def test_yakreid_simple_split(tmp_path: Path) -> None:
    df = build_catalogue("yakreid", yak_tree(tmp_path), {"test_split": "simple"})
    assert rows_of(df) == [
        *YAK_TRAIN,
        {
            "image_id": "test/y3_q",
            "path": "test/y3_q.jpg",
            "identity": "y3",
            "split": "query",
            "camera": "c1",
        },
        {
            "image_id": "test/y3_g",
            "path": "test/y3_g.jpg",
            "identity": "y3",
            "split": "gallery",
            "camera": "c2",
        },
        {
            "image_id": "test/y4_g",
            "path": "test/y4_g.jpg",
            "identity": "y4",
            "split": "gallery",
            "camera": "c1",
        },
    ]


def test_yakreid_hard_split_with_comma_lines(tmp_path: Path) -> None:
    df = build_catalogue("yakreid", yak_tree(tmp_path), {"test_split": "hard"})
    assert rows_of(df) == [
        *YAK_TRAIN,
        {
            "image_id": "test hard/y5 q",
            "path": "test hard/y5 q.jpg",
            "identity": "y5",
            "split": "query",
            "camera": "c3",
        },
        {
            "image_id": "test/y3_g",
            "path": "test/y3_g.jpg",
            "identity": "y3",
            "split": "gallery",
            "camera": "c2",
        },
        {
            "image_id": "test/y5_g",
            "path": "test/y5_g.jpg",
            "identity": "y5",
            "split": "gallery",
            "camera": "c4",
        },
    ]


def test_yakreid_unknown_test_split(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="test_split='medium' is unknown; use one of simple, hard"):
        build_catalogue("yakreid", yak_tree(tmp_path), {"test_split": "medium"})


def test_yakreid_malformed_line_names_file_and_line(tmp_path: Path) -> None:
    root = yak_tree(tmp_path)
    (root / "train_list.txt").write_text("train/y1_a.jpg y1 c1\ntrain/y1_b.jpg\n")
    with pytest.raises(
        UserError, match=r"train_list.txt line 2: expected 'path identity \[camera\]'"
    ):
        build_catalogue("yakreid", root, {})


# --- folder trees (Nyala) --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "groups"),
    [
        ("124_leftphoto.jpg", {"encounter": "124", "orientation": "left"}),
        ("980_rightphoto.jpg", {"encounter": "980", "orientation": "right"}),
        ("7_rightphoto.JPG", {"encounter": "7", "orientation": "right"}),
        ("124_leftphoto", None),
        ("abc_leftphoto.jpg", None),
        ("124_upphoto.jpg", None),
        ("124_leftphoto.jpg.bak", None),
    ],
)
def test_nyala_default_pattern(name: str, groups: dict[str, str] | None) -> None:
    match = re.fullmatch(NYALA_PATTERN, name)
    assert (match.groupdict() if match else None) == groups


def nyala_tree(root: Path) -> Path:
    for name in (
        "12/124_leftphoto.jpg",
        "12/124_rightphoto.jpg",
        "12/980_rightphoto.JPG",
        "7/55_leftphoto.png",
        "12/.hidden_leftphoto.jpg",
        ".git/1_leftphoto.jpg",
    ):
        tiny_image(root / name)
    (root / "12" / "notes.txt").write_text("not an image")
    (root / "readme.md").write_text("top-level files are not identities")
    return root


def test_folder_nyala_rows(tmp_path: Path) -> None:
    df = build_catalogue("folder", nyala_tree(tmp_path), {})
    assert rows_of(df) == [
        {
            "image_id": "12/124_leftphoto",
            "path": "12/124_leftphoto.jpg",
            "identity": "12",
            "split": "test",
            "orientation": "left",
            "encounter": "124",
        },
        {
            "image_id": "12/124_rightphoto",
            "path": "12/124_rightphoto.jpg",
            "identity": "12",
            "split": "test",
            "orientation": "right",
            "encounter": "124",
        },
        {
            "image_id": "12/980_rightphoto",
            "path": "12/980_rightphoto.JPG",
            "identity": "12",
            "split": "test",
            "orientation": "right",
            "encounter": "980",
        },
        {
            "image_id": "7/55_leftphoto",
            "path": "7/55_leftphoto.png",
            "identity": "7",
            "split": "test",
            "orientation": "left",
            "encounter": "55",
        },
    ]


def test_folder_subdir_keeps_paths_relative_to_root(tmp_path: Path) -> None:
    nyala_tree(tmp_path / "train")
    df = build_catalogue("folder", tmp_path, {"subdir": "train", "split": {"all": "test"}})
    assert list(df["path"])[0] == "train/12/124_leftphoto.jpg"
    assert list(df["image_id"])[0] == "train/12/124_leftphoto"


def test_folder_unmatched_files(tmp_path: Path) -> None:
    root = nyala_tree(tmp_path)
    tiny_image(root / "7" / "IMG_0001.jpg")
    with pytest.raises(UserError) as err:
        build_catalogue("folder", root, {})
    message = str(err.value)
    assert "1 file(s) do not match pattern" in message
    assert "(e.g. 7/IMG_0001.jpg)" in message
    assert "set skip_unmatched: true" in message
    df = build_catalogue("folder", root, {"skip_unmatched": True})
    assert "7/IMG_0001" not in set(df["image_id"])
    assert len(df) == 4


def test_folder_orientation_map(tmp_path: Path) -> None:
    for name in ("a/1_L.jpg", "a/2_R.jpg", "b/3_L.jpg"):
        tiny_image(tmp_path / name)
    options = {
        "pattern": r"(?P<encounter>\d+)_(?P<orientation>[LR])\.jpg",
        "orientation_map": {"L": "left", "R": "right"},
    }
    df = build_catalogue("folder", tmp_path, options)
    assert list(df["orientation"]) == ["left", "right", "left"]
    assert list(df["encounter"]) == ["1", "2", "3"]
    with pytest.raises(UserError, match="a/2_R.jpg has orientation 'R'; map it .*orientation_map"):
        build_catalogue("folder", tmp_path, {**options, "orientation_map": {"L": "left"}})


def test_folder_pattern_with_unknown_group(tmp_path: Path) -> None:
    nyala_tree(tmp_path)
    with pytest.raises(UserError, match="unknown named group.* animal; allowed: encounter"):
        build_catalogue("folder", tmp_path, {"pattern": r"(?P<animal>\d+)_.*"})


def identity_tree(root: Path, n: int) -> Path:
    for i in range(n):
        tiny_image(root / f"id{i:02d}" / "1_leftphoto.jpg")
        tiny_image(root / f"id{i:02d}" / "2_rightphoto.jpg")
    return root


def train_identities(df: pd.DataFrame) -> set[str]:
    return set(df.loc[df["split"] == "train", "identity"])


def test_folder_identity_split_is_deterministic_and_by_identity(tmp_path: Path) -> None:
    root = identity_tree(tmp_path, 10)
    split = {"train_fraction": 0.3, "seed": 0}
    df = build_catalogue("folder", root, {"split": split})
    # Every identity has all its images in one split, and round(0.3 * 10) = 3 train identities.
    assert (df.groupby("identity")["split"].nunique() == 1).all()
    assert len(train_identities(df)) == 3
    assert set(df["split"]) == {"train", "test"}
    again = build_catalogue("folder", root, {"split": dict(split)})
    assert again.equals(df)
    seeded = [
        train_identities(build_catalogue("folder", root, {"split": {**split, "seed": seed}}))
        for seed in range(1, 6)
    ]
    assert any(s != train_identities(df) for s in seeded), "the seed must change the split"


def test_folder_split_seed_defaults_to_0(tmp_path: Path) -> None:
    root = identity_tree(tmp_path, 10)
    unseeded = build_catalogue("folder", root, {"split": {"train_fraction": 0.3}})
    seeded = build_catalogue("folder", root, {"split": {"train_fraction": 0.3, "seed": 0}})
    assert unseeded.equals(seeded)


def encounter_tree(root: Path, encounters: dict[str, int]) -> Path:
    """Identity -> number of encounters, two photos (left, right flank) in each."""
    for identity, count in encounters.items():
        for encounter in range(1, count + 1):
            tiny_image(root / identity / f"{encounter}_leftphoto.jpg")
            tiny_image(root / identity / f"{encounter}_rightphoto.jpg")
    return root


def test_folder_encounter_split_keeps_encounters_whole_and_every_animal_known(
    tmp_path: Path,
) -> None:
    counts = {"one": 1, "two": 2, "four": 4, "five": 5}
    root = encounter_tree(tmp_path, counts)
    split = {"encounter_fraction": 0.5, "seed": 0}
    df = build_catalogue("folder", root, {"split": split})
    # Both photos of an encounter fall on one side.
    assert (df.groupby(["identity", "encounter"])["split"].nunique() == 1).all()
    train_encounters = df[df["split"] == "train"].groupby("identity")["encounter"].nunique()
    # round(0.5 * n), at least one and never all: 1 -> 1 (train only), 2 -> 1, 4 -> 2, 5 -> 2.
    assert train_encounters.to_dict() == {"one": 1, "two": 1, "four": 2, "five": 2}
    tested = set(df.loc[df["split"] == "test", "identity"])
    assert tested == {"two", "four", "five"} and tested <= set(
        df.loc[df["split"] == "train", "identity"]
    )
    assert build_catalogue("folder", root, {"split": dict(split)}).equals(df)

    def trained(catalogue: pd.DataFrame) -> set[str]:
        return set(catalogue.loc[catalogue["split"] == "train", "image_id"])

    reseeded = [
        trained(build_catalogue("folder", root, {"split": {**split, "seed": seed}}))
        for seed in range(1, 6)
    ]
    assert any(r != trained(df) for r in reseeded), "the seed must change the split"


def test_folder_encounter_split_needs_encounters(tmp_path: Path) -> None:
    root = encounter_tree(tmp_path, {"a": 2, "b": 2})
    options = {"pattern": r".*photo\.jpg", "split": {"encounter_fraction": 0.5}}
    with pytest.raises(UserError, match=r"needs every image's encounter.*\(\?P<encounter>"):
        build_catalogue("folder", root, options)
    single = encounter_tree(tmp_path / "single", {"a": 1, "b": 1})
    with pytest.raises(UserError, match="leaves no test images"):
        build_catalogue("folder", single, {"split": {"encounter_fraction": 0.5}})


@pytest.mark.parametrize(
    "split", [{"train_fraction": 0.5, "seed": 0}, {"encounter_fraction": 0.5, "seed": 1}]
)
def test_flank_identities_split_each_animal_by_flank_after_the_animal_split(
    tmp_path: Path, split: dict
) -> None:
    root = encounter_tree(tmp_path, {"a": 3, "b": 2, "c": 4, "d": 2})
    animals = build_catalogue("folder", root, {"split": split})
    flanks = build_catalogue("folder", root, {"split": split, "flank_identities": True})
    by_image = animals.set_index("image_id")
    flanks = flanks.set_index("image_id").loc[by_image.index]
    # Every photo keeps its split (made on whole animals and encounters) and its identity
    # becomes the animal's flank.
    assert (flanks["split"] == by_image["split"]).all()
    assert flanks["identity"].tolist() == [
        f"{identity}_{orientation}"
        for identity, orientation in zip(by_image["identity"], by_image["orientation"], strict=True)
    ]
    assert set(flanks["identity"]) == {f"{a}_{f}" for a in "abcd" for f in ("left", "right")}


def test_flank_identities_need_every_flank_and_a_yes_or_no(tmp_path: Path) -> None:
    root = encounter_tree(tmp_path, {"a": 2})
    tiny_image(root / "a" / "3_photo.jpg")
    options = {"pattern": r"^(?P<encounter>\d+)_(?:(?P<orientation>left|right))?photo\.jpg$"}
    assert len(build_catalogue("folder", root, options)) == 5
    with pytest.raises(UserError, match=r"1 image\(s\) have no left/right orientation.*a/3_photo"):
        build_catalogue("folder", root, {**options, "flank_identities": True})
    with pytest.raises(UserError, match="flank_identities='yes': use true or false"):
        build_catalogue("folder", root, {"flank_identities": "yes"})


@pytest.mark.parametrize(
    ("split", "message"),
    [
        ({"train_fraction": 1.5, "seed": 0}, "must be a number between 0 and 1"),
        ({"encounter_fraction": 0, "seed": 0}, "must be a number between 0 and 1"),
        ({"train_fraction": 0.01, "seed": 0}, "gives 0 of 4 identities to train"),
        ({"all": "train"}, "use {all: test}, {train_fraction: 0.5, seed: 0} or {encounter_"),
        ({"train_fraction": 0.5, "encounter_fraction": 0.5}, "is not understood"),
    ],
)
def test_folder_bad_split(tmp_path: Path, split: dict, message: str) -> None:
    with pytest.raises(UserError, match=re.escape(message)):
        build_catalogue("folder", identity_tree(tmp_path, 4), {"split": split})


# --- user CSV --------------------------------------------------------------------------------


def user_csv(root: Path, text: str) -> Path:
    for line in text.splitlines()[1:]:
        tiny_image(root / line.split(",")[1])
    (root / "mine.csv").write_text(text)
    return root


def test_csv_adapter_reads_a_valid_table(tmp_path: Path) -> None:
    root = user_csv(
        tmp_path,
        "image_id,path,identity,split,encounter\nb1,img/b1.jpg,b,test,4\na1,img/a1.jpg,a,test,\n",
    )
    df = build_catalogue("csv", root, {"path": "mine.csv"})
    assert rows_of(df) == [
        {"image_id": "a1", "path": "img/a1.jpg", "identity": "a", "split": "test"},
        {
            "image_id": "b1",
            "path": "img/b1.jpg",
            "identity": "b",
            "split": "test",
            "encounter": "4",
        },
    ]
    absolute = build_catalogue("csv", root, {"path": str(root / "mine.csv")})
    assert absolute.equals(df)


def test_csv_adapter_rejects_unknown_columns(tmp_path: Path) -> None:
    root = user_csv(tmp_path, "image_id,path,identity,split,viewpoint,date\na1,a1.jpg,a,test,l,x\n")
    with pytest.raises(UserError) as err:
        build_catalogue("csv", root, {"path": "mine.csv"})
    assert "unknown column(s) viewpoint, date" in str(err.value)
    assert "allowed: image_id, path, identity, split, orientation, camera" in str(err.value)


def test_csv_adapter_bad_split_points_at_the_users_row(tmp_path: Path) -> None:
    root = user_csv(
        tmp_path, "image_id,path,identity,split\nz1,z1.jpg,z,test\na1,a1.jpg,a,validation\n"
    )
    with pytest.raises(UserError, match=r"unknown split in 1 row\(s\): row 3 \(image_id=a1"):
        build_catalogue("csv", root, {"path": "mine.csv"})


# --- registry --------------------------------------------------------------------------------


def test_unknown_adapter_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match="use one of atrw, yakreid, folder, csv, wildlife_datasets, synthetic"
    ):
        build_catalogue("market1501", tmp_path, {})


def test_unknown_option_lists_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(UserError) as err:
        build_catalogue("folder", nyala_tree(tmp_path), {"patern": "x", "seed": 1})
    assert "unknown option(s) patern, seed" in str(err.value)
    assert (
        "valid options: pattern, orientation_map, skip_unmatched, split, subdir, flank_identities"
        in str(err.value)
    )


def test_missing_required_option(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing required option\(s\) path"):
        build_catalogue("csv", tmp_path, {})


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dataset root .*nowhere is not a directory"):
        build_catalogue("folder", tmp_path / "nowhere", {})


def test_synthetic_options_are_the_spec_fields(tmp_path: Path) -> None:
    synthetic = pytest.importorskip("reid.datasets.synthetic")
    fields = [f.name for f in dataclasses.fields(synthetic.SyntheticSpec)]
    with pytest.raises(UserError, match=re.escape(f"valid options: {', '.join(fields)}")):
        build_catalogue("synthetic", tmp_path, {"bogus": 1})


def test_expected_paths_are_the_files_load_reads(tmp_path):
    """What the workflow checks before a run: the root and each file or folder option, resolved
    as the adapter resolves it (yakreid's {test_split}, absolute paths kept)."""
    paths = expected_paths("yakreid", tmp_path, {"test_split": "simple", "train_list": "/t.txt"})
    assert [(p.option, p.path, p.folder) for p in paths] == [
        (None, tmp_path, True),
        ("train_list", Path("/t.txt"), False),
        ("query_list", tmp_path / "simple/query_list.txt", False),
        ("gallery_list", tmp_path / "simple/gallery_list.txt", False),
    ]
    atrw = {p.option: p for p in expected_paths("atrw", tmp_path)}
    assert atrw["gt"].path == tmp_path / "gt_test_plain.json"
    assert atrw["test_images"].folder
    assert expected_paths("synthetic", tmp_path) == []
