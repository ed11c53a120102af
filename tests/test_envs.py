"""The conda environments of the rules (envs/) parse and pin what the rules need.

Conda is not available here, so these check the files against the project's own requirements:
the pinned torch of each environment must satisfy the extra the environment installs (a pip
upgrade of the conda CUDA torch would silently replace it with a CPU or mismatched build), CUDA
builds are pinned so a CPU-only login node still solves GPU torch, and the teacher's mmcv wheel
index matches its torch and CUDA.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

tomllib = pytest.importorskip("tomllib")

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
RULES = sorted((REPO / "workflow" / "rules").glob("*.smk"))


def env(name: str) -> dict:
    return yaml.safe_load((REPO / "envs" / f"{name}.yaml").read_text())


def conda_pins(environment: dict) -> dict[str, str]:
    """conda package -> its spec string ('2.7.*=cuda126*'), for the `name=spec` entries."""
    pins = {}
    for entry in environment["dependencies"]:
        if isinstance(entry, str):
            name, _, spec = entry.partition("=")
            pins[re.split(r"[<>!]", name)[0]] = spec
    return pins


def pip_lines(environment: dict) -> list[str]:
    return next(e["pip"] for e in environment["dependencies"] if isinstance(e, dict))


def installed_extra(environment: dict) -> str:
    """The extra of the `--editable ..[extra]` line that installs the project."""
    (line,) = [line for line in pip_lines(environment) if line.startswith("--editable")]
    match = re.fullmatch(r"--editable \.\.\[(\w+)\]", line)
    assert match, f"the project must be installed with one extra: {line!r}"
    return match.group(1)


def extra_requirement(extra: str, package: str) -> Requirement:
    requirements = [Requirement(r) for r in PYPROJECT["project"]["optional-dependencies"][extra]]
    return next(r for r in requirements if r.name == package)


def rule_envs() -> set[str]:
    """The env files the rules name, e.g. {'student', 'teacher'}."""
    names = set()
    for rule_file in RULES:
        names |= set(re.findall(r'conda:\s*"\.\./\.\./envs/(\w+)\.yaml"', rule_file.read_text()))
    return names


def test_every_rule_env_exists_and_installs_an_existing_extra():
    assert rule_envs() == {"student", "teacher"}
    extras = PYPROJECT["project"]["optional-dependencies"]
    for name in rule_envs():
        assert installed_extra(env(name)) in extras


@pytest.mark.parametrize("name", ["student", "teacher"])
def test_pinned_torch_satisfies_the_installed_extra(name):
    environment = env(name)
    pins = conda_pins(environment)
    extra = installed_extra(environment)
    for conda_name, pip_name in (("pytorch", "torch"), ("torchvision", "torchvision")):
        version = pins[conda_name].split("=")[0].replace(".*", ".0")
        assert Version(version) in extra_requirement(extra, pip_name).specifier, (name, version)
    python = Version(pins["python"].replace(".*", "") + ".0")
    assert python in SpecifierSet(PYPROJECT["project"]["requires-python"])


@pytest.mark.parametrize("name", ["student", "teacher"])
def test_cuda_builds_are_pinned(name):
    pins = conda_pins(env(name))
    torch_build = pins["pytorch"].split("=")[1]
    cuda = pins["cuda-version"]
    assert torch_build == f"cuda{cuda.replace('.', '')}*"


def test_teacher_mmcv_matches_mmpose_torch_and_cuda():
    pins = conda_pins(env("teacher"))
    lines = pip_lines(env("teacher"))
    pinned = {
        Requirement(line).name: Requirement(line).specifier
        for line in lines
        if not line.startswith("-")
    }
    assert "mmpose" not in pinned and "chumpy" not in pinned  # chumpy cannot be built
    post_deploy = (REPO / "envs" / "teacher.post-deploy.sh").read_text()
    mmpose = re.search(r"pip install --no-deps mmpose==([\d.]+)", post_deploy)
    assert mmpose and Version(mmpose.group(1)) < Version("1.4")
    assert Version(str(next(iter(pinned["mmcv"]))).lstrip("=")) < Version("2.2")  # mmpose 1.3.x
    (index,) = [line for line in lines if line.startswith("--find-links")]
    cuda = pins["cuda-version"].replace(".", "")
    torch_minor = ".".join(pins["pytorch"].split("=")[0].split(".")[:2])
    assert f"/cu{cuda}/torch{torch_minor}/" in index
