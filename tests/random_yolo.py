"""Random-initialised ultralytics models of the real architectures, saved as loadable .pt files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import yaml


def save_random_yolo_models(root: Path) -> dict[str, Path]:
    """``detect`` (yolov8n), ``seg`` (yolov8n-seg) and ``pose`` (yolo11n-pose with the toy
    species' 3 keypoints), random weights, saved under ``root``; ultralytics kept offline."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("YOLO_OFFLINE", "1")
        if "ultralytics" not in sys.modules:  # keep ultralytics' settings and font out of $HOME
            env.setenv("YOLO_CONFIG_DIR", str(root / "yolo_config"))
        import ultralytics
        from ultralytics import YOLO

        cfg = Path(ultralytics.__file__).parent / "cfg" / "models"
        pose_yaml = yaml.safe_load((cfg / "11" / "yolo11-pose.yaml").read_text())
        pose_yaml.update(nc=1, kpt_shape=[3, 3])
        (root / "yolo11n-pose-toy.yaml").write_text(yaml.safe_dump(pose_yaml))
        sources = {
            "pose": str(root / "yolo11n-pose-toy.yaml"),
            "seg": "yolov8n-seg.yaml",
            "detect": "yolov8n.yaml",
        }
        paths = {}
        for name, source in sources.items():
            torch.manual_seed(0)
            paths[name] = root / f"{name}.pt"
            YOLO(source).save(paths[name])
        return paths
