"""What cutting photos to the animal changes: the same dataset, teacher, models and budget with
the teacher's ``crop_margin`` on and off, through the real workflow.

    python bench/crop_on_off.py --data ../shared/data/nyala/train \
        --isnet ../shared/weights/isnet_general_int8.onnx --workdir /tmp/crop_on_off

Two workflow directories under ``--workdir``: ``crop/`` (``salient_template`` with
``crop_margin: --margin``: the teacher boxes every photo, the part maps cover the box, every
model sees photos cut to it) and ``whole/`` (the same teacher with ``crop_margin: null``: maps
of whole photos, on the training photos only). The dataset is a folder dataset in the nyala
layout (``<identity>/<encounter>_<left|right>photo.jpg``), whole identities split half train,
half test (seed 0), evaluated all-vs-all with same-encounter photos as junk. Models: config.yaml's
entries named by ``--models`` with their own budgets; a trained model's epoch-0 evaluation is its
untrained (ImageNet) row.

Printed per variant: teacher seconds per photo (its shard jobs' wall time over the photos they
mapped), qc.json's crop figures, and per model mAP / rank-1 / rank-5 (untrained and trained) with
the training time. Finished jobs are reused: rerunning prints the table again at no cost.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
METRICS = ("mAP", "rank1", "rank5")
TEACHER = "salient_template"


def variant_config(args: argparse.Namespace, margin: float | None) -> dict:
    config = yaml.safe_load((PROJECT / "config.yaml").read_text())
    config["weights"]["isnet_general"]["path"] = str(args.isnet.resolve())
    config["teachers"][TEACHER]["crop_margin"] = margin
    config["datasets"] = {
        "nyala": {
            "adapter": "folder",
            "root": str(args.data.resolve()),
            "options": {
                "pattern": r"^(?P<encounter>\d+)_(?P<orientation>left|right)photo\.[^.]+$",
                "split": {"train_fraction": 0.5, "seed": 0},
            },
            "species": "nyala",
            "teacher": TEACHER,
            "model": args.models[0],
            "protocol": "all-vs-all",
            "mask_shards": 6,
        }
    }
    return config


def run_variant(args: argparse.Namespace, workdir: Path, margin: float | None) -> None:
    workdir.mkdir(parents=True, exist_ok=True)
    config = variant_config(args, margin)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    targets = ["results/nyala/figures/part_maps.png"]
    for model in args.models:
        targets.append(f"results/nyala/{model}/metrics.json")
        if model.startswith("paw_vit"):
            targets.append(f"results/nyala/{model}/figures/attention.png")
    command = [sys.executable, "-m", "snakemake", "-s", str(PROJECT / "Snakefile")]
    command += ["-d", str(workdir), "--cores", str(args.cores), *targets]
    if args.reuse_finished:
        command += ["--rerun-triggers", "mtime"]
    subprocess.run(command, check=True)


def teacher_figures(results: Path) -> tuple[str, dict]:
    """(teacher id, seconds per photo and qc.json's counts and crop figures)."""
    (teacher_dir,) = [p for p in (results / "masks").iterdir() if (p / "qc.json").is_file()]
    qc = json.loads((teacher_dir / "qc.json").read_text())
    seconds = 0.0
    for tsv in (results / "benchmarks/teacher").glob(f"{teacher_dir.name}-*-of-*.tsv"):
        with tsv.open() as handle:
            seconds += float(next(csv.DictReader(handle, delimiter="\t"))["s"])
    per_photo = seconds / max(1, qc["counts"]["images"])
    return teacher_dir.name, {"s_per_photo": per_photo, "counts": qc["counts"], "crop": qc["crop"]}


def model_rows(results: Path, model: str) -> list[tuple[str, dict, str]]:
    """(label, metrics, train seconds) rows: untrained (epoch 0) and final."""
    config = json.loads((results / model / "model.json").read_text())
    final = json.loads((results / model / "metrics.json").read_text())
    if config.get("frozen"):
        return [("frozen", final, "")]
    rows = []
    with (results / model / "history.csv").open() as handle:
        first = next(csv.DictReader(handle))
    if first.get("epoch") == "0" and first.get("eval_mAP"):
        rows.append(("untrained", {m: float(first[f"eval_{m}"]) for m in METRICS}, ""))
    seconds = f"{config['train_wall_time_s']:.0f}"
    rows.append((f"{config['epochs']} epochs", final, seconds))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder dataset (nyala layout)")
    parser.add_argument("--isnet", type=Path, required=True, help="ISNet .onnx file")
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--margin", type=float, default=0.1, help="crop_margin of the crop run")
    parser.add_argument(
        "--models",
        nargs="+",
        default=["efflite0_frozen", "paw_vit_efflite0"],
        help="config.yaml model entries (default: the frozen yardstick and PAW on Lite0)",
    )
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--report-only", action="store_true", help="print the table of finished runs"
    )
    parser.add_argument(
        "--reuse-finished",
        action="store_true",
        help="rerun only what is missing (snakemake --rerun-triggers mtime): keeps the teacher "
        "maps of a run made before a workflow update",
    )
    args = parser.parse_args()

    variants = {"crop": args.margin, "whole": None}
    if not args.report_only:
        for name, margin in variants.items():
            run_variant(args, args.workdir / name, margin)
    print(
        f"{'variant':<8}{'model':<20}{'':>12}" + "".join(f"{m:>8}" for m in METRICS) + "  train s"
    )
    for name in variants:
        results = args.workdir / name / "results/nyala"
        teacher_id, figures = teacher_figures(results)
        crop = figures["crop"] or {}
        print(
            f"{name}: teacher {teacher_id}, {figures['s_per_photo']:.2f} s/photo, "
            f"{figures['counts']['maps']} maps, {figures['counts']['failed']} failed; crop: "
            f"{crop.get('rate')} of maps, mean box {crop.get('mean_area_fraction')} of the photo"
        )
        for model in args.models:
            for label, metrics, seconds in model_rows(results, model):
                cells = "".join(f"{metrics[m]:>8.3f}" for m in METRICS)
                print(f"{name:<8}{model:<20}{label:>12}{cells}  {seconds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
