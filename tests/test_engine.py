"""Training engine: data pipeline invariants, exact resume, NaN stop, outputs."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance
from tiny_data import make_tiny_dataset, run_settings

from reid.config import RunSettings, without_later_defaults
from reid.data.datasets import TrainDataset
from reid.data.part_maps import load_part_maps
from reid.data.transforms import (
    CROP_ASPECT,
    ERASED_AREA,
    augment_pair,
    erase_rectangle,
    jitter_colour,
    random_crop_box,
)
from reid.engine import train as train_module
from reid.engine.checkpoint import load_tensors
from reid.engine.extract import extract_descriptors
from reid.engine.precision import resolve_precision
from reid.engine.schedule import lr_at
from reid.engine.train import CHECKPOINT, Trainer, TrainingDiverged, TrainInputs, read_history
from reid.errors import UserError


@pytest.fixture()
def tiny(tmp_path):
    return make_tiny_dataset(tmp_path)


def inputs(tiny, out):
    return TrainInputs(tiny.catalogue, tiny.root, tiny.masks, out)


def test_lr_schedule_matches_the_paper():
    args = dict(base_lr=8.5e-5, epochs=50, warmup_epochs=3, warmup_start_lr=1.7e-7, final_lr=6.8e-5)
    assert lr_at(0, **args) == pytest.approx(1.7e-7)
    assert lr_at(1, **args) == pytest.approx(1.7e-7 + (8.5e-5 - 1.7e-7) / 3)
    assert lr_at(3, **args) == pytest.approx(8.5e-5)  # warm-up ends at the base rate
    midpoint = 3 + (50 - 3) / 2
    assert lr_at(int(midpoint), **args) < 8.5e-5
    assert lr_at(50, **args) == pytest.approx(6.8e-5)  # cosine floor


def test_mirrored_samples_are_new_identities_with_inverted_orientation(tiny):
    maps = load_part_maps(tiny.masks)
    rows = tiny.table[tiny.table["split"] == "train"]
    dataset = TrainDataset(
        rows, tiny.root, maps, img_size=32, mask_size=16, rotation=0, flip_as_new_identity=True
    )
    n = len(rows)
    assert len(dataset) == 2 * n
    assert dataset.num_classes == 2 * rows["identity"].nunique()
    originals, mirrors = dataset.samples[:n], dataset.samples[n:]
    for a, b in zip(originals, mirrors, strict=True):
        assert a.image_id == b.image_id and b.mirrored and not a.mirrored
        assert b.class_id == a.class_id + rows["identity"].nunique()
        assert b.orientation == 1 - a.orientation
    item_a, item_b = dataset[(0, 0)], dataset[(n, 0)]
    torch.testing.assert_close(item_b["image"], item_a["image"].flip(-1))
    torch.testing.assert_close(item_b["target_map"], item_a["target_map"].flip(-1))
    assert item_a["label"] != item_b["label"]


def test_augmentation_keeps_image_and_map_aligned():
    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.uint8)
    labels[16:48, 8:32] = 1
    labels[16:48, 32:56] = 2
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    image = palette[labels]  # the image shows its own map
    for _ in range(5):
        degrees = float(rng.uniform(-15, 15))
        for mirror in (False, True):
            out_image, out_map = augment_pair(
                image, labels, 128, 64, mirror=mirror, degrees=degrees
            )
            small = out_image[1::2, 1::2]  # image pixel centres nearest to the map's
            expected = palette[out_map]
            agree = np.all(np.abs(small.astype(int) - expected.astype(int)) < 96, axis=-1)
            assert agree.mean() > 0.97


@pytest.mark.parametrize("shape", [(64, 64), (48, 96), (96, 40)])
def test_random_erasing_fills_one_rectangle_of_the_set_area(shape):
    image = np.full((*shape, 3), 7, np.uint8)  # no noise pixel can be 7 in all three channels
    areas = []
    for seed in range(200):
        out = erase_rectangle(image, np.random.default_rng(seed))
        changed = np.any(out != image, axis=-1)
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        if rows.size == 0:  # no draw fitted (possible for the narrow shapes): unchanged
            continue
        box = changed[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        # the bounding box of what changed is (nearly) all changed: one rectangle
        assert box.mean() > 0.99
        areas.append(box.size / changed.size)
    assert np.all(image == 7)  # the input is not modified
    assert len(areas) > 150
    # rounding the sides to whole pixels moves the area a little past the set range
    assert ERASED_AREA[0] * 0.8 <= min(areas) and max(areas) <= ERASED_AREA[1] * 1.1
    assert np.mean(areas) == pytest.approx(np.mean(ERASED_AREA), abs=0.05)


def small_train_dataset(tiny, rotation=15, **augment):
    """The tiny training split at 32 px (maps 16 × 16), unmirrored, with these augmentations."""
    maps = load_part_maps(tiny.masks)
    rows = tiny.table[tiny.table["split"] == "train"]
    return TrainDataset(rows, tiny.root, maps, 32, 16, rotation, False, **augment)


def test_random_erasing_changes_only_the_image(tiny):
    plain, always = small_train_dataset(tiny), small_train_dataset(tiny, erasing=1.0)
    differs = 0
    for index in range(len(plain)):
        a, b = plain[(index, index)], always[(index, index)]
        # the same rotation is drawn first, so only the erased rectangle differs
        torch.testing.assert_close(b["target_map"], a["target_map"])
        torch.testing.assert_close(b["visibility"], a["visibility"])
        changed = (a["image"] != b["image"]).any(0)
        differs += bool(changed.any())
        assert changed.float().mean() <= ERASED_AREA[1] * 1.1
    assert differs == len(plain)


@pytest.mark.parametrize("shape", [(64, 64), (48, 96), (96, 40), (3, 200)])
@pytest.mark.parametrize("min_area", [0.3, 0.6, 0.95])
def test_random_crop_box_lies_in_the_photo_with_the_set_area_and_aspect(shape, min_area):
    h, w = shape
    areas, rng = [], np.random.default_rng(0)
    for _ in range(2000):
        top, left, ch, cw = random_crop_box((h, w, 3), min_area, rng)
        assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
        area, aspect = ch * cw / (h * w), (cw / w) / (ch / h)
        areas.append(area)
        # as drawn, up to rounding each side to whole pixels
        rounding = 1 / (2 * min(h, w) * np.sqrt(area)) if min(h, w) >= 40 else 0.5
        assert min_area * (1 - 2 * rounding) <= area <= 1.0
        assert CROP_ASPECT[0] * (1 - 2 * rounding) <= aspect <= CROP_ASPECT[1] * (1 + 2 * rounding)
    if min(h, w) >= 40:  # the area is drawn uniformly from [min_area, 1]
        assert np.mean(areas) == pytest.approx((1 + min_area) / 2, abs=0.02)
        assert min(areas) < min_area + 0.1 * (1 - min_area) and max(areas) > 0.9


def test_a_crop_keeps_image_and_map_aligned():
    """A 96 × 160 photo with a 64 × 64 map that labels its own colours: after a crop the map,
    resized back onto the image, still names each pixel's colour."""
    rng = np.random.default_rng(0)
    labels = np.zeros((64, 64), np.uint8)
    labels[10:50, 5:30] = 1
    labels[20:60, 30:61] = 2
    palette = np.array([[0, 0, 0], [255, 0, 0], [0, 0, 255]], np.uint8)
    image = palette[cv2.resize(labels, (160, 96), interpolation=cv2.INTER_NEAREST)]
    for _ in range(10):
        box = random_crop_box(image.shape, 0.3, rng)
        top, left, ch, cw = box
        out_image, out_map = augment_pair(image, labels, 128, 64, False, 0.0, crop=box)
        assert out_image.shape == (128, 128, 3) and out_map.shape == (64, 64)
        small = out_image[1::2, 1::2]
        agree = np.all(np.abs(small.astype(int) - palette[out_map].astype(int)) < 96, axis=-1)
        # away from the regions' and the image's edges (a map cell either side: nearest-neighbour
        # resizing may shift a label edge by half a cell), image and map agree everywhere
        inner = cv2.erode(out_map, np.ones((3, 3))) == cv2.dilate(out_map, np.ones((3, 3)))
        inner = inner[1:-1, 1:-1]
        assert inner.mean() > 0.5 and agree[1:-1, 1:-1][inner].all()
        assert agree.mean() > 0.93
        # and the crop is the photo's region: its mean colour is the region's
        region = image[top : top + ch, left : left + cw].reshape(-1, 3).mean(0)
        assert np.allclose(out_image.reshape(-1, 3).mean(0), region, atol=6)


def test_random_crops_change_image_and_map_together_and_repeat_with_the_seed(tiny):
    plain = small_train_dataset(tiny, rotation=0)
    cropped = small_train_dataset(tiny, rotation=0, min_crop_area=0.4)
    maps_differ = 0
    for index in range(len(plain)):
        a, b = plain[(index, index)], cropped[(index, index)]
        again = cropped[(index, index)]
        torch.testing.assert_close(again["image"], b["image"])  # a resumed run sees the same
        torch.testing.assert_close(again["target_map"], b["target_map"])
        assert not torch.equal(a["image"], b["image"])
        maps_differ += not torch.equal(a["target_map"], b["target_map"])
        # visibility follows the cropped map
        present = set(b["target_map"].unique().tolist()) - {0}
        assert {i + 1 for i in np.flatnonzero(b["visibility"].numpy())} == present
    assert maps_differ > len(plain) // 2


def test_colour_jitter_matches_pillows_enhancers():
    """Brightness, contrast, then saturation with the drawn factors, as PIL's ImageEnhance (the
    definitions torchvision's ColorJitter follows) computes them, up to PIL's integer rounding
    of each step."""
    image = np.random.default_rng(1).integers(20, 236, size=(24, 32, 3), dtype=np.uint8)
    for seed in range(5):
        strength = 0.4
        factors = np.random.default_rng(seed).uniform(1 - strength, 1 + strength, size=3)
        reference = Image.fromarray(image)
        for enhancer, factor in zip(
            (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color),
            factors,
            strict=True,
        ):
            reference = enhancer(reference).enhance(float(factor))
        out = jitter_colour(image, strength, np.random.default_rng(seed))
        assert out.dtype == np.uint8 and out.shape == image.shape
        assert np.abs(out.astype(int) - np.asarray(reference).astype(int)).max() <= 3
    assert np.array_equal(jitter_colour(image, 0.0, np.random.default_rng(0)), image)


def test_colour_jitter_changes_only_the_image(tiny):
    plain, jittered = small_train_dataset(tiny), small_train_dataset(tiny, colour=0.3)
    for index in range(len(plain)):
        a, b = plain[(index, index)], jittered[(index, index)]
        torch.testing.assert_close(b["target_map"], a["target_map"])  # same rotation drawn first
        torch.testing.assert_close(b["visibility"], a["visibility"])
        assert not torch.equal(a["image"], b["image"])


def test_settings_from_before_later_augmentations_train_without_them():
    """settings.json leaves random erasing (0), random crops (min area 1) and colour jitter (0)
    out at the values that compute what training computed before they existed, so an upgrade
    does not retrain finished models; read back, they are those values; any other value is
    kept."""
    resolved = run_settings()["train"]
    written = without_later_defaults(resolved)
    assert written["augment"] == {"rotation": 15, "flip_as_new_identity": True}
    assert {k: v for k, v in written.items() if k != "augment"} == {
        k: v for k, v in resolved.items() if k != "augment"
    }
    assert resolved["augment"]["erasing"] == 0.0  # the input is left as it was
    read_back = RunSettings.from_dict(run_settings() | {"train": written}).train
    assert (read_back.erasing, read_back.min_crop_area, read_back.colour) == (0.0, 1.0, 0.0)
    on = run_settings()
    changed = {"erasing": 0.5, "min_crop_area": 0.6, "colour": 0.2}
    on["train"]["augment"] |= changed
    assert without_later_defaults(on["train"])["augment"] == on["train"]["augment"]
    read_back = RunSettings.from_dict(on).train
    assert (read_back.erasing, read_back.min_crop_area, read_back.colour) == (0.5, 0.6, 0.2)


def test_visibility_follows_the_augmented_map(tiny):
    maps = load_part_maps(tiny.masks)
    rows = tiny.table[tiny.table["split"] == "train"]
    dataset = TrainDataset(rows, tiny.root, maps, 32, 16, rotation=0, flip_as_new_identity=False)
    dataset.maps.labels[dataset.samples[0].map_row][
        dataset.maps.labels[dataset.samples[0].map_row] == 2
    ] = 0
    item = dataset[(0, 0)]
    assert item["visibility"].tolist() == [True, False]


def test_missing_maps_are_an_error_or_skipped(tiny, tmp_path):
    shard = tiny.masks / "shard-0000-of-0001.npz"
    with np.load(shard) as data:
        arrays = {k: data[k] for k in data.files}
    np.savez(shard, **{k: v[2:] for k, v in arrays.items()})
    settings = RunSettings.from_dict(run_settings(epochs=1))
    with pytest.raises(
        UserError, match="2 of 24 training images have no part map from teacher abc123def456"
    ):
        Trainer(settings, inputs(tiny, tmp_path / "run"), device="cpu", workers=0, progress=False)
    settings = RunSettings.from_dict(run_settings(epochs=1, skip_missing_maps=True))
    trainer = Trainer(
        settings, inputs(tiny, tmp_path / "run"), device="cpu", workers=0, progress=False
    )
    assert len(trainer.dataset) == 2 * 22


def test_training_writes_model_history_and_checkpoint(tiny, tmp_path):
    out = tmp_path / "run"
    settings = RunSettings.from_dict(run_settings(epochs=2, eval_every=1))
    config = Trainer(settings, inputs(tiny, out), device="cpu", workers=0, progress=False).fit()
    assert (out / "model.safetensors").is_file()
    saved = json.loads((out / "model.json").read_text())
    assert saved == json.loads(json.dumps(config))
    assert saved["num_parts"] == 2 and saved["teacher_id"] == "abc123def456"
    assert saved["precision"] == "fp32"  # auto on a CPU
    history = read_history(out)
    assert list(history["epoch"]) == [0, 1, 2]  # epoch 0: the untrained model's evaluation
    assert np.isnan(history["loss_total"][0]) and np.isfinite(history["eval_mAP"][0])
    for column in (
        "loss_total",
        "loss_id",
        "loss_triplet",
        "loss_orientation",
        "loss_segmentation",
        "lr",
        "eval_mAP",
    ):
        assert column in history.columns
    assert np.isfinite(history["loss_total"][1:]).all()
    _, state = load_tensors(out / CHECKPOINT)
    assert state["epoch"] == 1


def test_resume_continues_exactly(tiny, tmp_path):
    settings = RunSettings.from_dict(run_settings(epochs=3))
    full = tmp_path / "full"
    Trainer(settings, inputs(tiny, full), device="cpu", workers=0, progress=False).fit()

    killed = tmp_path / "killed"
    short = RunSettings.from_dict(run_settings(epochs=3))
    trainer = Trainer(short, inputs(tiny, killed), device="cpu", workers=0, progress=False)
    # Simulate a kill after the first epoch: run one epoch and its checkpoint, then drop the object.
    lr = lr_at(0, 3e-4, 3, 1, 1e-5, 1e-4)
    trainer.history.append(trainer.train_epoch(0, lr))
    trainer.save_checkpoint(0)
    del trainer

    torch.manual_seed(12345)  # a different global RNG state must not matter after resume
    Trainer(settings, inputs(tiny, killed), device="cpu", workers=0, progress=False).fit(
        resume=True
    )
    a, b = read_history(full), read_history(killed)
    np.testing.assert_allclose(a["loss_total"], b["loss_total"], rtol=1e-5)
    weights_a, _ = load_tensors(full / "model.safetensors")
    weights_b, _ = load_tensors(killed / "model.safetensors")
    for key in weights_a:
        torch.testing.assert_close(weights_a[key], weights_b[key], msg=key)


@pytest.mark.slow
def test_training_is_bitwise_repeatable_whatever_the_worker_count(tiny, tmp_path):
    """The demo trains with data-loading workers: the same seed gives the same weights bit for
    bit, with or without workers (augmentation draws per-sample seeds, not worker RNG)."""
    settings = RunSettings.from_dict(run_settings(epochs=1))
    for name, workers in (("a", 0), ("b", 2)):
        out = tmp_path / name
        Trainer(settings, inputs(tiny, out), device="cpu", workers=workers, progress=False).fit()
    weights_a, _ = load_tensors(tmp_path / "a" / "model.safetensors")
    weights_b, _ = load_tensors(tmp_path / "b" / "model.safetensors")
    for key in weights_a:
        assert torch.equal(weights_a[key], weights_b[key]), key


def test_resume_starts_afresh_for_other_settings_or_a_finished_run(tiny, tmp_path, caplog):
    out = tmp_path / "run"
    first = RunSettings.from_dict(run_settings(epochs=1))
    Trainer(first, inputs(tiny, out), device="cpu", workers=0, progress=False).fit()
    reference = tmp_path / "reference"
    other = RunSettings.from_dict(run_settings(epochs=1, seed=7))
    Trainer(other, inputs(tiny, reference), device="cpu", workers=0, progress=False).fit()
    for settings, message in ((other, "other settings"), (first, "finished run")):
        trainer = Trainer(settings, inputs(tiny, out), device="cpu", workers=0, progress=False)
        with caplog.at_level("WARNING"):
            assert not trainer.load_checkpoint()
        assert message in caplog.text
    Trainer(other, inputs(tiny, out), device="cpu", workers=0, progress=False).fit(resume=True)
    a, _ = load_tensors(out / "model.safetensors")
    b, _ = load_tensors(reference / "model.safetensors")
    for key in a:  # trained afresh: the same weights as a clean run of those settings
        torch.testing.assert_close(a[key], b[key], msg=key)


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    out = tmp_path / "run"
    trainer = Trainer(
        RunSettings.from_dict(run_settings(epochs=3)),
        inputs(tiny, out),
        device="cpu",
        workers=0,
        progress=False,
    )
    real = trainer._batch_losses
    calls = {"n": 0}
    steps_per_epoch = len(trainer.batches)

    def poisoned(batch):
        calls["n"] += 1
        losses = real(batch)
        if calls["n"] > steps_per_epoch:  # second epoch
            losses["total"] = losses["total"] * float("nan")
        return losses

    monkeypatch.setattr(trainer, "_batch_losses", poisoned)
    with pytest.raises(TrainingDiverged, match="epoch 2, step 1.*--resume"):
        trainer.fit()
    _, state = load_tensors(out / CHECKPOINT)
    assert state["epoch"] == 0
    assert not (out / "model.safetensors").exists()


def test_best_on_test_selects_the_best_evaluation(tiny, tmp_path, monkeypatch):
    scores = iter([0.95, 0.2, 0.9, 0.5])  # epoch 0 (untrained) is reported, never selected
    monkeypatch.setattr(train_module.Trainer, "evaluate", lambda self: {"mAP": next(scores)})
    out = tmp_path / "run"
    settings = RunSettings.from_dict(run_settings(epochs=3, eval_every=1, select="best_on_test"))
    config = Trainer(settings, inputs(tiny, out), device="cpu", workers=0, progress=False).fit()
    assert config["selected_epoch"] == 2
    best, _ = load_tensors(out / "checkpoint" / "best.safetensors")
    final, _ = load_tensors(out / "model.safetensors")
    for key in best:
        torch.testing.assert_close(best[key], final[key])


def test_bf16_precision_autocasts_the_model_and_keeps_fp32_weights(tiny, tmp_path):
    """precision bf16 (CPU autocast here; the same code path as on an Ampere GPU): the model's
    linear layers compute in bf16 in training and evaluation; weights, losses and descriptors
    stay fp32, and bf16 descriptors match fp32 ones closely."""
    out = tmp_path / "run"
    settings = RunSettings.from_dict(run_settings(epochs=2, eval_every=1, precision="bf16"))
    trainer = Trainer(settings, inputs(tiny, out), device="cpu", workers=0, progress=False)
    output_dtypes = []
    linear = next(m for m in trainer.model_core.modules() if isinstance(m, torch.nn.Linear))
    linear.register_forward_hook(lambda module, args, output: output_dtypes.append(output.dtype))

    config = trainer.fit()

    assert config["precision"] == "bf16"
    assert output_dtypes and set(output_dtypes) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in trainer.model_core.parameters())
    history = read_history(out)
    assert np.isfinite(history["loss_total"][1:]).all()
    assert np.isfinite(history["eval_mAP"]).all()

    paths = [tiny.root / p for p in tiny.table["path"][:8]]
    device = torch.device("cpu")
    full = extract_descriptors(trainer.model_core, paths, 32, device, precision="fp32")
    half = extract_descriptors(trainer.model_core, paths, 32, device, precision="bf16")
    assert full.dtype == half.dtype == np.float32
    cosine = (full * half).sum(1) / np.linalg.norm(full, axis=1) / np.linalg.norm(half, axis=1)
    assert cosine.min() > 0.99


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == "fp32"
    assert resolve_precision("bf16", cpu) == "bf16"
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(UserError, match="unknown precision 'fp16'"):
        resolve_precision("fp16", cpu)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a GPU without native bf16")
def test_bf16_on_a_gpu_without_native_bf16_is_an_error_and_auto_falls_back_to_fp32():
    gpu = torch.device("cuda")
    assert resolve_precision("auto", gpu) == "fp32"
    with pytest.raises(UserError, match="needs a GPU with native bf16.*use precision auto or fp32"):
        resolve_precision("bf16", gpu)
