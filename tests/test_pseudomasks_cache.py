"""The CLI end to end on a tiny dataset made here: shards, resuming, failures, index, show."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from pseudomasks.cache import load_part_maps, read_shard, shard_is_complete
from pseudomasks.cli import main
from pseudomasks.errors import UserError
from pseudomasks.settings import teacher_id

H, W = 48, 64
KEYPOINTS = ["nose", "shoulder", "hip", "tail", "center"]


def settings() -> dict:
    return {
        "teacher": {
            "name": "tiny",
            "mask_size": 32,
            "pose": [{"member": "annotations"}],
            "segmentation": [{"member": "annotations"}, {"member": "grabcut", "iterations": 2}],
            "combine": "majority",
            "fallback": "silhouette_template",
            "detector": None,
            "confidence": 0.3,
        },
        "species": {
            "name": "toy",
            "keypoint_schema": "custom",
            "keypoints": KEYPOINTS,
            "parts": [
                {"name": "head", "keypoints": ["nose"]},
                {"name": "front_legs", "keypoints": ["shoulder"]},
                {"name": "hind_legs", "keypoints": ["hip"]},
                {"name": "body", "keypoints": ["center"]},
                {"name": "tail", "keypoints": ["tail"]},
            ],
            "links": [],
            "tail": ["tail", None],
            "orientation": {"front": ["head", "front_legs"], "rear": ["hind_legs", "tail"]},
        },
        "weights": {},
    }


def draw_animal(flip: bool) -> tuple[np.ndarray, np.ndarray, list[float]]:
    mask = np.zeros((H, W), np.uint8)
    mask[16:30, 14:48] = 1
    for x in (16, 22, 38, 44):
        mask[30:44, x : x + 3] = 1
    cv2.circle(mask, (9, 13), 6, 1, thickness=-1)
    cv2.line(mask, (48, 18), (60, 10), 1, thickness=2)
    kps = [9, 13, 2, 19, 34, 2, 41, 34, 2, 49, 18, 2, 31, 22, 2]
    if flip:
        mask = np.ascontiguousarray(mask[:, ::-1])
        kps = [W - v if i % 3 == 0 else v for i, v in enumerate(kps)]
    rng = np.random.default_rng(len(kps) + flip)
    image = rng.integers(0, 80, (H, W, 3)).astype(np.uint8)
    image[mask > 0] = (220, 180, 90)
    return image, mask * 255, kps


@pytest.fixture
def dataset(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "data"
    (root / "img").mkdir(parents=True)
    rows = []
    for i in range(7):
        image, mask, kps = draw_animal(flip=i % 2 == 1)
        cv2.imwrite(str(root / f"img/{i}.png"), image[:, :, ::-1])
        cv2.imwrite(str(root / f"img/{i}_mask.png"), mask)
        rows.append(
            {
                "image_id": f"im{i}",
                "path": f"img/{i}.png",
                "identity": str(i % 3),
                "split": "train",
                "orientation": "left" if i == 0 else "",
                "keypoints": json.dumps(kps) if i != 5 else "",  # im5: template fallback
                "silhouette": f"img/{i}_mask.png",
            }
        )
    (root / "img/broken.png").write_bytes(b"not an image")
    rows.append({**rows[0], "image_id": "broken", "path": "img/broken.png", "orientation": ""})
    rows.append({**rows[1], "image_id": "q0", "split": "query"})
    catalogue = tmp_path / "catalogue.csv"
    pd.DataFrame(rows).to_csv(catalogue, index=False)
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(json.dumps(settings()))
    return {"root": root, "catalogue": catalogue, "settings": settings_file, "out": tmp_path / "m"}


def run(dataset: dict[str, Path], shard: int, num_shards: int = 2) -> int:
    return main(
        [
            "run",
            "--catalogue",
            str(dataset["catalogue"]),
            "--root",
            str(dataset["root"]),
            "--settings",
            str(dataset["settings"]),
            "--out",
            str(dataset["out"]),
            "--shard",
            str(shard),
            "--num-shards",
            str(num_shards),
            "--device",
            "cpu",
            "--batch-size",
            "3",
        ]
    )


def test_run_resume_index_and_show(dataset: dict[str, Path], capsys: pytest.CaptureFixture):
    tid = teacher_id(settings())
    teacher_dir = dataset["out"] / tid
    shards = [teacher_dir / f"shard-{i:04d}-of-0002.npz" for i in range(2)]

    assert run(dataset, 0) == 0 and run(dataset, 1) == 0
    assert all(p.exists() for p in shards)
    teacher = json.loads((teacher_dir / "teacher.json").read_text())
    assert teacher["teacher_id"] == tid
    assert teacher["part_names"] == ["head", "front_legs", "hind_legs", "body", "tail"]
    assert set(teacher["versions"]) >= {"numpy", "opencv", "pseudomasks"}

    # Sorted train ids: broken, im0..im6; shard 0 takes every second one from 'broken'.
    with np.load(shards[0]) as s0:
        assert s0["image_id"].tolist() == ["im1", "im3", "im5"]
        assert s0["failed_image_id"].tolist() == ["broken"]
        assert "broken.png" in s0["failed_reason"][0]
        assert s0["labels"].shape == (3, 32, 32) and s0["labels"].dtype == np.uint8
        assert s0["visibility"].shape == (3, 5)
        # im1, im3 are mirrored animals (head right); im5 has no keypoints (template).
        assert s0["orientation"].tolist() == ["right", "right", "right"]
        assert s0["orientation_source"].tolist() == ["estimated"] * 3
        assert np.isnan(s0["keypoint_confidence"][2]) and s0["keypoint_confidence"][0] == 2
        assert s0["foreground_components"].tolist() == [-1] * 3  # no member here counts them
    with np.load(shards[1]) as s1:
        assert s1["image_id"].tolist() == ["im0", "im2", "im4", "im6"]
        assert s1["orientation"].tolist() == ["left"] * 4
        assert s1["orientation_source"].tolist() == ["catalogue"] + ["estimated"] * 3
        assert s1["visibility"].all()
        assert (s1["foreground_fraction"] > 0.2).all()

    # Resume: complete shards are skipped; a deleted one is recomputed alone.
    before = [p.stat().st_mtime_ns for p in shards]
    assert run(dataset, 0) == 0 and run(dataset, 1) == 0
    assert [p.stat().st_mtime_ns for p in shards] == before
    shards[1].unlink()
    assert run(dataset, 0) == 0 and run(dataset, 1) == 0
    assert shards[0].stat().st_mtime_ns == before[0] and shards[1].exists()
    assert "complete; skipping" in capsys.readouterr().err

    assert main(["index", "--masks-dir", str(teacher_dir), "--num-shards", "2"]) == 0
    qc = json.loads((teacher_dir / "qc.json").read_text())
    assert qc["counts"] == {"images": 8, "maps": 7, "failed": 1}
    assert qc["failed"][0]["image_id"] == "broken"
    assert qc["part_coverage"]["head"] == 1.0
    assert qc["empty_foreground_rate"] == 0.0
    assert qc["maps_from_keypoints"] == 6 and qc["mean_keypoint_confidence"] == 2.0
    assert qc["orientation_source"] == {"catalogue": 1, "estimated": 6, "unknown": 0}
    assert qc["several_objects"] is None
    index = json.loads((teacher_dir / "index.json").read_text())
    assert index["im0"] == shards[1].name and index["im1"] == shards[0].name
    assert set(index) == {f"im{i}" for i in range(7)}

    maps = load_part_maps(teacher_dir)
    labels, cached = maps["im2"].labels, maps["im2"]
    assert labels.shape == (32, 32) and cached.visibility.tolist() == [True] * 5
    assert cached.orientation == "left" and cached.crop_box is None
    # Head pixels lie left of hind-leg pixels for a head-left animal.
    cols = np.arange(32)
    assert cols[(labels == 1).any(axis=0)].mean() < cols[(labels == 3).any(axis=0)].mean()

    png = dataset["out"] / "sheet.png"
    args = ["show", "--masks-dir", str(teacher_dir), "--catalogue", str(dataset["catalogue"])]
    assert main([*args, "--root", str(dataset["root"]), "--out", str(png), "--n", "4"]) == 0
    sheet = cv2.imread(str(png))
    assert sheet is not None and sheet.shape[0] > 100


def test_shards_without_foreground_components_read_as_unknown(dataset):
    """A shard written before ``foreground_components`` existed is still complete: it reads as
    -1 (unknown) for every map and indexes, rather than being recomputed or counted as one."""
    assert run(dataset, 0, num_shards=1) == 0
    path = dataset["out"] / teacher_id(settings()) / "shard-0000-of-0001.npz"
    with np.load(path) as shard:
        old = {k: shard[k] for k in shard.files if k != "foreground_components"}
    np.savez_compressed(path, **old)
    assert shard_is_complete(path, ["broken", *(f"im{i}" for i in range(7))])
    components = read_shard(path)["foreground_components"]
    assert components.tolist() == [-1] * 7 and components.dtype == np.int64
    assert main(["index", "--masks-dir", str(path.parent), "--num-shards", "1"]) == 0
    assert json.loads((path.parent / "qc.json").read_text())["several_objects"] is None


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    """The error is the last stderr line, alone (a progress bar may precede it), no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert "Traceback" not in err and len(errors) == 1
    assert err.splitlines()[-1] == errors[0] and errors[0].startswith("pseudomasks: error: ")
    return errors[0]


def test_missing_catalogue_is_one_line(dataset, capsys):
    dataset["catalogue"] = dataset["catalogue"].with_name("nope.csv")
    assert run(dataset, 0) == 2
    assert "nope.csv" in one_error_line(capsys)


def test_bad_part_keypoint_is_one_line(dataset, capsys):
    bad = settings()
    bad["species"]["parts"][2]["keypoints"] = ["hipp"]
    dataset["settings"].write_text(json.dumps(bad))
    assert run(dataset, 0) == 2
    line = one_error_line(capsys)
    assert "species 'toy'" in line and "'hipp'" in line


def test_keypoint_length_mismatch_names_the_image(dataset, capsys):
    frame = pd.read_csv(dataset["catalogue"], dtype=str, keep_default_na=False)
    frame.loc[frame["image_id"] == "im2", "keypoints"] = "[1, 2, 1]"
    frame.to_csv(dataset["catalogue"], index=False)
    assert run(dataset, 0, num_shards=1) == 2
    assert "'im2'" in one_error_line(capsys)


def test_unreadable_silhouette_fails_only_its_image(dataset):
    frame = pd.read_csv(dataset["catalogue"], dtype=str, keep_default_na=False)
    frame.loc[frame["image_id"] == "im3", "silhouette"] = "img/gone.png"
    frame.to_csv(dataset["catalogue"], index=False)
    assert run(dataset, 0, num_shards=1) == 0  # batches of 3: im3 shares one with im2, im4
    path = dataset["out"] / teacher_id(settings()) / "shard-0000-of-0001.npz"
    with np.load(path) as shard:
        assert shard["image_id"].tolist() == ["im0", "im1", "im2", "im4", "im5", "im6"]
        assert shard["failed_image_id"].tolist() == ["broken", "im3"]
        assert "silhouette" in shard["failed_reason"][1] and "gone.png" in shard["failed_reason"][1]


def test_index_reports_missing_shards(dataset, capsys):
    assert run(dataset, 0) == 0
    teacher_dir = dataset["out"] / teacher_id(settings())
    capsys.readouterr()
    assert main(["index", "--masks-dir", str(teacher_dir), "--num-shards", "2"]) == 2
    assert "shard-0001-of-0002.npz" in one_error_line(capsys)
    assert not (teacher_dir / "index.json").exists()


def test_a_shard_without_rows_is_still_written(dataset):
    assert run(dataset, 9, num_shards=10) == 0  # 8 training rows: shard 9 is empty
    path = dataset["out"] / teacher_id(settings()) / "shard-0009-of-0010.npz"
    with np.load(path) as shard:
        assert shard["image_id"].shape == (0,) and shard["labels"].shape == (0, 32, 32)
        assert shard["visibility"].shape == (0, 5)


def test_teacher_id_command(dataset, capsys):
    assert main(["teacher-id", "--settings-json", json.dumps(settings())]) == 0
    assert capsys.readouterr().out.strip() == teacher_id(settings())


def test_no_temporary_files_are_left(dataset):
    assert run(dataset, 0, num_shards=1) == 0
    leftovers = [p for p in dataset["out"].rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == [] and os.listdir(dataset["out"])


@pytest.mark.parametrize("content", [b"not an npz", b""], ids=["not-npz", "empty"])
def test_a_shard_that_is_not_ours_is_one_line_without_numpys_advice(tmp_path, content):
    path = tmp_path / "shard-0000-of-0001.npz"
    path.write_bytes(content)
    with pytest.raises(UserError) as caught:
        read_shard(path)
    assert str(caught.value) == f"shard {path}: not an .npz of plain arrays; delete it and rerun"
