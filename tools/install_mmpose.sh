#!/usr/bin/env bash
# Install the mmpose stack (mmcv 2.1.0 with compiled ops, mmengine 0.10.7, mmdet 3.3.0,
# xtcocotools 1.14.3, mmpose 1.3.2) into the environment of PYTHON, for the `mmpose` pose member.
#
# Usage: tools/install_mmpose.sh PYTHON      (`make` calls it with the venv's python)
#
# Why not `pip install mmpose`: PyPI has no mmcv wheel (only its sdist, so mmcv is compiled here,
# ~25 min on 2 cores), mmcv 2.1.0's setup.py asks for C++17 where torch >= 2.10 needs C++20,
# mmpose's `chumpy` dependency cannot be built (and is never used), and xtcocotools' wheel is
# built against numpy 1. Facts measured in /work/shared/INSTALL-NOTES.md ("mmpose 1.3.2").
#
# torch, torchvision and numpy are pinned to their installed versions (a pip constraint file), so
# a CUDA build of torch is never replaced. The compiled mmcv wheel is kept in
# ${PAW_WHEEL_CACHE:-~/.cache/paw-reid/wheels} under a key holding the torch and Python versions
# (pip's own wheel cache ignores the torch version), so a re-created venv installs it in seconds.
set -euo pipefail

PY=${1:?usage: tools/install_mmpose.sh PYTHON}
MMCV_VERSION=2.1.0
PIP=("$PY" -m pip --disable-pip-version-check)

if "$PY" -c "from mmpose.apis import inference_topdown, init_model" >/dev/null 2>&1; then
    echo "mmpose: already installed in $("$PY" -c 'import sys; print(sys.prefix)')"
    exit 0
fi

START=$SECONDS
step_start=
step() { # step MESSAGE: print the time the previous step took, then announce the next one
    if [[ -n $step_start ]]; then echo "mmpose:   ...done in $((SECONDS - step_start)) s"; fi
    step_start=$SECONDS
    echo "mmpose: $1"
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Pins of what must not move, plus mmcv once it is installed (mmdet would otherwise fetch a newer
# sdist).
"$PY" - >"$WORK/constraints.txt" <<'EOF'
from importlib.metadata import PackageNotFoundError, version

for name in ("torch", "torchvision", "numpy"):
    try:
        print(f"{name}=={version(name)}")
    except PackageNotFoundError:
        pass
EOF
echo "mmcv==$MMCV_VERSION" >>"$WORK/constraints.txt"
echo "mmpose: keeping $(grep -v mmcv "$WORK/constraints.txt" | tr '\n' ' ')"
PIN=(-c "$WORK/constraints.txt")

step "build tools (setuptools<81: mmengine imports pkg_resources)"
"${PIP[@]}" install -q "${PIN[@]}" "setuptools<81" wheel ninja cython

# mmcv decides itself between CPU and CUDA ops: CUDA when torch sees a GPU or FORCE_CUDA=1.
# Without nvcc the CUDA ops cannot be compiled, so they are switched off.
if ! command -v nvcc >/dev/null 2>&1; then
    export FORCE_CUDA=0
fi
OPS=$("$PY" -c "import os, torch
print('cuda' if torch.cuda.is_available() or os.environ.get('FORCE_CUDA') == '1' else 'cpu')")
TORCH_VERSION=$("$PY" -c "import torch; print(torch.__version__)")
PY_TAG=$("$PY" -c "import sys; print(f'py{sys.version_info[0]}.{sys.version_info[1]}')")
WHEELS=${PAW_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/paw-reid/wheels}
MMCV_WHEELS="$WHEELS/mmcv-$MMCV_VERSION-torch$TORCH_VERSION-$PY_TAG-$OPS"

if "$PY" -c "import mmcv, mmcv._ext; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1; then
    step "mmcv $MMCV_VERSION with ops already installed"
else
    if ! compgen -G "$MMCV_WHEELS/mmcv-*.whl" >/dev/null; then
        step "mmcv $MMCV_VERSION: download the sdist"
        "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation -d "$WORK" \
            "mmcv==$MMCV_VERSION"
        tar -xzf "$WORK/mmcv-$MMCV_VERSION.tar.gz" -C "$WORK"
        SRC="$WORK/mmcv-$MMCV_VERSION"
        if "$PY" -c "import sys, torch
sys.exit(0 if tuple(int(p) for p in torch.__version__.split('.')[:2]) >= (2, 10) else 1)"; then
            echo "mmpose: torch $TORCH_VERSION needs C++20: patching mmcv's setup.py (-std=c++17 -> -std=c++20)"
            sed -i 's/-std=c++17/-std=c++20/g' "$SRC/setup.py"
        fi
        step "mmcv $MMCV_VERSION: compile the $OPS ops with $(nproc) jobs (20-30 min on 2 cores)"
        mkdir -p "$MMCV_WHEELS"
        MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) "${PIP[@]}" wheel -q --no-deps --no-build-isolation \
            --no-cache-dir -w "$WORK/wheel" "$SRC"
        mv "$WORK"/wheel/mmcv-*.whl "$MMCV_WHEELS/"
        echo "mmpose: compiled wheel kept in $MMCV_WHEELS"
    fi
    step "mmcv $MMCV_VERSION: install $(basename "$MMCV_WHEELS"/mmcv-*.whl)"
    "${PIP[@]}" install -q "${PIN[@]}" "$MMCV_WHEELS"/mmcv-*.whl
fi

step "mmengine 0.10.7 and mmdet 3.3.0"
"${PIP[@]}" install -q "${PIN[@]}" mmengine==0.10.7 mmdet==3.3.0

step "xtcocotools 1.14.3 from source (its wheel is built against numpy 1)"
"${PIP[@]}" install -q "${PIN[@]}" --no-build-isolation --no-binary xtcocotools xtcocotools==1.14.3

step "mmpose 1.3.2: its real dependencies, then mmpose without chumpy (unbuildable, never used)"
"${PIP[@]}" install -q "${PIN[@]}" json-tricks munkres scipy six matplotlib opencv-python pillow
"${PIP[@]}" install -q "${PIN[@]}" --no-deps mmpose==1.3.2

step "check: from mmpose.apis import inference_topdown, init_model"
"$PY" -c "from mmpose.apis import inference_topdown, init_model"
echo "mmpose:   ...done in $((SECONDS - step_start)) s"
echo "mmpose: installed in $((SECONDS - START)) s"
