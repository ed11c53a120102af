"""The torch device a neural member runs on, from the run's ``--device`` (cpu, cuda or auto)."""

from __future__ import annotations

from pseudomasks.errors import UserError


def torch_device(requested: str) -> str:
    """'cpu' or 'cuda'. 'auto' takes the GPU when torch sees one, so the same command works on
    a laptop and a GPU node; an explicit 'cuda' without a GPU is an error rather than a silent
    CPU run that would take days."""
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: torch sees no CUDA device; use --device cpu or auto")
    if requested not in ("cpu", "cuda"):
        raise UserError(f"--device {requested!r}: use cpu, cuda or auto")
    return requested
