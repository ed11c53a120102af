"""DDP as `torchrun` runs it, with the gloo backend on CPU: two processes, one training run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from tiny_data import make_tiny_dataset, run_settings

HERE = Path(__file__).parent


@pytest.mark.slow
def test_two_gloo_processes_train_and_agree_on_weights(tmp_path):
    tiny = make_tiny_dataset(tmp_path)
    settings = tmp_path / "settings.json"
    settings.write_text(json.dumps(run_settings(epochs=2, eval_every=1)))
    out = tmp_path / "run"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(HERE / "ddp_worker.py"),
        str(settings),
        str(tiny.catalogue),
        str(tiny.root),
        str(tiny.masks),
        str(out),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world_size"] == 2 for r in records)
    assert records[0]["weights"] == records[1]["weights"]
    # 12 classes (6 identities, mirrored) in P=3 groups: 4 batches an epoch, 2 per rank.
    assert records[0]["steps"] == records[1]["steps"] == 2
    config = json.loads((out / "model.json").read_text())
    assert config["world_size"] == 2
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 4  # header, the untrained evaluation, 2 epochs; written once (rank 0)
