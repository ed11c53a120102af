"""Atomic checkpoints: tensors in safetensors, the training state as JSON inside the same file.

A crash while saving leaves the previous checkpoint intact (write to a temporary file, then
`os.replace`), and because the JSON state travels in the safetensors metadata, the weights and
the state they belong to can never come from two different epochs. A readable copy of the state
is written beside it as `<name>.json` for people and tools; loading uses the embedded one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from reid.atomic import atomic_path, atomic_write_text
from reid.errors import UserError

STATE_KEY = "training_state"


def save_tensors(
    path: Path, tensors: dict[str, torch.Tensor], state: dict[str, Any] | None = None
) -> None:
    """Atomically save `tensors` (to CPU, contiguous) with an optional JSON `state`."""
    metadata = {STATE_KEY: json.dumps(state)} if state is not None else None
    with atomic_path(path) as tmp:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in tensors.items()},
            str(tmp),
            metadata=metadata,
        )
    if state is not None:
        atomic_write_text(path.with_suffix(".json"), json.dumps(state, indent=2))


def load_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Load tensors and the embedded JSON state (None when the file has none)."""
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as handle:
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
            metadata = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for corrupt headers
        raise UserError(
            f"checkpoint {path} cannot be read ({error}): delete it and rerun"
        ) from None
    state = json.loads(metadata[STATE_KEY]) if STATE_KEY in metadata else None
    return tensors, state


def optimizer_to_tensors(
    optimizer: torch.optim.Optimizer,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state dict into named tensors and a JSON-ready remainder."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_id, param_state in state["state"].items():
        for name, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"optimizer.{param_id}.{name}"] = value
            else:
                scalars.setdefault(str(param_id), {})[name] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Inverse of :func:`optimizer_to_tensors`."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, param_id, name = key.split(".", 2)
            state.setdefault(int(param_id), {})[name] = value
    for param_id, values in meta["scalars"].items():
        state.setdefault(int(param_id), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
