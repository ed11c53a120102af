"""Make the folder of wheels that `make gpu-check WHEELS=dir` installs on a GPU node without network.

    # on the GPU node:
    python3 -m pip list --format=freeze > node-packages.txt
    python3 -c "import sys; print('%d.%d' % sys.version_info[:2])"     # e.g. 3.12
    # here (network, this project's venv), then copy wheels/ to the node:
    .venv/bin/python tools/gpu_wheels.py --node-packages node-packages.txt --python-version 3.12 --out wheels
    # on the node:
    make gpu-check PYTHON=python3 WHEELS=wheels

What the node needs: this project's own runtime requirements (core and `student` extra), the
packages the GPU checks import (tests/gpu_support.py's NEEDS) and pytest and hypothesis. pip
resolves their whole dependency tree for the node's Python and platform without downloading it
(``pip install --dry-run --report``). Every package of that tree the node lacks is downloaded
as a wheel, at the version resolved, which for the packages here is this venv's version, so the
node runs what the suite runs here. A package that PyPI has only as source is built into a
wheel here if it is pure Python (connection_pool is one); anything else without a wheel is an
error that names it.

Never brought: the node's CUDA stack (torch, torchvision, triton, nvidia-*, cuda-*), which must
stay the node's own build, and mmcv/mmpose/mmengine, whose compiled operators must be built
against the node's torch (tools/install_mmpose.sh on the node); the mmpose check then skips.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

PLATFORMS = (
    "manylinux_2_28_x86_64",
    "manylinux_2_27_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux1_x86_64",
)
"""The node's platform tags (pip matches each exactly): glibc 2.28 and older on x86-64."""
NODE_OWN = re.compile(r"^(torch|torchvision|torchaudio|triton|nvidia-.*|cuda-.*)$")
"""The node's CUDA stack: never brought, never replaced."""
COMPILED_AGAINST_TORCH = {"mmcv", "mmpose", "mmengine"}
SAME_MODULE = {
    "opencv-python": {
        "opencv-python-headless",
        "opencv-contrib-python",
        "opencv-contrib-python-headless",
    },
    "onnxruntime": {"onnxruntime-gpu"},
}
"""A distribution → others that install the same module: the node having one is enough."""
EXTRA_TOOLS = ("pytest", "hypothesis")


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_node_packages(text: str) -> set[str]:
    """The normalised distribution names of a node's ``pip list --format=freeze`` (or ``pip
    freeze``) output: ``name==version`` and ``name @ url`` lines; comments, blanks and ``-e``
    lines are skipped."""
    names = set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        names.add(normalise(re.split(r"\s*(?:==|===|@|>=|<=|~=|!=)\s*", line, maxsplit=1)[0]))
    return names


def on_node(name: str, node: set[str]) -> bool:
    """Whether the node has ``name`` or a distribution that installs the same module."""
    name = normalise(name)
    return name in node or bool(SAME_MODULE.get(name, set()) & node)


def wanted() -> list[str]:
    """What the node must be able to import: this project's core and `student` requirements
    (not its other extras), the third-party modules of the GPU checks, pytest and hypothesis."""
    from gpu_support import DISTRIBUTION, NEEDS, OWN

    names: dict[str, None] = {}
    for line in importlib.metadata.requires("paw-reid") or []:
        requirement = Requirement(line)
        if normalise(requirement.name) == "paw-reid":
            continue  # the project's own extras (pretrained, wildlife): not the checks' business
        if requirement.marker is None or requirement.marker.evaluate({"extra": "student"}):
            names[normalise(requirement.name)] = None
    for modules in NEEDS.values():
        for module in modules:
            top = module.split(".")[0]
            if not top.startswith(OWN):
                names[normalise(DISTRIBUTION.get(top, top))] = None
    for tool in EXTRA_TOOLS:
        names[tool] = None
    return list(names)


def pinned(name: str) -> str:
    """``name==version`` of this environment's copy, so the node runs what the suite runs here;
    the bare name when it is not installed here."""
    try:
        return f"{name}=={importlib.metadata.version(name)}"
    except importlib.metadata.PackageNotFoundError:
        return name


def brought(names: list[str], node: set[str]) -> list[str]:
    """Of ``names``, those to bring: not on the node, not the node's CUDA stack, not compiled
    against the node's torch."""
    keep = []
    for name in names:
        name = normalise(name)
        if NODE_OWN.match(name) or name in COMPILED_AGAINST_TORCH or on_node(name, node):
            continue
        keep.append(name)
    return keep


def platform_options(python_version: str) -> list[str]:
    options = ["--only-binary=:all:", "--python-version", python_version, "--implementation", "cp"]
    for tag in PLATFORMS:
        options += ["--platform", tag]
    return options


def pip(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    return subprocess.run(command, capture_output=True, text=True)


NO_WHEEL = re.compile(r"No matching distribution found for ([A-Za-z0-9._-]+)")


def resolve(requirements: list[str], options: list[str], built: Path) -> dict[str, str]:
    """name → version of the whole tree ``requirements`` pull in on the node's platform, from
    pip's dry-run report. A package without a wheel there is built here from source and
    offered to the resolver as a wheel, if that wheel is pure Python."""
    while True:
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "report.json"
            result = pip(
                "install", "--dry-run", "--ignore-installed", "--quiet", "--report", str(report),
                "--target", str(Path(tmp) / "target"), "--find-links", str(built),
                *options, *requirements,
            )  # fmt: skip
            if result.returncode == 0:
                install = json.loads(report.read_text())["install"]
                return {i["metadata"]["name"]: i["metadata"]["version"] for i in install}
        found = NO_WHEEL.search(result.stderr)
        if not found:
            raise SystemExit(f"pip could not resolve the node's packages:\n{result.stderr[-2000:]}")
        build_pure_wheel(found.group(1), built, result.stderr)


def wheels_of(name: str, folder: Path) -> list[Path]:
    """The wheels of distribution ``name`` in ``folder`` (a wheel's name starts with it)."""
    return [p for p in folder.glob("*.whl") if normalise(p.name.split("-")[0]) == normalise(name)]


def build_pure_wheel(name: str, built: Path, why: str) -> None:
    """Build ``name``'s newest source release into a wheel in ``built``; only a pure-Python
    wheel (``py3-none-any``) runs on another machine's Python."""
    if wheels_of(name, built):
        raise SystemExit(f"pip could not resolve the node's packages:\n{why[-2000:]}")
    print(f"{name}: no wheel on PyPI for the node; building one from source here")
    result = pip("wheel", "--no-deps", "--quiet", "--wheel-dir", str(built), name)
    made = wheels_of(name, built)
    if result.returncode != 0 or not made:
        raise SystemExit(f"{name}: building a wheel from source failed:\n{result.stderr[-1500:]}")
    if not made[0].name.endswith("-none-any.whl"):
        made[0].unlink()
        raise SystemExit(
            f"{name}: PyPI has no wheel for the node and its source compiles code: build it on "
            "the node, or on a machine like it, and put the wheel in the folder"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--node-packages",
        type=Path,
        required=True,
        help="the node's `python3 -m pip list --format=freeze`",
    )
    parser.add_argument("--python-version", required=True, help="the node's Python, e.g. 3.12")
    parser.add_argument("--out", type=Path, required=True, help="folder for the wheels")
    args = parser.parse_args(argv)
    if not args.node_packages.is_file():
        raise SystemExit(f"--node-packages {args.node_packages}: no such file")
    node = read_node_packages(args.node_packages.read_text())
    if "torch" not in node:
        raise SystemExit(
            f"{args.node_packages} lists no torch: install the node's own CUDA build of PyTorch "
            "first (this tool never brings torch)"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    options = platform_options(args.python_version)
    with tempfile.TemporaryDirectory() as tmp:
        built = Path(tmp)
        tree = resolve([pinned(n) for n in brought(wanted(), node)], options, built)
        needed = brought(list(tree), node)
        versions = {normalise(name): version for name, version in tree.items()}
        for name in needed:
            own = wheels_of(name, built)
            if own:
                shutil.copy2(own[0], args.out / own[0].name)
                continue
            result = pip(
                "download", "--no-deps", "--quiet", "--dest", str(args.out), *options,
                f"{name}=={versions[name]}",
            )  # fmt: skip
            if result.returncode != 0:
                raise SystemExit(f"{name}=={versions[name]}: download failed:\n{result.stderr}")
    wheels = sorted(args.out.glob("*.whl"))
    size = sum(p.stat().st_size for p in wheels) / 2**20
    print(f"{len(needed)} packages the node lacks: {', '.join(needed)}")
    print(f"{args.out}: {len(wheels)} wheels, {size:.0f} MiB")
    skipped = sorted(COMPILED_AGAINST_TORCH - node)
    if skipped:
        print(f"not brought (compiled against the node's torch): {', '.join(skipped)}")
    print(f"on the node: make gpu-check PYTHON=python3 WHEELS={args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
