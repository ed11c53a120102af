"""Snakemake overhead: a dry run of the ATRW target, and a no-op re-run of a finished DAG.

    .venv/bin/python bench/bench_dag.py [--repeats 3]

The dry run plans `results/atrw/metrics.json` with the shipped config.yaml (an empty
`resources/atrw` stands in for the dataset: planning never reads it). The no-op re-run first runs
a small demo DAG (12 synthetic identities, 2 epochs of the tiny model at 32 px, every figure),
then times `snakemake` on the same targets, which must find nothing to do. Both are the time a
user waits before any work starts. Median of --repeats runs, each a fresh Snakemake process.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
DEMO_TARGETS = ["results/demo/metrics.json", "results/demo/figures/README.md"]


def snakemake(workdir: Path, *args: str, expect: str = "") -> float:
    """Run Snakemake in `workdir`; return its wall time in seconds. Stops on an error, or when
    the output lacks `expect`."""
    env = dict(os.environ, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    command = [str(BIN / "snakemake"), "-s", str(PROJECT / "Snakefile"), "-d", str(workdir)]
    started = time.perf_counter()
    result = subprocess.run([*command, *args], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0 or expect not in result.stdout + result.stderr:
        sys.exit(f"snakemake {' '.join(args)} failed:\n{result.stderr[-2000:]}")
    return seconds


def small_demo_config() -> dict:
    config = yaml.safe_load((PROJECT / "config.yaml").read_text())
    demo = config["datasets"]["demo"]
    demo["options"] = {
        "identities": 12,
        "encounters": 2,
        "images_per_encounter": 1,
        "test_fraction": 0.5,
        "seed": 0,
    }
    demo["train"] = {"epochs": 2, "eval_every": 0, "batch": {"identities": 3, "images": 2}}
    demo["model"] = "paw_vit_tiny"
    config["models"]["paw_vit_tiny"]["img_size"] = 32
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory() as tmp:
        atrw = Path(tmp) / "atrw"
        (atrw / "resources" / "atrw").mkdir(parents=True)
        (atrw / "config.yaml").write_text((PROJECT / "config.yaml").read_text())
        dry = [snakemake(atrw, "-n", "results/atrw/metrics.json") for _ in range(args.repeats)]
        print(f"dry run of results/atrw/metrics.json: {statistics.median(dry):.2f} s")

        demo = Path(tmp) / "demo"
        demo.mkdir()
        (demo / "config.yaml").write_text(yaml.safe_dump(small_demo_config(), sort_keys=False))
        first = snakemake(demo, "--cores", str(os.cpu_count() or 1), *DEMO_TARGETS)
        noop = [
            snakemake(demo, "--cores", "1", *DEMO_TARGETS, expect="Nothing to be done")
            for _ in range(args.repeats)
        ]
        print(f"small demo DAG with figures, first run: {first:.1f} s")
        print(f"no-op re-run of the finished DAG: {statistics.median(noop):.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
