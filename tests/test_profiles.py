"""The shipped Snakemake profiles: valid YAML, the GPU resources they promise, and a plan."""

from __future__ import annotations

import yaml
from test_workflow import REPO, shipped_config, snakemake, write_config

PROFILES = REPO / "workflow" / "profiles"
GPU_RULES = ("teacher_shard", "train")


def profile(name: str) -> dict:
    return yaml.safe_load((PROFILES / name / "config.yaml").read_text())


def planned_resources(stdout: str, rule: str) -> dict[str, str]:
    """The `resources:` line of the first job of `rule` in a dry run's job listing."""
    block = stdout[stdout.index(f"rule {rule}:") :]
    line = next(line for line in block.splitlines() if line.strip().startswith("resources:"))
    pairs = line.split("resources:", 1)[1].split(", ")
    return dict(pair.strip().split("=", 1) for pair in pairs)


def test_local_gpu_profile_caps_gpu_jobs_and_uses_all_cores():
    local = profile("local-gpu")
    assert local["cores"] == "all"
    assert local["resources"] == {"gpu": 1}
    assert local["rerun-incomplete"] is True


def test_slurm_profile_names_the_executor_and_gpu_resources():
    slurm = profile("slurm")
    assert slurm["executor"] == "slurm" and slurm["jobs"] == 100
    assert {"slurm_partition", "slurm_account", "runtime", "mem_mb"} <= slurm[
        "default-resources"
    ].keys()
    for rule in GPU_RULES:
        resources = slurm["set-resources"][rule]
        assert resources["gpu"] == 1 and resources["gpu_model"] == "a100"
        assert resources["cpus_per_gpu"] == slurm["set-threads"][rule]
    # the short steps after training share one allocation
    assert set(slurm["groups"]) == {"extract", "evaluate", "default_metrics"}
    assert len(set(slurm["groups"].values())) == 1


def test_profiles_show_failed_logs():
    for name in ("local-gpu", "slurm"):
        assert profile(name)["show-failed-logs"] is True


def test_local_gpu_profile_plans_the_demo(tmp_path):
    write_config(tmp_path, shipped_config())
    result = snakemake(
        tmp_path, "--profile", str(PROFILES / "local-gpu"), "-n", "results/demo/metrics.json"
    )
    assert result.returncode == 0, result.stderr
    assert "Using profile" in result.stdout + result.stderr
    for rule in ("catalogue", "teacher_shard", "teacher_index", "train", "extract", "evaluate"):
        assert f"rule {rule}:" in result.stdout


def test_slurm_profile_resources_reach_the_jobs(tmp_path):
    """Snakemake accepts the profile's keys and the GPU rules get them; other rules keep theirs."""
    write_config(tmp_path, shipped_config())
    result = snakemake(
        tmp_path, "--profile", str(PROFILES / "slurm"), "-n", "results/demo/metrics.json"
    )
    assert result.returncode == 0, result.stderr
    train = planned_resources(result.stdout, "train")
    assert train["gpu"] == "1" and train["gpu_model"] == "a100" and train["mem_mb"] == "64000"
    assert train["runtime"] == "1440" and train["slurm_partition"] == "<EDIT partition>"
    shard = planned_resources(result.stdout, "teacher_shard")
    assert shard["gpu"] == "1" and shard["mem_mb"] == "32000"
    catalogue = planned_resources(result.stdout, "catalogue")
    assert "gpu" not in catalogue and catalogue["mem_mb"] == "2000"  # the rule's own value
