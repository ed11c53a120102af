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


def launch_context() -> DistContext:
    """The rank layout `torchrun` gave this process (from the environment; rank 0 of 1 without
    torchrun). The process group is joined separately, once the device is known."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    return DistContext(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def init_distributed(ctx: DistContext, device: torch.device) -> None:
    """Join the process group of a `torchrun` launch: NCCL bound to this rank's GPU (so its
    collectives and barriers never guess a device), or gloo when the ranks run on CPU."""
    if not ctx.enabled or dist.is_initialized():
        return
    if device.type == "cuda":
        dist.init_process_group(backend="nccl", device_id=device)
    else:
        dist.init_process_group(backend="gloo")


def resolve_device(name: str, ctx: DistContext) -> torch.device:
    """'auto' → this rank's GPU if there is one, else CPU; 'cuda' without a GPU is an error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda:") and ctx.enabled:
        raise UserError(
            f"--device {name} under torchrun would put every process on one GPU: use --device "
            "cuda (each process takes the GPU of its LOCAL_RANK)"
        )
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise UserError(
                "--device cuda was requested but no CUDA GPU is visible: use --device cpu"
            )
        if name == "cuda":
            visible = torch.cuda.device_count()
            if ctx.local_rank >= visible:
                raise UserError(
                    f"torchrun started process {ctx.local_rank} on this node but only {visible} "
                    f"GPU(s) are visible: use --nproc-per-node {visible} or fewer"
                )
            name = f"cuda:{ctx.local_rank}"
        torch.cuda.set_device(torch.device(name))
    elif name != "cpu":
        raise UserError(f"unknown device '{name}': use auto, cpu, cuda or cuda:N")
    return torch.device(name)
