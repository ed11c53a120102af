"""The salient-object member (ISNet, U2Net, RMBG, BiRefNet through onnxruntime).

The models here are tiny ONNX graphs built with ``onnx.helper`` under the real models' contract
(input N×3×H×W float, output N×1×H×W): the output is a known function of the input, the mean
over its channels, so masks and normalisation are computable by hand. Nothing reads
``../shared``.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import pytest

from pseudomasks.cli import main
from pseudomasks.errors import UserError
from pseudomasks.members.base import MemberContext, Sample, WeightsSpec
from pseudomasks.members.registry import member_class
from pseudomasks.members.salient import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PRESETS,
    SalientObject,
    normalise,
    select_component,
    to_probability,
)
from pseudomasks.settings import teacher_id
from pseudomasks.species import parse_species
from pseudomasks.weights import file_sha256

PARTS = ["hind_legs", "body", "front_legs", "head", "tail"]
SPECIES_DOC = {
    "name": "antelope",
    "keypoint_schema": "custom",
    "keypoints": ["nose", "tail_base"],
    "parts": [
        {"name": p, "keypoints": {"head": ["nose"], "tail": ["tail_base"]}.get(p, [])}
        for p in PARTS
    ],
}
SPECIES = parse_species(SPECIES_DOC)
H, W = 48, 64
Dim = int | str


def mean_model(
    path: Path,
    batch: Dim = "N",
    height: Dim = "H",
    width: Dim = "W",
    scale: float = 1.0,
    offset: float = 0.0,
    channels: int = 3,
    identity: bool = False,
) -> Path:
    """ONNX model ``output = scale * mean_over_channels(input) + offset`` (N×1×H×W), or the
    input itself with ``identity``; string dimensions are dynamic."""
    import onnx
    from onnx import TensorProto, helper

    shape = [batch, channels, height, width]
    out_channels = channels if identity else 1
    nodes = (
        [helper.make_node("Identity", ["input"], ["output"])]
        if identity
        else [
            helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1], keepdims=1),
            helper.make_node("Mul", ["mean", "scale"], ["scaled"]),
            helper.make_node("Add", ["scaled", "offset"], ["output"]),
        ]
    )
    graph = helper.make_graph(
        nodes,
        "salient_toy",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [
            helper.make_tensor_value_info(
                "output", TensorProto.FLOAT, [batch, out_channels, height, width]
            )
        ],
        initializer=[
            helper.make_tensor("scale", TensorProto.FLOAT, [], [scale]),
            helper.make_tensor("offset", TensorProto.FLOAT, [], [offset]),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def member(path: Path, device: str = "cpu", confidence: float = 0.3, **options: Any):
    weights = {"model": WeightsSpec(str(path), "", "")}
    context = MemberContext(SPECIES, confidence, device, weights)
    return SalientObject(
        SalientObject.resolve_options({"weights": "model", **options}, "s"), context
    )


def animal(shape: tuple[int, int] = (H, W), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A bright side-view animal (body, legs, head, tail; values 180..255) on a dark textured
    background (0..100), and its true mask."""
    h, w = shape
    truth = np.zeros(shape, np.uint8)
    cv2.ellipse(truth, (w // 2, h // 2), (w // 4, h // 7), 0, 0, 360, 1, thickness=-1)
    for x in (w // 4 + 3, w // 4 + 7, 3 * w // 4 - 9, 3 * w // 4 - 5):
        truth[h // 2 : h // 2 + h // 3, x : x + 2] = 1
    cv2.circle(truth, (w // 4 - 2, h // 2 - h // 8), max(2, h // 12), 1, thickness=-1)
    cv2.line(truth, (3 * w // 4, h // 2), (3 * w // 4 + 6, h // 2 - 6), 1, thickness=1)
    rng = np.random.default_rng(seed)
    image = np.where(
        truth[:, :, None] > 0,
        rng.integers(180, 256, (*shape, 3)),
        rng.integers(0, 101, (*shape, 3)),
    ).astype(np.uint8)
    return image, truth.astype(bool)


def two_blobs(big: tuple[slice, slice], small: tuple[slice, slice]) -> np.ndarray:
    image = np.full((H, W, 3), 30, np.uint8)
    image[big] = 220
    image[small] = 220
    return image


def sample(image: np.ndarray, image_id: str = "img") -> Sample:
    return Sample(image_id, image, {}, Path("."))


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


# ---------------------------------------------------------------------------------------------
# Masks by hand
# ---------------------------------------------------------------------------------------------


def test_mask_is_the_thresholded_probability(tmp_path):
    """isnet: input (p - 128) / 256, so the model's mean + 0.5 is mean(p) / 256; at the model's
    own size nothing is resized and the mask is exactly mean(p) > 128."""
    image, truth = animal()
    salient = member(mean_model(tmp_path / "m.onnx", 1, H, W, offset=0.5))
    (mask,) = salient.predict([sample(image)], [None])
    assert mask.dtype == bool and mask.shape == (H, W)
    np.testing.assert_array_equal(mask, image.mean(axis=2) > 128)
    np.testing.assert_array_equal(mask, truth)
    assert salient.foreground_components() == {"img": 1}
    assert salient.predict([], []) == []


def test_output_is_resized_back_to_the_image(tmp_path):
    image, truth = animal((120, 160))
    salient = member(mean_model(tmp_path / "m.onnx", offset=0.5), size=64)
    assert salient.size == (64, 64)
    (mask,) = salient.predict([sample(image)], [None])
    assert mask.shape == (120, 160)
    assert iou(mask, truth) > 0.85


@pytest.mark.parametrize("model", ["isnet", "u2net", "rmbg14", "rmbg2", "birefnet"])
def test_each_preset_feeds_its_normalisation_at_its_size(model, tmp_path, monkeypatch):
    colour = (200, 100, 30)
    image = np.empty((30, 40, 3), np.uint8)
    image[:] = colour
    salient = member(mean_model(tmp_path / "m.onnx"), model=model)
    fed = []
    run = salient.session.run
    monkeypatch.setattr(
        salient.session, "run", lambda names, feed: fed.append(feed["input"]) or run(names, feed)
    )
    salient.predict([sample(image)], [None])
    size = {"u2net": 320}.get(model, 1024)
    assert fed[0].shape == (1, 3, size, size) and fed[0].dtype == np.float32
    expected = {
        "isnet": [(c - 128) / 256 for c in colour],
        "rmbg14": [c / 255 - 0.5 for c in colour],
    }.get(model, [(c / 255 - m) / s for c, m, s in zip(colour, MEAN, STD, strict=True)])
    np.testing.assert_allclose(fed[0][0, :, 0, 0], expected, rtol=1e-5)
    assert np.ptp(fed[0][0].reshape(3, -1), axis=1).max() == 0  # uniform stays uniform


MEAN = [m / 255 for m in IMAGENET_MEAN]
STD = [s / 255 for s in IMAGENET_STD]


def test_imagenet_constants_and_normalise_by_hand():
    np.testing.assert_allclose(MEAN, [0.485, 0.456, 0.406])
    np.testing.assert_allclose(STD, [0.229, 0.224, 0.225])
    image = np.array([[[0, 128, 255]]], np.uint8)
    np.testing.assert_allclose(
        normalise(image, (1, 1), PRESETS["isnet"])[:, 0, 0], [-0.5, 0, 127 / 256]
    )
    assert normalise(np.zeros((5, 7, 3), np.uint8), (4, 6), PRESETS["u2net"]).shape == (3, 4, 6)


def test_output_rules_by_hand():
    raw = np.array([[-2.0, 0.0], [1.0, 3.0]])
    np.testing.assert_allclose(to_probability(raw, "probability"), [[0, 0], [1, 1]])
    np.testing.assert_allclose(to_probability(raw, "minmax"), [[0, 0.4], [0.6, 1]])
    np.testing.assert_allclose(to_probability(raw, "sigmoid"), 1 / (1 + np.exp(-raw)), rtol=1e-6)
    np.testing.assert_array_equal(to_probability(np.full((2, 2), 7.0), "minmax"), 0)


def test_minmax_and_sigmoid_presets_find_the_animal(tmp_path, caplog):
    """u2net's min-max puts the threshold midway between the darkest and brightest outputs;
    rmbg2's logits are the ImageNet-normalised brightness, positive on the bright animal."""
    image, truth = animal()
    path = mean_model(tmp_path / "m.onnx", 1, H, W)
    for model in ("u2net", "rmbg2"):
        with caplog.at_level(logging.WARNING, logger="pseudomasks"):
            (mask,) = member(path, model=model).predict([sample(image)], [None])
        np.testing.assert_array_equal(mask, truth)
    assert "set output: probability" not in caplog.text


def test_sigmoid_on_probabilities_is_warned_about_and_output_overrides(tmp_path, caplog):
    image, truth = animal()
    path = mean_model(tmp_path / "m.onnx", 1, H, W, scale=1 / 256, offset=0.5)  # in [0, 1]
    with caplog.at_level(logging.WARNING, logger="pseudomasks"):
        (mask,) = member(path, model="birefnet").predict([sample(image)], [None])
    assert "set output: probability" in caplog.text
    assert mask.all()  # sigmoid(p) > 0.5 for every p > 0: the failure the warning names
    (mask,) = member(path, model="birefnet", output="probability").predict([sample(image)], [None])
    assert iou(mask, truth) > 0.9


# ---------------------------------------------------------------------------------------------
# Which component is kept, and the count for qc
# ---------------------------------------------------------------------------------------------

BIG = (slice(5, 25), slice(5, 35))  # 600 pixels
SMALL = (slice(30, 42), slice(40, 60))  # 240 pixels: sizeable (>= 0.1 × 600)
SPECK = (slice(44, 46), slice(2, 4))  # 4 pixels: not


def test_largest_component_is_kept_and_rivals_are_counted(tmp_path):
    image = two_blobs(BIG, SMALL)
    image[SPECK] = 220
    path = mean_model(tmp_path / "m.onnx", 1, H, W, offset=0.5)
    salient = member(path)
    (mask,) = salient.predict([sample(image, "two")], [None])
    expected = np.zeros((H, W), bool)
    expected[BIG] = True
    np.testing.assert_array_equal(mask, expected)
    assert salient.foreground_components() == {"two": 2}
    (everything,) = member(path, keep="all").predict([sample(image)], [None])
    np.testing.assert_array_equal(everything, image[:, :, 0] > 128)
    (alone,) = member(path, sizeable=0.5).predict([sample(image, "x")], [None])
    np.testing.assert_array_equal(alone, expected)


def test_the_component_with_the_keypoints_is_preferred(tmp_path):
    image = two_blobs(BIG, SMALL)
    salient = member(mean_model(tmp_path / "m.onnx", 1, H, W, offset=0.5), confidence=0.3)
    in_small = [[45.0, 35.0, 0.9], [55.5, 40.2, 0.8], [10.0, 10.0, 0.2]]  # the last too unsure
    noisy = [*in_small, [np.nan, np.nan, 0.9], [-5.0, 3.0, 0.9], [70.0, 60.0, 1.0]]
    (mask,) = salient.predict([sample(image)], [np.array(noisy)])
    small = np.zeros((H, W), bool)
    small[SMALL] = True
    np.testing.assert_array_equal(mask, small)
    unsure = np.array([[45.0, 35.0, 0.1]])
    (mask,) = salient.predict([sample(image)], [unsure])
    assert mask[BIG].all() and not mask[SMALL].any()


def test_select_component_edge_cases():
    empty = np.zeros((6, 6), bool)
    mask, rivals = select_component(empty, None, 0.3, 0.1)
    assert rivals == 0 and not mask.any()
    diagonal = np.eye(6, dtype=bool)  # one 8-connected component
    mask, rivals = select_component(diagonal, np.zeros((0, 3)), 0.3, 0.1)
    assert rivals == 1 and (mask == diagonal).all()
    equal = np.zeros((6, 6), bool)
    equal[0, 0] = equal[5, 5] = True
    mask, rivals = select_component(equal, np.array([[5.2, 5.9, 1.0]]), 0.3, 0.1)
    assert rivals == 2 and mask[5, 5] and mask.sum() == 1


# ---------------------------------------------------------------------------------------------
# Batching, devices, and the model contract
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("batch", "calls"), [("N", [2, 2, 1]), (1, [1, 1, 1, 1, 1])])
def test_dynamic_batches_fixed_batch_runs_one_at_a_time(batch, calls, tmp_path, monkeypatch):
    images = [animal((40 + 8 * i, 56), seed=i)[0] for i in range(5)]
    salient = member(mean_model(tmp_path / "m.onnx", batch, 32, 32, offset=0.5), batch_size=2)
    sizes = []
    run = salient.session.run
    monkeypatch.setattr(
        salient.session,
        "run",
        lambda names, feed: sizes.append(len(feed["input"])) or run(names, feed),
    )
    masks = salient.predict([sample(im, str(i)) for i, im in enumerate(images)], [None] * 5)
    assert sizes == calls
    alone = [salient.predict([sample(im)], [None])[0] for im in images]
    for mask, single, image in zip(masks, alone, images, strict=True):
        assert mask.shape == image.shape[:2]
        np.testing.assert_array_equal(mask, single)


def test_not_an_onnx_file_is_one_clear_error(tmp_path):
    junk = tmp_path / "isnet.onnx"
    junk.write_bytes(b"PK\x03\x04 this is a zip, maybe a torch checkpoint")
    with pytest.raises(UserError) as error:
        member(junk)
    message = str(error.value)
    assert "\n" not in message and str(junk) in message
    assert "is not an ONNX model onnxruntime can load" in message
    assert "input N×3×H×W" in message and "output N×1×H×W" in message


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"channels": 1}, "has input tensor(float) ['N', 1, 'H', 'W']"),
        ({"identity": True}, "and output ['N', 3, 'H', 'W']"),
        ({"batch": 2}, "has a fixed batch of 2; export it with batch 1 or a dynamic batch"),
    ],
)
def test_wrong_shaped_models_are_refused(kwargs, fragment, tmp_path):
    path = mean_model(tmp_path / "m.onnx", **kwargs)
    with pytest.raises(UserError, match="salient: .*m.onnx") as error:
        member(path)
    assert fragment in str(error.value)


def test_fixed_size_models_use_their_size(tmp_path):
    path = mean_model(tmp_path / "m.onnx", 1, 24, 40)
    assert member(path, model="u2net").size == (24, 40)
    with pytest.raises(UserError, match=r"salient.size: .* takes a fixed 24×40 input; set size: 0"):
        member(path, size=64)


def test_options_are_checked():
    def resolve(**options: Any) -> dict[str, Any]:
        return SalientObject.resolve_options({"weights": "w", **options}, "teacher.seg (salient)")

    assert resolve()["model"] == "isnet" and resolve()["threshold"] == 0.5
    for options, message in [
        ({"model": "sam"}, "model: 'sam' unknown; use one of isnet, u2net, rmbg14, rmbg2"),
        ({"output": "softmax"}, "output: 'softmax' unknown"),
        ({"keep": "first"}, "keep: use one of largest, all"),
        ({"threshold": 1.0}, "threshold: must be in (0, 1)"),
        ({"size": 8}, "size: must be 0"),
        ({"sizeable": 0.0}, "sizeable: must be in (0, 1]"),
        ({"batch_size": 0}, "batch_size: must be >= 1"),
    ]:
        with pytest.raises(UserError, match=re.escape(f"teacher.seg (salient).{message}")):
            resolve(**options)
    with pytest.raises(UserError, match="weights: name an entry"):
        SalientObject.resolve_options({}, "s")


def test_device_choice(tmp_path, caplog):
    import onnxruntime

    path = mean_model(tmp_path / "m.onnx")
    gpu = "CUDAExecutionProvider" in onnxruntime.get_available_providers()
    with caplog.at_level(logging.INFO, logger="pseudomasks"):
        auto = member(path, device="auto")
    provider = "CUDAExecutionProvider" if gpu else "CPUExecutionProvider"
    assert auto.session.get_providers()[0] == provider and provider in caplog.text
    assert member(path, device="cpu").session.get_providers() == ["CPUExecutionProvider"]
    if not gpu:
        with pytest.raises(UserError, match="--device cuda: onnxruntime has no CUDA"):
            member(path, device="cuda")


def test_registered_and_importable_without_onnxruntime():
    assert member_class("segmentation", "salient", "w") is SalientObject
    code = (
        "import sys\nimport pseudomasks.members.salient\n"
        "assert 'onnxruntime' not in sys.modules and 'torch' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------
# `pseudomasks run` end to end: salient foreground + silhouette template, no pose
# ---------------------------------------------------------------------------------------------


def test_teacher_runs_salient_with_the_template(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    rows = []
    truths = []
    for i in range(3):
        image, truth = animal((96, 128), seed=i)
        if i == 2:  # a second, smaller animal in the corner
            image[75:92, 100:124] = 230
        truths.append(truth)
        cv2.imwrite(str(root / f"{i}.png"), image[:, :, ::-1])
        rows.append({"image_id": f"im{i}", "path": f"{i}.png", "identity": "a", "split": "train"})
    catalogue = tmp_path / "catalogue.csv"
    pd.DataFrame(rows).to_csv(catalogue, index=False)
    model = mean_model(tmp_path / "isnet.onnx", offset=0.5)
    doc = {
        "teacher": {
            "mask_size": 32,
            "pose": [],
            "segmentation": [{"member": "salient", "weights": "isnet", "size": 64}],
            "fallback": "silhouette_template",
        },
        "species": SPECIES_DOC,
        "weights": {"isnet": {"path": str(model), "sha256": file_sha256(model), "url": ""}},
    }
    out = tmp_path / "masks"
    args = ["--catalogue", str(catalogue), "--root", str(root), "--out", str(out)]
    assert main(["run", *args, "--settings-json", json.dumps(doc), "--device", "cpu"]) == 0
    teacher_dir = out / teacher_id(doc)
    assert main(["index", "--masks-dir", str(teacher_dir), "--num-shards", "1"]) == 0
    qc = json.loads((teacher_dir / "qc.json").read_text())
    assert qc["counts"] == {"images": 3, "maps": 3, "failed": 0}
    assert qc["empty_foreground_rate"] == 0.0
    # im0, im1: one animal each; im2: two, so `keep: largest` had to choose there alone
    assert qc["several_objects"] == {"maps": 1, "counted": 3, "rate": 1 / 3}
    with np.load(teacher_dir / "shard-0000-of-0001.npz") as shard:
        labels = shard["labels"]
        assert shard["foreground_components"].tolist() == [1, 1, 2]
    for map_, truth in zip(labels, truths, strict=True):
        small = cv2.resize(truth.astype(np.uint8), (32, 32), interpolation=cv2.INTER_AREA) > 0
        assert iou(map_ > 0, small) > 0.7
        assert set(np.unique(map_)) >= {0, 2}  # background and body at least
    assert labels[2][26:, 28:].max() == 0  # the smaller second animal was dropped
    # a shard from before the count existed: unknown, not "one animal"
    shard = teacher_dir / "shard-0000-of-0001.npz"
    with np.load(shard) as arrays:
        old = {k: arrays[k] for k in arrays.files if k != "foreground_components"}
    np.savez_compressed(shard, **old)
    assert main(["index", "--masks-dir", str(teacher_dir), "--num-shards", "1"]) == 0
    assert json.loads((teacher_dir / "qc.json").read_text())["several_objects"] is None
