"""Training data loader throughput: images/s with their part maps, as the trainer loads them.

Generates a synthetic-species dataset and its ground-truth part maps in a temporary folder, then
times full P×K batches (decode, rotate, resize, map, mirror) through a DataLoader with 0 and N
workers, and the image decode alone as the reference in the same process.

    .venv/bin/python bench/bench_dataloader.py --workers 2 --img-size 256
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from reid.catalogue import read_catalogue
from reid.data.datasets import SeededBatches, TrainDataset
from reid.data.images import read_rgb
from reid.data.part_maps import load_part_maps
from reid.data.sampler import PKSampler

SETTINGS = """{"teacher": {"name": "gt", "pose": [{"member": "annotations"}],
 "segmentation": [{"member": "annotations"}]},
 "species": {"name": "synthetic_quadruped", "keypoint_schema": "ap10k",
  "parts": [{"name": "hind_legs", "keypoints": ["left_hip", "left_knee", "left_back_paw"]},
            {"name": "body", "keypoints": ["neck"]},
            {"name": "front_legs", "keypoints": ["left_shoulder", "left_elbow", "left_front_paw"]},
            {"name": "head", "keypoints": ["left_eye", "right_eye", "nose"]},
            {"name": "tail", "keypoints": ["root_of_tail"]}]},
 "weights": {}}"""


def prepare(folder: Path, identities: int) -> tuple[Path, Path, Path]:
    """Catalogue and part maps of a synthetic dataset, made with the project's own CLIs."""
    bin_dir = Path(sys.executable).parent
    data, catalogue, masks = folder / "data", folder / "catalogue.csv", folder / "masks"
    options = f'{{"identities": {identities}, "encounters": 3, "images_per_encounter": 2, "test_fraction": 0.0}}'
    subprocess.run(
        [
            bin_dir / "reid",
            "catalogue",
            "--adapter",
            "synthetic",
            "--root",
            data,
            "--options-json",
            options,
            "--out",
            catalogue,
        ],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            bin_dir / "pseudomasks",
            "run",
            "--catalogue",
            catalogue,
            "--root",
            data,
            "--settings-json",
            SETTINGS,
            "--out",
            masks,
        ],
        check=True,
        capture_output=True,
    )
    teacher_dir = next(p for p in masks.iterdir() if p.is_dir())
    return data, catalogue, teacher_dir


def loader_rate(dataset: TrainDataset, workers: int, epochs: int) -> float:
    sampler = PKSampler(dataset.class_ids, p=8, k=16, seed=0)
    batches = SeededBatches(sampler, seed=0)
    loader = DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, persistent_workers=workers > 0
    )
    images = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        batches.set_epoch(epoch)
        for batch in loader:
            images += batch["image"].shape[0]
    return images / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--img-size", type=int, default=256)
    parser.add_argument("--identities", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(
        f"# {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"img {args.img_size}, P×K = 8×16, synthetic images 160×256 JPEG, maps 64×64 uint8 (npz shards in RAM)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        data, catalogue_path, teacher_dir = prepare(Path(tmp), args.identities)
        catalogue = read_catalogue(catalogue_path)
        rows = catalogue[catalogue["split"] == "train"]
        maps = load_part_maps(teacher_dir)
        dataset = TrainDataset(rows, data, maps, args.img_size, args.img_size // 4, 15.0, True)
        paths = [data / p for p in rows["path"]]
        start = time.perf_counter()
        for path in paths:
            read_rgb(path)
        decode = len(paths) / (time.perf_counter() - start)
        print(f"decode only (1 process):           {decode:8.1f} images/s")
        for workers in sorted({0, args.workers}):
            rate = loader_rate(dataset, workers, args.epochs)
            print(
                f"training loader, {workers} workers:        {rate:8.1f} images/s  ({rate / decode:.2f}× decode)"
            )


if __name__ == "__main__":
    main()
