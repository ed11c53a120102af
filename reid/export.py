"""ONNX export of a trained model's inference graph, verified against PyTorch before it lands.

A deployed matcher needs only `images → descriptor` (the eval-mode forward), so that is all that
is exported: one self-contained .onnx file with a dynamic batch dimension and, in its
metadata_props, everything a user needs to feed it (input size, normalisation, part names) without
this package. The file is checked with onnxruntime at batch sizes other than the traced one (which
proves the batch dimension really is dynamic) and only then moved into place, so a user can never
pick up an export that disagrees with the model it came from.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime
import torch
from torch import nn

from reid.atomic import atomic_path
from reid.data.transforms import Normalisation
from reid.engine.extract import load_trained_model
from reid.errors import UserError

INPUT_NAME = "images"
OUTPUT_NAME = "descriptor"
# The exporter's graph optimiser logs hundreds of INFO lines (and benign warnings about folds it
# skipped) per export; correctness is checked with onnxruntime instead, so only its errors matter.
EXPORTER_LOGGERS = ("onnxscript", "onnx_ir")
PROTOBUF_LIMIT = 2**31  # bytes; a larger model cannot be one self-contained .onnx file
USAGE = (
    "Input: RGB images resized to img_size x img_size, scaled to [0, 1], then normalised as "
    "(x - mean) / std, NCHW float32, any batch size. Output: one descriptor per image. Match by "
    "cosine similarity of L2-normalised descriptors (higher = more likely the same individual)."
)


@dataclass(frozen=True)
class ExportCheck:
    """What was written and how closely onnxruntime reproduced PyTorch on it."""

    path: Path
    descriptor_dim: int
    img_size: int
    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    seconds: float


def export_onnx(
    model_dir: Path,
    out: Path,
    atol: float = 1e-3,
    check_batch_sizes: Sequence[int] = (1, 3),
) -> ExportCheck:
    """Export the model in `model_dir` to `out` (CPU, float32) and verify it with onnxruntime.

    Raises UserError when the model directory is not a trained model, `out` cannot be written, or
    onnxruntime differs from PyTorch by more than `atol` on any of `check_batch_sizes`.
    """
    started = time.perf_counter()
    if not check_batch_sizes or min(check_batch_sizes) < 1:
        raise ValueError(f"check_batch_sizes must be positive batch sizes, got {check_batch_sizes}")
    model, config = load_trained_model(model_dir, torch.device("cpu"))
    model = model.float()
    img_size = int(config["model"]["img_size"])
    weight_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    if weight_bytes >= PROTOBUF_LIMIT:
        raise UserError(
            f"{model_dir} holds {weight_bytes / 2**30:.1f} GiB of weights: a single .onnx file "
            "is limited to 2 GiB, so this model cannot be exported as one file"
        )
    if out.is_dir():
        raise UserError(f"{out} is a directory: give the path of the .onnx file to write")
    with atomic_path(out) as tmp:
        try:  # fail now, not after a minute of tracing, when the directory is read-only
            tmp.touch()
        except OSError as error:
            raise UserError(
                f"cannot write {out} ({error}): choose a writable output path"
            ) from None
        trace_batch = next(b for b in itertools.count(2) if b not in check_batch_sizes)
        example = _images(trace_batch, img_size, seed=0)
        with torch.no_grad():
            descriptor_dim = int(model(example).shape[1])
        metadata = {**_metadata(config), "descriptor_dim": str(descriptor_dim)}
        _write_onnx(model, example, tmp, metadata)
        max_diff = _max_abs_diff(model, tmp, out, img_size, check_batch_sizes)
        if not max_diff <= atol:  # also catches NaN
            raise UserError(
                f"ONNX export {out} differs from the PyTorch model by {max_diff:.3g} (tolerance "
                f"{atol:g}): not written; raise --atol if that is acceptable, else report a bug"
            )
    return ExportCheck(
        path=out,
        descriptor_dim=descriptor_dim,
        img_size=img_size,
        max_abs_diff=max_diff,
        batch_sizes=tuple(check_batch_sizes),
        seconds=time.perf_counter() - started,
    )


def _images(batch: int, img_size: int, seed: int) -> torch.Tensor:
    """Deterministic inputs in the normalised range [-1, 1] that real images occupy."""
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, img_size, img_size, generator=generator) * 2 - 1


def _metadata(config: dict[str, Any]) -> dict[str, str]:
    """metadata_props: how to prepare inputs and read outputs, and which model this was."""
    normalisation = Normalisation.of(config["model"])
    return {
        "arch": config["model"]["arch"],
        "img_size": str(config["model"]["img_size"]),
        "mean": json.dumps(list(normalisation.mean)),
        "std": json.dumps(list(normalisation.std)),
        "num_parts": str(config["num_parts"]),
        "part_names": json.dumps(config["part_names"]),
        "teacher_id": str(config["teacher_id"] or ""),  # none for a frozen model
        "frozen": json.dumps(bool(config.get("frozen", False))),
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "usage": USAGE,
    }


def _write_onnx(model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, str]) -> None:
    """Trace `model` on `example` with a symbolic batch dimension and save it to `path`."""
    with _quiet(EXPORTER_LOGGERS):
        program = torch.onnx.export(
            model,
            (example,),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: torch.export.Dim("batch")},),
            dynamo=True,
            verbose=False,  # the exporter otherwise prints its progress to stdout
        )
        program.model.metadata_props.update(meta)
        program.save(path, external_data=False)


@contextlib.contextmanager
def _quiet(names: Sequence[str]) -> Iterator[None]:
    """Raise the named loggers to ERROR for the duration, then restore their levels."""
    levels = {logging.getLogger(name): logging.getLogger(name).level for name in names}
    for logger in levels:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in levels.items():
            logger.setLevel(level)


@torch.no_grad()
def _max_abs_diff(
    model: nn.Module, path: Path, out: Path, img_size: int, batch_sizes: Sequence[int]
) -> float:
    """Largest |onnxruntime - PyTorch| over fresh inputs of each batch size (`out` names it)."""
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only; the session raises on anything that matters
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    max_diff = 0.0
    for seed, batch in enumerate(batch_sizes, start=1):
        images = _images(batch, img_size, seed)
        expected = model(images).numpy()
        (actual,) = session.run([OUTPUT_NAME], {INPUT_NAME: images.numpy()})
        if actual.shape != expected.shape:  # would otherwise broadcast into a false match
            raise UserError(
                f"ONNX export {out} returns shape {actual.shape} for a batch of {batch}, PyTorch "
                f"{expected.shape}: not written; report this with your torch version"
            )
        max_diff = max(max_diff, float(np.abs(actual - expected).max()))
    return max_diff
