"""Numeric precision of training and extraction: bf16 autocast or plain fp32.

``auto`` uses bf16 autocast on GPUs with native bf16 (Ampere or newer) and fp32 elsewhere: CPUs,
and older GPUs (V100, T4), on which bf16 is emulated and slower than fp32. Weights, optimiser
state and losses stay fp32 in every case.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager

import torch

from reid.errors import UserError

PRECISIONS = ("auto", "bf16", "fp32")
log = logging.getLogger(__name__)


def resolve_precision(requested: str, device: torch.device) -> str:
    """``bf16`` or ``fp32`` for ``device``; ``bf16`` on a GPU without native bf16 is an error."""
    if requested not in PRECISIONS:
        raise UserError(f"unknown precision {requested!r}: use one of {', '.join(PRECISIONS)}")
    on_gpu = device.type == "cuda"
    native_bf16 = on_gpu and torch.cuda.is_bf16_supported(including_emulation=False)
    if requested == "auto":
        if on_gpu and not native_bf16:
            log.info("%s has no native bf16: running in fp32", _gpu_name(device))
        return "bf16" if native_bf16 else "fp32"
    if requested == "bf16" and on_gpu and not native_bf16:
        raise UserError(
            f"precision bf16 needs a GPU with native bf16 (Ampere or newer), and "
            f"{_gpu_name(device)} has none: use precision auto or fp32"
        )
    return requested


def autocast(device: torch.device, precision: str) -> AbstractContextManager:
    """bf16 autocast on ``device`` for a resolved ``precision`` of ``bf16``, else nothing."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def _gpu_name(device: torch.device) -> str:
    if not torch.cuda.is_available():
        return f"device {device}"
    return f"GPU {device} ({torch.cuda.get_device_name(device)})"
