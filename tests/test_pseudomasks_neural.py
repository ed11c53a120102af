"""Neural teacher members (ultralytics pose / segmentation / detection, SAM), weights files and
``pseudomasks fetch-weights``.

Every member runs its real architecture, random-initialised and saved to a weights file here,
through the same loading code as a downloaded checkpoint. Random models predict noise, so the
wiring tests check shapes, types and ranges; the selection rules are checked on constructed
predictions with hand-computed answers. Nothing contacts the network: fetch tests use an HTTP
server on 127.0.0.1 and the closed port 127.0.0.1:9.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from random_yolo import save_random_yolo_models

from pseudomasks.cli import main
from pseudomasks.errors import UserError
from pseudomasks.members.base import MemberContext, Sample, WeightsSpec
from pseudomasks.members.detection import (
    CropBox,
    crop_sample,
    keypoints_to_crop,
    keypoints_to_full,
    mask_to_full,
    padded_box,
)
from pseudomasks.members.registry import detector_member_class, member_class
from pseudomasks.members.sam import SamSegmentation, sam_prompt
from pseudomasks.members.ultralytics_models import largest_box
from pseudomasks.members.ultralytics_pose import UltralyticsPose
from pseudomasks.members.yolo_detect import YoloDetect
from pseudomasks.members.yolo_seg import YoloSeg, largest_mask
from pseudomasks.species import parse_species
from pseudomasks.weights import file_sha256, resolve_weights

SPECIES = parse_species(
    {
        "name": "toy",
        "keypoint_schema": "custom",
        "keypoints": ["a", "b", "c"],
        "parts": [{"name": "front", "keypoints": ["a"]}, {"name": "rear", "keypoints": ["b"]}],
    }
)
SMALL = 64
"""Inference size for the YOLO models here: a few milliseconds per image on a CPU."""

UNREACHABLE = "http://127.0.0.1:9/unreachable"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def context(weights: dict[str, WeightsSpec], device: str = "cpu", species=SPECIES):
    return MemberContext(species=species, confidence=0.3, device=device, weights=weights)


def samples() -> list[Sample]:
    """Two random images of different sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    shapes = [(96, 128), (80, 60)]
    return [
        Sample(f"img{i}", rng.integers(0, 255, (*s, 3), dtype=np.uint8), {}, Path("."))
        for i, s in enumerate(shapes)
    ]


# ---------------------------------------------------------------------------------------------
# Random-initialised models of the real architectures, saved once per module
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> Iterator[dict[str, WeightsSpec]]:
    """``pose`` (yolo11n-pose with the toy species' 3 keypoints), ``seg`` (yolov8n-seg),
    ``detect`` (yolov8n) and ``sam`` (tiny SAM state dict) as weights entries."""
    root = tmp_path_factory.mktemp("models")
    weights = {
        name: WeightsSpec(str(path), "", "") for name, path in save_random_yolo_models(root).items()
    }
    torch.manual_seed(0)
    torch.save(tiny_sam_builder(32)().state_dict(), root / "sam.pth")
    weights["sam"] = WeightsSpec(str(root / "sam.pth"), sha256(root / "sam.pth"), "")
    yield weights


def sam_registry() -> dict:
    from segment_anything import sam_model_registry

    return sam_model_registry


def tiny_sam_builder(dim: int):
    """A builder like segment_anything's ``build_sam_vit_*``: the real modules, tiny sizes
    (64-pixel input, one encoder block, one two-way transformer layer)."""
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    def build(checkpoint: str | None = None) -> Sam:
        size, patch = 64, 16
        return Sam(
            image_encoder=ImageEncoderViT(
                img_size=size,
                patch_size=patch,
                embed_dim=dim,
                depth=1,
                num_heads=2,
                mlp_ratio=2,
                out_chans=dim,
                qkv_bias=True,
                norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
                use_rel_pos=True,
                window_size=2,
                global_attn_indexes=(0,),
            ),
            prompt_encoder=PromptEncoder(
                embed_dim=dim,
                image_embedding_size=(size // patch, size // patch),
                input_image_size=(size, size),
                mask_in_chans=4,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(
                    depth=1, embedding_dim=dim, mlp_dim=2 * dim, num_heads=2
                ),
                transformer_dim=dim,
                iou_head_depth=1,
                iou_head_hidden_dim=16,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )

    return build


@pytest.fixture()
def tiny_sam(monkeypatch):
    """Register the tiny builder in segment_anything's own registry, as a user would."""
    monkeypatch.setitem(sam_registry(), "tiny", tiny_sam_builder(32))


def member(cls, models, device: str = "cpu", species=SPECIES, **options):
    return cls(cls.resolve_options(options, cls.__name__), context(models, device, species))


# ---------------------------------------------------------------------------------------------
# ultralytics_pose
# ---------------------------------------------------------------------------------------------


def test_pose_member_runs_the_real_model(models):
    pose = member(UltralyticsPose, models, weights="pose", confidence=0.0, imgsz=SMALL)
    batch = samples()
    out = pose.predict(batch)
    assert len(out) == 2 and pose.predict([]) == []
    for kps, sample in zip(out, batch, strict=True):
        h, w = sample.image.shape[:2]
        assert kps.shape == (3, 3) and kps.dtype == np.float64
        assert ((kps[:, 0] >= 0) & (kps[:, 0] <= w) & (kps[:, 1] >= 0) & (kps[:, 1] <= h)).all()
        assert ((kps[:, 2] >= 0) & (kps[:, 2] <= 1)).all()
    assert next(pose.model.model.parameters()).device.type == "cpu"


def test_ultralytics_members_leave_torch_threads_as_they_were(models):
    """ultralytics' predict sets torch to one thread on CPU; the members after it (SAM, mmpose)
    in the same teacher process must keep theirs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        member(YoloSeg, models, weights="seg", imgsz=SMALL).predict(samples(), [None, None])
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_pose_keypoint_map_reorders_and_fills_missing(models):
    options = {"weights": "pose", "confidence": 0.0, "imgsz": SMALL}
    plain = member(UltralyticsPose, models, **options).predict(samples())
    mapped = member(UltralyticsPose, models, keypoint_map=["c", None, "a"], **options)
    for p, m in zip(plain, mapped.predict(samples()), strict=True):
        np.testing.assert_allclose(m[2], p[0])  # model keypoint 0 is species 'c'
        np.testing.assert_allclose(m[0], p[2])  # model keypoint 2 is species 'a'
        np.testing.assert_array_equal(m[1], [0, 0, 0])  # species 'b': not predicted, v = 0


def test_pose_takes_the_largest_instance(models, monkeypatch):
    from ultralytics.engine.results import Results

    image = np.zeros((100, 200, 3), np.uint8)
    boxes = torch.tensor(
        [[0, 0, 10, 10, 0.9, 0], [50, 20, 150, 90, 0.5, 0], [0, 0, 60, 60, 0.8, 0]]
    )
    kps = torch.tensor(
        [
            [[1, 1, 0.9], [2, 2, 0.9], [3, 3, 0.9]],
            [[60, 30, 0.8], [100, 50, 0.2], [140, 80, 0.7]],
            [[5, 5, 0.9], [6, 6, 0.9], [7, 7, 0.9]],
        ]
    )
    pose = member(UltralyticsPose, models, weights="pose", keypoint_map=["b", "a", None])
    prediction = [Results(image, "x", {0: "animal"}, boxes=boxes, keypoints=kps)]
    monkeypatch.setattr(pose.model, "predict", lambda *a, **k: prediction)
    (out,) = pose.predict([Sample("x", image, {}, Path("."))])
    np.testing.assert_allclose(out, [[100, 50, 0.2], [60, 30, 0.8], [0, 0, 0]])
    empty = [Results(image, "x", {0: "animal"}, boxes=torch.zeros((0, 6)))]
    monkeypatch.setattr(pose.model, "predict", lambda *a, **k: empty)
    assert pose.predict([Sample("x", image, {}, Path("."))]) == [None]


def test_largest_box_by_area_first_on_ties():
    boxes = np.array([[0, 0, 10, 10], [5, 5, 30, 9], [0, 0, 4, 25], [1, 1, 11, 11]], float)
    assert largest_box(boxes) == 0  # areas 100, 100, 100, 100 → the first
    assert largest_box(np.array([[0, 0, 10, 10], [0, 0, 20, 6]], float)) == 1  # 100 < 120


def test_pose_schema_mismatches_are_user_errors(models):
    four = parse_species(
        {
            "name": "four",
            "keypoint_schema": "custom",
            "keypoints": ["a", "b", "c", "d"],
            "parts": [{"name": "p", "keypoints": ["a"]}],
        }
    )
    with pytest.raises(UserError, match="model has 3 keypoints, species 'four' has 4"):
        member(UltralyticsPose, models, species=four, weights="pose")
    with pytest.raises(UserError, match="2 names for a model with 3 keypoints"):
        member(UltralyticsPose, models, weights="pose", keypoint_map=["a", "b"])
    with pytest.raises(UserError, match="'z' is not a keypoint of species 'toy'"):
        member(UltralyticsPose, models, weights="pose", keypoint_map=["a", "b", "z"])
    with pytest.raises(UserError, match="listed twice"):
        UltralyticsPose.resolve_options({"weights": "pose", "keypoint_map": ["a", "a"]}, "p")
    with pytest.raises(UserError, match="'segment' model, this member needs a 'pose' model"):
        member(UltralyticsPose, models | {"pose": models["seg"]}, weights="pose")


def test_unloadable_ultralytics_files_are_user_errors(models, tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="garbage.pt is not a loadable ultralytics model"):
        member(YoloDetect, {"d": WeightsSpec(str(garbage), "", "")}, weights="d")
    renamed = tmp_path / "model.pth"
    renamed.write_bytes(Path(models["detect"].path).read_bytes())
    with pytest.raises(UserError, match="model.pth is not a .pt file"):
        member(YoloDetect, {"d": WeightsSpec(str(renamed), "", "")}, weights="d")


# ---------------------------------------------------------------------------------------------
# yolo_seg
# ---------------------------------------------------------------------------------------------


def test_yolo_seg_runs_the_real_model(models):
    seg = member(YoloSeg, models, weights="seg", confidence=0.0, imgsz=SMALL)
    batch = samples()
    out = seg.predict(batch, [None, None])
    assert len(out) == 2 and seg.predict([], []) == []
    assert any(m is not None for m in out)
    for mask, sample in zip(out, batch, strict=True):
        assert mask is None or (mask.shape == sample.image.shape[:2] and mask.dtype == bool)


def test_largest_mask_counts_pixels():
    masks = np.zeros((3, 4, 5), np.uint8)
    masks[0, 0, :4] = 1  # 4 pixels
    masks[1, 1:3, 1:4] = 1  # 6 pixels, the largest
    masks[2, 3, :5] = 1  # 5 pixels
    np.testing.assert_array_equal(largest_mask(masks), masks[1].astype(bool))
    assert largest_mask(np.zeros((0, 4, 5), np.uint8)) is None


def test_yolo_seg_options_are_checked(models):
    assert YoloSeg.resolve_options({"weights": "seg"}, "s")["classes"] == list(range(15, 24))
    with pytest.raises(UserError, match="s.classes: must be a non-empty list"):
        YoloSeg.resolve_options({"weights": "seg", "classes": []}, "s")
    with pytest.raises(UserError, match="s.weights: name an entry"):
        YoloSeg.resolve_options({}, "s")
    with pytest.raises(UserError, match="s.confidence: must be in"):
        YoloSeg.resolve_options({"weights": "seg", "confidence": 2}, "s")
    with pytest.raises(UserError, match="has classes 0..79, not 80"):
        member(YoloSeg, models, weights="seg", classes=[15, 80])


# ---------------------------------------------------------------------------------------------
# sam
# ---------------------------------------------------------------------------------------------


def test_sam_prompt_box_and_points():
    kps = np.array([[10, 20, 0.9], [30, 60, 0.8], [50, 5, 0.1], [250, 5, 0.9], [np.nan, 1, 1]])
    box, points = sam_prompt(kps, (100, 200), 0.3, 0.1, 0.02)
    np.testing.assert_allclose(points, [[10, 20], [30, 60]])  # confident, finite, inside
    np.testing.assert_allclose(box, [8, 16, 32, 64])  # 10% of 20×40 on each side
    box, points = sam_prompt(None, (100, 200), 0.3, 0.1, 0.02)
    np.testing.assert_allclose(box, [4, 2, 196, 98])
    assert points.shape == (0, 2)
    one = np.array([[10, 20, 0.9], [30, 60, 0.1]])
    box, points = sam_prompt(one, (100, 200), 0.3, 0.1, 0.02)  # a point has no extent
    np.testing.assert_allclose(box, [4, 2, 196, 98])
    np.testing.assert_allclose(points, [[10, 20]])
    edge = np.array([[2, 3, 1.0], [198, 97, 1.0]])
    np.testing.assert_allclose(sam_prompt(edge, (100, 200), 0.3, 0.1, 0.02)[0], [0, 0, 200, 100])


def test_sam_runs_the_real_architecture(models, tiny_sam):
    sam = member(SamSegmentation, models, model_type="tiny", weights="sam")
    batch = samples()
    kps = np.array([[20, 30, 0.9], [90, 70, 0.8], [50, 50, 0.0]])
    out = sam.predict(batch, [kps, None])
    assert len(out) == 2 and sam.predict([], []) == []
    for mask, sample in zip(out, batch, strict=True):
        assert mask.shape == sample.image.shape[:2] and mask.dtype == bool
    assert next(sam.model.parameters()).device.type == "cpu"


def test_sam_checkpoint_and_model_type_errors(models, tiny_sam, tmp_path):
    with pytest.raises(UserError, match="model_type: 'vit_q' unknown; use one of .*vit_b"):
        member(SamSegmentation, models, model_type="vit_q", weights="sam")
    other = tmp_path / "sam16.pth"
    torch.save(tiny_sam_builder(16)().state_dict(), other)
    wrong = models | {"sam": WeightsSpec(str(other), "", "")}
    with pytest.raises(UserError, match=r"is not a SAM 'tiny' state dict .*check model_type"):
        member(SamSegmentation, wrong, model_type="tiny", weights="sam")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="is not a SAM 'tiny' state dict"):
        member(
            SamSegmentation,
            {"sam": WeightsSpec(str(garbage), "", "")},
            model_type="tiny",
            weights="sam",
        )


# ---------------------------------------------------------------------------------------------
# yolo_detect and the crop ↔ full-image mapping
# ---------------------------------------------------------------------------------------------


def test_detector_crop_then_pose_maps_back_inside_the_box(models):
    detect = member(YoloDetect, models, weights="detect", confidence=0.0, imgsz=SMALL)
    pose = member(UltralyticsPose, models, weights="pose", confidence=0.0, imgsz=SMALL)
    batch = samples()
    boxes = detect.predict(batch)
    assert detect.predict([]) == []
    assert any(b is not None for b in boxes)
    for box, sample in zip(boxes, batch, strict=True):
        if box is None:
            continue
        h, w = sample.image.shape[:2]
        assert 0 <= box.x0 < box.x1 <= w and 0 <= box.y0 < box.y1 <= h
        crop = crop_sample(sample, box)
        assert crop.image.shape == (box.y1 - box.y0, box.x1 - box.x0, 3)
        (kps,) = pose.predict([crop])
        full = keypoints_to_full(kps, box)
        assert ((full[:, 0] >= box.x0) & (full[:, 0] <= box.x1)).all()
        assert ((full[:, 1] >= box.y0) & (full[:, 1] <= box.y1)).all()
        np.testing.assert_allclose(keypoints_to_crop(full, box), kps)


def test_padded_box_by_hand():
    assert padded_box([10, 20, 30, 60], 0.1, (100, 200)) == CropBox(8, 16, 32, 64)
    assert padded_box([10.5, 20.2, 30.1, 59.5], 0.0, (100, 200)) == CropBox(10, 20, 31, 60)
    assert padded_box([-5, -5, 250, 120], 0.1, (100, 200)) == CropBox(0, 0, 200, 100)
    assert padded_box([199.5, 99.5, 199.5, 99.5], 0.1, (100, 200)) == CropBox(199, 99, 200, 100)


coordinate = st.floats(-50, 250, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(coordinate, coordinate, coordinate, coordinate, st.floats(0, 1))
def test_padded_box_is_inside_the_image_and_holds_the_detection(x0, y0, x1, y1, margin):
    h, w = 100, 200
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    box = padded_box([x0, y0, x1, y1], margin, (h, w))
    assert 0 <= box.x0 < box.x1 <= w and 0 <= box.y0 < box.y1 <= h
    assert box.x0 <= max(min(x0, w - 1), 0) and box.x1 >= min(max(x1, 1), w)
    assert box.y0 <= max(min(y0, h - 1), 0) and box.y1 >= min(max(y1, 1), h)


def test_crop_mask_goes_back_into_a_background_canvas():
    box = CropBox(2, 1, 5, 3)
    crop = np.array([[1, 0, 1], [0, 1, 1]], bool)
    full = mask_to_full(crop, box, (4, 6, 3))
    expected = np.zeros((4, 6), bool)
    expected[1, 2], expected[1, 4], expected[2, 3], expected[2, 4] = True, True, True, True
    np.testing.assert_array_equal(full, expected)
    assert mask_to_full(crop, None, (4, 6)) is crop and mask_to_full(None, box, (4, 6)) is None
    kps = np.array([[1.0, 2.0, 0.5]])
    np.testing.assert_allclose(keypoints_to_full(kps, box), [[3, 3, 0.5]])


def test_registry_knows_the_neural_members():
    assert member_class("pose", "ultralytics_pose", "w") is UltralyticsPose
    assert member_class("segmentation", "yolo_seg", "w") is YoloSeg
    assert member_class("segmentation", "sam", "w") is SamSegmentation
    assert detector_member_class("yolo_detect", "w") is YoloDetect
    with pytest.raises(
        UserError, match="unknown detector member 'yolo'; available: annotations, yolo_detect"
    ):
        detector_member_class("yolo", "w")


def test_member_modules_import_without_their_libraries():
    """Settings validation imports member classes: it must not load torch or ultralytics."""
    modules = "ultralytics_pose yolo_seg yolo_detect sam".split()
    code = (
        "import sys\n"
        + "".join(f"import pseudomasks.members.{m}\n" for m in modules)
        + "heavy = {'torch', 'ultralytics', 'segment_anything'} & set(sys.modules)\n"
        + "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# Devices and offline ultralytics
# ---------------------------------------------------------------------------------------------


def test_device_option(models):
    auto = member(YoloDetect, models, device="auto", weights="detect")
    assert auto.device == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="--device cuda: torch sees no CUDA device"):
            member(YoloDetect, models, device="cuda", weights="detect")


def test_ultralytics_is_offline_and_has_its_font(models):
    from ultralytics.utils import ONLINE, USER_CONFIG_DIR

    member(YoloDetect, models, weights="detect")
    assert os.environ["YOLO_OFFLINE"] == "1" and not ONLINE
    assert (Path(USER_CONFIG_DIR) / "Arial.ttf").stat().st_size > 0


# ---------------------------------------------------------------------------------------------
# Weights files
# ---------------------------------------------------------------------------------------------


def test_missing_weights_is_one_line_naming_file_url_and_command(tmp_path):
    spec = WeightsSpec(str(tmp_path / "m.pt"), "", "https://example.org/m.pt")
    with pytest.raises(UserError) as err:
        resolve_weights("m", {"m": spec}, "yolo_seg")
    message = str(err.value)
    assert "\n" not in message
    for part in (str(tmp_path / "m.pt"), "https://example.org/m.pt", "pseudomasks fetch-weights"):
        assert part in message
    with pytest.raises(UserError, match="'x' is not an entry .*entries: m"):
        resolve_weights("x", {"m": spec}, "yolo_seg")
    members = {"ultralytics_pose": UltralyticsPose, "yolo_seg": YoloSeg, "yolo_detect": YoloDetect}
    for where, cls in (members | {"sam": SamSegmentation}).items():
        with pytest.raises(UserError, match=rf"^{where}: weights file .*m\.pt \('m'\) not found"):
            member(cls, {"m": spec}, weights="m")


def test_sha256_is_checked_and_computed_once_per_file_version(tmp_path):
    path = tmp_path / "m.pt"
    path.write_bytes(b"weights v1")
    good = WeightsSpec(str(path), hashlib.sha256(b"weights v1").hexdigest(), "")
    assert resolve_weights("m", {"m": good}, "w") == path
    stat = path.stat()
    path.write_bytes(b"weights v2")  # same size; same mtime → the remembered digest is used
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert file_sha256(path) == good.sha256
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert file_sha256(path) == hashlib.sha256(b"weights v2").hexdigest()
    with pytest.raises(UserError, match=r"m.pt \('m'\): sha256 is [0-9a-f]{64}, expected"):
        resolve_weights("m", {"m": good}, "w")


def fetch_settings(weights: dict[str, dict[str, str]]) -> str:
    return json.dumps(
        {
            "teacher": {
                "pose": [{"member": "annotations"}],
                "segmentation": [{"member": "annotations"}],
            },
            "species": {
                "name": "toy",
                "keypoint_schema": "custom",
                "keypoints": ["a"],
                "parts": [{"name": "body", "keypoints": ["a"]}],
            },
            "weights": weights,
        }
    )


def test_fetch_weights_offline_reports_every_missing_file(tmp_path, capsys):
    weights = {
        name: {"path": str(tmp_path / f"{name}.pt"), "sha256": "", "url": f"{UNREACHABLE}/{name}"}
        for name in ("one", "two")
    }
    assert main(["fetch-weights", "--settings-json", fetch_settings(weights)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("pseudomasks: error: weights")]
    assert len(errors) == 2 and "Traceback" not in "\n".join(lines)
    for name, line in zip(("one", "two"), errors, strict=True):
        assert f"cannot download {UNREACHABLE}/{name}" in line
    assert lines[-1] == "pseudomasks: error: 2 of 2 weights files are not usable"
    assert list(tmp_path.iterdir()) == []


@pytest.fixture()
def http_dir(tmp_path) -> Iterator[tuple[Path, str]]:
    """A directory served over HTTP on 127.0.0.1 (free port), and its URL."""
    served = tmp_path / "served"
    served.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield served, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_fetch_weights_downloads_checks_and_skips_present(http_dir, tmp_path, capsys):
    served, url = http_dir
    payload = os.urandom(3 * (1 << 20) + 17)  # several download chunks
    (served / "model.pt").write_bytes(payload)
    target = tmp_path / "resources" / "weights" / "model.pt"
    weights = {
        "model": {
            "path": str(target),
            "sha256": hashlib.sha256(payload).hexdigest(),
            "url": f"{url}/model.pt",
        }
    }
    assert main(["fetch-weights", "--settings-json", fetch_settings(weights)]) == 0
    assert target.read_bytes() == payload
    assert [p.name for p in target.parent.iterdir()] == ["model.pt"]  # no temp file left
    assert "downloaded to" in capsys.readouterr().err
    (served / "model.pt").unlink()  # present files are checked, not downloaded again
    assert main(["fetch-weights", "--settings-json", fetch_settings(weights)]) == 0
    assert "is present" in capsys.readouterr().err


def test_fetch_weights_rejects_a_wrong_checksum_atomically(http_dir, tmp_path, capsys):
    served, url = http_dir
    (served / "model.pt").write_bytes(b"another version")
    target = tmp_path / "w" / "model.pt"
    weights = {"model": {"path": str(target), "sha256": "0" * 64, "url": f"{url}/model.pt"}}
    assert main(["fetch-weights", "--settings-json", fetch_settings(weights)]) == 2
    err = capsys.readouterr().err
    assert f"has sha256 {hashlib.sha256(b'another version').hexdigest()}, expected" in err
    assert list(target.parent.iterdir()) == []


def imgly_tarball(served: Path, payload: bytes, chunk_size: int, corrupt: bool = False) -> str:
    """An npm tarball laid out as @imgly/background-removal-data: `payload` as resource
    /models/small, in chunks named by their sha256 (listed out of order in resources.json)."""
    files, chunks = {}, []
    for start in range(0, len(payload), chunk_size):
        data = payload[start : start + chunk_size]
        digest = hashlib.sha256(data).hexdigest()
        files[f"package/dist/{digest}"] = data[::-1] if corrupt and start == 0 else data
        chunks.append({"hash": digest, "offsets": [start, start + len(data)]})
    resources = {"/models/small": {"chunks": chunks[::-1], "size": len(payload)}}
    files["package/dist/resources.json"] = json.dumps(resources).encode()
    with tarfile.open(served / "data.tgz", "w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return "data.tgz"


def test_fetch_weights_joins_the_chunks_of_an_imgly_npm_package(http_dir, tmp_path, capsys):
    served, url = http_dir
    payload = os.urandom(5000)
    tarball = imgly_tarball(served, payload, chunk_size=2048)
    target = tmp_path / "w" / "isnet.onnx"
    entry = {"path": str(target), "sha256": hashlib.sha256(payload).hexdigest()}
    entry |= {"url": f"{url}/{tarball}", "imgly_resource": "/models/small"}
    assert main(["fetch-weights", "--settings-json", fetch_settings({"isnet": entry})]) == 0
    assert target.read_bytes() == payload
    assert [p.name for p in target.parent.iterdir()] == ["isnet.onnx"]

    target.unlink()
    entry["imgly_resource"] = "/models/large"
    assert main(["fetch-weights", "--settings-json", fetch_settings({"isnet": entry})]) == 2
    assert "no resource '/models/large' (it has /models/small)" in capsys.readouterr().err
    assert list(target.parent.iterdir()) == []


def test_fetch_weights_refuses_a_corrupt_imgly_chunk(http_dir, tmp_path, capsys):
    served, url = http_dir
    payload = os.urandom(5000)
    tarball = imgly_tarball(served, payload, chunk_size=2048, corrupt=True)
    target = tmp_path / "w" / "isnet.onnx"
    entry = {"path": str(target), "sha256": hashlib.sha256(payload).hexdigest()}
    entry |= {"url": f"{url}/{tarball}", "imgly_resource": "/models/small"}
    assert main(["fetch-weights", "--settings-json", fetch_settings({"isnet": entry})]) == 2
    assert "is corrupt" in capsys.readouterr().err
    assert list(target.parent.iterdir()) == []


def test_fetch_weights_from_config_entries(http_dir, tmp_path, capsys, monkeypatch):
    served, url = http_dir
    payload = os.urandom(3000)
    (served / "model.pt").write_bytes(payload)
    config = tmp_path / "config.yaml"
    entries = {
        "model": {
            "path": "resources/weights/model.pt",  # relative to where the workflow runs
            "url": f"{url}/model.pt",
            "sha256": hashlib.sha256(payload).hexdigest(),
        },
        "other": {"path": "resources/weights/other.pt", "url": f"{UNREACHABLE}/o", "sha256": ""},
    }
    config.write_text(json.dumps({"datasets": {}, "weights": entries}))  # JSON is YAML
    monkeypatch.chdir(tmp_path)
    assert main(["fetch-weights", "--config", str(config), "model"]) == 0
    assert (tmp_path / "resources" / "weights" / "model.pt").read_bytes() == payload
    assert not (tmp_path / "resources" / "weights" / "other.pt").exists()  # not named
    assert main(["fetch-weights", "--config", str(config), "modle"]) == 2
    assert "has no entry 'modle' (entries: model, other)" in capsys.readouterr().err
