"""ONNX export: the file reproduces the in-memory model at new batch sizes and says how to use it.

Each export traces a real (tiny, random) model for a few seconds, so the two good exports are
module-scoped fixtures shared by the tests that inspect them; only the tolerance test exports again.
"""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from reid.engine.extract import save_trained_model
from reid.errors import UserError
from reid.export import export_onnx
from reid.models import ModelSpec, build_model

PART_NAMES = ["head", "body", "tail"]
IMG_SIZE = 32
MODELS = [  # (arch, other ModelSpec settings)
    ("paw_vit_tiny_patch16_256", {}),  # PAW-ViT
    ("paw_vit_efflite0", {}),  # on a convolutional stem (BN, depthwise)
    ("paw_vit_efflite0_s32", {}),  # the whole CNN under it (head conv, BN + act)
    ("seresnet18", {}),  # a CNN baseline (BN, SE)
    ("seresnet18", {"descriptor": "after_bnneck"}),  # through the BNNeck's running statistics
    ("cnn_efflite0", {"output_stride": 16}),  # its last stage dilated instead of strided
]


def _trained_model_dir(directory, arch: str, **settings) -> torch.nn.Module:
    """Save a random model the way the trainer does (model.json keys as in Trainer._finish),
    its BNNeck statistics moved off their initial 0 / 1 as training moves them."""
    torch.manual_seed(0)
    spec = ModelSpec(arch, img_size=IMG_SIZE, **settings)
    model = build_model(spec, num_classes=4, num_parts=len(PART_NAMES))
    bnneck = model.heads.bnneck
    bnneck.running_mean.normal_()
    bnneck.running_var.uniform_(0.5, 2.0)
    config = {
        "model": dataclasses.asdict(spec),
        "num_classes": 4,
        "num_parts": len(PART_NAMES),
        "part_names": PART_NAMES,
        "teacher_id": "abc123def456",
        "settings": {"model": dataclasses.asdict(spec)},
        "epochs": 1,
        "selected_epoch": 1,
        "select": "final",
        "seed": 0,
        "device": "cpu",
        "world_size": 1,
        "train_wall_time_s": 0.0,
        "versions": {},
    }
    save_trained_model(directory, model, config)
    return model.eval()


def _model_id(model: tuple[str, dict]) -> str:
    arch, settings = model
    return "-".join([arch, *(f"{key}={value}" for key, value in settings.items())])


@pytest.fixture(scope="module", params=MODELS, ids=[_model_id(m) for m in MODELS])
def exported(request, tmp_path_factory):
    arch, settings = request.param
    base = tmp_path_factory.mktemp(_model_id(request.param))
    model = _trained_model_dir(base / "model", arch, **settings)
    out = base / "deploy" / "model.onnx"  # parent does not exist yet: export creates it
    check = export_onnx(base / "model", out)
    return arch, model, out, check


def _run_onnx(path, images: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (descriptor,) = session.run(["descriptor"], {"images": images})
    return descriptor


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_matches_the_pytorch_model_at_batch_sizes_never_traced(exported, batch):
    _, model, out, _ = exported
    rng = np.random.default_rng(batch)
    images = rng.uniform(-1, 1, size=(batch, 3, IMG_SIZE, IMG_SIZE)).astype(np.float32)
    with torch.no_grad():
        expected = model(torch.from_numpy(images)).numpy()
    actual = _run_onnx(out, images)
    assert actual.shape == expected.shape == (batch, expected.shape[1])
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-4)


def test_export_reports_what_it_wrote_and_checked(exported):
    _, model, out, check = exported
    with torch.no_grad():
        width = model(torch.zeros(2, 3, IMG_SIZE, IMG_SIZE)).shape[1]
    assert check.path == out
    assert check.descriptor_dim == width
    assert check.img_size == IMG_SIZE
    assert check.batch_sizes == (1, 3)
    assert 0 <= check.max_abs_diff <= 1e-3
    assert check.seconds > 0
    assert [p.name for p in out.parent.iterdir()] == ["model.onnx"]  # no temp file, no .data


def test_graph_has_named_io_and_a_symbolic_batch_dimension(exported):
    _, _, out, check = exported
    graph = onnx.load(str(out)).graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["descriptor"]
    in_dims = graph.input[0].type.tensor_type.shape.dim
    out_dims = graph.output[0].type.tensor_type.shape.dim
    assert in_dims[0].dim_param != ""
    assert [d.dim_value for d in in_dims[1:]] == [3, IMG_SIZE, IMG_SIZE]
    assert out_dims[0].dim_param == in_dims[0].dim_param
    assert out_dims[1].dim_value == check.descriptor_dim
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_metadata_says_how_to_prepare_inputs_and_use_outputs(exported):
    arch, _, out, check = exported
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["arch"] == arch
    assert int(meta["img_size"]) == IMG_SIZE
    assert json.loads(meta["mean"]) == [0.5, 0.5, 0.5]  # paper §4.1: mean = std = 0.5
    assert json.loads(meta["std"]) == [0.5, 0.5, 0.5]
    assert int(meta["num_parts"]) == 3
    assert json.loads(meta["part_names"]) == PART_NAMES
    assert int(meta["descriptor_dim"]) == check.descriptor_dim
    assert meta["input_name"] == "images"
    assert meta["output_name"] == "descriptor"
    assert "cosine similarity" in meta["usage"] and "L2-normalised" in meta["usage"]


def test_export_beyond_tolerance_raises_and_writes_nothing(tmp_path, caplog):
    _trained_model_dir(tmp_path / "model", "seresnet18")
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    out = deploy / "model.onnx"
    with caplog.at_level(logging.INFO), pytest.raises(UserError, match="tolerance") as error:
        export_onnx(tmp_path / "model", out, atol=-1.0)
    assert str(out) in str(error.value) and "-1" in str(error.value)
    assert list(deploy.iterdir()) == []
    # the CLI logs at INFO: the exporter's optimiser must not flood it with its own records
    assert not [r for r in caplog.records if r.name.startswith(("onnxscript", "onnx_ir"))]


def test_missing_model_dir_is_a_user_error_naming_it(tmp_path):
    missing = tmp_path / "no_such_run"
    with pytest.raises(UserError, match="model.json missing") as error:
        export_onnx(missing, tmp_path / "model.onnx")
    assert str(missing) in str(error.value)
    assert list(tmp_path.iterdir()) == []


def test_uncreatable_output_directory_is_a_user_error(tmp_path):
    _trained_model_dir(tmp_path / "model", "seresnet18")
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    out = blocker / "sub" / "model.onnx"
    with pytest.raises(UserError, match="cannot write") as error:
        export_onnx(tmp_path / "model", out)
    assert str(out) in str(error.value)


def test_output_path_that_is_a_directory_is_a_user_error(tmp_path):
    _trained_model_dir(tmp_path / "model", "seresnet18")
    with pytest.raises(UserError, match="is a directory"):
        export_onnx(tmp_path / "model", tmp_path / "model")
