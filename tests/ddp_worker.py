"""Run by `torchrun` in test_ddp.py: train on the tiny dataset, then record this rank's weights."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import torch.distributed as dist

from reid.config import RunSettings
from reid.engine.train import Trainer, TrainInputs


def main() -> None:
    settings_path, catalogue, root, masks, out = sys.argv[1:6]
    settings = RunSettings.load(Path(settings_path))
    trainer = Trainer(
        settings, TrainInputs(Path(catalogue), Path(root), Path(masks), Path(out)), "cpu", 0, False
    )
    trainer.fit()
    digest = hashlib.sha256()
    # Parameters: BatchNorm running statistics are per rank until DDP broadcasts them again.
    for name, tensor in sorted(trainer.model_core.named_parameters()):
        digest.update(name.encode())
        digest.update(tensor.detach().contiguous().numpy().tobytes())
    rank = dist.get_rank()
    record = {
        "rank": rank,
        "world_size": dist.get_world_size(),
        "weights": digest.hexdigest(),
        "steps": len(trainer.batches),
    }
    Path(out, f"rank{rank}.json").write_text(json.dumps(record))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
