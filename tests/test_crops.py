"""Animal crops (``teacher.crop_margin``): the teacher records each photo's animal box with a map
that covers it, and training, extraction, the attention figure and ``reid identify`` all cut the
photo to that box.

Expectations are computed here from the drawn silhouettes (their extent grown by the margin) and
by cutting photos by hand, never by the code under test.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import torch
from test_cli import error_line
from test_pseudomasks_cache import dataset, draw_animal, settings  # noqa: F401 (fixture)
from test_pseudomasks_cache import run as run_teacher
from tiny_data import run_settings

from pseudomasks.cache import load_part_maps as load_cached_maps
from pseudomasks.cache import read_shard
from pseudomasks.cli import main as pseudomasks_main
from pseudomasks.errors import UserError
from pseudomasks.settings import parse_settings, teacher_id
from reid.cli import main as reid_main
from reid.data.crops import AnimalBox, boxes_from_arrays, boxes_to_arrays
from reid.data.datasets import TrainDataset
from reid.data.images import read_rgb
from reid.data.part_maps import load_part_maps
from reid.data.transforms import resize_image, resize_map, to_tensor
from reid.engine.extract import load_features, load_trained_model
from reid.identify import teacher_boxes

MARGIN = 0.1


def cropping_settings(segmentation: list[dict] | None = None) -> dict:
    doc = settings()
    doc["teacher"]["crop_margin"] = MARGIN
    doc["teacher"]["segmentation"] = segmentation or [{"member": "annotations"}]
    return doc


def expected_box(mask: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """The silhouette's extent grown by ``margin`` of its size per side, rounded outwards and
    clipped to the image: x0, y0, x1, y1 with exclusive ends."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    w, h = x1 - x0, y1 - y0
    H, W = mask.shape
    return (
        max(int(np.floor(x0 - margin * w)), 0),
        max(int(np.floor(y0 - margin * h)), 0),
        min(int(np.ceil(x1 + margin * w)), W),
        min(int(np.ceil(y1 + margin * h)), H),
    )


def test_crop_margin_is_validated_and_enters_the_teacher_id_only_when_set():
    plain = settings()
    explicit_null = settings()
    explicit_null["teacher"]["crop_margin"] = None
    assert teacher_id(plain) == teacher_id(explicit_null)
    assert teacher_id(cropping_settings(plain["teacher"]["segmentation"])) != teacher_id(plain)
    for bad in (-0.1, 1.5, True, "10%"):
        doc = cropping_settings()
        doc["teacher"]["crop_margin"] = bad
        with pytest.raises(UserError, match=r"teacher\.crop_margin"):
            parse_settings(doc)


def test_a_speck_of_foreground_is_no_box():
    from pseudomasks.members.detection import CropBox, foreground_box

    foreground = np.zeros((100, 200), bool)
    foreground[40:50, 100:120] = True  # 10 × 20 = 1 % of the photo
    assert foreground_box(foreground, 0.1, min_area=0.02) is None
    assert foreground_box(foreground, 0.1, min_area=0.005) == CropBox(98, 39, 122, 51)
    assert foreground_box(np.zeros((5, 5), bool), 0.1) is None
    doc = cropping_settings()
    doc["teacher"]["crop_min_area"] = 0.02  # the default: the same teacher id as unset
    assert teacher_id(doc) == teacher_id(cropping_settings())
    doc["teacher"]["crop_min_area"] = 1.0
    with pytest.raises(UserError, match=r"teacher\.crop_min_area"):
        parse_settings(doc)


def test_the_teacher_boxes_every_image_and_maps_the_box(dataset):  # noqa: F811
    dataset["settings"].write_text(json.dumps(cropping_settings()))
    teacher_dir = dataset["out"] / teacher_id(cropping_settings())
    assert run_teacher(dataset, 0, num_shards=1) == 0
    shard = read_shard(teacher_dir / "shard-0000-of-0001.npz")
    ids = shard["image_id"].tolist()
    # Test images get their box too: the query row q0 is in the shard beside the training rows.
    assert sorted(ids) == sorted([f"im{i}" for i in range(7)] + ["q0"])
    assert shard["failed_image_id"].tolist() == ["broken"]
    assert (shard["image_shape"] == [48, 64]).all()
    for i, image_id in enumerate(ids):
        number = 1 if image_id == "q0" else int(image_id[2:])
        _, mask, _ = draw_animal(flip=number % 2 == 1)
        box = expected_box(mask > 0, MARGIN)
        assert shard["crop_box"][i].tolist() == list(box), image_id
        # The map covers the box: its foreground share is the silhouette's share of the box.
        x0, y0, x1, y1 = box
        inside = (mask[y0:y1, x0:x1] > 0).mean()
        assert abs((shard["labels"][i] > 0).mean() - inside) < 0.08, image_id

    assert pseudomasks_main(["index", "--masks-dir", str(teacher_dir), "--num-shards", "1"]) == 0
    qc = json.loads((teacher_dir / "qc.json").read_text())
    areas = [(b[2] - b[0]) * (b[3] - b[1]) / (48 * 64) for b in shard["crop_box"]]
    assert qc["crop"]["maps"] == 8 and qc["crop"]["rate"] == 1.0
    assert qc["crop"]["mean_area_fraction"] == pytest.approx(np.mean(areas))
    cached = load_cached_maps(teacher_dir)["im2"]
    assert cached.crop_box is not None and cached.crop_box.x0 == shard["crop_box"][2][0]

    sheet = dataset["out"] / "sheet.png"
    args = ["show", "--masks-dir", str(teacher_dir), "--catalogue", str(dataset["catalogue"])]
    assert pseudomasks_main([*args, "--root", str(dataset["root"]), "--out", str(sheet)]) == 0


def test_a_teacher_without_crop_margin_keeps_to_the_training_rows(dataset):  # noqa: F811
    assert run_teacher(dataset, 0, num_shards=1) == 0
    teacher_dir = dataset["out"] / teacher_id(settings())
    shard = read_shard(teacher_dir / "shard-0000-of-0001.npz")
    assert "q0" not in shard["image_id"].tolist()
    assert np.isnan(shard["crop_box"]).all()
    assert pseudomasks_main(["index", "--masks-dir", str(teacher_dir), "--num-shards", "1"]) == 0
    assert json.loads((teacher_dir / "qc.json").read_text())["crop"] is None


def test_a_box_is_scaled_to_a_resized_copy_of_the_photo():
    image = np.arange(100 * 200 * 3, dtype=np.int64).reshape(100, 200, 3)
    box = AnimalBox(10, 5, 30.5, 25, height=50, width=100)  # recorded on a half-size copy
    cut = box.cut(image)
    assert np.array_equal(cut, image[10:50, 20:61])
    assert np.array_equal(AnimalBox(10, 5, 30, 25).cut(image), image[5:25, 10:30])
    assert AnimalBox(500, 500, 600, 600).cut(image).shape[:2] == (1, 1)  # never empty


def test_boxes_survive_the_round_trip_through_arrays():
    """How shards and identify's gallery cache store boxes: None stays None, sizes are kept."""
    boxes = [AnimalBox(1.5, 2, 30, 25.25, 96, 128), None, AnimalBox(0, 0, 10, 10)]
    crop_box, image_shape = boxes_to_arrays(boxes)
    assert np.isnan(crop_box[1]).all()
    assert boxes_from_arrays(["a", "b", "c"], crop_box, image_shape) == {
        "a": boxes[0],
        "c": boxes[2],
    }


# ------------------------------------------------------------------------------ the student


@pytest.fixture(scope="module")
def cropped(tmp_path_factory):
    """The toy photos of the teacher tests as a re-ID dataset (3 identities train, 2 test),
    boxed by a real GrabCut teacher with crop_margin (so that new photos can be boxed too), and
    a PAW-ViT trained one epoch on those crops."""
    tmp = tmp_path_factory.mktemp("crops")
    root = tmp / "data"
    rows = []
    rng = np.random.default_rng(0)
    for identity in range(5):
        for k in range(4):
            image, _, _ = draw_animal(flip=k % 2 == 1)
            big = np.zeros((96, 128, 3), np.uint8) + rng.integers(0, 60, (96, 128, 3), np.uint8)
            at_x, at_y = int(rng.integers(0, 64)), int(rng.integers(0, 48))
            big[at_y : at_y + 48, at_x : at_x + 64] = image
            big[at_y + 16 : at_y + 30, at_x + 14 : at_x + 48] = (40 * identity, 255, 60 * k % 255)
            path = Path(f"id{identity}/{k}.png")
            (root / path.parent).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / path), big[:, :, ::-1])
            split = "train" if identity < 3 else "test"
            rows.append(
                {
                    "image_id": f"id{identity}/{k}",
                    "path": path.as_posix(),
                    "identity": f"id{identity}",
                    "split": split,
                    "orientation": "",
                }
            )
    catalogue = tmp / "catalogue.csv"
    pd.DataFrame(rows).to_csv(catalogue, index=False)
    doc = cropping_settings([{"member": "grabcut", "iterations": 2}])
    doc["teacher"]["pose"] = []
    doc["teacher"]["mask_size"] = 16
    settings_file = tmp / "teacher.json"
    settings_file.write_text(json.dumps(doc))
    out = tmp / "masks"
    run = ["run", "--catalogue", str(catalogue), "--root", str(root), "--settings"]
    assert pseudomasks_main([*run, str(settings_file), "--out", str(out), "--device", "cpu"]) == 0
    masks = out / teacher_id(doc)
    assert pseudomasks_main(["index", "--masks-dir", str(masks), "--num-shards", "1"]) == 0
    model_dir = tmp / "run"
    train = ["train", "--settings-json", json.dumps(run_settings(epochs=1))]
    train += ["--catalogue", str(catalogue), "--root", str(root), "--masks", str(masks)]
    assert reid_main([*train, "--out", str(model_dir), "--workers", "0", "--no-progress"]) == 0
    return {"root": root, "catalogue": catalogue, "masks": masks, "model": model_dir, "tmp": tmp}


def test_training_sees_the_photo_cut_to_its_box(cropped):
    maps = load_part_maps(cropped["masks"])
    assert maps.crop is not None and maps.crop["margin"] == MARGIN
    table = pd.read_csv(cropped["catalogue"], dtype=str, keep_default_na=False)
    rows = table[table["split"] == "train"]
    data = TrainDataset(rows, cropped["root"], maps, 32, 16, rotation=0, flip_as_new_identity=False)
    sample = data.samples[0]
    box = maps.boxes[sample.image_id]
    photo = read_rgb(sample.path)
    by_hand = photo[int(box.y0) : int(box.y1), int(box.x0) : int(box.x1)]
    assert by_hand.shape[:2] != photo.shape[:2]  # the box is a real crop
    item = data[(0, 0)]
    assert torch.equal(item["image"], to_tensor(resize_image(by_hand, 32)))
    assert np.array_equal(
        item["target_map"].numpy(), resize_map(maps.labels[sample.map_row], 16).astype(np.int64)
    )
    config = json.loads((cropped["model"] / "model.json").read_text())
    assert config["crop"]["teacher_id"] == maps.teacher_id
    assert config["crop"]["teacher_settings"]["teacher"]["crop_margin"] == MARGIN


def test_extraction_cuts_to_the_same_boxes_and_refuses_other_ones(cropped, capsys):
    model_dir, out = cropped["model"], cropped["tmp"] / "features.npz"
    base = ["extract", "--model-dir", str(model_dir), "--catalogue", str(cropped["catalogue"])]
    base += ["--root", str(cropped["root"]), "--device", "cpu", "--workers", "0"]
    assert reid_main([*base, "--out", str(out)]) == 2
    err = error_line(capsys)
    assert "--crops" in err and cropped["masks"].name in err
    assert reid_main([*base, "--crops", str(cropped["masks"]), "--out", str(out)]) == 0
    ids, features = load_features(out)
    boxes = load_part_maps(cropped["masks"]).boxes
    model, _ = load_trained_model(model_dir, torch.device("cpu"))
    photos = [
        boxes[i].cut(read_rgb(cropped["root"] / f"{i}.png")) for i in ids
    ]  # image_id == path stem here
    with torch.no_grad():
        by_hand = model(torch.stack([to_tensor(resize_image(p, 32)) for p in photos])).numpy()
    assert np.allclose(features, by_hand, atol=1e-5)

    other = cropped["tmp"] / "other" / "aaaaaaaaaaaa"
    other.mkdir(parents=True)
    teacher = json.loads((cropped["masks"] / "teacher.json").read_text())
    (other / "teacher.json").write_text(json.dumps({**teacher, "teacher_id": "aaaaaaaaaaaa"}))
    for shard in cropped["masks"].glob("shard-*.npz"):
        (other / shard.name).write_bytes(shard.read_bytes())
    assert reid_main([*base, "--crops", str(other), "--out", str(out)]) == 2
    assert "aaaaaaaaaaaa" in error_line(capsys)


def test_identify_boxes_new_photos_with_the_models_teacher(cropped, tmp_path, caplog):
    config = json.loads((cropped["model"] / "model.json").read_text())
    boxes = load_part_maps(cropped["masks"]).boxes
    ids = ["id3/0", "id4/1"]
    got = teacher_boxes(
        [cropped["root"] / f"{i}.png" for i in ids], config["crop"], torch.device("cpu")
    )
    # The same teacher on the same photos: the boxes the dataset's training run recorded.
    assert got == [boxes[i] for i in ids]

    out = tmp_path / "matches.json"
    args = ["identify", str(cropped["root"] / "id3/0.png"), "--model-dir", str(cropped["model"])]
    args += ["--gallery", str(cropped["catalogue"]), "--root", str(cropped["root"])]
    args += ["--gallery-splits", "test", "--format", "json", "--out", str(out), "--device", "cpu"]
    with caplog.at_level("INFO", logger="reid.identify"):
        assert reid_main([*args, "--cache", str(tmp_path / "cache.npz"), "--workers", "0"]) == 0
    # The catalogue's own teacher directory already boxes the gallery: no teacher run for it.
    assert f"animal boxes from {cropped['masks']}" in caplog.text
    best = json.loads(out.read_text())[0]["matches"][0]
    # Its own photo is in the gallery: cut alike on both sides, it matches itself exactly.
    assert best["identity"] == "id3" and best["best_match"] == "id3/0.png"
    assert best["similarity"] == pytest.approx(1.0, abs=1e-5)


def test_identify_similarity_figure_cuts_photos_as_matching_does(cropped, tmp_path, caplog):
    """A CNN trained on crops: the figure's photos are cut to the boxes matching used (the new
    photo by the teacher, the gallery by its recorded boxes, or a folder gallery's by the
    teacher once, then from the cache), so its cosines are the table's, and the teacher never
    runs again for the figure."""
    model_dir = tmp_path / "cnn"
    settings = run_settings(epochs=1) | {"model": {"arch": "resnet18", "img_size": 32}}
    train = ["train", "--settings-json", json.dumps(settings), "--catalogue"]
    train += [str(cropped["catalogue"]), "--root", str(cropped["root"]), "--masks"]
    train += [str(cropped["masks"]), "--out", str(model_dir), "--workers", "0", "--no-progress"]
    assert reid_main(train) == 0
    figure = tmp_path / "why.png"
    args = ["identify", str(cropped["root"] / "id3/0.png"), "--model-dir", str(model_dir)]
    args += ["--top-k", "2", "--device", "cpu", "--workers", "0"]
    args += ["--similarity-figure", str(figure)]
    catalogue = ["--gallery", str(cropped["catalogue"]), "--root", str(cropped["root"])]
    with caplog.at_level("INFO"):
        assert reid_main([*args, *catalogue, "--gallery-splits", "test"]) == 0
    # The new photo is boxed once, for matching; the figure takes the same box.
    assert caplog.text.count("boxing") == 1 and "boxing 1 photos with teacher" in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert cv2.imread(str(figure)).shape[0] > 0

    folder = tmp_path / "gallery"
    for identity in ("id3", "id4"):
        shutil.copytree(cropped["root"] / identity, folder / identity)
    for run in ("first", "cached"):
        caplog.clear()
        figure.unlink()
        with caplog.at_level("INFO"):
            assert reid_main([*args, "--gallery", str(folder)]) == 0
        boxed_gallery = "boxing 8 photos with teacher" in caplog.text
        # The gallery is boxed by the teacher the first time only, then its boxes come from the
        # cache with its descriptors; the figure boxes nothing.
        assert boxed_gallery == (run == "first"), run
        assert caplog.text.count("boxing") == 1 + boxed_gallery, run
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING], run
        assert cv2.imread(str(figure)).shape[0] > 0


def test_two_animals_in_one_photo_are_cut_apart_by_their_catalogue_boxes(tmp_path):
    """wildlife-datasets style: one row per animal, the same photo, a ``bbox`` each; the
    `annotations` detector makes each row's map and crop its own animal's."""
    left, _, _ = draw_animal(flip=False)
    right, _, _ = draw_animal(flip=True)
    photo = np.concatenate([left, np.zeros((48, 32, 3), np.uint8) + 30, right], axis=1)
    (tmp_path / "data").mkdir()
    cv2.imwrite(str(tmp_path / "data/pair.png"), photo[:, :, ::-1])
    rows = [
        {
            "image_id": "a",
            "path": "pair.png",
            "identity": "A",
            "split": "train",
            "bbox": "[0, 0, 64, 48]",
        },
        {
            "image_id": "b",
            "path": "pair.png",
            "identity": "B",
            "split": "train",
            "bbox": "[96, 0, 64, 48]",
        },
    ]
    catalogue = tmp_path / "catalogue.csv"
    pd.DataFrame(rows).to_csv(catalogue, index=False)
    doc = cropping_settings([{"member": "grabcut", "iterations": 2}])
    doc["teacher"]["pose"] = []
    doc["teacher"]["detector"] = {"member": "annotations", "margin": 0.0}
    (tmp_path / "teacher.json").write_text(json.dumps(doc))
    run = ["run", "--catalogue", str(catalogue), "--root", str(tmp_path / "data"), "--settings"]
    out = tmp_path / "masks"
    assert pseudomasks_main([*run, str(tmp_path / "teacher.json"), "--out", str(out)]) == 0
    shard = read_shard(out / teacher_id(doc) / "shard-0000-of-0001.npz")
    boxes = dict(zip(shard["image_id"].tolist(), shard["crop_box"].tolist(), strict=True))
    detected = dict(zip(shard["image_id"].tolist(), shard["detector_box"].tolist(), strict=True))
    assert detected == {"a": [0, 0, 64, 48], "b": [96, 0, 160, 48]}
    # Each crop is its own animal's: inside its box (grown by 10 % at most), apart from the other.
    assert 0 <= boxes["a"][0] and boxes["a"][2] <= 64 + 7
    assert 96 - 7 <= boxes["b"][0] and boxes["b"][2] <= 160
    assert boxes["a"][2] < boxes["b"][0]


def test_a_malformed_catalogue_box_is_one_line_naming_the_row():
    from pseudomasks.members.annotations import AnnotationBox
    from pseudomasks.members.base import Sample

    detector = AnnotationBox({"margin": 0.0}, None)
    image = np.zeros((10, 10, 3), np.uint8)
    for cell, message in (("[1, 2, 3]", "not a JSON list"), ("[1, 2, 0, 4]", "no area")):
        sample = Sample(image_id="x7", image=image, row={"bbox": cell}, root=Path("."))
        with pytest.raises(UserError, match=f"'x7'.*{message}"):
            detector.predict([sample])
    assert detector.predict([Sample("y", image, {"bbox": ""}, Path("."))]) == [None]
