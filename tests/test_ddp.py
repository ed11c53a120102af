"""DDP as `torchrun` runs it, with the gloo backend on CPU: two processes, one training run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from tiny_data import make_tiny_dataset, run_settings

from reid.engine.distributed import DistContext, launch_context, resolve_device
from reid.errors import UserError

HERE = Path(__file__).parent


@pytest.mark.slow
@pytest.mark.parametrize("hybrid", [False, True], ids=["paw_vit", "paw_vit_efflite0_frozen_stem"])
def test_two_gloo_processes_train_and_agree_on_weights(tmp_path, hybrid):
    tiny = make_tiny_dataset(tmp_path)
    settings = tmp_path / "settings.json"
    run = run_settings(epochs=2, eval_every=1)
    if hybrid:  # a frozen stem must be frozen before DDP wraps the model, or DDP waits for it
        run = run_settings(epochs=2, eval_every=1, optimizer={"frozen_stem_blocks": 3})
        run["model"] = {"arch": "paw_vit_efflite0", "img_size": 32}
    settings.write_text(json.dumps(run))
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


def test_launch_context_reads_the_torchrun_environment(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert launch_context() == DistContext(rank=3, world_size=4, local_rank=1)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert launch_context() == DistContext()


def test_device_errors_name_the_fix():
    two_ranks = DistContext(rank=1, world_size=2, local_rank=1)
    with pytest.raises(UserError, match="would put every process on one GPU: use --device cuda"):
        resolve_device("cuda:0", two_ranks)
    with pytest.raises(UserError, match="unknown device 'gpu'"):
        resolve_device("gpu", DistContext())
    assert resolve_device("cpu", two_ranks) == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without a GPU")
def test_cuda_without_a_gpu_is_an_error():
    with pytest.raises(UserError, match="no CUDA GPU is visible: use --device cpu"):
        resolve_device("cuda", DistContext())
