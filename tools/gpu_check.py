"""Prove the GPU paths on any CUDA machine, offline, in a few minutes (`make gpu-check`).

    python3 tools/gpu_check.py [--wheels DIR] [--out results/gpu_check.json] [--no-install]

1. Installs this checkout into the Python running this script with no network
   (``pip install --no-deps --no-index --no-build-isolation -e .``); ``--wheels DIR`` installs
   every wheel in DIR too (e.g. pytest or snakemake for a node that lacks them).
2. Says which packages are there and which checks cannot run without the missing ones.
3. Runs the tests marked ``gpu`` (tests/test_gpu.py): bf16 training steps, `reid train` on CUDA
   with a kill and --resume, extraction and evaluation, torchrun over NCCL, the teacher members
   on CUDA against the CPU, the demo DAG with the local-gpu profile. Each asserts that its work
   really ran on the GPU.
4. Measures the figures: PAW-ViT-B against ViT-B at 256 px, batch 64, in the precision training
   uses (bench/bench_model.py), inference images/s and training step time as ratios from one
   run; the teacher members' images/s; the evaluator at ATRW size (bench/bench_evaluator.py's
   data; a CPU figure, measured on any machine).
5. Prints one line per check, PASS, SKIP with its reason or FAIL with why, then the figures, and
   writes all of it with the device, driver, torch, CUDA, cuDNN and NCCL versions to --out.

Exit status 0 when nothing failed. Without a CUDA GPU every GPU part skips with its reason and
the run succeeds.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "test_gpu.py"
BUDGET_S = 8 * 60
PACKAGES = (
    "torch",
    "timm",
    "numpy",
    "opencv-python",
    "opencv-python-headless",
    "pillow",
    "pandas",
    "safetensors",
    "threadpoolctl",
    "onnxruntime",
    "onnxruntime-gpu",
    "onnx",
    "pytest",
    "hypothesis",
    "snakemake",
    "jsonschema",
    "ultralytics",
    "segment-anything",
    "mmpose",
    "mmcv",
    "mmengine",
)
VERSIONS = (
    ("driver", "driver"),
    ("torch", "torch"),
    ("CUDA", "cuda"),
    ("cuDNN", "cudnn"),
    ("NCCL", "nccl"),
)
"""(label, key of the environment) of the versions the figures are printed with."""
CHECKS_OF = {
    "training": "bf16 training step",
    "cli": "reid train/extract/evaluate and torchrun",
    "superanimal": "superanimal teacher member",
    "salient": "salient (ONNX) teacher member",
    "ultralytics": "ultralytics teacher members",
    "sam": "sam teacher member",
    "mmpose": "mmpose teacher member",
    "dag": "demo DAG with the local-gpu profile",
}


@dataclass
class Outcome:
    """One line of the summary: a check or a figure, PASS, SKIP or FAIL, and why."""

    name: str
    status: str
    detail: str = ""
    seconds: float = 0.0


def say(text: str = "") -> None:
    print(text, flush=True)


def section(title: str) -> None:
    say(f"\n== {title} ==")


# ---------------------------------------------------------------------------------------------
# 1. Install
# ---------------------------------------------------------------------------------------------


def install(wheels: Path | None) -> Outcome:
    """pip-install this checkout (editable, so the tests run this very code) and the wheels
    of ``wheels`` without touching the network; then check that the installed package and
    console scripts are this checkout's."""
    started = time.perf_counter()
    if importlib.util.find_spec("pip") is None:
        return Outcome("install", "FAIL", f"{sys.executable} has no pip")
    if importlib.util.find_spec("setuptools") is None:
        return Outcome(
            "install", "FAIL", "setuptools (the build backend) is missing: add its wheel to WHEELS"
        )
    command = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index"]
    command += ["--no-build-isolation", "--disable-pip-version-check", "--quiet"]
    if wheels is not None:
        found = sorted(wheels.glob("*.whl"))
        if not found:
            return Outcome("install", "FAIL", f"--wheels {wheels}: no .whl files there")
        command += ["--find-links", str(wheels), *map(str, found)]
    command += ["--editable", str(ROOT)]
    say("$ " + " ".join(command))
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        tail = " / ".join((result.stderr or result.stdout).strip().splitlines()[-4:])
        return Outcome("install", "FAIL", f"pip exited {result.returncode}: {tail}")
    probe = "import importlib.util as u; print(u.find_spec('reid').origin)"
    with tempfile.TemporaryDirectory() as elsewhere:  # not this checkout's folder
        where = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, cwd=elsewhere
        ).stdout.strip()
    if not where.startswith(str(ROOT)):
        return Outcome("install", "FAIL", f"`import reid` finds {where or 'nothing'}, not {ROOT}")
    scripts = Path(sysconfig.get_path("scripts"))
    missing = [name for name in ("reid", "pseudomasks") if not (scripts / name).exists()]
    if missing:
        return Outcome("install", "FAIL", f"console scripts {missing} not in {scripts}")
    seconds = time.perf_counter() - started
    return Outcome("install", "PASS", f"paw-reid (editable) into {sys.executable}", seconds)


# ---------------------------------------------------------------------------------------------
# 2. Environment and packages
# ---------------------------------------------------------------------------------------------


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment() -> dict[str, Any]:
    """The machine, the GPUs and the versions that matter for the GPU paths."""
    import torch

    info: dict[str, Any] = {
        "host": platform.node(),
        "python": f"{platform.python_version()} ({sys.executable})",
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "cuda_available": torch.cuda.is_available(),
        "devices": [],
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain")),
    }
    if torch.cuda.is_available():
        info["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            info["devices"].append(
                {
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(props.total_memory / 2**30, 1),
                }
            )
        info["native_bf16"] = torch.cuda.is_bf16_supported(including_emulation=False)
        if shutil.which("nvidia-smi"):
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            result = subprocess.run(query, capture_output=True, text=True)
            info["driver"] = result.stdout.strip().splitlines()[0] if result.stdout else None
    try:
        import onnxruntime

        info["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    return info


def _git(*args: str) -> str | None:
    if not shutil.which("git"):
        return None
    result = subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT)
    return result.stdout.strip() if result.returncode == 0 else None


def unavailable_checks() -> dict[str, str]:
    """Check → why it cannot run here (a missing package), for every check that cannot."""
    from gpu_support import unavailable

    reasons = {}
    for check in CHECKS_OF:
        reason = unavailable(check)
        if reason:
            reasons[check] = reason
    return reasons


# ---------------------------------------------------------------------------------------------
# 3. The tests marked gpu
# ---------------------------------------------------------------------------------------------


class Collector:
    """pytest plugin: one Outcome per test, the worst of its setup, call and teardown."""

    RANK = {"PASS": 0, "SKIP": 1, "FAIL": 2}

    def __init__(self) -> None:
        self.outcomes: dict[str, Outcome] = {}

    def pytest_collectreport(self, report: Any) -> None:
        if report.failed:
            name = f"collect {report.nodeid}"
            self.outcomes[name] = Outcome(name, "FAIL", _failure(report.longreprtext))

    def pytest_runtest_logreport(self, report: Any) -> None:
        name = report.nodeid.split("::", 1)[-1]
        outcome = self.outcomes.setdefault(name, Outcome(name, "PASS"))
        outcome.seconds += report.duration
        if report.skipped:
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            status, detail = "SKIP", reason.removeprefix("Skipped: ")
        elif report.failed:
            where = "" if report.when == "call" else f"in {report.when}: "
            status, detail = "FAIL", where + _failure(report.longreprtext)
        else:
            return
        if self.RANK[status] > self.RANK[outcome.status]:
            outcome.status, outcome.detail = status, detail


def _failure(text: str) -> str:
    """The assertion or error lines of a pytest failure report on one line; for a message
    without a traceback (pytest.fail(pytrace=False)), its first and last lines."""
    lines = [line[1:].strip() for line in text.splitlines() if line.startswith("E ")]
    if not any(lines):
        lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
        lines = lines[:1] + lines[-1:] if len(lines) > 1 else lines
    return " / ".join(line for line in lines[:4] if line)[:600]


def run_tests() -> list[Outcome]:
    try:
        import pytest
    except ImportError:
        return [Outcome("tests", "FAIL", "pytest is not installed: add its wheel to WHEELS")]
    collector = Collector()
    args = ["-m", "gpu", "-q", "--tb=short", "-p", "no:cacheprovider", "-rfE"]
    # The package report imported hypothesis and anyio already: nothing to rewrite in them.
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]
    args += ["--rootdir", str(ROOT), str(TESTS)]
    code = pytest.main(args, plugins=[collector])
    outcomes = list(collector.outcomes.values())
    if not outcomes:
        outcomes.append(Outcome("tests", "FAIL", f"pytest ran no test (exit {int(code)})"))
    return outcomes


# ---------------------------------------------------------------------------------------------
# 4. Figures
# ---------------------------------------------------------------------------------------------


def model_figures(device: str, size: str = "base", batch: int = 64, repeats: int = 10) -> dict:
    """bench_model's side-by-side of PAW-ViT and ViT of one size, in the precision training
    would use on this device."""
    import torch
    from gpu_support import bench

    from reid.engine.precision import resolve_precision

    bench_model = bench("bench_model")
    where = torch.device(device)
    precision = resolve_precision("auto", where)
    result = bench_model.bench_size(size, batch, repeats, where, precision)
    paw, vit = bench_model.ARCH[size]
    if where.type == "cuda":
        torch.cuda.empty_cache()
    figures = {"models": f"{paw} vs {vit}", "img_size": 256, "batch": batch}
    figures |= {"precision": precision, "repeats": repeats, "parts": bench_model.NUM_PARTS}
    return figures | {key: round(value, 4) for key, value in result.items()}


SAM, POSE, DETECT = "SAM ViT-B, 1024 px", "yolo11n-pose, 640 px", "yolov8n, 640 px"


def member_figures(device: str, n: int = 32) -> dict[str, dict]:
    """images/s of every teacher member whose package is here (random weights, random
    384×512 images; bench_members' models and timing), or why it was not measured."""
    from gpu_support import bench, conv_salient_model, missing, superanimal_snapshot, unavailable

    from pseudomasks.members.base import MemberContext, WeightsSpec

    members = bench("bench_members")
    samples = members.load_samples(None, n)
    keypoints = members.centre_keypoints(samples)
    figures: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights: dict[str, WeightsSpec] = {}
        cases: list[tuple[str, str, str, dict, str]] = []  # key, kind, member, options, label

        path = superanimal_snapshot(root / "superanimal.pt")
        weights["superanimal"] = WeightsSpec(str(path), "", "")
        options = members.superanimal_options()
        cases.append(
            ("superanimal", "pose", "superanimal", options, "SuperAnimal HRNet-w32, 256 px")
        )

        reason = unavailable("salient") or _no_cuda_execution_provider(device)
        if reason:
            figures["salient"] = {"skipped": reason}
        else:
            weights["salient"] = WeightsSpec(str(conv_salient_model(root / "s.onnx")), "", "")
            options = {"weights": "salient", "model": "rmbg2", "keep": "all"}
            label = "3-convolution stand-in in ONNX, 1024 px"
            cases.append(("salient", "segmentation", "salient", options, label))

        reason = missing("ultralytics", "segment_anything")
        if reason:
            for key in ("yolo_seg", "sam", "ultralytics_pose", "yolo_detect"):
                figures[key] = {"skipped": reason}
        else:
            weights |= members.random_weights(root)
            cases += [
                ("yolo_seg", "segmentation", "yolo_seg", {"weights": "seg"}, "yolov8n-seg, 640 px"),
                ("sam", "segmentation", "sam", {"weights": "sam", "model_type": "vit_b"}, SAM),
                ("ultralytics_pose", "pose", "ultralytics_pose", {"weights": "pose"}, POSE),
                ("yolo_detect", "detector", "yolo_detect", {"weights": "detect"}, DETECT),
            ]

        reason = unavailable("mmpose")
        for name, config, label in members.MMPOSE_MODELS:
            if reason:
                figures[f"mmpose_{name}"] = {"skipped": reason}
                continue
            weights[name] = members.random_mmpose_weights(root, name, config)
            options = {"config": config, "weights": name}
            cases.append((f"mmpose_{name}", "pose", "mmpose", options, label))

        context = MemberContext(members.SPECIES, confidence=0.3, device=device, weights=weights)
        for key, kind, name, options, label in cases:
            try:
                rate = members.member_images_per_s(
                    kind, name, options, context, samples, keypoints, repeats=2
                )
            except Exception as exc:  # one member's failure must not hide the others' figures
                traceback.print_exc()
                figures[key] = {"architecture": label, "failed": f"{type(exc).__name__}: {exc}"}
                continue
            figures[key] = {"architecture": label, "images_per_s": float(f"{rate:.3g}")}
    figures["_setup"] = {"images": n, "size": "384x512", "device": device}
    return figures


def _no_cuda_execution_provider(device: str) -> str | None:
    import onnxruntime

    if device == "cuda" and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        return f"onnxruntime {onnxruntime.__version__} has no CUDAExecutionProvider"
    return None


def evaluator_figures() -> dict:
    """The evaluator at ATRW size (1,764 × 1,764, atrw protocol, random labels and features
    as bench_evaluator makes them): best of its repeats, with and without rankings."""
    import numpy as np
    from gpu_support import bench

    from reid.evaluation import evaluate_features

    evaluator = bench("bench_evaluator")
    rng = np.random.default_rng(0)
    labels = evaluator.atrw_labels(rng, None)
    features = rng.standard_normal((len(labels), 384), dtype=np.float32)
    ids = labels["image_id"].tolist()
    evaluate_features(features, ids, labels, "atrw")  # warm-up: imports, BLAS threads

    def best(**options: Any) -> float:
        runs = [
            evaluator.timed(evaluate_features, features, ids, labels, "atrw", **options)[1]
            for _ in range(evaluator.REPEATS)
        ]
        return round(min(runs), 4)

    return {
        "images": len(labels),
        "dim": 384,
        "with_rankings_s": best(),
        "metrics_only_s": best(with_rankings=False),
        "cpus": os.cpu_count(),
    }


def measure(name: str, function: Callable[[], Any], figures: dict, key: str) -> Outcome:
    """Run one figure's ``function`` into ``figures[key]``; an exception, or an entry of its
    result marked ``failed``, fails the figure with the reason (the traceback is printed)."""
    started = time.perf_counter()
    try:
        figures[key] = function()
    except Exception as exc:  # any failure is reported as this figure's, with its reason
        traceback.print_exc()
        return Outcome(name, "FAIL", f"{type(exc).__name__}: {exc}"[:600])
    failed = [
        f"{entry}: {value['failed']}"
        for entry, value in figures[key].items()
        if isinstance(value, dict) and "failed" in value
    ]
    if failed:
        return Outcome(name, "FAIL", "; ".join(failed)[:600])
    return Outcome(name, "PASS", "", time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------
# 5. Summary
# ---------------------------------------------------------------------------------------------


def figure_lines(figures: dict, env: dict) -> list[str]:
    lines = []
    devices = ", ".join(d["name"] for d in env["devices"]) or "no CUDA GPU"
    versions = [f"{name} {env.get(key)}" for name, key in VERSIONS if env.get(key)]
    lines.append(f"device: {devices}; " + ", ".join(versions))
    if model := figures.get("model"):
        lines.append(
            f"{model['models']}, {model['img_size']} px, batch {model['batch']}, "
            f"{model['precision']}: inference {model['paw_img_s']:.0f} vs {model['vit_img_s']:.0f}"
            f" img/s (ratio {model['inference_ratio']:.3f}); training step {model['paw_step_s']:.4f}"
            f" vs {model['vit_step_s']:.4f} s (ratio {model['train_step_ratio']:.3f})"
        )
    for key, value in figures.get("members", {}).items():
        if key.startswith("_"):
            continue
        if "skipped" in value or "failed" in value:
            why = value.get("skipped") or f"failed: {value['failed']}"
            lines.append(f"member {key}: not measured: {why}")
        else:
            lines.append(f"member {key} ({value['architecture']}): {value['images_per_s']} img/s")
    if evaluation := figures.get("evaluator"):
        lines.append(
            f"evaluator at ATRW size ({evaluation['images']} x {evaluation['images']}): "
            f"{evaluation['with_rankings_s']} s, metrics only {evaluation['metrics_only_s']} s, "
            f"{evaluation['cpus']} CPUs"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wheels", type=Path, help="also install every wheel in this folder")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "gpu_check.json")
    parser.add_argument("--no-install", action="store_true", help="use the installed package")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    outcomes: list[Outcome] = []

    section("install")
    if args.no_install:
        outcomes.append(Outcome("install", "SKIP", "--no-install"))
    else:
        outcomes.append(install(args.wheels))
    # Subprocesses (torchrun, reid, snakemake) use this Python's scripts; this process imports
    # this checkout whether or not the install just made it importable.
    os.environ["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), os.environ["PATH"]])
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    say(f"{outcomes[-1].status} install {outcomes[-1].detail}")
    if outcomes[-1].status == "FAIL":
        return finish(outcomes, {}, {}, {}, args.out, started)
    try:
        import torch  # noqa: F401
    except ImportError:
        outcomes.append(Outcome("environment", "FAIL", "torch is not installed"))
        return finish(outcomes, {}, {}, {}, args.out, started)

    section("environment")
    env = environment()
    for key, value in env.items():
        say(f"{key}: {value}")
    section("packages")
    versions = package_versions()
    say(", ".join(f"{name} {version}" for name, version in versions.items() if version))
    say("not installed: " + ", ".join(name for name, v in versions.items() if v is None))
    cannot = unavailable_checks()
    for check, reason in cannot.items():
        say(f"cannot run: {CHECKS_OF[check]}: {reason}")
    if not cannot:
        say("every check has the packages it needs")

    section("tests marked gpu (tests/test_gpu.py)")
    outcomes += run_tests()

    section("figures")
    figures: dict[str, Any] = {}
    from gpu_support import no_cuda_reason

    no_cuda = no_cuda_reason()
    for name, key, function in (
        ("figure: PAW-ViT-B vs ViT-B", "model", lambda: model_figures("cuda")),
        ("figure: teacher members", "members", lambda: member_figures("cuda")),
    ):
        if no_cuda:
            outcomes.append(Outcome(name, "SKIP", no_cuda))
        else:
            say(f"measuring {name.removeprefix('figure: ')} ...")
            outcomes.append(measure(name, function, figures, key))
    say("measuring the evaluator ...")
    outcomes.append(measure("figure: evaluator", evaluator_figures, figures, "evaluator"))
    return finish(outcomes, env, versions, figures, args.out, started, cannot)


def finish(
    outcomes: list[Outcome],
    env: dict,
    versions: dict,
    figures: dict,
    out: Path,
    started: float,
    cannot: dict | None = None,
) -> int:
    seconds = time.perf_counter() - started
    failed = [o for o in outcomes if o.status == "FAIL"]
    section(f"summary ({seconds:.0f} s)")
    for o in outcomes:
        detail = f": {o.detail}" if o.detail and o.status != "PASS" else ""
        timing = f"  ({o.seconds:.1f} s)" if o.seconds >= 0.05 else ""
        say(f"{o.status:4}  {o.name}{detail}{timing}")
    if env:
        section("figures")
        for line in figure_lines(figures, env):
            say(line)
    report = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(seconds, 1),
        "ok": not failed,
        "environment": env,
        "packages": versions,
        "cannot_run": cannot or {},
        "checks": [asdict(o) for o in outcomes],
        "figures": figures,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    say(f"\nwritten: {out}")
    if seconds > BUDGET_S:
        say(f"note: took {seconds:.0f} s, over the {BUDGET_S} s budget")
    if failed:
        names = ", ".join(o.name for o in failed)
        say(f"gpu-check: FAILED ({len(failed)} of {len(outcomes)}: {names})")
        return 1
    counts = {s: sum(o.status == s for o in outcomes) for s in ("PASS", "SKIP")}
    say(f"gpu-check: OK ({counts['PASS']} passed, {counts['SKIP']} skipped)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
