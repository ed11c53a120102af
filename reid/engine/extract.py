"""Eval-mode descriptors for catalogue images, and the features.npz / trained-model files."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from reid.atomic import atomic_write_bytes, atomic_write_text
from reid.data.crops import AnimalBox
from reid.data.datasets import ImageDataset
from reid.data.part_maps import load_crop_boxes
from reid.data.transforms import PROJECT_NORMALISATION, Normalisation
from reid.engine.checkpoint import load_tensors, save_tensors
from reid.engine.precision import autocast, resolve_precision
from reid.errors import UserError
from reid.models import ModelSpec, build_model
from reid.npz import read_npz

MODEL_WEIGHTS = "model.safetensors"
MODEL_CONFIG = "model.json"


@torch.inference_mode()
def extract_descriptors(
    model: nn.Module,
    paths: list[Path],
    img_size: int,
    device: torch.device,
    batch_size: int = 64,
    flip_test: bool = False,
    workers: int = 0,
    precision: str = "auto",
    normalisation: Normalisation = PROJECT_NORMALISATION,
    boxes: list[AnimalBox | None] | None = None,
) -> np.ndarray:
    """N×D float32 descriptors; with `flip_test`, N×2D: [image, its mirror] concatenated.

    ``precision``: auto, bf16 or fp32 (see reid.engine.precision); ``normalisation``: the
    model's (model.json ``model``: ``Normalisation.of(config["model"])``); ``boxes``: the
    animal box each image is cut to first (None: whole images).
    """
    precision = resolve_precision(precision, device)
    model.eval()
    loader = DataLoader(
        ImageDataset(paths, img_size, normalisation, boxes),
        batch_size=batch_size,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )
    chunks = []
    for images in loader:
        images = images.to(device, non_blocking=True)
        with autocast(device, precision):
            descriptor = model(images)
            if flip_test:
                descriptor = torch.cat([descriptor, model(images.flip(3))], dim=1)
        chunks.append(descriptor.float().cpu().numpy())
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32, copy=False)


def model_crop_boxes(
    config: dict[str, Any], crops: Path | None, model_dir: Path
) -> dict[str, AnimalBox] | None:
    """The animal boxes extraction cuts photos to: those of teacher directory ``crops``, which
    must be the teacher the model was trained on when its model.json names one (``crop``);
    None (whole photos) without ``crops`` for a model trained on whole photos."""
    trained_on = (config.get("crop") or {}).get("teacher_id")
    if crops is None:
        if trained_on:
            raise UserError(
                f"{model_dir} was trained on photos cut to teacher {trained_on}'s animal boxes: "
                f"pass --crops with that teacher's directory (results/<dataset>/masks/{trained_on})"
            )
        return None
    record, boxes = load_crop_boxes(crops)
    if trained_on and record["teacher_id"] != trained_on:
        raise UserError(
            f"--crops {crops} holds teacher {record['teacher_id']}'s boxes, but {model_dir} was "
            f"trained on teacher {trained_on}'s: pass that teacher's directory"
        )
    return boxes


def save_features(path: Path, image_ids: list[str], features: np.ndarray) -> None:
    """Write features.npz (DESIGN.md contract) atomically."""
    buffer = io.BytesIO()
    np.savez(
        buffer, image_id=np.asarray(image_ids, dtype=str), features=features.astype(np.float32)
    )
    atomic_write_bytes(path, buffer.getvalue())


def load_features(path: Path) -> tuple[list[str], np.ndarray]:
    """Read features.npz with clear errors for a missing or malformed file."""
    if not path.is_file():
        raise UserError(f"features file {path} does not exist: run `reid extract` first")
    with read_npz(path, "a features file of `reid extract`", "rerun `reid extract`") as data:
        ids = [str(i) for i in data["image_id"]]
        features = data["features"].astype(np.float32, copy=False)
    if features.ndim != 2 or features.shape[0] != len(ids):
        raise UserError(f"{path}: features have shape {features.shape} for {len(ids)} image ids")
    return ids, features


def save_trained_model(directory: Path, model: nn.Module, config: dict[str, Any]) -> None:
    """Write model.safetensors (weights) and model.json (what built them) side by side."""
    save_tensors(directory / MODEL_WEIGHTS, model.state_dict())
    atomic_write_text(directory / MODEL_CONFIG, json.dumps(config, indent=2))


def flip_tested(config: dict[str, Any]) -> bool:
    """Whether a trained model's descriptors were extracted with flip test (its model.json)."""
    return bool(config.get("settings", {}).get("flip_test", False))


def load_trained_model(directory: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained model from its directory, in eval mode on `device`."""
    config_path = directory / MODEL_CONFIG
    if not config_path.is_file():
        raise UserError(
            f"{directory} holds no trained model ({MODEL_CONFIG} missing): run `reid train` first"
        )
    config = json.loads(config_path.read_text())
    spec = ModelSpec(**{**config["model"], "pretrained": None})
    model = build_model(spec, num_classes=config["num_classes"], num_parts=config["num_parts"])
    tensors, _ = load_tensors(directory / MODEL_WEIGHTS)
    model.load_state_dict(tensors)
    return model.to(device).eval(), config
