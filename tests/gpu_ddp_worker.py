"""Run by `torchrun` in test_gpu.py: train on one GPU per process, then prove NCCL carried it.

Each rank writes ``rank{N}.json``: the process group's backend, whether the trainer wrapped its
model in DDP, where the parameters live, a digest of the trained weights, the result of an
all-reduce of ``rank + 1`` over the group, and (one process, where reid trains without DDP) whether
a DDP-wrapped copy of the model reduced gradients over NCCL to the same values as plain backward.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from reid.config import RunSettings
from reid.engine.train import Trainer, TrainInputs


def weights_digest(model: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(model.named_parameters()):
        digest.update(name.encode())
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def ddp_gradients_match(trainer: Trainer, device: torch.device) -> bool:
    """One backward pass of the trained model plain and wrapped in DDP (gradients all-reduced
    by NCCL): with one process both must give the same gradients."""
    model = trainer.model_core
    model.train()
    images = next(iter(trainer.loader))["image"].to(device)
    ddp = DistributedDataParallel(model, device_ids=[device.index], find_unused_parameters=True)
    grads = []
    for wrapped in (model, ddp):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same drop-path draws in both passes
        wrapped(images).descriptor.float().square().sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None})
    plain, reduced = grads
    return (
        bool(plain)
        and set(plain) <= set(reduced)
        and all(torch.allclose(plain[n], reduced[n], rtol=1e-4, atol=1e-6) for n in plain)
    )


def main() -> None:
    settings_path, catalogue, root, masks, out = sys.argv[1:6]
    settings = RunSettings.load(Path(settings_path))
    inputs = TrainInputs(Path(catalogue), Path(root), Path(masks), Path(out))
    trainer = Trainer(settings, inputs, device="cuda", workers=2, progress=False)
    trainer.fit()
    device = trainer.device
    trained_with_ddp = isinstance(trainer.model, DistributedDataParallel)
    if not dist.is_initialized():  # one process: reid trains without a process group
        dist.init_process_group(backend="nccl", device_id=device)
    value = torch.full((1,), float(dist.get_rank() + 1), device=device)
    dist.all_reduce(value)
    record = {
        "rank": dist.get_rank(),
        "world_size": dist.get_world_size(),
        "backend": str(dist.get_backend()),
        "nccl_version": ".".join(map(str, torch.cuda.nccl.version())),
        "trained_with_ddp": trained_with_ddp,
        "parameter_devices": sorted({str(p.device) for p in trainer.model_core.parameters()}),
        "weights": weights_digest(trainer.model_core),
        "all_reduce": value.item(),
        "all_reduce_device": str(value.device),
    }
    if dist.get_world_size() == 1:
        record["ddp_gradients_match"] = ddp_gradients_match(trainer, device)
    Path(out, f"rank{record['rank']}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
