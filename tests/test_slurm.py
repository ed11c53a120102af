"""The demo DAG through the shipped Slurm profile on a real single-node Slurm cluster.

The cluster (tests/slurm_cluster.py) is installed with apt-get when missing and started for this
test; a failure to install or start it fails the test with the reason, it is never skipped. The
machine has no GPU, so a test profile derived from the shipped one replaces only the site-specific
values: the partition, the account, and the GPU requests of teacher_shard and train.
"""

from __future__ import annotations

import json
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from slurm_cluster import SlurmCluster
from test_workflow import REPO, small_config, snakemake, succeeded

GPU_RULES = ("teacher_shard", "train")
# One Slurm job per rule, except the profile's `evaluation` group: one job for its three rules,
# which the plugin names after the group and its rules.
EVALUATION_GROUP = "evaluation_default_metrics_evaluate_extract"
SLURM_JOBS = Counter(
    {"catalogue": 1, "teacher_shard": 2, "teacher_index": 1, "train": 1, EVALUATION_GROUP: 1}
)


@pytest.fixture
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    cluster = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def cpu_test_profile(directory: Path, partition: str) -> Path:
    """The shipped Slurm profile on a 2-CPU node without GPUs, accounts or a shared file system."""
    config = yaml.safe_load((REPO / "workflow/profiles/slurm/config.yaml").read_text())
    config["default-resources"]["slurm_partition"] = partition
    del config["default-resources"]["slurm_account"]
    config["latency-wait"] = 5
    for rule in GPU_RULES:
        resources = config["set-resources"][rule]
        resources.update(gpu=0, mem_mb=2000)
        del resources["gpu_model"], resources["cpus_per_gpu"]
        config["set-threads"][rule] = 1  # 1 CPU each: the two teacher shards run side by side
    directory.mkdir()
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


def finished_jobs(cluster: SlurmCluster) -> Counter:
    """What the jobs the controller saw finish ran: the plugin's job comment, `rule_<name>...`."""
    listing = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%k %T"],
        capture_output=True,
        text=True,
        env=cluster.env,
        check=True,
    )
    rules: Counter = Counter()
    for line in listing.stdout.splitlines():
        comment, state = line.split()
        assert state == "COMPLETED", listing.stdout
        rules[comment.removeprefix("rule_").split("_wildcards_")[0]] += 1
    return rules


@pytest.mark.slow
def test_demo_runs_as_slurm_jobs(slurm, tmp_path, monkeypatch):
    small_config(tmp_path)
    profile = cpu_test_profile(tmp_path / "profile", slurm.partition)
    monkeypatch.setenv("SLURM_CONF", str(slurm.conf))
    run = snakemake(
        tmp_path,
        "--profile",
        str(profile),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--slurm-keep-successful-logs",
        "results/demo/metrics.json",
    )
    assert succeeded(run, tmp_path, slurm.log_tail())
    metrics = json.loads((tmp_path / "results/demo/metrics.json").read_text())
    assert metrics["provenance"]["model"] == "paw_vit_tiny"
    assert finished_jobs(slurm) == SLURM_JOBS
    # the plugin's Slurm logs: one directory per rule or group that went through sbatch
    logs = {path.name for path in (tmp_path / ".snakemake/slurm_logs").iterdir()}
    assert logs == {"rule_catalogue", "rule_teacher_shard", "rule_teacher_index", "rule_train"} | {
        f"group_{EVALUATION_GROUP}"
    }
