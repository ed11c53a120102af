"""Process-group setup for `torchrun` DDP (one process per GPU; gloo on CPU for tests)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from reid.errors import UserError


@dataclass(frozen=True)
class DistContext:
    """Rank layout of this process; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def all_true(self, flag: bool, device: torch.device) -> bool:
        """True only if `flag` is True on every rank (so all ranks stop together)."""
        if not self.enabled:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item() > 0)


def init_distributed() -> DistContext:
    """Join the process group `torchrun` describes in the environment, if any."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(
        dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    )


def resolve_device(name: str, ctx: DistContext) -> torch.device:
    """'auto' → this rank's GPU if there is one, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                "--device cuda was requested but no CUDA GPU is visible: use --device cpu"
            )
        if name == "cuda":
            name = f"cuda:{ctx.local_rank}"
        torch.cuda.set_device(torch.device(name))
    elif name != "cpu":
        raise UserError(f"unknown device '{name}': use auto, cpu, cuda or cuda:N")
    return torch.device(name)
